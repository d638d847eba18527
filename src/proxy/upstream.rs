//! Upstream HTTP clients: one pooled hyper client for HTTP/1.1 and one for HTTP/2 (prior
//! knowledge), keyed by target `name:port`. Their connector resolves the target through
//! [`Discovery`] (round-robin, failover, connect deadline), so a pool's connections spread
//! over the target's endpoints. Each upstream connection is an outbound `tcp_*` leg.

use crate::discovery::Discovery;
use crate::metrics::{Leg, Metrics, TcpLabels};
use crate::proxy::tcp::Metered;
use crate::refusal::Refusal;
use crate::route::Target;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Connects a pool's new connection to the URI's target through discovery.
#[derive(Clone)]
pub struct Connector {
    discovery: Arc<Discovery>,
    metrics: Arc<Metrics>,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<UpstreamConn>;
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Refusal>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let discovery = self.discovery.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let target = Target {
                name: uri.host().unwrap_or_default().into(),
                port: uri.port_u16().unwrap_or(80),
            };
            let (tcp, addr) = discovery.connect(&target).await?;
            let leg = Leg::open(
                &metrics,
                TcpLabels::Outbound {
                    authority: target.to_string().into(),
                    target_addr: addr.to_string().into(),
                },
            );
            let io = Metered::new(tcp, (leg.read.clone(), leg.write.clone()), None);
            Ok(TokioIo::new(UpstreamConn { io, leg }))
        })
    }
}

/// The two pooled clients.
#[derive(Clone)]
pub struct Upstream {
    pub h1: Client<Connector, Incoming>,
    pub h2: Client<Connector, Incoming>,
}

impl Upstream {
    pub fn new(discovery: Arc<Discovery>, metrics: Arc<Metrics>) -> Upstream {
        let connector = Connector { discovery, metrics };
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .set_host(false)
            // A request whose connection failed before it was written is retried once.
            .retry_canceled_requests(true);
        let h1 = b.build(connector.clone());
        b.http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let h2 = b.build(connector);
        Upstream { h1, h2 }
    }
}

/// A pooled upstream connection, counted as an outbound leg until the pool drops it.
pub struct UpstreamConn {
    io: Metered<TcpStream>,
    leg: Leg,
}

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        // Pooled connections end by idling out or by the peer closing: not failures.
        self.leg.succeeded();
    }
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
