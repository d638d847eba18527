//! A meshed backend: a pod behind its Linkerd proxy, as far as the gateway can tell. A TLS 1.3
//! server (aws-lc-rs) on 127.0.0.1:0 presenting a leaf for the pod's identity, requiring a
//! client certificate chained to the anchor and refusing any SNI but its server name. It
//! records every connection (SNI, ALPN, client identity), every refused handshake, every
//! transport header and every HTTP request.
//!
//! - [`Mode::App`]: HTTP/2 only after the handshake.
//! - [`Mode::Inbound`]: Linkerd's inbound port: ALPN `transport.l5d.io/v1`, a transport header,
//!   then HTTP/2, HTTP/1.1 or (no session protocol) a TCP echo until EOF.
//!
//! Every HTTP request is answered 200 with a text body: `METHOD URI VERSION` on the first line,
//! then each header as `name: value`; the response carries `x-backend: <addr>`.
//!
//! The leaf names the identity only, never the server name: a client must check the identity
//! it was told (as linkerd2-proxy does), not the SNI it sent. App mode offers ALPN `h2` alone
//! (a client offering no ALPN is served too); Inbound mode offers `transport.l5d.io/v1` alone.

use bytes::Bytes;
use crossgate::certs::{Leaf, Pki};
use crossgate::transport_header::{self, SessionProtocol, TransportHeader};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// What follows the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/2 (the application port, no transport header).
    App,
    /// The proxy's inbound port: transport header, then what its session protocol says.
    Inbound,
}

/// One completed handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    pub peer: SocketAddr,
    pub sni: Option<String>,
    /// The negotiated ALPN protocol, as text.
    pub alpn: Option<String>,
    /// The client's identity: first DNS or `spiffe://` URI SAN of its leaf.
    pub client_id: Option<String>,
}

/// One HTTP request served.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The index of its connection in [`MeshedBackend::connections`].
    pub conn: usize,
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    /// Every header, in order, values as text (lossy).
    pub headers: Vec<(String, String)>,
    pub orig_proto: Option<String>,
    pub body: Bytes,
}

impl RequestRecord {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Log {
    conns: Vec<ConnRecord>,
    requests: Vec<RequestRecord>,
    headers: Vec<TransportHeader>,
    header_errors: Vec<String>,
    refused: usize,
    tasks: Vec<AbortHandle>,
}

type Shared = Arc<Mutex<Log>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Log> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running backend. Dropping it stops it.
pub struct MeshedBackend {
    pub addr: SocketAddr,
    pub identity: String,
    pub server_name: String,
    log: Shared,
}

impl MeshedBackend {
    /// A backend presenting `pki.leaf(identity)` (one SAN: the identity, DNS or `spiffe://`
    /// URI) to clients that send SNI `server_name`.
    pub async fn start(pki: &Pki, identity: &str, server_name: &str, mode: Mode) -> MeshedBackend {
        let leaf = pki.leaf(identity).unwrap();
        MeshedBackend::start_with_leaf(pki, &leaf, identity, server_name, mode).await
    }

    /// Like [`MeshedBackend::start`] with any leaf (another identity, extra SANs, expired):
    /// `identity` is only what [`MeshedBackend::identity`] reports.
    pub async fn start_with_leaf(
        pki: &Pki,
        leaf: &Leaf,
        identity: &str,
        server_name: &str,
        mode: Mode,
    ) -> MeshedBackend {
        let resolver = SniResolver {
            name: Some(server_name.to_string()),
            key: certified_key(leaf),
        };
        let alpn: &[&[u8]] = match mode {
            Mode::App => &[b"h2"],
            Mode::Inbound => &[transport_header::ALPN],
        };
        let config = mtls_server_config(pki, Arc::new(resolver), alpn);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Shared = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, config.into(), mode, log.clone()));
        lock(&log).tasks.push(accept.abort_handle());
        MeshedBackend {
            addr,
            identity: identity.to_string(),
            server_name: server_name.to_string(),
            log,
        }
    }

    pub fn connections(&self) -> Vec<ConnRecord> {
        lock(&self.log).conns.clone()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).requests.clone()
    }

    /// Handshakes that failed: wrong or no SNI, no or untrusted client certificate, no
    /// common ALPN.
    pub fn refused(&self) -> usize {
        lock(&self.log).refused
    }

    /// Transport headers decoded (Inbound mode), in order.
    pub fn headers_seen(&self) -> Vec<TransportHeader> {
        lock(&self.log).headers.clone()
    }

    /// Why connections were closed before a header was read (Inbound mode): a wrong ALPN or a
    /// header error.
    pub fn header_errors(&self) -> Vec<String> {
        lock(&self.log).header_errors.clone()
    }

    /// Closes the listener and every connection.
    pub fn stop(&self) {
        for t in lock(&self.log).tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for MeshedBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Presents `key` when the client's SNI is `name` (case-insensitively, trailing dot ignored),
/// or to any client when `name` is `None`; otherwise none, so the handshake fails.
#[derive(Debug)]
pub struct SniResolver {
    pub name: Option<String>,
    pub key: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(want) = &self.name else {
            return Some(self.key.clone());
        };
        let got = hello.server_name()?.trim_end_matches('.');
        got.eq_ignore_ascii_case(want.trim_end_matches('.'))
            .then(|| self.key.clone())
    }
}

