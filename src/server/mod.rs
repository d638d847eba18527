//! The gateway port: its [`Handler`] for the shared [`accept_loop`], and one connection's life
//! read as a sequence: TLS handshake → client identity → first bytes (the transport header, when the
//! ALPN says one follows) → [`plan`] under the rules in force → one `match` on the plan:
//! opaque TCP ([`crate::proxy::tcp`]) or HTTP ([`crate::proxy::http`]). Decisions are made by
//! the pure modules; this file sequences them, counts, and writes the access line when the
//! connection ends. Every connection runs inside a `conn` span (peer, client, target).

use crate::Gateway;
use crate::access::{ConnRecord, Outcome};
use crate::metrics::{AuthzLabels, HeaderLabels, Leg, PeerLabels, Scope, TcpLabels};
use crate::plan::{self, Alpn, ClientInfo, Plan};
use crate::proxy::http::HttpContext;
use crate::refusal::Refusal;
use crate::route::Target;
use crate::tls::Accepted;
use crate::transport_header::{self, HeaderError, SessionProtocol, TransportHeader};
use crate::upstream::Upstream;
pub use accept::{Handler, accept_loop, spawn_connection};
use open::{FirstBytes, client_info, first_bytes, handshake};
use serve::{close_silent, forward_opaque, http_ended, serve_http};

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Span, debug, field};

mod accept;
mod open;
mod serve;

/// The mTLS gateway port: what [`accept_loop`] runs for each of its connections.
pub struct GatewayPort {
    gw: Arc<Gateway>,
    http: Arc<HttpContext>,
}

impl GatewayPort {
    /// The port's handler, with the HTTP serving context built once for its connections,
    /// going upstream through the gateway's own upstream.
    pub fn new(gw: Arc<Gateway>) -> GatewayPort {
        let upstream = gw.upstream.clone();
        GatewayPort::with_upstream(gw, upstream)
    }

    /// The handler of one worker thread, with an upstream (and connections) of its own.
    pub fn with_upstream(gw: Arc<Gateway>, upstream: Arc<Upstream>) -> GatewayPort {
        let http = Arc::new(serve::http_context(&gw, upstream));
        GatewayPort { gw, http }
    }
}

impl Handler for GatewayPort {
    fn admit(&self, peer: SocketAddr) -> bool {
        source_admitted(&self.gw, peer)
    }

    async fn serve(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        connection(&self.gw, &self.http, tcp, peer).await
    }
}

/// `[server] allow_sources` under the rules in force; a refused peer is counted and logged
/// (debug, under the `conn` span, itself at debug) as an unauthorized source.
pub(crate) fn source_admitted(gw: &Gateway, peer: SocketAddr) -> bool {
    let allowed = crate::authz::source_allowed(gw.rules.load().allow_sources.as_deref(), peer);
    if !allowed {
        gw.metrics
            .refused(Scope::Connection, None, &Refusal::UnauthorizedSource);
    }
    allowed
}

/// How a connection ended, for its access line.
struct Ended {
    protocol: &'static str,
    target: Option<Arc<str>>,
    endpoint: Option<SocketAddr>,
    end: End,
    bytes: (u64, u64),
}

enum End {
    Ok,
    Refused(Refusal),
    Failed(String),
}

impl Ended {
    fn new(protocol: &'static str, target: Option<&Target>, end: End) -> Ended {
        Ended {
            protocol,
            target: target.map(|t| t.to_string().into()),
            endpoint: None,
            end,
            bytes: (0, 0),
        }
    }
}

/// One connection, from the handshake to its access line.
async fn connection(gw: &Gateway, http: &Arc<HttpContext>, tcp: TcpStream, peer: SocketAddr) {
    let start = Instant::now();
    // No TCP_NODELAY here: the socket has it from the listening one (`listening_socket`).
    let failed = |reason: &str| {
        gw.access.connection(&ConnRecord {
            peer,
            client_id: None,
            target: None,
            endpoint: None,
            protocol: "tls",
            outcome: Outcome::Failed(reason),
            bytes_in: 0,
            bytes_out: 0,
            duration: start.elapsed(),
        })
    };
    let (mut tls, foreign_alpn) = match handshake(gw, tcp).await {
        Ok(done) => done,
        Err(reason) => {
            gw.metrics.tls.handshake_failure(reason);
            return failed(&format!("tls handshake: {reason}"));
        }
    };
    let Some(client) = client_info(&tls, peer, foreign_alpn, &gw.tls.identities) else {
        gw.metrics.tls.handshake_failure("no identity");
        debug!("client certificate has no DNS or spiffe URI SAN");
        return failed("tls handshake: no identity");
    };
    Span::current().record("client_id", &*client.id);
    let route = plan::route_of(&client, &gw.rules.load());
    let mut leg = Leg::open(
        &gw.metrics,
        TcpLabels::Inbound {
            client_id: client.id.clone(),
            route: route.as_label(),
        },
    );
    // Until the client speaks, the connection holds its TLS state and this small task, no
    // protocol's state: that is what thousands of idle connections cost.
    let first = first_bytes(gw, &mut tls, client.alpn == Alpn::Transport).await;
    // Boxed: a connection's task then holds only the state it reached, not the largest
    // state of every path.
    let ended = Box::pin(serve(gw, http, tls, &client, &leg, first)).await;
    let outcome = match &ended.end {
        End::Ok => {
            leg.succeeded();
            Outcome::Ok
        }
        End::Refused(r) => Outcome::Refused(r),
        End::Failed(reason) => Outcome::Failed(reason),
    };
    gw.access.connection(&ConnRecord {
        peer,
        client_id: Some(&client.id),
        target: ended.target.as_deref(),
        endpoint: ended.endpoint,
        protocol: ended.protocol,
        outcome,
        bytes_in: ended.bytes.0,
        bytes_out: ended.bytes.1,
        duration: start.elapsed(),
    });
}

