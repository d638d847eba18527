//! The connection plan: from what the handshake and the first bytes established (the client's
//! identity and address, the negotiated ALPN, SNI, the transport header if any) and the rules in
//! force, what happens to the connection: a typed [`Plan`] or a [`Refusal`]; on the passthrough
//! port, the target of a ClientHello's SNI ([`plan_passthrough`]). And the per-request
//! decisions of HTTP (the plain-mode target, SNI against the request's authority, loops by
//! `Forwarded`, authorization). Pure: no I/O, no clock, no metrics; `server/`, `passthrough`
//! and `proxy/http.rs` act on the answers. DESIGN.md's serving table and refusal table are the
//! unit tests in `plan/tests.rs` and `plan/sni_tests.rs`.

use crate::authz;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::Rules;
use crate::transport_header::{self, SessionProtocol, TransportHeader};
use std::net::SocketAddr;
use std::sync::Arc;

/// The ALPN protocol the handshake settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `transport.l5d.io/v1`: a transport header follows.
    Transport,
    H2,
    Http1,
    /// The client offered no ALPN.
    None,
    /// Something the gateway does not serve.
    Other,
}

impl Alpn {
    pub fn from_negotiated(alpn: Option<&[u8]>) -> Alpn {
        match alpn {
            Some(transport_header::ALPN) => Alpn::Transport,
            Some(b"h2") => Alpn::H2,
            Some(b"http/1.1") => Alpn::Http1,
            None => Alpn::None,
            Some(_) => Alpn::Other,
        }
    }
}

/// The client as the handshake established it.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The identity from the client leaf's first DNS or spiffe URI SAN.
    pub id: Arc<str>,
    pub addr: SocketAddr,
    pub alpn: Alpn,
    /// The server name the client asked for (Linkerd sends the gateway's identity).
    pub sni: Option<Arc<str>>,
}

/// How an HTTP connection's protocol is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMode {
    Http1,
    Http2,
    /// No ALPN: the first bytes tell (an HTTP/2 preface or an HTTP/1 request line).
    Sniff,
}

/// Where an HTTP connection's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpTarget {
    /// The transport header named the target for the whole connection. `authorized` is the
    /// rules' answer when the connection opened (counted once as the connection's allow); each
    /// request is still authorized under the rules of its own time, so a denied session answers
    /// every request 403.
    Fixed { target: Target, authorized: bool },
    /// Plain HTTP mode: each request names its target ([`request_authority`]).
    PerRequest,
    /// SNI named the target for the whole connection; `authorized` as for `Fixed`. A request
    /// naming another authority is refused ([`check_sni_authority`]), never re-routed.
    Sni { target: Target, authorized: bool },
}

impl HttpTarget {
    /// The target fixed for the whole connection, by the transport header or SNI, and
    /// whether the rules allowed it when the connection opened.
    pub fn fixed(&self) -> Option<(&Target, bool)> {
        match self {
            HttpTarget::Fixed { target, authorized } | HttpTarget::Sni { target, authorized } => {
                Some((target, *authorized))
            }
            HttpTarget::PerRequest => None,
        }
    }

    /// The access log's `protocol` of an HTTP connection: `http/1` or `http/2` for a
    /// transport-header session, `http` for plain mode.
    pub fn protocol_label(&self, mode: HttpMode) -> &'static str {
        match (self, mode) {
            (HttpTarget::PerRequest, _) => "http",
            (_, HttpMode::Http1) => "http/1",
            _ => "http/2",
        }
    }
}

/// Which way named a connection's target: the `route` label of its `tcp_*` families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// A transport header (ALPN `transport.l5d.io/v1`, SNI the gateway's identity).
    Header,
    /// The server name, on the mTLS port (terminated).
    Sni,
    /// HTTP requests, each naming its own (plain HTTP mode), or nothing the gateway serves.
    Http,
    /// The server name on the passthrough port (not terminated).
    Passthrough,
}

impl Route {
    /// The `route` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Route::Header => "header",
            Route::Sni => "sni",
            Route::Http => "http",
            Route::Passthrough => "passthrough",
        }
    }
}

