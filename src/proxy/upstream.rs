//! Upstream HTTP clients: one pooled hyper client for HTTP/1.1 and one for HTTP/2 (prior
//! knowledge), keyed by target `name:port`. Their connector resolves the target through
//! [`Discovery`] (round-robin, failover, connect deadline), so a pool's connections spread
//! over the target's endpoints.

use crate::discovery::Discovery;
use crate::refusal::Refusal;
use crate::route::Target;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects a pool's new connection to the URI's target through discovery.
#[derive(Clone)]
pub struct Connector {
    discovery: Arc<Discovery>,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Refusal>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let discovery = self.discovery.clone();
        Box::pin(async move {
            let target = Target {
                name: uri.host().unwrap_or_default().into(),
                port: uri.port_u16().unwrap_or(80),
            };
            let (tcp, _addr) = discovery.connect(&target).await?;
            Ok(TokioIo::new(tcp))
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
    pub fn new(discovery: Arc<Discovery>) -> Upstream {
        let connector = Connector { discovery };
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
