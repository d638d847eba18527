//! Linkerd's header semantics for HTTP through the gateway, as pure functions over
//! `http::HeaderMap`: hop-by-hop stripping, `l5d-orig-proto`, `l5d-client-id`, `Forwarded`
//! and loop detection.

use http::Version;
use http::header::{self, HeaderMap, HeaderName};

pub const L5D_ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");
pub const L5D_CLIENT_ID: HeaderName = HeaderName::from_static("l5d-client-id");
pub const L5D_DST_CANONICAL: HeaderName = HeaderName::from_static("l5d-dst-canonical");
pub const L5D_PROXY_ERROR: HeaderName = HeaderName::from_static("l5d-proxy-error");
pub const FORWARDED: HeaderName = header::FORWARDED;
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The header names a `Connection` header lists, split as bytes: a value with obs-text still
/// names the ASCII tokens around it.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
}

/// An HTTP/1 upgrade request or `101` response: `Upgrade`, and `upgrade` among the
/// `Connection` options (RFC 9110 7.8); an `Upgrade` header alone is only a hop-by-hop header.
pub fn asks_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_options(headers).any(|n| n == "upgrade")
}

/// Removes hop-by-hop headers (RFC 9110 7.6.1), including those named by `Connection`.
/// `te: trailers` survives (gRPC needs it); with `keep_upgrade`, `Upgrade` and a
/// `Connection: upgrade` of the gateway's own survive so a WebSocket handshake can pass.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of them (of the list, HTTP/2 allows only `te: trailers`,
    // `trailer` and `proxy-authorization`): one pass over the names is then enough, instead
    // of a lookup for every header the list names.
    if keep_upgrade || headers.keys().any(is_hop_by_hop) {
        strip_listed(headers, keep_upgrade);
    }
}

/// The headers [`strip_hop_by_hop`] removes or rewrites whenever present; any other it removes
/// is named by `Connection`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRANSFER_ENCODING,
        header::TRAILER,
        header::PROXY_AUTHORIZATION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ]
    .contains(name)
}

fn strip_listed(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = connection_options(headers).collect();
    for n in named {
        if n != header::TE && !(keep_upgrade && n == header::UPGRADE) {
            headers.remove(n);
        }
    }
    headers.remove(header::CONNECTION);
    if keep_upgrade {
        let upgrade = header::HeaderValue::from_static("upgrade");
        headers.insert(header::CONNECTION, upgrade);
    } else {
        headers.remove(header::UPGRADE);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TRAILER);
    headers.remove(header::PROXY_AUTHORIZATION);
    // `te` survives only as `trailers`, whatever else (and however many values) the client
    // sent: HTTP/2 allows no other value, and an upstream must not see two.
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, header::HeaderValue::from_static("trailers"));
    }
}

/// The HTTP/1 version an `l5d-orig-proto` value asks for, if any.
pub fn orig_proto(headers: &HeaderMap) -> Option<Version> {
    match headers.get(L5D_ORIG_PROTO)?.as_bytes() {
        b"HTTP/1.1" => Some(Version::HTTP_11),
        b"HTTP/1.0" => Some(Version::HTTP_10),
        _ => None,
    }
}

