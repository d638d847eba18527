//! The passthrough port: a TLS client completing its handshake with a TLS backend through the
//! gateway (rustls with a bare name, openssl s_client with Istio's form), a ClientHello split
//! over many records and small writes spliced byte for byte, and the refusals (no SNI, a name
//! not allowed or not routed, an IP literal, bytes that are not a ClientHello, one larger than
//! the buffer, one never finished), each closed without a byte, counted as
//! `inbound_tcp_errors_total{error="sni"}`, and never reaching a backend.

mod http_support;
mod support;

use crossgate::certs::{LeafSpec, Pki};
use http_support::{static_routes, within};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BB: &str = "bb.mc-demo.svc.cluster.local";
const SPLIT: &str = "split.mc-demo.svc.cluster.local";
const SECRET: &str = "secret.other.svc.cluster.local";

/// A TLS server for `BB` under its own PKI (the gateway has neither its key nor its anchor)
/// that echoes what it reads; the TCP connections it accepted.
async fn tls_backend(pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let leaf = pki.leaf_with(LeafSpec::identity(BB)).unwrap();
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(crossgate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, accepted)
}

/// A TCP backend that records the bytes of each connection until it closes.
async fn recording_backend() -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = tcp.read_to_end(&mut got).await;
                let _ = tx.send(got).await;
            });
        }
    });
    (addr, rx)
}

/// A gateway whose passthrough port splices `*.mc-demo` names (bare names on 8443).
async fn gateway(routes: &[(&str, SocketAddr)]) -> TestGateway {
    let extra = format!(
        "handshake_timeout = \"1s\"\n[sni]\ndefault_port = 8443\n\
         [passthrough]\nlisten = \"127.0.0.1:0\"\nallow = [\"*.mc-demo.svc.cluster.local\"]\n{}",
        static_routes(routes)
    );
    start(&extra).await
}

/// A client trusting `pki`'s anchor, with no certificate of its own.
fn client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    no_client_auth(&pki.anchor_pem(), &[b"h2"])
}

/// The first flight of a rustls client asking for `name` (no SNI for an IP address).
fn client_hello(name: &str) -> Vec<u8> {
    let config = client(&Pki::new().unwrap());
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn sni_error_line(n: u64) -> String {
    tcp_error_line("sni", n)
}

#[tokio::test]
async fn a_tls_client_completes_its_handshake_with_the_backend() {
    let backend_pki = Pki::new().unwrap();
    let (backend, accepted) = tls_backend(&backend_pki).await;
    let gw = gateway(&[(&format!("{BB}:8443"), backend)]).await;
    let port = gw.passthrough.expect("a passthrough port");
    // rustls, the bare name as SNI: it checks the backend's own certificate for BB.
    let mut tls = crossgate::tls::connect(port, client(&backend_pki), BB)
        .await
        .expect("a TLS handshake with the backend, through the gateway");
    tls.write_all(b"end to end").await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(read_all(&mut tls).await, b"end to end");
    let leg = "direction=\"inbound\",peer=\"src\",tls=\"opaque\",sni=\"bb.mc-demo.svc.cluster.local\",route=\"passthrough\"";
    gw.wait_metric(&format!("tcp_open_total{{{leg}}} 1")).await;
    gw.wait_metric(&format!(
        "tcp_close_total{{{leg},classification=\"success\"}} 1"
    ))
    .await;

    // openssl s_client, Istio's form as SNI, the backend's name checked.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("backend-ca.crt");
    std::fs::write(&ca, backend_pki.anchor_pem()).unwrap();
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &port.to_string()])
        .args([
            "-servername",
            "outbound_.8443_._.bb.mc-demo.svc.cluster.local",
        ])
        .args(["-verify_hostname", BB, "-verify_return_error"])
        .arg("-CAfile")
        .arg(&ca)
        .args(["-tls1_3", "-quiet", "-nocommands"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let payload = binary_payload(5000);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&payload).await.unwrap();
    stdin.flush().await.unwrap();
    let mut echoed = vec![0u8; payload.len()];
    let mut stdout = child.stdout.take().unwrap();
    within(5, "the echo", stdout.read_exact(&mut echoed))
        .await
        .unwrap();
    assert!(echoed == payload, "echo differs from what was sent");
    child.kill().await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    gw.wait_metric(&format!("tcp_open_total{{{leg}}} 2")).await;
    gw.shutdown().await;
}

