//! Shared by the HTTP tests: a recording backend (HTTP/1.1 and h2c prior knowledge), mTLS HTTP
//! clients through the gateway (hyper over tokio-rustls), raw HTTP/1 helpers, request bodies.
//! Used next to `tests/support` (`mod support; mod http_support;`).
#![allow(dead_code)]

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// The target of the captured `h2-hint.hex` header.
pub const PODINFO: &str = "podinfo.test.svc.cluster.local:9898";
/// The target of the captured `h1-nohint.hex` header.
pub const PODINFO_H1: &str = "podinfo-h1.test.svc.cluster.local:9898";
/// ALPN of plain HTTP mode clients.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];
pub const ALPN_H1: &[&[u8]] = &[b"http/1.1"];

/// Fails the test instead of hanging when `fut` does not finish within `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {secs} s"),
    }
}

/// A `[routing.static]` section sending each `name:port` to its address.
pub fn static_routes(routes: &[(&str, SocketAddr)]) -> String {
    let mut s = String::from("[routing.static]\n");
    for (name_port, addr) in routes {
        s.push_str(&format!("\"{name_port}\" = [\"{addr}\"]\n"));
    }
    s
}

/// The `Forwarded` element the gateway must append for `client` reaching `target`:
/// `by=<gateway id>;for=<client id>;host=<name:port>;proto=https`.
pub fn forwarded(client: &str, target: &str) -> String {
    let by = crossgate::certs::GATEWAY_IDENTITY;
    format!("by={by};for={client};host={target};proto=https")
}

/// A port on 127.0.0.1 where nothing listens (bound, read, released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub version: Version,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Seen {
    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of `name`, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>").to_string())
            .collect()
    }
}

struct BackendState {
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    holding: AtomicUsize,
    release: tokio::sync::watch::Sender<bool>,
}

/// An HTTP/1.1 + h2c (prior knowledge) backend on 127.0.0.1:0 that records every request.
/// Answers by path:
/// - `/echo`: streams the request body back;
/// - `/trailers`: `application/grpc`, a body then trailers `grpc-status: 0`;
/// - `/grpc-error`: the same with trailers `grpc-status: 2`;
/// - `/slow`: waits 2 s, then 200;
/// - `/sleep?ms=N`: waits N ms, then 200;
/// - `/count`: consumes the body frame by frame and answers the number of bytes;
/// - `/ws`: an HTTP/1.1 upgrade: 101, then echoes bytes on the upgraded connection;
/// - `/fail`: 500;
/// - `/hold`: waits until [`Backend::release`];
/// - anything else: 200 `ok`.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
}

pub type BackendBody = BoxBody<Bytes, hyper::Error>;