/// First bytes, plan, and the `match` that serves the plan.
async fn serve(
    gw: &Gateway,
    http: &Arc<HttpContext>,
    mut tls: Accepted,
    client: &ClientInfo,
    leg: &Leg,
    first: FirstBytes,
) -> Ended {
    let header = match client.alpn {
        Alpn::Transport => match read_header(gw, &mut tls, first).await {
            Ok((header, len)) => {
                leg.read.inc_by(len as u64);
                Some(header)
            }
            Err(e) => {
                gw.metrics.tcp.error("transport header");
                debug!(error = %e, "transport header refused");
                return Ended::new(
                    "transport",
                    None,
                    End::Failed(format!("transport header: {e}")),
                );
            }
        },
        _ => None,
    };
    let rules = gw.rules.load();
    let plan = plan::plan(client, header.as_ref(), &rules);
    if let Some(header) = &header {
        count_header(gw, client, header);
    }
    match plan {
        Err(refusal) => {
            let sni = plan::sni_target(client, &rules).and_then(Result::ok);
            let target = header.as_ref().map(header_target).or(sni);
            refuse_connection(gw, client, target.as_ref(), &refusal);
            let protocol = match (&header, client.alpn) {
                (Some(header), _) => protocol_of(header),
                (None, Alpn::None | Alpn::Other) if target.is_some() => "opaque",
                (None, _) => "http",
            };
            Ended::new(protocol, target.as_ref(), End::Refused(refusal))
        }
        Ok(Plan::Opaque(target)) => {
            Span::current().record("target", field::display(&target));
            let upstream = &http.upstream;
            Box::pin(forward_opaque(
                gw, upstream, &rules, tls, client, target, leg,
            ))
            .await
        }
        Ok(Plan::Http { mode, target }) => {
            if let Some((target, authorized)) = target.fixed() {
                Span::current().record("target", field::display(target));
                if authorized {
                    count_allow(gw, client, target);
                }
            }
            // HTTP takes the rules in force at each request.
            drop(rules);
            // Behind a header, HTTP's own first bytes are awaited the same way.
            let first = match header {
                Some(_) => first_bytes(gw, &mut tls, false).await,
                None => first,
            };
            match first {
                FirstBytes::Silent => close_silent(tls, http_ended(mode, &target)).await,
                FirstBytes::Arrived { .. } => {
                    Box::pin(serve_http(gw, http, tls, client, mode, target, leg)).await
                }
            }
        }
    }
}

/// Reads the transport header by the deadline the client's first bytes had.
async fn read_header(
    gw: &Gateway,
    tls: &mut Accepted,
    first: FirstBytes,
) -> Result<(TransportHeader, usize), HeaderError> {
    let wait = gw.settings.header_timeout;
    let FirstBytes::Arrived { deadline } = first else {
        return Err(HeaderError::Timeout(wait));
    };
    match tokio::time::timeout_at(deadline, transport_header::read_unbounded(tls)).await {
        Ok(Ok((TransportHeader { name: None, .. }, _))) => Err(HeaderError::NoName),
        Ok(r) => r,
        Err(_) => Err(HeaderError::Timeout(wait)),
    }
}

/// Counts a transport-header connection. Its target's name and port are labels only when
/// the target is known to be real (see [`crate::metrics::TargetLabels`]), else `other` and 0.
fn count_header(gw: &Gateway, client: &ClientInfo, header: &TransportHeader) {
    let target = header_target(header);
    let known = gw.metrics.targets.is_known(&target);
    if !known {
        gw.metrics.targets.folded.inc();
    }
    gw.metrics
        .tcp
        .transport_header_connections
        .get_or_create(&HeaderLabels {
            session_protocol: header.protocol.map(SessionProtocol::as_label),
            target_port: if known { header.port } else { 0 },
            target_name: if known {
                target.name.to_string()
            } else {
                crate::metrics::OTHER.to_string()
            },
            client_id: client.id.to_string(),
        })
        .inc();
}

/// The target a header names, in the normal form targets take (not yet routed).
fn header_target(header: &TransportHeader) -> Target {
    let name = crate::names::normalize(header.name.as_deref().unwrap_or_default());
    Target {
        name: name.into(),
        port: header.port,
    }
}

fn protocol_of(header: &TransportHeader) -> &'static str {
    match header.protocol {
        None => "opaque",
        Some(SessionProtocol::Http1) => "http/1",
        Some(SessionProtocol::Http2) => "http/2",
    }
}

/// `client_id` and the target's `authority` label (`other` unless known to be real).
fn peer_labels(gw: &Gateway, client: &ClientInfo, target: &Target) -> PeerLabels {
    PeerLabels {
        client_id: client.id.to_string(),
        authority: gw.metrics.targets.authority(target),
    }
}

fn count_allow(gw: &Gateway, client: &ClientInfo, target: &Target) {
    gw.metrics
        .tcp
        .authz_allow
        .get_or_create(&AuthzLabels::Rules(peer_labels(gw, client, target)))
        .inc();
}

/// Counts and logs a connection-level refusal; the caller then closes the connection, as
/// Linkerd's gateway does (the source proxy answers its client 502).
fn refuse_connection(gw: &Gateway, client: &ClientInfo, target: Option<&Target>, r: &Refusal) {
    let peer = target.map(|t| peer_labels(gw, client, t));
    gw.metrics.refused(Scope::Connection, peer.as_ref(), r);
}