/// The target the client's SNI names on the mTLS port, when it names one: not the gateway's
/// own identity, and Istio's form or a bare name that routes ([`crate::route::Routes::route_sni`]).
/// `None`: the connection is addressed to the gateway and served by today's table.
pub fn sni_target(client: &ClientInfo, rules: &Rules) -> Option<Result<Target, Refusal>> {
    sni_route(client.sni.as_deref()?, rules)
}

/// [`sni_target`] of a server name alone, as the ClientHello gives it before the handshake.
pub fn sni_route(sni: &str, rules: &Rules) -> Option<Result<Target, Refusal>> {
    if authz::same_identity(sni, &rules.policy.own_identity) {
        return None;
    }
    rules.routes.route_sni(sni)
}

/// Which way names this connection's target, known once the handshake is done.
pub fn route_of(client: &ClientInfo, rules: &Rules) -> Route {
    match (sni_target(client, rules), client.alpn) {
        (Some(_), _) => Route::Sni,
        (None, Alpn::Transport) => Route::Header,
        (None, _) => Route::Http,
    }
}

/// What the gateway does with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Opaque TCP to the header's target, authorized once.
    Opaque(Target),
    /// HTTP, served by `proxy::http`.
    Http { mode: HttpMode, target: HttpTarget },
}

/// Decides a connection. `header` is the transport header when the ALPN was
/// `transport.l5d.io/v1` (the caller reads it first and counts a header that does not decode).
pub fn plan(
    client: &ClientInfo,
    header: Option<&TransportHeader>,
    rules: &Rules,
) -> Result<Plan, Refusal> {
    if let Some(target) = sni_target(client, rules) {
        return plan_sni(client, header, target?, rules);
    }
    let mode = match (client.alpn, header) {
        (Alpn::Transport, Some(header)) => return plan_transport(client, header, rules),
        (Alpn::Transport, None) | (Alpn::Other, _) => return Err(Refusal::UnknownProtocol),
        // A header on a connection without the transport ALPN is not read: none is expected.
        (Alpn::H2, _) => HttpMode::Http2,
        (Alpn::Http1, _) => HttpMode::Http1,
        (Alpn::None, _) => HttpMode::Sniff,
    };
    // In plain mode each request is routed and authorized (a client presenting the gateway's
    // own identity is answered 508 per request, as every refusal there is an HTTP answer).
    Ok(Plan::Http {
        mode,
        target: HttpTarget::PerRequest,
    })
}

fn plan_transport(
    client: &ClientInfo,
    header: &TransportHeader,
    rules: &Rules,
) -> Result<Plan, Refusal> {
    let name = header.name.as_deref().ok_or(Refusal::BadGatewayDomain)?;
    let target = rules.routes.route(name, header.port)?;
    let decision = authz::authorize(&client.id, &target, &rules.policy);
    match (header.protocol, decision) {
        (None, Ok(())) => Ok(Plan::Opaque(target)),
        (Some(p), Ok(())) => Ok(http_fixed(p, target, true)),
        // An HTTP session the rules deny is still served, so that each request gets its 403
        // with `l5d-proxy-error` rather than a bare close.
        (Some(p), Err(Refusal::Unauthorized)) => Ok(http_fixed(p, target, false)),
        (_, Err(refusal)) => Err(refusal),
    }
}

/// SNI named `target`: the ALPN says how the decrypted stream is served. A transport header
/// must name the same target (SNI wins; another is misdirected).
fn plan_sni(
    client: &ClientInfo,
    header: Option<&TransportHeader>,
    target: Target,
    rules: &Rules,
) -> Result<Plan, Refusal> {
    let mode = match (client.alpn, header) {
        (Alpn::Transport, Some(header)) => {
            let name = header.name.as_deref().ok_or(Refusal::BadGatewayDomain)?;
            if rules.routes.route(name, header.port)? != target {
                return Err(Refusal::Misdirected);
            }
            return plan_transport(client, header, rules);
        }
        (Alpn::Transport, None) => return Err(Refusal::UnknownProtocol),
        (Alpn::H2, _) => HttpMode::Http2,
        (Alpn::Http1, _) => HttpMode::Http1,
        (Alpn::None | Alpn::Other, _) => {
            authz::authorize(&client.id, &target, &rules.policy)?;
            return Ok(Plan::Opaque(target));
        }
    };
    let authorized = match authz::authorize(&client.id, &target, &rules.policy) {
        Ok(()) => true,
        // Served, so that each request gets its 403, as for a transport header.
        Err(Refusal::Unauthorized) => false,
        Err(refusal) => return Err(refusal),
    };
    Ok(Plan::Http {
        mode,
        target: HttpTarget::Sni { target, authorized },
    })
}

