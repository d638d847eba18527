//! A connection's opening on the gateway port: the mTLS handshake under its deadline (the
//! ClientHello read first, for SNI and ALPN), the client it established, and the wait for the
//! client's first bytes, before any protocol's state exists.

use crate::Gateway;
use crate::plan::{self, Alpn, ClientInfo};
use crate::tls::Accepted;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

/// The mTLS handshake under its deadline, or the reason it failed; true when the client
/// offered ALPN ids, none of the gateway's, and an SNI naming a target: it then negotiates
/// none rather than failing the handshake, and is served opaque TCP to that target. Any other
/// client offering none of the gateway's ids fails the handshake (`no_application_protocol`).
pub(super) async fn handshake(
    gw: &Gateway,
    tcp: TcpStream,
) -> Result<(Accepted, bool), &'static str> {
    use tokio_rustls::LazyConfigAcceptor;
    let deadline = gw.settings.handshake_timeout;
    let accept = async {
        let mut lazy = LazyConfigAcceptor::new(
            rustls::server::Acceptor::default(),
            crate::wire::Wire::new(tcp),
        );
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
pub(super) enum FirstBytes {
    /// It spoke; what follows (the transport header) is due by `deadline`.
    Arrived { deadline: Instant },
    /// Its deadline passed first, or (HTTP) the gateway began to stop.
    Silent,
}

/// Waits for the client's first bytes: a transport header's (`header`), by its deadline, or
/// HTTP's, by the longer of the idle and request-head deadlines and no longer than the
/// gateway runs.
pub(super) async fn first_bytes(gw: &Gateway, tls: &mut Accepted, header: bool) -> FirstBytes {
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
pub(super) fn client_info(
    tls: &Accepted,
    addr: SocketAddr,
    foreign_alpn: bool,
    identities: &crate::identity::Identities,
) -> Option<ClientInfo> {
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    Some(ClientInfo {
        id: identities.of(leaf)?,
        addr,
        alpn: match foreign_alpn {
            true => Alpn::Other,
            false => Alpn::from_negotiated(conn.alpn_protocol()),
        },
        sni: conn.server_name().map(Into::into),
    })
}
