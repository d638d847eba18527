//! The gateway port: accept loop, connection limit, and one connection's life from TLS
//! handshake through identity, transport header, routing and authorization to forwarding.
//! Decisions are made by the pure modules; this file only sequences them and counts.

use crate::Gateway;
use crate::authz;
use crate::identity::identity_of;
use crate::metrics::{HeaderLabels, Leg, PeerLabels, TcpLabels};
use crate::refusal::Refusal;
use crate::route::Target;
use crate::tls::Accepted;
use crate::transport_header::{self, SessionProtocol, TransportHeader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

/// Accepts on `listener` until `stop` turns true, one task per connection, at most
/// `max_connections` at once (further clients wait in the listen backlog).
pub async fn accept_loop(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = gw.connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                let gw = gw.clone();
                tokio::spawn(async move {
                    serve_connection(&gw, tcp, peer).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The client as the handshake established it.
pub struct Client {
    pub id: Arc<str>,
    pub addr: SocketAddr,
}

async fn serve_connection(gw: &Arc<Gateway>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let m = &gw.metrics;
    let deadline = gw.server.handshake_timeout;
    // Boxed, and freed once done: the task then keeps only what serving needs.
    let handshake = Box::pin(tokio::time::timeout(deadline, gw.acceptor().accept(tcp)));
    let tls = match handshake.await {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err(e)) => {
            let reason = crate::tls::failure_reason(&e);
            m.handshake_failure(reason);
            debug!(%peer, reason, error = %e, "mTLS handshake refused");
            return;
        }
        Err(_) => {
            m.handshake_failure("timeout");
            debug!(%peer, ?deadline, "mTLS handshake not complete in time");
            return;
        }
    };
    let (_, conn) = tls.get_ref();
    let id = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| identity_of(leaf));
    let Some(id) = id else {
        m.handshake_failure("no identity");
        debug!(%peer, "client certificate has no DNS or spiffe URI SAN");
        return;
    };
    let alpn_is_transport = conn.alpn_protocol() == Some(transport_header::ALPN);
    let client = Client {
        id: id.into(),
        addr: peer,
    };
    let mut leg = Leg::open(
        m,
        TcpLabels::Inbound {
            client_id: client.id.clone(),
        },
    );
    // Boxed: a connection's task then holds only the state it reached, not the largest
    // state of every path (10 KiB otherwise), which matters with many idle connections.
    let ok = if alpn_is_transport {
        Box::pin(serve_transport(gw, tls, &client, &leg)).await
    } else {
        Box::pin(crate::proxy::http::serve_plain(gw, tls, &client, &leg)).await
    };
    if ok {
        leg.succeeded();
    }
}

/// A connection whose ALPN was `transport.l5d.io/v1`: read the header, route, authorize once,
/// then forward as opaque TCP or serve HTTP. Returns whether it ended cleanly.
async fn serve_transport(gw: &Arc<Gateway>, mut tls: Accepted, client: &Client, leg: &Leg) -> bool {
    let m = &gw.metrics;
    // One deadline for the wait for first bytes and the header itself.
    let wait = gw.server.header_timeout;
    let read = async {
        crate::tls::until_readable(&mut tls).await;
        transport_header::read_unbounded(&mut tls).await
    };
    let header = match tokio::time::timeout(wait, read).await {
        Ok(r) => r,
        Err(_) => Err(transport_header::HeaderError::Timeout(wait)),
    };
    let header = match header {
        Ok((TransportHeader { name: None, .. }, _)) => Err(transport_header::HeaderError::NoName),
        other => other,
    };
    let header = match header {
        Ok((h, len)) => {
            leg.read.inc_by(len as u64);
            h
        }
        Err(e) => {
            m.tcp_error("transport header");
            debug!(client = %client.id, peer = %client.addr, error = %e, "transport header refused");
            return false;
        }
    };
    let name = header.name.as_deref().unwrap_or_default();
    m.transport_header_connections
        .get_or_create(&HeaderLabels {
            session_protocol: header.protocol.map(SessionProtocol::as_label),
            target_port: header.port,
            target_name: name.to_string(),
            client_id: client.id.to_string(),
        })
        .inc();
    let target = match gw.routes.route(name, header.port) {
        Ok(t) => t,
        Err(refusal) => {
            refuse_connection(gw, client, &format!("{name}:{}", header.port), &refusal);
            return false;
        }
    };
    let authority: Arc<str> = target.to_string().into();
    let decision = authz::authorize(&client.id, &target, &gw.policy);
    match (&decision, header.protocol) {
        (Ok(()), _) => {
            m.tcp_authz_allow
                .get_or_create(&peer_labels(client, &authority))
                .inc();
        }
        // An HTTP session the rules deny is still served, so that each request gets its 403
        // with `l5d-proxy-error` (counted per request) rather than a bare close.
        (Err(Refusal::Unauthorized), Some(_)) => {}
        (Err(refusal), _) => {
            refuse_connection(gw, client, &authority, refusal);
            return false;
        }
    }
    match header.protocol {
        None => Box::pin(forward_opaque(gw, tls, client, &target, authority, leg)).await,
        Some(protocol) => {
            let authorized = decision.is_ok();
            let http = crate::proxy::http::serve_transport(
                gw, tls, client, target, protocol, authorized, leg,
            );
            Box::pin(http).await
        }
    }
}

fn peer_labels(client: &Client, authority: &str) -> PeerLabels {
    PeerLabels {
        client_id: client.id.to_string(),
        authority: authority.to_string(),
    }
}

/// Counts and logs a connection-level refusal; the caller then closes the connection, as
/// Linkerd's gateway does (the source proxy answers its client 502).
fn refuse_connection(gw: &Gateway, client: &Client, authority: &str, refusal: &Refusal) {
    match refusal.error_label() {
        Some(label) => gw.metrics.tcp_error(label),
        None => {
            gw.metrics
                .tcp_authz_deny
                .get_or_create(&peer_labels(client, authority))
                .inc();
        }
    }
    info!(client = %client.id, peer = %client.addr, %authority, reason = %refusal, "connection refused");
}

async fn forward_opaque(
    gw: &Arc<Gateway>,
    tls: Accepted,
    client: &Client,
    target: &Target,
    authority: Arc<str>,
    leg: &Leg,
) -> bool {
    let (upstream, addr) = match gw.discovery.connect(target).await {
        Ok(u) => u,
        Err(refusal) => {
            refuse_connection(gw, client, &authority, &refusal);
            return false;
        }
    };
    let mut up_leg = Leg::open(
        &gw.metrics,
        TcpLabels::Outbound {
            authority: authority.clone(),
            target_addr: addr.to_string().into(),
        },
    );
    let result = crate::proxy::tcp::proxy(
        tls,
        upstream,
        gw.server.idle_timeout,
        (leg.read.clone(), leg.write.clone()),
        (up_leg.read.clone(), up_leg.write.clone()),
    )
    .await;
    match result {
        Ok((sent, received)) => {
            up_leg.succeeded();
            debug!(client = %client.id, %authority, %addr, sent, received, "stream closed");
            true
        }
        Err(e) => {
            if matches!(e, crate::proxy::tcp::StreamError::Io(_)) {
                gw.metrics.tcp_error("i/o");
            }
            debug!(client = %client.id, %authority, %addr, error = %e, "stream ended");
            false
        }
    }
}