/// A leaf (and its chain) with its key, for a resolver.
pub fn certified_key(leaf: &Leaf) -> Arc<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let signer = crossgate::tls::provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    Arc::new(CertifiedKey::new(chain, signer))
}

/// TLS 1.3 (crossgate's provider), a client certificate chained to `pki`'s anchor required,
/// `alpn` offered, no session tickets (Linkerd peers never resume).
pub fn mtls_server_config(
    pki: &Pki,
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let provider = crossgate::tls::provider();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.anchor_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    mode: Mode,
    log: Shared,
) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let task = tokio::spawn(serve_conn(tcp, peer, acceptor.clone(), mode, log.clone()));
        let mut l = lock(&log);
        l.tasks.retain(|t| !t.is_finished());
        l.tasks.push(task.abort_handle());
    }
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    mode: Mode,
    log: Shared,
) {
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            lock(&log).refused += 1;
            return;
        }
    };
    let local = tls.get_ref().0.local_addr().ok();
    let (_, conn) = tls.get_ref();
    let record = ConnRecord {
        peer,
        sni: conn.server_name().map(str::to_string),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        client_id: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| crossgate::identity::identity_of(c)),
    };
    let transport = record.alpn.as_deref().map(str::as_bytes) == Some(transport_header::ALPN);
    let idx = {
        let mut l = lock(&log);
        l.conns.push(record);
        l.conns.len() - 1
    };
    let ctx = Ctx {
        conn: idx,
        local,
        log: log.clone(),
    };
    if mode == Mode::App {
        return serve_http(tls, Some(SessionProtocol::Http2), ctx).await;
    }
    if !transport {
        lock(&log)
            .header_errors
            .push("ALPN is not transport.l5d.io/v1".into());
        return;
    }
    match transport_header::read(&mut tls, Duration::from_secs(10)).await {
        Ok((header, _)) => {
            let protocol = header.protocol;
            lock(&log).headers.push(header);
            serve_http(tls, protocol, ctx).await
        }
        Err(e) => lock(&log).header_errors.push(e.to_string()),
    }
}

/// HTTP/2, HTTP/1.1, or (no protocol) an echo until EOF.
/// What a request's answer needs of its connection.
#[derive(Clone)]
struct Ctx {
    conn: usize,
    local: Option<SocketAddr>,
    log: Shared,
}

async fn serve_http<I>(io: I, protocol: Option<SessionProtocol>, ctx: Ctx)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(protocol) = protocol else {
        let (mut r, mut w) = tokio::io::split(io);
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
        return;
    };
    let service = hyper::service::service_fn(move |req| answer(req, ctx.clone()));
    let io = TokioIo::new(io);
    let _ = match protocol {
        SessionProtocol::Http2 => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await
        }
        SessionProtocol::Http1 => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
        }
    };
}

async fn answer(
    req: http::Request<Incoming>,
    ctx: Ctx,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let mut text = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
    for (n, v) in &headers {
        text.push_str(&format!("{n}: {v}\n"));
    }
    let record = RequestRecord {
        conn: ctx.conn,
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        orig_proto: parts
            .headers
            .get("l5d-orig-proto")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into()),
        headers,
        body,
    };
    lock(&ctx.log).requests.push(record);
    let backend = ctx.local.map(|a| a.to_string()).unwrap_or_default();
    Ok(http::Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .header("x-backend", backend)
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}
