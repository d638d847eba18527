//! Rules that reload without a restart, on the real binary: a SIGHUP after the config file
//! turns an allowed identity into a denied one refuses its next connection (closed, counted)
//! while an opaque stream it opened before keeps running; a file that does not validate keeps
//! the old rules; an edit is also picked up without a signal, by the file watch;
//! `[server] allow_sources` is a rule too, and a changed restart-only key is named.

mod http_support;
mod support;

use crossgate::transport_header::TransportHeader;
use http_support::{BinaryGateway, within};
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TCPECHO: &str = "tcpecho.test.svc.cluster.local";

fn rules(echo: std::net::SocketAddr, identities: &str) -> String {
    format!(
        "[routing.static]\n\"{TCPECHO}:9899\" = [\"{echo}\"]\n\
         [[authorization]]\nidentities = [{identities}]\nservices = [\"*.test.svc.cluster.local\"]\n"
    )
}

fn header() -> Vec<u8> {
    TransportHeader {
        port: 9899,
        name: Some(TCPECHO.into()),
        protocol: None,
    }
    .encode()
}

async fn open(
    gw: &BinaryGateway,
    identity: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = crossgate::tls::connect(gw.listen, gw.client(identity, ALPN_TRANSPORT), GATEWAY)
        .await
        .unwrap();
    tls.write_all(&header()).await.unwrap();
    tls
}

/// Writes `msg` and reads its echo.
async fn echo(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, msg: &[u8]) {
    tls.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    within(5, "echo", tls.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, msg);
}

