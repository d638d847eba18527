//! The transport under the gRPC channel to the controller: TCP to `destination_addr` (its
//! name resolved at each connect, the addresses tried in turn from a random one), then mTLS
//! as the gateway, requiring the controller's identity, or plaintext to a loopback address
//! (the configuration allows no other). Each connect runs under one deadline.

use crate::client_tls::{ClientIo, ClientTls};
use crate::discovery::ServerId;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// TCP keepalive on the controller connection, as linkerd2-proxy's control clients use: a
/// controller that vanished without a reset is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Makes connections to the controller; a `tower_service::Service` for tonic's channel.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) addr: Arc<str>,
    /// `Some`: mTLS requiring this identity.
    pub(crate) tls: Option<(Arc<ClientTls>, ServerId)>,
    pub(crate) timeout: Duration,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<ClientIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientIo>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::timeout(this.timeout, this.connect())
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {} timed out", this.addr),
                    ))
                })
                .map(TokioIo::new)
        })
    }
}

impl Connector {
    /// A control-plane service at `addr` (`host:port`): the gRPC endpoint's URI (`fallback`
    /// when `addr` does not parse as one; the connector dials `addr` itself), and a connector
    /// reaching it over mTLS requiring identity `name`, or plaintext without one.
    pub(crate) fn controller(
        addr: &str,
        name: Option<&str>,
        tls: Arc<ClientTls>,
        timeout: Duration,
        fallback: &'static str,
    ) -> (tonic::transport::Endpoint, Connector) {
        let uri = format!("http://{addr}")
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static(fallback));
        let tls = name.map(|name| {
            let id = ServerId {
                id: name.into(),
                server_name: name.into(),
            };
            (tls, id)
        });
        let connector = Connector {
            addr: addr.into(),
            tls,
            timeout,
        };
        (tonic::transport::Endpoint::from(uri), connector)
    }

    async fn connect(&self) -> io::Result<ClientIo> {
        let addrs: Vec<_> = tokio::net::lookup_host(&*self.addr).await?.collect();
        let start = if addrs.is_empty() {
            0
        } else {
            super::stream::random() as usize % addrs.len()
        };
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.addr),
        );
        for addr in addrs.iter().cycle().skip(start).take(addrs.len()) {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return self.secure(tcp).await,
                Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            }
        }
        Err(last)
    }

    async fn secure(&self, tcp: TcpStream) -> io::Result<ClientIo> {
        tcp.set_nodelay(true)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE);
        socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
        match &self.tls {
            None => Ok(ClientIo::Tcp(tcp)),
            Some((tls, id)) => {
                let stream = tls.connect(tcp, id, Some(b"h2")).await?;
                Ok(ClientIo::Tls(Box::new(stream)))
            }
        }
    }
}