/// The same handshake message in records of at most `size` bytes each.
fn refragment(hello: &[u8], size: usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    let mut out = Vec::new();
    for chunk in hello[5..5 + len].chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[tokio::test]
async fn a_hello_split_over_many_records_and_writes_is_spliced_byte_for_byte() {
    let (backend, mut received) = recording_backend().await;
    let gw = gateway(&[(&format!("{SPLIT}:8443"), backend)]).await;
    let mut sent = refragment(&client_hello(SPLIT), 50);
    sent.extend_from_slice(b"and what follows");
    let mut tcp = TcpStream::connect(gw.passthrough.unwrap()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    for chunk in sent.chunks(7) {
        tcp.write_all(chunk).await.unwrap();
        tcp.flush().await.unwrap();
    }
    tcp.shutdown().await.unwrap();
    let got = within(5, "the backend's bytes", received.recv())
        .await
        .unwrap();
    assert!(
        got == sent,
        "the backend got {} bytes, not the {} sent",
        got.len(),
        sent.len()
    );
    gw.shutdown().await;
}

/// Bytes that carry `ip` as SNI: a rustls hello for a name of the same length, patched.
fn hello_with_ip_sni(ip: &str) -> Vec<u8> {
    let stand_in = "a".repeat(ip.len());
    let mut hello = client_hello(&stand_in);
    let at = hello
        .windows(ip.len())
        .position(|w| w == stand_in.as_bytes())
        .unwrap();
    hello[at..at + ip.len()].copy_from_slice(ip.as_bytes());
    hello
}

/// A hello that says it is larger than the buffer, sent in full (two records).
fn oversized_hello() -> Vec<u8> {
    let mut message = vec![1u8, 0, 0x4e, 0x20];
    message.resize(4 + 20_000, 0);
    refragment(&[&[22, 3, 1, 0x4e, 0x24][..], &message].concat(), 16 * 1024)
}

#[tokio::test]
async fn refusals_close_without_a_byte_and_reach_no_backend() {
    let backend_pki = Pki::new().unwrap();
    let (backend, accepted) = tls_backend(&backend_pki).await;
    let gw = gateway(&[
        (&format!("{BB}:8443"), backend),
        (&format!("{SECRET}:8443"), backend),
    ])
    .await;
    let port = gw.passthrough.unwrap();
    let half = client_hello(BB)[..100].to_vec();
    let cases: [(&str, Vec<u8>); 8] = [
        ("no SNI", client_hello("10.0.0.1")),
        ("a name not allowed", client_hello(SECRET)),
        (
            "a name not routed",
            client_hello("outbound_.8443_._.example.com"),
        ),
        ("an IPv4 literal", hello_with_ip_sni("10.0.0.1")),
        ("an IPv6 literal", hello_with_ip_sni("::1")),
        ("not TLS", b"GET / HTTP/1.1\r\nhost: bb\r\n\r\n".to_vec()),
        ("larger than the buffer", oversized_hello()),
        ("never finished (the deadline)", half),
    ];
    for (n, (what, bytes)) in cases.into_iter().enumerate() {
        let mut tcp = TcpStream::connect(port).await.unwrap();
        // Written whole or refused midway: either way the gateway closes.
        let _ = tcp.write_all(&bytes).await;
        assert_closed_without_bytes(&mut tcp).await;
        gw.wait_metric(&sni_error_line(n as u64 + 1)).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "{what} reached the backend"
        );
    }
    // A connection that sends nothing and closes (a TCP health check) is not an error.
    drop(TcpStream::connect(port).await.unwrap());
    let mut tls = crossgate::tls::connect(port, client(&backend_pki), BB)
        .await
        .expect("the port still serves");
    tls.shutdown().await.unwrap();
    assert_eq!(read_all(&mut tls).await, b"");
    assert_eq!(
        gw.metric_value("inbound_tcp_errors_total{error=\"sni\"}")
            .await,
        Some(8.0)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn allow_sources_applies_to_the_passthrough_port() {
    let backend_pki = Pki::new().unwrap();
    let (backend, accepted) = tls_backend(&backend_pki).await;
    let extra = format!(
        "allow_sources = [\"10.0.0.0/8\"]\n[sni]\ndefault_port = 8443\n\
         [passthrough]\nlisten = \"127.0.0.1:0\"\nallow = [\"*.mc-demo.svc.cluster.local\"]\n{}",
        static_routes(&[(&format!("{BB}:8443"), backend)])
    );
    let gw = start(&extra).await;
    let mut tcp = TcpStream::connect(gw.passthrough.unwrap()).await.unwrap();
    let _ = tcp.write_all(&client_hello(BB)).await;
    assert_closed_without_bytes(&mut tcp).await;
    gw.wait_metric(&tcp_error_line("unauthorized source", 1))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn passthrough_is_off_unless_configured() {
    let gw = start("").await;
    assert!(gw.passthrough.is_none());
    gw.shutdown().await;
}
