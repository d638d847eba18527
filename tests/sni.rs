//! Targets named by SNI on the mTLS port, terminated there: openssl s_client with Istio's form
//! reaching a TCP echo backend, curl with `--resolve` and a bare name reaching an HTTP backend
//! under a wildcard `[[sni.certificate]]`, the SNI/authority mismatch answered 421, a client
//! offering only ALPN ids the gateway does not serve, the refusals, and the SNI certificate
//! reloaded on SIGHUP.

mod http_support;
mod support;

use crossgate::certs::{Leaf, LeafSpec, Pki};
use http_support::{Backend, static_routes, within};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BB: &str = "bb.mc-demo.svc.cluster.local";
const ISTIO: &str = "outbound_.8080_._.bb.mc-demo.svc.cluster.local";
const WILDCARD: &str = "*.mc-demo.svc.cluster.local";

/// A leaf for `*.mc-demo.svc.cluster.local` under `pki`, as a plain TLS client checks it.
fn wildcard_leaf(pki: &Pki) -> Leaf {
    let mut spec = LeafSpec::identity(BB);
    spec.sans = vec![rcgen::SanType::DnsName(WILDCARD.try_into().unwrap())];
    pki.leaf_with(spec).unwrap()
}

/// Writes `leaf` into `dir`; the `[sni]` tables that show it to `*.mc-demo` names.
fn sni_certificate(dir: &tempfile::TempDir, leaf: &Leaf) -> String {
    let (cert, key) = (dir.path().join("wild.crt"), dir.path().join("wild.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    format!(
        "[[sni.certificate]]\nnames = [\"{WILDCARD}\"]\ncertificate = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

fn inbound_open(route: &str, n: u64) -> String {
    format!(
        "tcp_open_total{{direction=\"inbound\",peer=\"src\",tls=\"true\",client_id=\"{FRONTEND}\",route=\"{route}\"}} {n}"
    )
}

#[tokio::test]
async fn openssl_s_client_with_istio_sni_reaches_the_echo_backend() {
    let (echo, accepted) = echo_backend().await;
    let gw = start(&static_route(&format!("{BB}:8080"), echo)).await;
    let files = gw.write_client_files("frontend", &gw.pki.leaf(FRONTEND).unwrap());
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &gw.addr.to_string(), "-servername", ISTIO])
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .arg("-cert_chain")
        .arg(&files.issuer)
        .arg("-CAfile")
        .arg(&files.ca)
        .args(["-verify_return_error", "-tls1_3", "-quiet", "-nocommands"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let payload = binary_payload(3000);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&payload).await.unwrap();
    stdin.flush().await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut echoed = vec![0u8; payload.len()];
    within(5, "the echo", stdout.read_exact(&mut echoed))
        .await
        .unwrap();
    assert!(echoed == payload, "echo differs from what was sent");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    gw.wait_metric(&inbound_open("sni", 1)).await;
    gw.wait_metric(&format!(
        "inbound_tcp_authz_allow_total{{client_id=\"{FRONTEND}\",authority=\"{BB}:8080\"}} 1"
    ))
    .await;
    // s_client with -quiet ignores EOF on stdin and would wait for the server: stop it.
    child.kill().await.unwrap();
    gw.shutdown().await;
}

/// curl's files for FRONTEND under `gw`'s anchor.
fn curl_files(gw: &TestGateway) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let leaf = gw.pki.leaf(FRONTEND).unwrap();
    std::fs::write(dir.path().join("ca.crt"), gw.pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("client.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), &leaf.key_pem).unwrap();
    dir
}

/// curl to `https://bb.mc-demo.svc.cluster.local:<gateway port>/x`, resolved to the gateway:
/// SNI the target's bare name, the server's certificate checked against it. The head and
/// body it printed.
async fn curl_bb(gw: &TestGateway, dir: &tempfile::TempDir, args: &[&str]) -> String {
    let port = gw.addr.port();
    let out = within(
        20,
        "curl",
        tokio::process::Command::new("/usr/bin/curl")
            .current_dir(dir.path())
            .args(["-sS", "--max-time", "10", "-D", "-"])
            .args([
                "--cert",
                "client.crt",
                "--key",
                "client.key",
                "--cacert",
                "ca.crt",
            ])
            .args(["--resolve", &format!("{BB}:{port}:127.0.0.1")])
            .args(args)
            .arg(format!("https://{BB}:{port}/x"))
            .output(),
    )
    .await
    .expect("running /usr/bin/curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn curl_with_the_targets_name_as_sni_reaches_the_http_backend() {
    let backend = Backend::start().await;
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    let sni = sni_certificate(&certs, &wildcard_leaf(&pki));
    let extra = format!(
        "[sni]\ndefault_port = 8080\n{sni}{}",
        static_routes(&[(&format!("{BB}:8080"), backend.addr)])
    );
    let leaf = pki.leaf(GATEWAY).unwrap();
    let gw = start_with(pki, leaf, &extra).await;
    let dir = curl_files(&gw);
    for (version, status_line) in [("--http1.1", "HTTP/1.1 200"), ("--http2", "HTTP/2 200")] {
        let out = curl_bb(&gw, &dir, &[version]).await;
        assert!(out.starts_with(status_line), "{out}");
        assert!(out.ends_with("ok"), "{out}");
        let seen = backend.last();
        assert_eq!(seen.uri.path(), "/x");
        assert_eq!(seen.all("l5d-client-id"), [FRONTEND]);
        if version == "--http1.1" {
            assert_eq!(seen.all("host"), [format!("{BB}:8080")]);
        }
    }
    assert_eq!(backend.count(), 2);
    gw.wait_metric(&inbound_open("sni", 2)).await;

    // SNI named bb; a request naming another service is refused 421, never re-routed.
    for version in ["--http1.1", "--http2"] {
        let other = "Host: podinfo.test.svc.cluster.local";
        let out = curl_bb(&gw, &dir, &[version, "-H", other]).await;
        let (head, _) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(" 421"), "{out}");
        assert!(
            head.to_ascii_lowercase()
                .contains("l5d-proxy-error: misdirected request"),
            "{out}"
        );
    }
    assert_eq!(
        backend.count(),
        2,
        "a misdirected request reached the backend"
    );
    gw.wait_metric("inbound_http_errors_total{error=\"misdirected\"} 2")
        .await;
    gw.shutdown().await;
}

/// A client offering only ALPN ids the gateway does not serve: opaque TCP to the target its
/// SNI names; to the gateway itself, refused at the handshake as before.
#[tokio::test]
async fn a_foreign_alpn_is_opaque_to_an_sni_target_and_refused_otherwise() {
    let (echo, accepted) = echo_backend().await;
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    let sni = sni_certificate(&certs, &wildcard_leaf(&pki));
    let extra = format!(
        "[sni]\ndefault_port = 8080\n{sni}{}",
        static_route(&format!("{BB}:8080"), echo)
    );
    let leaf = pki.leaf(GATEWAY).unwrap();
    let gw = start_with(pki, leaf, &extra).await;
    let imap = gw.client(FRONTEND, &[b"imap"]);
    let mut tls = crossgate::tls::connect(gw.addr, imap.clone(), BB)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    tls.write_all(b"a1 NOOP\r\n").await.unwrap();
    tls.shutdown().await.unwrap();
    assert_eq!(read_all(&mut tls).await, b"a1 NOOP\r\n");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let Err(e) = crossgate::tls::connect(gw.addr, imap, GATEWAY).await else {
        panic!("the handshake completed");
    };
    assert!(
        e.to_string().to_ascii_lowercase().contains("protocol"),
        "{e}"
    );
    gw.wait_metric(&handshake_failure_line("protocol", 1)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "refused, yet forwarded");
    gw.shutdown().await;
}

#[tokio::test]
async fn sni_refusals_close_before_the_backend() {
    let (echo, accepted) = echo_backend().await;
    let extra = format!(
        "{}[[authorization]]\nidentities = [\"*\"]\nservices = [\"*.test.svc.cluster.local\"]\n",
        static_route(&format!("{BB}:8080"), echo)
    );
    let gw = start(&extra).await;
    let files = gw.write_client_files("frontend", &gw.pki.leaf(FRONTEND).unwrap());
    for (sni, counted) in [
        (ISTIO, "inbound_tcp_authz_deny_total{client_id=\"frontend.west.serviceaccount.identity.linkerd.cluster.local\",authority=\"bb.mc-demo.svc.cluster.local:8080\"} 1".to_string()),
        ("outbound_.8080_._.example.com", tcp_error_line("gateway domain invalid", 1)),
        ("outbound_.8080_.v1_.bb.mc-demo.svc.cluster.local", tcp_error_line("gateway domain invalid", 2)),
    ] {
        let out = s_client(&gw, &files, sni, b"hello").await;
        assert!(out.is_empty(), "{sni}: got {out:?}");
        gw.wait_metric(&counted).await;
    }
    // A transport header naming another target than SNI: misdirected.
    let header = crossgate::transport_header::TransportHeader {
        port: 8080,
        name: Some("other.test.svc.cluster.local".into()),
        protocol: None,
    };
    let mut sent = header.encode();
    sent.extend_from_slice(b"hello");
    let sni = "outbound_.8080_._.tcpecho.test.svc.cluster.local";
    let out = s_client_alpn(&gw, &files, sni, "transport.l5d.io/v1", &sent).await;
    assert!(out.is_empty(), "got {out:?}");
    gw.wait_metric(&tcp_error_line("misdirected", 1)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused connection reached the backend"
    );
    gw.shutdown().await;
}

/// Runs openssl s_client with `sni`, no ALPN, sends `data`, and returns what came back
/// before the gateway closed.
async fn s_client(gw: &TestGateway, files: &ClientFiles, sni: &str, data: &[u8]) -> Vec<u8> {
    s_client_args(gw, files, sni, &[], data).await
}

async fn s_client_alpn(
    gw: &TestGateway,
    files: &ClientFiles,
    sni: &str,
    alpn: &str,
    data: &[u8],
) -> Vec<u8> {
    s_client_args(gw, files, sni, &["-alpn", alpn], data).await
}

async fn s_client_args(
    gw: &TestGateway,
    files: &ClientFiles,
    sni: &str,
    args: &[&str],
    data: &[u8],
) -> Vec<u8> {
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &gw.addr.to_string(), "-servername", sni])
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .arg("-cert_chain")
        .arg(&files.issuer)
        .arg("-CAfile")
        .arg(&files.ca)
        .args(["-verify_return_error", "-tls1_3", "-quiet", "-nocommands"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(data).await.unwrap();
    stdin.flush().await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The gateway closes the connection: s_client then exits and its stdout ends.
    let out = read_until_closed(&mut stdout, Duration::from_secs(5)).await;
    let _ = child.kill().await;
    out.expect("the gateway did not close the connection")
}

#[tokio::test]
async fn the_sni_certificate_reloads_on_sighup() {
    let (echo, _) = echo_backend().await;
    let certs = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    let first = wildcard_leaf(&pki);
    let sni = sni_certificate(&certs, &first);
    let extra = format!("{sni}{}", static_route(&format!("{BB}:8080"), echo));
    let leaf = pki.leaf(GATEWAY).unwrap();
    let gw = start_with(pki, leaf, &extra).await;
    let presented = |name: &'static str| {
        let config = gw.client(FRONTEND, &[b"h2"]);
        async move {
            let tls = crossgate::tls::connect(gw.addr, config, name)
                .await
                .unwrap();
            serial_of_der(&tls.get_ref().1.peer_certificates().unwrap()[0])
        }
    };
    assert_eq!(presented(BB).await, serial_of_pem(&first.cert_pem));
    let own = presented(GATEWAY).await;
    assert_ne!(own, serial_of_pem(&first.cert_pem));
    let second = wildcard_leaf(&gw.pki);
    sni_certificate(&certs, &second);
    // What SIGHUP calls (the configuration itself was not read from a file here).
    gw.gw.reload().await;
    let mut now = presented(BB).await;
    for _ in 0..200 {
        if now == serial_of_pem(&second.cert_pem) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        now = presented(BB).await;
    }
    assert_eq!(now, serial_of_pem(&second.cert_pem));
    gw.shutdown().await;
}
