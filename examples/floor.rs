//! The floor of the harness's HTTP paths: the least a gateway built on crossgate's stack
//! (tokio, rustls with aws-lc-rs, hyper, h2) can spend on them. Per connection it does what
//! those paths need and nothing more: the mTLS handshake with crossgate's own TLS
//! configuration (the verified-chain cache included, the client's signature checked), the
//! transport header read, then hyper's server (HTTP/1.1 or HTTP/2, as the client speaks) and
//! each request forwarded to one fixed backend:
//! - HTTP/1.1, and HTTP/2 carrying `l5d-orig-proto` (the header removed, the request sent as
//!   HTTP/1.1): over pooled keep-alive HTTP/1.1 connections;
//! - other HTTP/2 requests: over one HTTP/2 connection per worker, driven through `h2` directly
//!   as crossgate's upstream is (no dispatch task).
//!
//! No routing, authorization, metrics, logs, deadlines or limits: it is not a gateway, only a
//! measure of what the libraries and the kernel cost.
//!
//!   cargo build --release --example floor
//!   CONF=<t1.toml> benches/linkerd/bin/cpu.sh h1|h2|orig target/release/examples/floor
//!
//! With `FLOOR_H2=direct` it serves HTTP/2 through `h2`'s server directly instead of hyper's
//! (each stream answered in a task of its own, HTTP/2 requests without `l5d-orig-proto` only):
//! a measure of what hyper's server adds to the HTTP/2 path
//! (`FLOOR_H2=direct benches/linkerd/bin/cpu.sh h2 target/release/examples/floor`).
//!
//! It takes the arguments crossgate does (`run --config FILE`) so that the harness's scripts
//! run it as a gateway: it reads `listen`, `threads` and the identity files from FILE, and
//! forwards to `FLOOR_BACKEND` (default 192.0.2.20:9898, the harness's backend) with
//! `Host: FLOOR_HOST`. One current-thread runtime per worker, each with its own
//! `SO_REUSEPORT` listener (the benchmarks run it with `threads = 1`, where that is one thread
//! and one listener, as in crossgate).

use bytes::Bytes;
use crossgate::config::{Config, Overrides};
use crossgate::transport_header::{self, PREFACE};
use crossgate::verified_chains::ChainCounters;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::RootCertStore;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

const L5D_ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");

/// A worker's upstream: idle HTTP/1.1 connections and one HTTP/2 connection.
#[derive(Clone)]
struct Upstream {
    h1: Pool,
    h2: Arc<Mutex<Option<h2::client::SendRequest<Bytes>>>>,
    backend: SocketAddr,
    host: HeaderValue,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = match args.iter().position(|a| a == "--config") {
        Some(i) => PathBuf::from(&args[i + 1]),
        None => anyhow::bail!("usage: floor run --config FILE"),
    };
    let config = Config::load(&path, &Overrides::default())
        .map_err(|e| anyhow::anyhow!("{}", e.0.join("; ")))?;
    let id = &config.identity;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&id.certificate)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&id.key)?;
    let mut roots = RootCertStore::empty();
    for anchor in CertificateDer::pem_file_iter(&id.trust_anchors)? {
        roots.add(anchor?)?;
    }
    let provider = crossgate::tls::provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)?;
    let tls = crossgate::tls::server_config(
        Arc::new(SingleCertAndKey::from(Arc::new(certified))),
        Arc::new(roots),
        provider,
        crossgate::tls::GATEWAY_ALPN,
        false,
        &ChainCounters::default(),
    )?;
    let direct = std::env::var("FLOOR_H2").is_ok_and(|v| v == "direct");
    let backend: SocketAddr = std::env::var("FLOOR_BACKEND")
        .unwrap_or_else(|_| "192.0.2.20:9898".into())
        .parse()?;
    let host = HeaderValue::from_str(
        &std::env::var("FLOOR_HOST")
            .unwrap_or_else(|_| "podinfo-h1.test.svc.cluster.local:9898".into()),
    )?;
    let listen = config.server.listen;
    let threads = config
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (tls, host) = (TlsAcceptor::from(tls.clone()), host.clone());
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(listen),
                socket2::Type::STREAM,
                None,
            )?;
            socket.set_reuse_port(true)?;
            socket.set_tcp_nodelay(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&listen.into())?;
            socket.listen(1024)?;
            let std_listener: std::net::TcpListener = socket.into();
            Ok(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    let up = Upstream {
                        h1: Arc::default(),
                        h2: Arc::default(),
                        backend,
                        host,
                    };
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (tls, up) = (tls.clone(), up.clone());
                        tokio::spawn(async move {
                            let _ = connection(tcp, tls, up, direct).await;
                        });
                    }
                })
            }))
        })
        .collect::<std::io::Result<_>>()?;
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