/// True when some `Forwarded` element has `by=<own>` (case-insensitive, quotes removed).
pub fn forwarded_by(headers: &HeaderMap, own: &str) -> bool {
    headers
        .get_all(FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(k, v)| {
            k.trim().eq_ignore_ascii_case("by") && unquote(v.trim()).eq_ignore_ascii_case(own)
        })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The `Forwarded` element the gateway appends, as Linkerd's gateway writes it:
/// `by=<own>;for=<client>;host=<name:port>;proto=https`. Values are left bare (as Linkerd
/// does, though RFC 7239 would quote `host`); only a value with a delimiter is quoted.
pub fn forwarded_element(own: &str, client: &str, host: &str) -> String {
    format!(
        "by={};for={};host={};proto=https",
        quote(own),
        quote(client),
        quote(host)
    )
}

fn quote(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b",;=\"\\".contains(&b) || !b.is_ascii_graphic());
    if bare {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A gRPC request: its content type says so (errors are then answered as gRPC statuses).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str =
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

    /// Found by fuzzing: a second `te` value, and a `Connection` value with obs-text.
    #[test]
    fn every_te_value_and_connection_token() {
        let mut h = HeaderMap::new();
        h.append(header::TE, "trailers".parse().unwrap());
        h.append(header::TE, "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let te: Vec<_> = h.get_all(header::TE).iter().collect();
        assert_eq!(te, ["trailers"]);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            header::HeaderValue::from_bytes(b"x-secret, \xffoops, x-other").unwrap(),
        );
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-other", "2".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert!(
            !h.contains_key("x-secret") && !h.contains_key("x-other"),
            "{h:?}"
        );
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x-keep") && h.contains_key(header::TE));
        let mut h = HeaderMap::new();
        h.insert(header::TE, "gzip".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::CONNECTION, "upgrade".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert!(!h.contains_key(header::TE));
        assert!(h.contains_key(header::UPGRADE) && h.contains_key(header::CONNECTION));
        // An upgrade keeps `Connection: upgrade` and `Upgrade`, not the other options.
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(
            header::CONNECTION,
            "keep-alive, Upgrade, x-secret".parse().unwrap(),
        );
        h.insert("x-secret", "1".parse().unwrap());
        assert!(asks_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::CONNECTION], "upgrade");
        // `Upgrade` without the `upgrade` option is no upgrade.
        h.insert(header::CONNECTION, "x-secret".parse().unwrap());
        assert!(!asks_upgrade(&h));
    }

    /// The one pass over the names skips the removals only when they would change nothing.
    #[test]
    fn the_quick_check_skips_only_what_changes_nothing() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[
                ("content-type", "text/plain"),
                ("x-custom", "1"),
                ("host", "a"),
            ],
            &[("te", "trailers"), ("content-type", "application/grpc")],
            &[("te", "gzip, trailers")],
            &[("trailer", "x-checksum"), ("x-keep", "1")],
            &[
                ("proxy-authorization", "Basic eA=="),
                ("l5d-dst-canonical", "a:80"),
            ],
            &[("keep-alive", "5")],
            &[("proxy-connection", "keep-alive")],
            &[("connection", "x-secret"), ("x-secret", "1")],
            &[("upgrade", "websocket")],
            &[("transfer-encoding", "chunked")],
        ];
        for pairs in cases {
            let mut h = HeaderMap::new();
            for (n, v) in *pairs {
                h.append(HeaderName::from_static(n), v.parse().unwrap());
            }
            let mut listed = h.clone();
            strip_listed(&mut listed, false);
            let mut quick = h.clone();
            strip_hop_by_hop(&mut quick, false);
            assert_eq!(quick, listed, "{pairs:?}");
            let changes = listed != h;
            assert_eq!(
                h.keys().any(is_hop_by_hop),
                changes || h.contains_key(header::TE)
            );
        }
    }

    #[test]
    fn orig_proto_values() {
        let mut h = HeaderMap::new();
        assert_eq!(orig_proto(&h), None);
        h.insert(L5D_ORIG_PROTO, "HTTP/1.1".parse().unwrap());
        assert_eq!(orig_proto(&h), Some(Version::HTTP_11));
        h.insert(L5D_ORIG_PROTO, "HTTP/1.0".parse().unwrap());
        assert_eq!(orig_proto(&h), Some(Version::HTTP_10));
    }

    #[test]
    fn forwarded_loops() {
        let mut h = HeaderMap::new();
        assert!(!forwarded_by(&h, GW));
        h.append(FORWARDED, "for=1.2.3.4;proto=http".parse().unwrap());
        assert!(!forwarded_by(&h, GW));
        h.append(
            FORWARDED,
            format!("for=x, By=\"{}\";proto=https", GW.to_uppercase())
                .parse()
                .unwrap(),
        );
        assert!(forwarded_by(&h, GW));
    }

    #[test]
    fn forwarded_element_quotes_only_when_needed() {
        assert_eq!(
            forwarded_element(GW, "a.b", "x.y.svc.cluster.local:80"),
            format!("by={GW};for=a.b;host=x.y.svc.cluster.local:80;proto=https")
        );
        assert_eq!(
            forwarded_element(GW, "spiffe://td/ns/a/sa/b", "a;b"),
            format!("by={GW};for=spiffe://td/ns/a/sa/b;host=\"a;b\";proto=https")
        );
        // What we append is what we detect.
        let mut h = HeaderMap::new();
        h.insert(
            FORWARDED,
            forwarded_element(GW, "c", "h:1").parse().unwrap(),
        );
        assert!(forwarded_by(&h, GW));
    }
}
