//! The upstream side: one dialling path ([`Upstream::dial`]) from a [`Target`] to a connected
//! socket with its outbound `tcp_*` leg, used by opaque TCP, `CONNECT` and the HTTP pools
//! alike; and the two pooled HTTP clients (HTTP/1.1, and HTTP/2 with prior knowledge), keyed
//! by target `name:port`, whose connector dials the same way, so a pool's connections spread
//! over the target's endpoints. This is the seam where mTLS to meshed pods and per-endpoint
//! balancing plug in.

use crate::discovery::Discovery;
use crate::metrics::{Leg, Metrics, TcpLabels};
use crate::proxy::observe::RequestBody;
use crate::proxy::tcp::Metered;
use crate::refusal::Refusal;
use crate::route::Target;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connected upstream socket and the outbound leg that counts it.
pub struct Dialed {
    pub stream: TcpStream,
    pub leg: Leg,
    /// The endpoint connected to.
    pub addr: SocketAddr,
}

/// Dials targets: discovery (static or DNS, round-robin, failover, connect deadline), then
/// the outbound leg, labelled with the target and the endpoint.
#[derive(Clone)]
pub struct Dialer {
    discovery: Arc<Discovery>,
    rules: Arc<crate::rules::RulesHandle>,
    metrics: Arc<Metrics>,
    /// Put each pooled connection's [`Endpoint`] in its responses' extensions (an allocation
    /// per response, so only when the access log wants it).
    endpoints_in_responses: bool,
}

impl Dialer {
    pub async fn dial(&self, target: &Target) -> Result<Dialed, Refusal> {
        let set = self.discovery.resolve(target, &self.rules.load()).await?;
        let addr = set.first().ok_or(Refusal::NoSuchService)?.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Refusal::Upstream(e.to_string()))?;
        // Reached: the target's name may be a metric label from now on.
        self.metrics.targets.reached(target);
        let leg = Leg::open(
            &self.metrics,
            TcpLabels::Outbound {
                authority: target.to_string().into(),
                target_addr: addr.to_string().into(),
            },
        );
        Ok(Dialed { stream, leg, addr })
    }
}

/// The endpoint a pooled connection reached; hyper-util puts it in each response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint(pub SocketAddr);

impl tower_service::Service<http::Uri> for Dialer {
    type Response = TokioIo<UpstreamConn>;
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Refusal>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let target = Target::from_uri(&uri)?;
            let Dialed { stream, leg, addr } = dialer.dial(&target).await?;
            let io = Metered::new(stream, (leg.read.clone(), leg.write.clone()), None);
            let endpoint = dialer.endpoints_in_responses.then_some(Endpoint(addr));
            Ok(TokioIo::new(UpstreamConn { io, leg, endpoint }))
        })
    }
}

/// Upstream connections: dialled one at a time, or pooled for HTTP.
pub struct Upstream {
    pub dialer: Dialer,
    pub h1: Client<Dialer, RequestBody>,
    pub h2: Client<Dialer, RequestBody>,
}

impl Upstream {
    pub fn new(
        discovery: Arc<Discovery>,
        rules: Arc<crate::rules::RulesHandle>,
        metrics: Arc<Metrics>,
        endpoints_in_responses: bool,
    ) -> Upstream {
        let dialer = Dialer {
            discovery,
            rules,
            metrics,
            endpoints_in_responses,
        };
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .set_host(false)
            // A request whose connection failed before it was written is retried once.
            .retry_canceled_requests(true);
        let h1 = b.build(dialer.clone());
        b.http2_only(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10));
        let h2 = b.build(dialer.clone());
        Upstream { dialer, h1, h2 }
    }

    /// One connection to `target`, for opaque TCP and `CONNECT`.
    pub async fn dial(&self, target: &Target) -> Result<Dialed, Refusal> {
        self.dialer.dial(target).await
    }
}

/// A pooled upstream connection, counted as an outbound leg until the pool drops it.
pub struct UpstreamConn {
    io: Metered<TcpStream>,
    leg: Leg,
    endpoint: Option<Endpoint>,
}

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        // Pooled connections end by idling out or by the peer closing: not failures.
        self.leg.succeeded();
    }
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        match self.endpoint {
            Some(e) => Connected::new().extra(e),
            None => Connected::new(),
        }
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