async fn connection(
    tcp: TcpStream,
    tls: TlsAcceptor,
    up: Upstream,
    direct: bool,
) -> anyhow::Result<()> {
    let mut tls = tls.accept(tcp).await?;
    let mut head = [0u8; 27];
    tls.read_exact(&mut head).await?;
    anyhow::ensure!(head[..PREFACE.len()] == *PREFACE, "no transport header");
    let len = u32::from_be_bytes(head[PREFACE.len()..].try_into()?) as usize;
    anyhow::ensure!(len <= 1024, "header too long");
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).await?;
    transport_header::decode_message(&body)?;
    if direct {
        return serve_h2(tls, up).await;
    }
    let service = service_fn(move |req: Request<Incoming>| {
        let up = up.clone();
        async move {
            if req.version() == Version::HTTP_2 && !req.headers().contains_key(L5D_ORIG_PROTO) {
                return up.send_h2(req).await.map(|r| r.map(Either::Right));
            }
            up.send_h1(req).await.map(|r| r.map(Either::Left))
        }
    });
    auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}

impl Upstream {
    /// Over a pooled HTTP/1.1 connection; `l5d-orig-proto` undone and echoed.
    async fn send_h1(&self, mut req: Request<Incoming>) -> anyhow::Result<Response<Incoming>> {
        let orig = req.headers_mut().remove(L5D_ORIG_PROTO);
        if orig.is_some() {
            *req.version_mut() = Version::HTTP_11;
            *req.uri_mut() = req
                .uri()
                .path_and_query()
                .map_or(Uri::from_static("/"), |p| Uri::from(p.clone()));
        }
        req.headers_mut().insert(HOST, self.host.clone());
        let mut sender = checkout(&self.h1, self.backend).await?;
        let rsp = sender.send_request(req).await;
        let mut idle = self.h1.lock().expect("pool");
        if idle.len() < 64 {
            idle.push(sender);
        }
        drop(idle);
        let mut rsp = rsp?;
        if let Some(orig) = orig {
            rsp.headers_mut().insert(L5D_ORIG_PROTO, orig);
        }
        Ok(rsp)
    }

    /// Over the worker's HTTP/2 connection (opened on first use). Requests without a body.
    async fn send_h2(&self, req: Request<Incoming>) -> anyhow::Result<Response<H2Body>> {
        anyhow::ensure!(
            req.body().is_end_stream(),
            "the floor sends no request bodies"
        );
        Ok(self.open_h2(req.into_parts().0).await?.map(H2Body))
    }

    /// A request head without a body over the worker's HTTP/2 connection (opened on first use).
    async fn open_h2(
        &self,
        parts: http::request::Parts,
    ) -> anyhow::Result<Response<h2::RecvStream>> {
        let held = self.h2.lock().expect("h2").clone();
        let send = match held {
            Some(s) => s,
            None => {
                let tcp = TcpStream::connect(self.backend).await?;
                tcp.set_nodelay(true)?;
                let (send, conn) = h2::client::handshake(tcp).await?;
                tokio::spawn(conn);
                *self.h2.lock().expect("h2") = Some(send.clone());
                send
            }
        };
        let mut send = send.ready().await?;
        let (response, _) = send.send_request(Request::from_parts(parts, ()), true)?;
        Ok(response.await?)
    }
}

/// HTTP/2 through `h2`'s server: each stream answered in a task of its own, as hyper's server
/// does, without hyper's types around the request and the response.
async fn serve_h2<T>(io: T, up: Upstream) -> anyhow::Result<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut conn = h2::server::handshake(io).await?;
    while let Some(accepted) = conn.accept().await {
        let (req, respond) = accepted?;
        let up = up.clone();
        tokio::spawn(async move {
            let _ = up.answer_h2(req, respond).await;
        });
    }
    Ok(())
}

impl Upstream {
    /// One stream of [`serve_h2`]: forwarded over the worker's HTTP/2 connection, the
    /// response's head, data and trailers sent back as they come.
    async fn answer_h2(
        &self,
        req: Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            req.body().is_end_stream() && !req.headers().contains_key(L5D_ORIG_PROTO),
            "the direct floor forwards HTTP/2 requests without bodies only"
        );
        let (parts, _) = req.into_parts();
        let (head, mut body) = self.open_h2(parts).await?.into_parts();
        let end = body.is_end_stream();
        let mut out = respond.send_response(Response::from_parts(head, ()), end)?;
        if end {
            return Ok(());
        }
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
            out.send_data(data, false)?;
        }
        match body.trailers().await? {
            Some(trailers) => out.send_trailers(trailers)?,
            None => out.send_data(Bytes::new(), true)?,
        }
        Ok(())
    }
}

/// An HTTP/2 response body from upstream.
struct H2Body(h2::RecvStream);

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let recv = &mut self.0;
        match recv.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = recv.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => match recv.poll_trailers(cx) {
                Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Poll::Ready(Ok(None)) => Poll::Ready(None),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// A ready idle connection to the backend, or a new one.
async fn checkout(pool: &Pool, backend: SocketAddr) -> anyhow::Result<SendRequest<Incoming>> {
    {
        let mut idle = pool.lock().expect("pool");
        idle.retain(|s| !s.is_closed());
        if let Some(i) = idle.iter().position(|s| s.is_ready()) {
            return Ok(idle.swap_remove(i));
        }
    }
    let tcp = TcpStream::connect(backend).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}
