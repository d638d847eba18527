//! Shared by the socket tests: a PKI from rcgen, a gateway on 127.0.0.1:0, backends, clients.
#![allow(dead_code)]

pub mod destination;
pub mod identity;
pub mod meshed;
pub mod policy;

use crossgate::certs::{GATEWAY_IDENTITY, Leaf, LeafSpec, Pki};
use crossgate::config::{Config, Overrides};
use crossgate::transport_header::TransportHeader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const FRONTEND: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";
pub use crossgate::certs::GATEWAY_IDENTITY as GATEWAY;
pub const ALPN_TRANSPORT: &[&[u8]] = &[crossgate::transport_header::ALPN];

/// A gateway running in this process, with its PKI on disk.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The private metrics port, when `[server] metrics` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The passthrough port, when `[passthrough]` is set.
    pub passthrough: Option<SocketAddr>,
    pub gw: Arc<crossgate::Gateway>,
    pub pki: Pki,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Writes a PKI and starts a gateway. `extra` is TOML placed right after the `[server]`
/// listen/admin keys: it may start with more `[server]` keys, then open `[routing]`,
/// `[[authorization]]` and other tables (the `[identity]` table comes after it).
pub async fn start(extra: &str) -> TestGateway {
    let pki = Pki::new().unwrap();
    let leaf = pki.leaf(GATEWAY_IDENTITY).unwrap();
    start_with(pki, leaf, extra).await
}

pub async fn start_with(pki: Pki, leaf: Leaf, extra: &str) -> TestGateway {
    start_at("127.0.0.1", pki, leaf, extra).await
}

/// [`start_with`], listening and serving admin on `host` (`127.0.0.1`, `[::1]`) port 0.
pub async fn start_at(host: &str, pki: Pki, leaf: Leaf, extra: &str) -> TestGateway {
    watch_src_panics();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
    let toml = format!(
        "[server]\nlisten = \"{host}:0\"\nadmin = \"{host}:0\"\n{extra}\n\
         [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n"
    );
    let config = Config::parse(&toml, "test.toml", dir.path(), &Overrides::default())
        .unwrap_or_else(|e| panic!("config:\n{e}\n---\n{toml}"));
    let gw = crossgate::Gateway::build(&config).unwrap();
    let listeners = crossgate::Listeners::bind_all(&config).await.unwrap();
    let (addr, admin) = listeners.addrs().unwrap();
    let metrics_addr = listeners.metrics_addr().unwrap();
    let passthrough = listeners.port_addr(crossgate::Port::Passthrough).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crossgate::run(gw.clone(), listeners, async {
        let _ = rx.await;
    }));
    let tg = TestGateway {
        addr,
        admin,
        metrics_addr,
        passthrough,
        gw,
        pki,
        dir,
        stop: Some(tx),
        task: Some(task),
    };
    tg.wait_ready().await;
    tg
}

impl TestGateway {
    /// A client config for `identity` under this gateway's anchor.
    pub fn client(&self, identity: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let leaf = self.pki.leaf(identity).unwrap();
        self.client_with_leaf(&leaf, alpn)
    }

    pub fn client_with_leaf(&self, leaf: &Leaf, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_config(&self.pki, leaf, alpn)
    }

    pub async fn admin_get(&self, path: &str) -> String {
        http_get(self.admin, path).await
    }

    /// `/metrics` from the private metrics port when there is one, else the admin port.
    pub async fn metrics(&self) -> String {
        let r = http_get(self.metrics_addr.unwrap_or(self.admin), "/metrics").await;
        r.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or(r)
    }

    /// Waits until a metrics line starting with `prefix` ends with ` value`.
    pub async fn wait_metric(&self, line: &str) {
        for _ in 0..300 {
            if self.metrics().await.lines().any(|l| l == line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "metric line never appeared: {line}\n{}",
            self.metrics().await
        );
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if self.admin_get("/ready").await.starts_with("HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway never ready");
    }

    /// Stops the gateway and waits (10 s at most) for its run task to end: a panic there, or
    /// in crossgate's code on any task (a connection's), fails the test, as does a gateway
    /// that does not stop.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            join_within(t, Duration::from_secs(10), "the gateway's run task").await;
        }
        assert_no_src_panic();
    }
}

impl Drop for TestGateway {
    /// A gateway task that ended by itself mid-test ended in a panic or an error: the test's.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(mut t) = self.task.take()
            && t.is_finished()
        {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(Err(e)) = std::pin::Pin::new(&mut t).poll(&mut cx) {
                resume_panic(e, "the gateway's run task");
            }
        }
    }
}

