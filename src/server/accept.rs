//! The accept loop, the same for every data port: a connection permit before each accept
//! (the port's cap; further clients wait in the listen backlog), back-off on accept errors,
//! the handler's admission check (`[server] allow_sources`) before any byte is read, and one
//! task per connection inside its `conn` span. What a connection then gets is the
//! [`Handler`]'s: the mTLS gateway port ([`super::GatewayPort`]) or the passthrough port.
//! The loop takes an already-bound listener and reads no global; on the gateway port with
//! worker threads it places each connection here or on a worker ([`crate::workers::Spread`]),
//! which serves it with [`spawn_connection`] as this loop does.

use crate::workers::{Active, Placed, Spread};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{Instrument, field};

/// What serves the connections a port accepts.
pub trait Handler: Send + Sync + 'static {
    /// Whether `peer` may connect, decided at accept before anything is read. A refused
    /// peer is closed at once; the handler counts and logs it (inside the `conn` span).
    fn admit(&self, peer: SocketAddr) -> bool;

    /// Serves one accepted connection to its end, inside its `conn` span.
    fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Accepts on `listener` until `shutdown` turns true, one task per connection, each holding
/// one of `permits` while it lives (none left: further clients wait in the listen backlog).
/// With `spread`, a connection may be handed to a worker thread instead of served here.
pub async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    mut spread: Option<Spread>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::from_millis(5);
                let Some(spread) = spread.as_mut() else {
                    spawn_connection(&handler, tcp, peer, permit, None);
                    continue;
                };
                if let Placed::Here(tcp, permit, active) = spread.place(tcp, peer, permit) {
                    spawn_connection(&handler, tcp, peer, permit, Some(active));
                }
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

/// Serves one accepted connection on this thread, in a task of its own inside its `conn`
/// span, after the handler's admission check; `permit` and `active` are held until it ends.
pub fn spawn_connection<H: Handler>(
    handler: &Arc<H>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    active: Option<Active>,
) {
    // At `debug`, as the request span: at the default level a connection pays nothing for
    // it (formatting its fields was ~1.5 % of a full handshake).
    let span = tracing::debug_span!(
        "conn",
        %peer,
        client_id = field::Empty,
        target = field::Empty
    );
    if !span.in_scope(|| handler.admit(peer)) {
        // Before any byte is read: the peer learns nothing but a closed connection.
        return;
    }
    let handler = handler.clone();
    tokio::spawn(
        async move {
            handler.serve(tcp, peer).await;
            drop((permit, active));
        }
        .instrument(span),
    );
}
