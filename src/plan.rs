//! The connection plan: from what the handshake and the first bytes established (the client's
//! identity and address, the negotiated ALPN, SNI, the transport header if any) and the rules in
//! force, what happens to the connection: a typed [`Plan`] or a [`Refusal`]. And the per-request
//! decisions of HTTP (the plain-mode target, loops by `Forwarded`, authorization). Pure: no I/O,
//! no clock, no metrics; `server.rs` and `proxy/http.rs` act on the answers. DESIGN.md's serving
//! table and refusal table are the unit tests at the bottom.

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
}

impl HttpTarget {
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
mod tests;