impl Backend {
    pub async fn start() -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(BackendState {
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            holding: AtomicUsize::new(0),
            release: tokio::sync::watch::channel(false).0,
        });
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| backend(st.clone(), req));
                    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    b.http2().max_concurrent_streams(4000);
                    let _ = b
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Backend { addr, state }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// The last request received; panics when there is none.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the backend received no request")
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests waiting in `/hold`.
    pub fn holding(&self) -> usize {
        self.state.holding.load(Ordering::SeqCst)
    }

    /// Lets every `/hold` request (present and future) answer.
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }

    /// Waits (bounded polling, `secs`) until the backend has received `n` requests.
    pub async fn wait_count(&self, n: usize, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while self.count() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "backend received {} requests, expected {n} within {secs} s",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<BackendBody> {
    let mut r = Response::new(Full::new(body.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r
}

fn grpc_trailers(status: &'static str) -> Response<BackendBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    trailers.insert("grpc-message", HeaderValue::from_static("from-backend"));
    let body = Frames::new(vec![
        Frame::data(Bytes::from_static(b"hello")),
        Frame::trailers(trailers),
    ]);
    let mut r = Response::new(body.map_err(|n| match n {}).boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}

async fn backend(
    st: Arc<BackendState>,
    mut req: Request<Incoming>,
) -> Result<Response<BackendBody>, Infallible> {
    st.seen.lock().unwrap().push(Seen {
        version: req.version(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers: req.headers().clone(),
    });
    let r = match req.uri().path() {
        "/echo" => Response::new(req.into_body().boxed()),
        "/trailers" => grpc_trailers("0"),
        "/grpc-error" => grpc_trailers("2"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            text(StatusCode::OK, "slow")
        }
        "/sleep" => {
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, "slept")
        }
        "/count" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            n += d.len() as u64;
                        }
                    }
                    Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("error: {e}"))),
                }
            }
            text(StatusCode::OK, n.to_string())
        }
        "/ws" if req.headers().contains_key(http::header::UPGRADE) => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                }
            });
            let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "");
            let h = r.headers_mut();
            h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            r
        }
        "/fail" => text(StatusCode::INTERNAL_SERVER_ERROR, "fail"),
        "/hold" => {
            st.holding.fetch_add(1, Ordering::SeqCst);
            let mut rx = st.release.subscribe();
            let _ = rx.wait_for(|r| *r).await;
            text(StatusCode::OK, "held")
        }
        _ => text(StatusCode::OK, "ok"),
    };
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// A body made of the given frames, in order.
pub struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    pub fn new(frames: Vec<Frame<Bytes>>) -> Frames {
        Frames(frames.into())
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// `total` bytes produced chunk by chunk as they are polled: never held in memory at once.
pub struct Generated {
    remaining: u64,
    chunk: Bytes,
}

impl Generated {
    pub fn new(total: u64) -> Generated {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        Generated {
            remaining: total,
            chunk: Bytes::from(chunk),
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A body fed by the test through a channel; ends when the sender is dropped.
pub struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl Channel {
    pub fn new() -> (tokio::sync::mpsc::Sender<Bytes>, Channel) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Channel(rx))
    }
}

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// What the test clients send.
pub type ReqBody = BoxBody<Bytes, Infallible>;

pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

pub fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).boxed()
}

/// A request with `headers`; `uri` in absolute form for HTTP/2 (`:scheme`, `:authority`).
pub fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Request<ReqBody> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<ReqBody> {
    request(Method::GET, uri, headers, empty())
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// An mTLS connection to the gateway as `config`, SNI the gateway identity, then `preface`
/// (a transport header) if any.
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    preface: Option<&[u8]>,
) -> TlsStream<TcpStream> {
    let mut tls = within(
        5,
        "mTLS handshake",
        crossgate::tls::connect(addr, config, crossgate::certs::GATEWAY_IDENTITY),
    )
    .await
    .expect("mTLS handshake with the gateway");
    if let Some(p) = preface {
        tls.write_all(p).await.unwrap();
    }
    tls
}

