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
pub use accept::{Handler, accept_loop};
use serve::{close_silent, forward_opaque, http_ended, serve_http};

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Span, debug, field};

mod accept;
mod serve;

/// The mTLS gateway port: what [`accept_loop`] runs for each of its connections.
pub struct GatewayPort {
    gw: Arc<Gateway>,
    http: Arc<HttpContext>,
}

impl GatewayPort {
    /// The port's handler, with the HTTP serving context built once for its connections.
    pub fn new(gw: Arc<Gateway>) -> GatewayPort {
        let http = Arc::new(serve::http_context(&gw));
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
/// (debug, under the `conn` span) as an unauthorized source.
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
    let _ = tcp.set_nodelay(true);
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
    let Some(client) = client_info(&tls, peer, foreign_alpn) else {
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

/// The mTLS handshake under its deadline, or the reason it failed; true when the client
/// offered ALPN ids, none of the gateway's, and an SNI naming a target: it then negotiates
/// none rather than failing the handshake, and is served opaque TCP to that target. Any other
/// client offering none of the gateway's ids fails the handshake (`no_application_protocol`).
async fn handshake(gw: &Gateway, tcp: TcpStream) -> Result<(Accepted, bool), &'static str> {
    use tokio_rustls::LazyConfigAcceptor;
    let deadline = gw.settings.handshake_timeout;
    let accept = async {
        let mut lazy = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = match (&mut lazy).await {
            Ok(start) => start,
            Err(e) => return Err((e, lazy.take_io())),
        };
        let hello = start.client_hello();
        let foreign = hello
            .alpn()
            .is_some_and(|mut offered| !offered.any(|p| crate::tls::GATEWAY_ALPN.contains(&p)))
            && hello
                .server_name()
                .is_some_and(|sni| plan::sni_route(sni, &gw.rules.load()).is_some());
        let config = match foreign {
            true => gw.tls.gateway_no_alpn(),
            false => gw.tls.gateway().config().clone(),
        };
        match start.into_stream(config).into_fallible().await {
            Ok(tls) => Ok((Box::new(tls), foreign)),
            Err((e, tcp)) => Err((e, Some(tcp))),
        }
    };
    // Boxed, and freed once done; the stream is boxed inside it, so that neither the 1.2 KB
    // stream nor the handshake's state is part of the connection's task.
    let handshake = Box::pin(tokio::time::timeout(deadline, accept));
    match handshake.await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err((e, tcp))) => {
            let reason = crate::tls::failure_reason(&e);
            debug!(reason, error = %crate::explain::io(&e), "mTLS handshake refused");
            if reason == "rejected by client" {
                rejected_by_client(gw, &e);
            }
            // Boxed: its read buffer would otherwise enlarge every connection's future.
            if let Some(tcp) = tcp {
                Box::pin(crate::tls::linger(tcp)).await;
            }
            Err(reason)
        }
        Err(_) => {
            debug!(?deadline, "mTLS handshake not complete in time");
            Err("timeout")
        }
    }
}

/// A client refused the gateway's own certificate: said at `warn` at most once a minute, with
/// the leaf's expiry when that is the cause, as every client will fail the same way.
fn rejected_by_client(gw: &Gateway, e: &std::io::Error) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = crate::identity::unix_now();
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 60
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let store = &gw.tls.store;
    let not_after = crate::identity::utc(store.not_after());
    if store.is_valid_now() {
        tracing::warn!(
            error = %crate::explain::io(e),
            %not_after,
            "a client refused the gateway's certificate: does it chain to the anchor the clients trust?"
        );
    } else {
        tracing::error!(
            error = %crate::explain::io(e),
            %not_after,
            "a client refused the gateway's certificate, which is not valid now: replace it"
        );
    }
}

/// What a client did after its handshake, before any protocol was given the connection.
#[derive(Clone, Copy)]
enum FirstBytes {
    /// It spoke; what follows (the transport header) is due by `deadline`.
    Arrived { deadline: Instant },
    /// Its deadline passed first, or (HTTP) the gateway began to stop.
    Silent,
}

/// Waits for the client's first bytes: a transport header's (`header`), by its deadline, or
/// HTTP's, by the longer of the idle and request-head deadlines and no longer than the
/// gateway runs.
async fn first_bytes(gw: &Gateway, tls: &mut Accepted, header: bool) -> FirstBytes {
    let s = &gw.settings;
    let wait = match header {
        true => s.header_timeout,
        false => s.http_idle_timeout.max(s.header_timeout),
    };
    let deadline = Instant::now() + wait;
    let readable = tokio::time::timeout_at(deadline, crate::tls::until_readable(tls));
    let spoke = match header {
        // A header in progress is read to its deadline, stopping or not.
        true => readable.await.is_ok(),
        false => {
            let mut stop = gw.lifecycle.stopping();
            tokio::select! {
                biased;
                r = readable => r.is_ok(),
                _ = stop.wait_for(|s| *s) => false,
            }
        }
    };
    match spoke {
        true => FirstBytes::Arrived { deadline },
        false => FirstBytes::Silent,
    }
}

/// The client as the handshake established it; `None` when its leaf names no identity.
/// `foreign_alpn`: it offered only ALPN ids the gateway does not serve.
fn client_info(tls: &Accepted, addr: SocketAddr, foreign_alpn: bool) -> Option<ClientInfo> {
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    let id = crate::identity::identity_of(leaf)?;
    Some(ClientInfo {
        id: id.into(),
        addr,
        alpn: match foreign_alpn {
            true => Alpn::Other,
            false => Alpn::from_negotiated(conn.alpn_protocol()),
        },
        sni: conn.server_name().map(Into::into),
    })
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
            Box::pin(forward_opaque(gw, &rules, tls, client, target, leg)).await
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
