//! Shared by the socket tests: a PKI from rcgen, a gateway on 127.0.0.1:0, backends, clients.
#![allow(dead_code)]

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
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{extra}\n\
         [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n"
    );
    let config = Config::parse(&toml, "test.toml", dir.path(), &Overrides::default())
        .unwrap_or_else(|e| panic!("config:\n{e}\n---\n{toml}"));
    let gw = crossgate::Gateway::build(&config).unwrap();
    let listeners = crossgate::Listeners::bind(&config.server).await.unwrap();
    let (addr, admin) = listeners.addrs().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crossgate::run(gw.clone(), listeners, async {
        let _ = rx.await;
    }));
    let tg = TestGateway {
        addr,
        admin,
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
        crossgate::tls::client_config_from_pem(
            &self.pki.anchor_pem(),
            &leaf.cert_pem,
            &leaf.key_pem,
            alpn,
        )
        .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> String {
        http_get(self.admin, path).await
    }

    pub async fn metrics(&self) -> String {
        let r = self.admin_get("/metrics").await;
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

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
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