/// Reads until the gateway closes; true when it closed without sending a byte.
async fn closed_without_bytes(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> bool {
    let mut buf = [0u8; 64];
    matches!(within(5, "close", tls.read(&mut buf)).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn sighup_swaps_rules_and_keeps_running_streams() {
    let (echo_addr, _) = support::echo_backend().await;
    let frontend = format!("\"{FRONTEND}\"");
    let gw = BinaryGateway::start("", &rules(echo_addr, &frontend)).await;

    // Allowed under the first rules; this stream stays open across the reload.
    let mut running = open(&gw, FRONTEND).await;
    echo(&mut running, b"before").await;

    let east = "\"api.east.serviceaccount.identity.linkerd.cluster.local\"";
    gw.rewrite_config("", &rules(echo_addr, east));
    gw.signal("HUP").await;
    gw.wait_metric("config_reloads_total{result=\"ok\"} 1")
        .await;

    // The next connection is refused under the new rules, closed and counted.
    assert!(closed_without_bytes(open(&gw, FRONTEND).await).await);
    gw.wait_metric(&format!(
        "inbound_tcp_authz_deny_total{{client_id=\"{FRONTEND}\",authority=\"{TCPECHO}:9899\"}} 1"
    ))
    .await;
    // The stream authorized under the old rules is untouched.
    echo(&mut running, b"after the reload").await;

    // A file that does not validate: the rules in force stay, the error is counted and logged
    // with file and key.
    gw.rewrite_config("", "[routing]\ncluster_domain = \"not a domain\"\n");
    gw.signal("HUP").await;
    gw.wait_metric("config_reloads_total{result=\"error\"} 1")
        .await;
    assert!(closed_without_bytes(open(&gw, FRONTEND).await).await);
    let mut east_stream = open(
        &gw,
        "api.east.serviceaccount.identity.linkerd.cluster.local",
    )
    .await;
    echo(&mut east_stream, b"east still allowed").await;
    let log = gw.stderr();
    assert!(
        log.contains("routing.cluster_domain") && log.contains("configuration not reloaded"),
        "{log}"
    );

    // A key that needs a restart is named, and the rules still swap.
    gw.rewrite_config("threads = 3", &rules(echo_addr, &frontend));
    gw.signal("HUP").await;
    gw.wait_metric("config_reloads_total{result=\"ok\"} 2")
        .await;
    let mut again = open(&gw, FRONTEND).await;
    echo(&mut again, b"allowed again").await;
    assert!(gw.stderr().contains("server.threads"), "{}", gw.stderr());
    drop((running, east_stream, again));
    gw.terminate().await;
}

/// A raw TCP client: true when the gateway closes without sending a byte.
async fn closed_at_accept(gw: &BinaryGateway) -> bool {
    let mut tcp = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    // A ClientHello's first bytes; an allowed source would answer with an alert or wait.
    let _ = tcp.write_all(b"\x16\x03\x01").await;
    let mut buf = [0u8; 64];
    matches!(within(5, "close", tcp.read(&mut buf)).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn sighup_applies_allow_sources_and_names_restart_keys() {
    let (echo_addr, _) = support::echo_backend().await;
    let frontend = format!("\"{FRONTEND}\"");
    let gw = BinaryGateway::start("", &rules(echo_addr, &frontend)).await;
    let mut before = open(&gw, FRONTEND).await;
    echo(&mut before, b"any source").await;

    // 127.0.0.1 is outside the new list: closed at accept from the reload on.
    gw.rewrite_config(
        "allow_sources = [\"10.0.0.0/8\"]\ndrain_delay = \"1s\"",
        &rules(echo_addr, &frontend),
    );
    gw.signal("HUP").await;
    gw.wait_metric("config_reloads_total{result=\"ok\"} 1")
        .await;
    assert!(closed_at_accept(&gw).await);
    gw.wait_metric("inbound_tcp_errors_total{error=\"unauthorized source\"} 1")
        .await;
    let log = gw.stderr();
    let warning = log
        .lines()
        .find(|l| l.contains("take effect only at a restart"))
        .unwrap_or_else(|| panic!("no restart warning:\n{log}"));
    assert!(warning.contains("server.drain_delay"), "{warning}");
    assert!(!warning.contains("allow_sources"), "{warning}");

    // Back inside the list: served again.
    gw.rewrite_config(
        "allow_sources = [\"127.0.0.0/8\"]\ndrain_delay = \"1s\"",
        &rules(echo_addr, &frontend),
    );
    gw.signal("HUP").await;
    gw.wait_metric("config_reloads_total{result=\"ok\"} 2")
        .await;
    let mut after = open(&gw, FRONTEND).await;
    echo(&mut after, b"allowed again").await;
    gw.wait_metric("inbound_tcp_errors_total{error=\"unauthorized source\"} 1")
        .await;
    drop((before, after));
    gw.terminate().await;
}

#[tokio::test]
async fn an_edited_file_reloads_without_a_signal() {
    let (echo_addr, _) = support::echo_backend().await;
    // Keys before the first table land in [identity]: the file watch polls at its
    // reload_interval, like the identity files.
    let fast = |ids: &str| format!("reload_interval = \"100ms\"\n{}", rules(echo_addr, ids));
    let gw = BinaryGateway::start("", &fast(&format!("\"{FRONTEND}\""))).await;
    let mut running = open(&gw, FRONTEND).await;
    echo(&mut running, b"allowed").await;
    gw.rewrite_config(
        "",
        &fast("\"nobody.x.serviceaccount.identity.linkerd.cluster.local\""),
    );
    gw.wait_metric("config_reloads_total{result=\"ok\"} 1")
        .await;
    assert!(closed_without_bytes(open(&gw, FRONTEND).await).await);
    echo(&mut running, b"still running").await;
    drop(running);
    gw.terminate().await;
}

/// A reload that moves a static target to another endpoint takes effect for the next request
/// on a connection that is already open, over HTTP/2 and HTTP/1.1 alike: the upstream
/// connections to the old endpoint are not reused.
#[tokio::test]
async fn a_reload_moves_a_static_target_at_the_next_request() {
    use http_support::{Backend, get, h1_client, h2_hint, send_h1, send_h2};
    const WEB: &str = "podinfo.test.svc.cluster.local";
    const WEB_H1: &str = "podinfo-h1.test.svc.cluster.local";
    let (old, new) = (Backend::start().await, Backend::start().await);
    let routes = |to: std::net::SocketAddr| {
        format!("[routing.static]\n\"{WEB}:9898\" = [\"{to}\"]\n\"{WEB_H1}:9898\" = [\"{to}\"]\n")
    };
    let gw = BinaryGateway::start("", &routes(old.addr)).await;
    let mut h2 = h2_hint(gw.listen, gw.client(FRONTEND, ALPN_TRANSPORT)).await;
    let tls = http_support::connect_tls(
        gw.listen,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        Some(&support::vector("h1-nohint.hex")),
    )
    .await;
    let mut h1 = h1_client(tls).await;
    let h2_url = format!("http://{WEB}:9898/before");
    assert_eq!(send_h2(&mut h2, get(&h2_url, &[])).await.status, 200);
    assert_eq!(send_h1(&mut h1, get("/before", &[])).await.status, 200);
    assert_eq!(old.count(), 2);

    gw.rewrite_config("", &routes(new.addr));
    gw.signal("HUP").await;
    gw.wait_metric("config_reloads_total{result=\"ok\"} 1")
        .await;
    let h2_url = format!("http://{WEB}:9898/after");
    assert_eq!(send_h2(&mut h2, get(&h2_url, &[])).await.status, 200);
    assert_eq!(send_h1(&mut h1, get("/after", &[])).await.status, 200);
    assert_eq!(new.count(), 2, "both requests reached the new endpoint");
    assert_eq!(old.count(), 2, "none went to the old endpoint");
    gw.terminate().await;
}