/// Awaits `task` for at most `bound`: its output, or the test fails with its panic (resumed,
/// so the message is the task's) or with `what` not done in time.
pub async fn join_within<T>(task: tokio::task::JoinHandle<T>, bound: Duration, what: &str) -> T {
    match tokio::time::timeout(bound, task).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => resume_panic(e, what),
        Err(_) => panic!("{what} did not end within {bound:?}"),
    }
}

fn resume_panic(e: tokio::task::JoinError, what: &str) -> ! {
    match e.try_into_panic() {
        Ok(payload) => std::panic::resume_unwind(payload),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Panics raised in crossgate's own code (`src/`) in this test process, on any thread or task
/// (a connection task's panic is otherwise only printed by tokio, and the test would pass).
static SRC_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics located in `src/` from now on (installed once per test process).
pub fn watch_src_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .location()
                .is_some_and(|l| l.file().starts_with("src/"))
            {
                SRC_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info)
        }));
    });
}

/// Fails when crossgate's code panicked anywhere in this test process (its message and place
/// were printed where it happened).
pub fn assert_no_src_panic() {
    let n = SRC_PANICS.load(Ordering::SeqCst);
    assert_eq!(
        n, 0,
        "crossgate panicked {n} times in src/ (see the panic messages above)"
    );
}

/// Plain HTTP/1.1 GET with `connection: close`; the whole response as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A TCP echo backend that counts the connections it accepted.
pub async fn echo_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

/// A client config presenting `leaf`, trusting `pki`'s anchor.
pub fn client_config(pki: &Pki, leaf: &Leaf, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    crossgate::tls::client_config_from_pem(&pki.anchor_pem(), &leaf.cert_pem, &leaf.key_pem, alpn)
        .unwrap()
}

/// A `[routing.static]` section sending `name:port` to `addr`.
pub fn static_route(name_port: &str, addr: SocketAddr) -> String {
    format!("[routing.static]\n\"{name_port}\" = [\"{addr}\"]\n")
}

/// Opens an mTLS connection and writes `header`.
pub async fn open(
    gw: &TestGateway,
    config: Arc<rustls::ClientConfig>,
    header: &TransportHeader,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tls = crossgate::tls::connect(gw.addr, config, GATEWAY).await?;
    tls.write_all(&header.encode()).await?;
    Ok(tls)
}

/// Reads until EOF or error, within 5 s; what was read.
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut out)).await;
    out
}

/// A leaf with custom SANs and validity.
pub fn leaf_with(pki: &Pki, spec: LeafSpec) -> Leaf {
    pki.leaf_with(spec).unwrap()
}