/// The passthrough port: the target of a ClientHello's server name (`None`: it sent none),
/// routed as on the mTLS port and then allowed by `[passthrough] allow`. Every refusal is
/// [`Refusal::Sni`]: the client's identity is unknown, so nothing else can be said to it.
pub fn plan_passthrough(sni: Option<&str>, rules: &Rules) -> Result<Target, Refusal> {
    let sni = sni.ok_or(Refusal::Sni("no server name"))?;
    if crate::names::is_ip_literal(sni) {
        return Err(Refusal::Sni("ip literal"));
    }
    let target = match rules.routes.route_sni(sni) {
        Some(Ok(target)) => target,
        _ => return Err(Refusal::Sni("not routed")),
    };
    let allow = &rules.routes.sni().passthrough_allow;
    if !allow.iter().any(|p| p.matches(&target.name)) {
        return Err(Refusal::Sni("not allowed"));
    }
    Ok(target)
}

fn http_fixed(protocol: SessionProtocol, target: Target, authorized: bool) -> Plan {
    let mode = match protocol {
        SessionProtocol::Http1 => HttpMode::Http1,
        SessionProtocol::Http2 => HttpMode::Http2,
    };
    Plan::Http {
        mode,
        target: HttpTarget::Fixed { target, authorized },
    }
}

/// Plain HTTP mode: the authority a request names: `l5d-dst-canonical`, else the request
/// authority (`:authority`, or the absolute-form URI's), else `Host`. Values that are not
/// text are skipped as absent.
pub fn request_authority<'a>(
    dst_canonical: Option<&'a [u8]>,
    uri_authority: Option<&'a str>,
    host: Option<&'a [u8]>,
) -> Result<&'a str, Refusal> {
    let text = |v: &'a [u8]| std::str::from_utf8(v).ok();
    dst_canonical
        .and_then(text)
        .or(uri_authority)
        .or_else(|| host.and_then(text))
        .ok_or(Refusal::BadGatewayDomain)
}

/// Plain HTTP mode: the target of an authority, port 80 when it names none.
pub fn request_target(authority: &str, rules: &Rules) -> Result<Target, Refusal> {
    rules.routes.route_authority(authority, 80)
}

/// A request on a connection whose SNI named `target`: the authority it names, if any
/// ([`request_authority`]), must be the same host (its port is the one the client dialled,
/// the gateway's). Another host is misdirected: refused, not re-routed.
pub fn check_sni_authority(target: &Target, authority: Option<&str>) -> Result<(), Refusal> {
    let Some(authority) = authority else {
        return Ok(());
    };
    let host = match crate::route::split_authority(authority, Some(0)) {
        Ok((host, _)) => host,
        Err(_) => return Err(Refusal::Misdirected),
    };
    if crate::names::normalize(host) == *target.name {
        Ok(())
    } else {
        Err(Refusal::Misdirected)
    }
}

/// May this request go to `target`: not a loop (`Forwarded: by=<own id>`, or the client is the
/// gateway itself), and allowed by the rules in force. `forwarded_by_self` comes from
/// [`crate::proxy::headers::forwarded_by`].
pub fn check_request(
    client: &str,
    target: &Target,
    forwarded_by_self: bool,
    rules: &Rules,
) -> Result<(), Refusal> {
    if forwarded_by_self {
        return Err(Refusal::GatewayLoop);
    }
    authz::authorize(client, target, &rules.policy)
}

#[cfg(test)]
mod sni_tests;
#[cfg(test)]
mod tests;