/// An HTTP/2 connection through the gateway at `addr` after the captured `h2-hint.hex`
/// header, as a Linkerd source proxy opens one.
pub async fn h2_hint(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> hyper::client::conn::http2::SendRequest<ReqBody> {
    let tls = connect_tls(addr, config, Some(&crate::support::vector("h2-hint.hex"))).await;
    h2_client(tls).await
}

/// An HTTP/2 client on `io` (prior knowledge).
pub async fn h2_client<I>(io: I) -> hyper::client::conn::http2::SendRequest<ReqBody>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = within(
        5,
        "HTTP/2 handshake",
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// An HTTP/1.1 client on `io`.
pub async fn h1_client<I>(io: I) -> hyper::client::conn::http1::SendRequest<ReqBody>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = within(
        5,
        "HTTP/1 handshake",
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .expect("HTTP/1 handshake");
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    send
}

/// A whole response: head, body, trailers.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a whole response, within 10 s.
pub async fn collect(resp: Response<Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let collected = within(10, "response body", body.collect())
        .await
        .expect("response body");
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// Sends `req` on an HTTP/2 connection and reads the whole answer, within 10 s.
pub async fn send_h2(
    send: &mut hyper::client::conn::http2::SendRequest<ReqBody>,
    req: Request<ReqBody>,
) -> Answer {
    let resp = within(10, "HTTP/2 response", send.send_request(req))
        .await
        .expect("HTTP/2 response");
    collect(resp).await
}

/// Sends `req` on an HTTP/1 connection and reads the whole answer, within 10 s.
pub async fn send_h1(
    send: &mut hyper::client::conn::http1::SendRequest<ReqBody>,
    req: Request<ReqBody>,
) -> Answer {
    within(10, "HTTP/1 ready", send.ready())
        .await
        .expect("HTTP/1 connection ready");
    let resp = within(10, "HTTP/1 response", send.send_request(req))
        .await
        .expect("HTTP/1 response");
    collect(resp).await
}

/// One request in plain HTTP mode over a new HTTP/2 (ALPN h2) connection as `config`.
pub async fn plain_h2(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    req: Request<ReqBody>,
) -> Answer {
    let tls = connect_tls(addr, config, None).await;
    let mut send = h2_client(tls).await;
    send_h2(&mut send, req).await
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1
// ---------------------------------------------------------------------------------------------

/// A response head read byte by byte from a raw stream: status, lower-cased header lines, and
/// whatever followed the head in the last read.
pub struct RawHead {
    pub status: u16,
    pub head: String,
}

impl RawHead {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    }
}

/// Reads an HTTP/1 response head (up to the blank line, nothing more), within 10 s.
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> RawHead {
    let mut head = Vec::new();
    within(10, "HTTP/1 response head", async {
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = r.read(&mut b).await.expect("reading the response head");
            assert!(
                n > 0,
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(b[0]);
        }
    })
    .await;
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawHead { status, head }
}

/// Reads a response body framed by `content-length`, within 10 s.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, head: &RawHead) -> Vec<u8> {
    let len: usize = head
        .header("content-length")
        .unwrap_or_else(|| panic!("no content-length in {}", head.head))
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    within(10, "HTTP/1 response body", r.read_exact(&mut body))
        .await
        .unwrap();
    body
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// `direction="inbound",tls="true",client_id="..",authority=".."`.
pub fn request_labels(client: &str, authority: &str) -> String {
    format!("direction=\"inbound\",tls=\"true\",client_id=\"{client}\",authority=\"{authority}\"")
}

/// `inbound_http_errors_total{error="..."} n`.
pub fn http_error_line(error: &str, n: u64) -> String {
    format!("inbound_http_errors_total{{error=\"{error}\"}} {n}")
}

/// Lines of `metrics` that start with `prefix`.
pub fn lines_with<'a>(metrics: &'a str, prefix: &str) -> Vec<&'a str> {
    metrics.lines().filter(|l| l.starts_with(prefix)).collect()
}

// ---------------------------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------------------------

/// The `crossgate` binary run as a subprocess (`run --config FILE`) with its own PKI and
/// listeners on ports that were free a moment ago. Killed (SIGKILL) if dropped while running;
/// [`BinaryGateway::terminate`] stops it with SIGTERM and checks the exit.
pub struct BinaryGateway {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub pki: crossgate::certs::Pki,
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_addr() -> SocketAddr {
    closed_port()
}

/// `GET /ready` on a plaintext admin port answers 200.
pub async fn admin_ready(admin: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(admin).await else {
        return false;
    };
    if s.write_all(b"GET /ready HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out.starts_with("HTTP/1.1 200")
}

impl BinaryGateway {
    /// Starts the binary; `server_keys` go into `[server]`, `tables` after `[identity]`.
    /// Waits (bounded polling, 10 s) until `/ready` answers 200.
    pub async fn start(server_keys: &str, tables: &str) -> BinaryGateway {
        BinaryGateway::start_logged(server_keys, tables, "warn", false).await
    }

    /// [`BinaryGateway::start`] with `RUST_LOG=rust_log`, and `--log-format json` when `json`.
    pub async fn start_logged(
        server_keys: &str,
        tables: &str,
        rust_log: &str,
        json: bool,
    ) -> BinaryGateway {
        BinaryGateway::start_under(&[], server_keys, tables, rust_log, json).await
    }

    /// [`BinaryGateway::start_logged`] run by `wrapper` (a command that execs its arguments in
    /// place, such as `taskset -c 0`), so that the pid is still the gateway's.
    pub async fn start_under(
        wrapper: &[&str],
        server_keys: &str,
        tables: &str,
        rust_log: &str,
        json: bool,
    ) -> BinaryGateway {
        let pki = crossgate::certs::Pki::new().unwrap();
        let leaf = pki.leaf(crossgate::certs::GATEWAY_IDENTITY).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem()).unwrap();
        std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
        let (listen, admin) = (free_addr(), free_addr());
        let config = dir.path().join("crossgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{listen}\"\nadmin = \"{admin}\"\n{}{server_keys}\n\
                 [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n{tables}",
                // 5 s unless the test sets its own.
                if server_keys.contains("drain_timeout") { "" } else { "drain_timeout = \"5s\"\n" },
            ),
        )
        .unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let format = if json { "json" } else { "text" };
        let bin = env!("CARGO_BIN_EXE_crossgate");
        let mut command = match wrapper.split_first() {
            None => tokio::process::Command::new(bin),
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(bin);
                c
            }
        };
        let child = command
            .args(["--log-format", format, "run", "--config"])
            .arg(&config)
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the crossgate binary");
        let gw = BinaryGateway {
            listen,
            admin,
            pki,
            child,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !admin_ready(admin).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway binary never became ready\n{}",
                gw.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw
    }

    /// A client config for `identity` under this gateway's anchor.
    pub fn client(&self, identity: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        crate::support::client_config(&self.pki, &self.pki.leaf(identity).unwrap(), alpn)
    }

    /// Rewrites the config file with other `[server]` keys and tables (same ports, same
    /// identity files), as an operator edits it before a reload.
    pub fn rewrite_config(&self, server_keys: &str, tables: &str) {
        let (listen, admin) = (self.listen, self.admin);
        let text = format!(
            "[server]\nlisten = \"{listen}\"\nadmin = \"{admin}\"\ndrain_timeout = \"5s\"\n{server_keys}\n\
             [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n{tables}"
        );
        // Written beside and renamed over: the gateway never reads a half-written file.
        let tmp = self.dir.path().join("crossgate.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("crossgate.toml")).unwrap();
    }

    /// Sends `signal` (a `kill` name such as `HUP`) to the gateway.
    pub async fn signal(&self, signal: &str) {
        let status = tokio::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    /// The admin port's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let raw = crate::support::http_get(self.admin, "/metrics").await;
        raw.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or(raw)
    }

    /// Waits (5 s at most) until `/metrics` has the exact line `line`.
    pub async fn wait_metric(&self, line: &str) {
        for _ in 0..250 {
            if self.metrics().await.lines().any(|l| l == line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "metric line never appeared: {line}\n{}\n{}",
            self.metrics().await,
            self.stderr()
        );
    }

    /// A file in the gateway's directory (`tls.crt`, `tls.key`, `ca.crt`, `crossgate.toml`).
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the gateway process is running")
    }

    /// What the gateway wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// `VmHWM` (peak resident set) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// `VmRSS` (resident set now) in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }

    /// CPU time used so far (user + system), from `/proc/PID/stat`, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Waits up to `secs` for the process to exit on its own; its exit status. A panic the
    /// process printed fails the test.
    pub async fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let status = within(secs, "gateway exit", self.child.wait())
            .await
            .unwrap();
        self.assert_no_panic();
        status
    }

    /// Fails when the gateway printed a panic (a connection task's panic does not end the
    /// process, so only its stderr tells).
    pub fn assert_no_panic(&self) {
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked at"),
            "the gateway panicked:\n{stderr}"
        );
    }

    /// SIGTERM (the `kill` command), then waits up to 15 s for exit status 0.
    pub async fn terminate(mut self) {
        let pid = self.pid().to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        let status = within(15, "gateway exit after SIGTERM", self.child.wait())
            .await
            .unwrap();
        assert!(status.success(), "exit {status:?}\n{}", self.stderr());
        self.assert_no_panic();
    }
}

/// The access lines a binary gateway started with `--log-format json` wrote so far, as JSON
/// objects (their `fields`).
pub fn access_lines(gw: &BinaryGateway) -> Vec<serde_json::Value> {
    gw.stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "crossgate::access")
        .map(|v| v["fields"].clone())
        .collect()
}