/// Parses the hex vector files (two lines of hex).
pub fn vector(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the mtls, routing, tcp_upstream, dns, admin and cli tests.
// ---------------------------------------------------------------------------------------------

impl TestGateway {
    /// Sends the stop signal without waiting: the gateway begins to drain.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits up to `bound` for the gateway's run task to end; whether it ended. A panic in
    /// it fails the test.
    pub async fn wait_stopped(&mut self, bound: Duration) -> bool {
        let Some(mut t) = self.task.take() else {
            return true;
        };
        match tokio::time::timeout(bound, &mut t).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => resume_panic(e, "the gateway's run task"),
            Err(_) => {
                self.task = Some(t);
                false
            }
        }
    }

    /// The value of the series `series` (e.g. `foo_total{a="b"}`) in `/metrics`, if present.
    pub async fn metric_value(&self, series: &str) -> Option<f64> {
        let m = self.metrics().await;
        m.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Writes `ca.crt`, `issuer.crt`, `<name>.crt` (leaf then issuer) and `<name>.key` for a
    /// client leaf into this gateway's directory; returns their paths.
    pub fn write_client_files(&self, name: &str, leaf: &Leaf) -> ClientFiles {
        let d = self.dir.path();
        let files = ClientFiles {
            ca: d.join("client-ca.crt"),
            issuer: d.join("client-issuer.crt"),
            cert: d.join(format!("{name}.crt")),
            key: d.join(format!("{name}.key")),
        };
        std::fs::write(&files.ca, self.pki.anchor_pem()).unwrap();
        std::fs::write(&files.issuer, self.pki.issuer_pem()).unwrap();
        std::fs::write(&files.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&files.key, &leaf.key_pem).unwrap();
        files
    }
}

/// PEM files of a client, for clients that are not ours (openssl, python, curl).
pub struct ClientFiles {
    pub ca: std::path::PathBuf,
    pub issuer: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// `inbound_tls_handshake_failures_total{reason="..."} n`.
pub fn handshake_failure_line(reason: &str, n: u64) -> String {
    format!("inbound_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}")
}

/// `inbound_tcp_errors_total{error="..."} n`.
pub fn tcp_error_line(error: &str, n: u64) -> String {
    format!("inbound_tcp_errors_total{{error=\"{error}\"}} {n}")
}

/// A TLS 1.3 client that trusts `anchor_pem` and presents no certificate.
pub fn no_client_auth(anchor_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(anchor_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crossgate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Reads until the peer closes (EOF or error) within `bound`. `Some(bytes read)` when it
/// closed, `None` when the connection was still open at the bound.
pub async fn read_until_closed<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    bound: Duration,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let done = tokio::time::timeout(bound, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    done.ok().map(|_| out)
}

/// Asserts that the gateway closes `r` within 3 s without sending a single byte.
pub async fn assert_closed_without_bytes<R: tokio::io::AsyncRead + Unpin>(r: &mut R) {
    match read_until_closed(r, Duration::from_secs(3)).await {
        Some(bytes) => assert!(bytes.is_empty(), "gateway sent {} bytes", bytes.len()),
        None => panic!("gateway did not close the connection within 3 s"),
    }
}

/// Like [`http_get`], but a connection failure is an error instead of a panic.
pub async fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Splits a raw HTTP/1.1 response into (status code, lower-cased head, body).
pub fn parse_response(raw: &str) -> (u16, String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `len` bytes of every value, for payloads that are not text.
pub fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

/// A minimal authoritative DNS server on 127.0.0.1 (UDP): answers A queries for the names it
/// knows with TTL 5, NOERROR with no answer for other types of known names, NXDOMAIN for the
/// rest. Records every question it was asked.
pub struct DnsServer {
    pub addr: SocketAddr,
    queries: Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    records: Arc<std::sync::Mutex<Vec<(String, std::net::Ipv4Addr)>>>,
}

pub const DNS_A: u16 = 1;
pub const DNS_AAAA: u16 = 28;

impl DnsServer {
    /// `records`: fully qualified names (trailing dot) and their IPv4 address.
    pub async fn start(records: &[(&str, std::net::Ipv4Addr)]) -> DnsServer {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let records: Vec<(String, std::net::Ipv4Addr)> = records
            .iter()
            .map(|(n, ip)| (n.to_ascii_lowercase(), *ip))
            .collect();
        let records = Arc::new(std::sync::Mutex::new(records));
        let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (log, known) = (queries.clone(), records.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let answered = dns_answer(&buf[..n], &known.lock().unwrap());
                let Some((name, qtype, answer)) = answered else {
                    continue;
                };
                log.lock().unwrap().push((name, qtype));
                let _ = sock.send_to(&answer, peer).await;
            }
        });
        DnsServer {
            addr,
            queries,
            records,
        }
    }

    /// Answers `name` (fully qualified) with `ip` from now on.
    pub fn set(&self, name: &str, ip: std::net::Ipv4Addr) {
        let name = name.to_ascii_lowercase();
        let mut records = self.records.lock().unwrap();
        records.retain(|(n, _)| *n != name);
        records.push((name, ip));
    }

    /// How many times `name` (fully qualified) was asked for with `qtype`.
    pub fn asked(&self, name: &str, qtype: u16) -> usize {
        let name = name.to_ascii_lowercase();
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| *n == name && *t == qtype)
            .count()
    }

    /// Every question asked so far.
    pub fn questions(&self) -> Vec<(String, u16)> {
        self.queries.lock().unwrap().clone()
    }
}

/// Parses one query and encodes its answer: (name, qtype, response bytes).
fn dns_answer(
    q: &[u8],
    records: &[(String, std::net::Ipv4Addr)],
) -> Option<(String, u16, Vec<u8>)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // QNAME: length-prefixed labels up to a zero byte.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = q.get(12..i + 4)?;
    let name = format!("{}.", labels.join("."));
    let known = records.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
    let answer = match (known, qtype) {
        (Some(ip), DNS_A) => Some(ip),
        _ => None,
    };
    let rcode: u16 = if known.is_none() { 3 } else { 0 }; // NXDOMAIN or NOERROR
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&q[0..2]); // ID
    let rd = u16::from_be_bytes([q[2], q[3]]) & 0x0100;
    out.extend_from_slice(&(0x8480 | rd | rcode).to_be_bytes()); // QR, AA, RA
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(question);
    if let Some(ip) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question's name
        out.extend_from_slice(&DNS_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&5u32.to_be_bytes()); // TTL 5 s
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some((name, qtype, out))
}

/// The serial number of a DER certificate.
pub fn serial_of_der(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    cert.raw_serial().to_vec()
}

/// The serial number of the first certificate of a PEM chain.
pub fn serial_of_pem(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let first = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    serial_of_der(&first)
}

/// Runs the crossgate binary with `args` and waits for its output.
pub fn crossgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .args(args)
        .output()
        .unwrap()
}

/// Bytes from a process as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
