//! The mTLS handshake on the gateway port: every refusal is counted by reason and reaches no
//! backend; SPIFFE identities are accepted; clients that are not ours (openssl, python)
//! interoperate.

mod support;
use crossgate::certs::{LeafSpec, Pki};
use rcgen::SanType;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TCPECHO: &str = "tcpecho.test.svc.cluster.local:9899";
const TIMEOUTS: &str = "handshake_timeout = \"300ms\"\nheader_timeout = \"300ms\"\n";

/// A gateway with short deadlines routing the captured opaque target to an echo backend.
async fn gateway() -> (TestGateway, Arc<AtomicUsize>) {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!("{TIMEOUTS}{}", static_route(TCPECHO, echo))).await;
    (gw, accepted)
}

/// Connects with `config`, sends the captured opaque header and a payload, and asserts the
/// gateway closes without a byte (whether the client saw the handshake fail or not).
async fn refused(gw: &TestGateway, config: Arc<rustls::ClientConfig>) {
    // TLS 1.3: the client may finish its side before the server judges its certificate; if
    // the handshake already failed on the client side there is nothing more to send.
    if let Ok(mut tls) = crossgate::tls::connect(gw.addr, config, GATEWAY).await {
        let _ = tls.write_all(&vector("opaque.hex")).await;
        let _ = tls.write_all(b"must not arrive").await;
        let _ = tls.flush().await;
        assert_closed_without_bytes(&mut tls).await;
    }
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let (gw, accepted) = gateway().await;
    refused(&gw, no_client_auth(&gw.pki.anchor_pem(), ALPN_TRANSPORT)).await;
    gw.wait_metric(&handshake_failure_line("no client certificate", 1))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn chain_to_another_root_is_refused() {
    let (gw, accepted) = gateway().await;
    let intruder = Pki::new().unwrap().leaf(FRONTEND).unwrap();
    refused(&gw, gw.client_with_leaf(&intruder, ALPN_TRANSPORT)).await;
    gw.wait_metric(&handshake_failure_line("untrusted", 1))
        .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn expired_leaf_is_refused() {
    let (gw, accepted) = gateway().await;
    let now = time::OffsetDateTime::now_utc();
    let mut spec = LeafSpec::identity(FRONTEND);
    spec.not_before = now - time::Duration::hours(25);
    spec.not_after = now - time::Duration::hours(1);
    let expired = leaf_with(&gw.pki, spec);
    refused(&gw, gw.client_with_leaf(&expired, ALPN_TRANSPORT)).await;
    gw.wait_metric(&handshake_failure_line("expired", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn leaf_without_identity_san_is_refused() {
    let (gw, accepted) = gateway().await;
    // No SAN at all (the CN names the frontend: the CN is never the identity), then an IP SAN only.
    let mut no_san = LeafSpec::identity(FRONTEND);
    no_san.sans = vec![];
    let mut ip_only = LeafSpec::identity(FRONTEND);
    ip_only.sans = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    for (i, spec) in [no_san, ip_only].into_iter().enumerate() {
        let leaf = leaf_with(&gw.pki, spec);
        refused(&gw, gw.client_with_leaf(&leaf, ALPN_TRANSPORT)).await;
        gw.wait_metric(&handshake_failure_line("no identity", i as u64 + 1))
            .await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    let m = gw.metrics().await;
    assert!(!m.contains("tcp_open_total{"), "a leg was opened:\n{m}");
    gw.shutdown().await;
}

#[tokio::test]
async fn handshake_that_never_finishes_times_out() {
    let (gw, accepted) = gateway().await;
    let started = std::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Send nothing: the gateway must give up after handshake_timeout and close.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("gateway kept a silent connection open past its handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "gateway wrote to a silent connection");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the deadline: {:?}",
        started.elapsed()
    );
    gw.wait_metric(&handshake_failure_line("timeout", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn spiffe_uri_identity_is_accepted_and_labelled() {
    const SPIFFE: &str = "spiffe://cluster.local/ns/west/sa/frontend";
    let (gw, accepted) = gateway().await;
    let mut spec = LeafSpec::identity(FRONTEND);
    spec.sans = vec![SanType::URI(SPIFFE.try_into().unwrap())];
    spec.common_name = None;
    let leaf = leaf_with(&gw.pki, spec);
    let mut tls =
        crossgate::tls::connect(gw.addr, gw.client_with_leaf(&leaf, ALPN_TRANSPORT), GATEWAY)
            .await
            .unwrap();
    tls.write_all(&vector("opaque.hex")).await.unwrap();
    tls.write_all(b"spiffe hello").await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(
        read_until_closed(&mut tls, Duration::from_secs(3)).await,
        Some(b"spiffe hello".to_vec())
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.wait_metric(&format!(
        "tcp_open_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{SPIFFE}\",route=\"header\"}} 1"
    ))
    .await;
    gw.wait_metric(&format!(
        "inbound_tcp_authz_allow_total{{client_id=\"{SPIFFE}\",authority=\"{TCPECHO}\"}} 1"
    ))
    .await;
    gw.shutdown().await;
}

/// Reads `want` bytes from a child's stdout within 5 s.
async fn read_exactly<R: tokio::io::AsyncRead + Unpin>(r: &mut R, want: usize) -> Vec<u8> {
    let mut out = vec![0u8; want];
    match tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut out)).await {
        Ok(Ok(_)) => out,
        Ok(Err(e)) => panic!("stdout ended early: {e}"),
        Err(_) => panic!("no echo within 5 s"),
    }
}

#[tokio::test]
async fn openssl_s_client_goes_through() {
    let (gw, accepted) = gateway().await;
    let files = gw.write_client_files("frontend", &gw.pki.leaf(FRONTEND).unwrap());
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &gw.addr.to_string()])
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .arg("-cert_chain")
        .arg(&files.issuer)
        .arg("-CAfile")
        .arg(&files.ca)
        .args(["-verify_return_error", "-verify_hostname", GATEWAY])
        .args(["-alpn", "transport.l5d.io/v1", "-servername", GATEWAY])
        .args(["-tls1_3", "-quiet", "-nocommands"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let payload = binary_payload(3000);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vector("opaque.hex")).await.unwrap();
    stdin.write_all(&payload).await.unwrap();
    stdin.flush().await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let echoed = read_exactly(&mut stdout, payload.len()).await;
    assert!(echoed == payload, "echo differs from what was sent");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.wait_metric(&format!(
        "inbound_tcp_transport_header_connections_total{{target_port=\"9899\",target_name=\"tcpecho.test.svc.cluster.local\",client_id=\"{FRONTEND}\"}} 1"
    ))
    .await;
    // s_client with -quiet ignores EOF on stdin and would wait for the server: stop it.
    child.kill().await.unwrap();
    gw.shutdown().await;
}

const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
host, port, ca, cert, key, sni, n = sys.argv[1:8]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["transport.l5d.io/v1"])
data = sys.stdin.buffer.read()
with socket.create_connection((host, int(port)), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        sys.stderr.write("alpn=%s version=%s\n" % (s.selected_alpn_protocol(), s.version()))
        s.sendall(data)
        got = b""
        while len(got) < int(n):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        sys.stdout.buffer.write(got)
"#;

#[tokio::test]
async fn python_ssl_client_goes_through() {
    let (gw, accepted) = gateway().await;
    let files = gw.write_client_files("frontend", &gw.pki.leaf(FRONTEND).unwrap());
    let payload = binary_payload(5000);
    let mut input = vector("opaque.hex");
    input.extend_from_slice(&payload);
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", PYTHON_CLIENT, "127.0.0.1"])
        .arg(gw.addr.port().to_string())
        .arg(&files.ca)
        .arg(&files.cert)
        .arg(&files.key)
        .arg(GATEWAY)
        .arg(payload.len().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("python client did not finish")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed:\n{stderr}");
    assert!(
        stderr.contains("alpn=transport.l5d.io/v1 version=TLSv1.3"),
        "{stderr}"
    );
    assert!(out.stdout == payload, "echo differs:\n{stderr}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}

/// One echo round trip as FRONTEND with `config`; how the handshake went.
async fn echo_once(gw: &TestGateway, config: Arc<rustls::ClientConfig>) -> rustls::HandshakeKind {
    let mut tls = crossgate::tls::connect(gw.addr, config, GATEWAY)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(&vector("opaque.hex")).await.unwrap();
    tls.write_all(b"ping").await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(
        read_until_closed(&mut tls, Duration::from_secs(3)).await,
        Some(b"ping".to_vec())
    );
    kind
}

/// FRONTEND's client configuration with rustls' default session resumption turned on.
fn resuming_client(gw: &TestGateway) -> Arc<rustls::ClientConfig> {
    let mut config = (*gw.client(FRONTEND, ALPN_TRANSPORT)).clone();
    config.resumption = rustls::client::Resumption::default();
    Arc::new(config)
}

#[tokio::test]
async fn sessions_are_not_resumed_by_default() {
    let (gw, accepted) = gateway().await;
    let config = resuming_client(&gw);
    assert_eq!(
        echo_once(&gw, config.clone()).await,
        rustls::HandshakeKind::Full
    );
    // Even a client that would resume gets a full handshake, client certificate checked.
    assert_eq!(echo_once(&gw, config).await, rustls::HandshakeKind::Full);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn resumed_sessions_keep_the_client_identity_when_enabled() {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&format!(
        "tls_resumption = true\n{TIMEOUTS}{}",
        static_route(TCPECHO, echo)
    ))
    .await;
    let config = resuming_client(&gw);
    assert_eq!(
        echo_once(&gw, config.clone()).await,
        rustls::HandshakeKind::Full
    );
    assert_eq!(echo_once(&gw, config).await, rustls::HandshakeKind::Resumed);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    gw.wait_metric(&format!(
        "tcp_open_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"header\"}} 2"
    ))
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn tls_1_2_is_refused() {
    let (gw, accepted) = gateway().await;
    let files = gw.write_client_files("frontend", &gw.pki.leaf(FRONTEND).unwrap());
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &gw.addr.to_string()])
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .arg("-cert_chain")
        .arg(&files.issuer)
        .arg("-CAfile")
        .arg(&files.ca)
        .args(["-alpn", "transport.l5d.io/v1", "-servername", GATEWAY])
        .args(["-tls1_2", "-quiet", "-nocommands"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(&vector("opaque.hex")).await;
    let _ = stdin.write_all(b"over tls 1.2").await;
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("openssl did not give up on a refused handshake")
        .unwrap();
    assert!(!out.status.success(), "openssl s_client -tls1_2 succeeded");
    assert!(out.stdout.is_empty(), "bytes came back over TLS 1.2");
    gw.wait_metric(&handshake_failure_line("protocol", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    drop(stdin);
    gw.shutdown().await;
}
