//! The floor of the HTTP/1.1-without-a-hint path: the least a gateway built on crossgate's
//! stack (tokio, rustls with aws-lc-rs, hyper) can spend on it. Per connection it does what
//! that path needs and nothing more: the mTLS handshake with crossgate's own TLS configuration
//! (the verified-chain cache included, the client's signature checked), the transport header
//! read, then HTTP/1.1 requests forwarded to one fixed backend over pooled keep-alive
//! connections. No routing, authorization, metrics, logs, deadlines or limits: it is not a
//! gateway, only a measure of what the libraries and the kernel cost.
//!
//!   cargo build --release --example floor
//!   CONF=<t1.toml> benches/linkerd/bin/cpu.sh h1 target/release/examples/floor
//!
//! It takes the arguments crossgate does (`run --config FILE`) so that the harness's scripts
//! run it as a gateway: it reads `listen`, `threads` and the identity files from FILE, and
//! forwards to `FLOOR_BACKEND` (default 192.0.2.20:9898, the harness's backend) with
//! `Host: FLOOR_HOST`. One current-thread runtime per worker, each with its own
//! `SO_REUSEPORT` listener, as crossgate.

use crossgate::config::{Config, Overrides};
use crossgate::transport_header::{self, PREFACE};
use crossgate::verified_chains::ChainCounters;
use http::header::{HOST, HeaderValue};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

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
                    let pool: Pool = Arc::default();
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (tls, pool, host) = (tls.clone(), pool.clone(), host.clone());
                        tokio::spawn(async move {
                            let _ = connection(tcp, tls, pool, backend, host).await;
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
    pool: Pool,
    backend: SocketAddr,
    host: HeaderValue,
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
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        let (pool, host) = (pool.clone(), host.clone());
        async move {
            req.headers_mut().insert(HOST, host);
            let mut sender = checkout(&pool, backend).await?;
            let rsp = sender.send_request(req).await;
            let mut idle = pool.lock().expect("pool");
            if idle.len() < 64 {
                idle.push(sender);
            }
            rsp.map_err(anyhow::Error::from)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await?;
    Ok(())
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
