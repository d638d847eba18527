//! Certificate rotation: the gateway picks up a rotated leaf and key from disk without a
//! restart, and keeps its current certificate when the new files name another identity
//! (proven by `identity_reloads_total{result="error"}` counting that very set, and the leaf
//! still served).

mod support;
use crossgate::certs::{LeafSpec, Pki};
use crossgate::config::{Config, Overrides};
use std::time::Duration;
use support::*;

async fn served_leaf(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Vec<u8> {
    let tls = crossgate::tls::connect(addr, config, GATEWAY)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn expiry_line(metrics: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with("identity_cert_expiration_timestamp_seconds "))
        .unwrap()
        .to_string()
}

/// A gateway whose identity files live in its own folder and are re-read every 50 ms.
struct Reloading {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_reloading(pki: &Pki) -> Reloading {
    watch_src_panics();
    let leaf = pki.leaf(GATEWAY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
                [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n\
                reload_interval = \"50ms\"\n";
    let config = Config::parse(toml, "t.toml", dir.path(), &Overrides::default()).unwrap();
    let gw = crossgate::Gateway::build(&config).unwrap();
    let listeners = crossgate::Listeners::bind(&config.server).await.unwrap();
    let (addr, admin) = listeners.addrs().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crossgate::run(gw, listeners, async {
        let _ = rx.await;
    }));
    Reloading {
        dir,
        addr,
        admin,
        stop,
        task,
    }
}

impl Reloading {
    async fn stop(self) {
        let _ = self.stop.send(());
        join_within(self.task, Duration::from_secs(10), "the gateway's run task").await;
        assert_no_src_panic();
    }
}

#[tokio::test]
async fn rotated_files_are_served_and_foreign_identities_refused() {
    let pki = Pki::new().unwrap();
    let gw = start_reloading(&pki).await;
    let (dir, addr, admin) = (gw.dir.path(), gw.addr, gw.admin);
    let client_leaf = pki.leaf(FRONTEND).unwrap();
    let client = crossgate::tls::client_config_from_pem(
        &pki.anchor_pem(),
        &client_leaf.cert_pem,
        &client_leaf.key_pem,
        ALPN_TRANSPORT,
    )
    .unwrap();
    let metrics = || async { http_get(admin, "/metrics").await };
    let before = served_leaf(addr, client.clone()).await;
    let expiry_before = expiry_line(&metrics().await);

    // Rotate: a new leaf for the same identity, valid two days.
    let mut spec = LeafSpec::identity(GATEWAY);
    spec.not_after += time::Duration::hours(24);
    let second = pki.leaf_with(spec).unwrap();
    std::fs::write(dir.join("tls.key"), &second.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), &second.cert_pem).unwrap();
    let mut now = before.clone();
    for _ in 0..200 {
        now = served_leaf(addr, client.clone()).await;
        if now != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_ne!(now, before, "rotated certificate never served");
    let expiry_after = expiry_line(&metrics().await);
    assert_ne!(expiry_after, expiry_before, "expiry gauge not updated");

    // A leaf naming another identity is not taken: the rotated one stays. Its key first:
    // that set (the rotated leaf, the foreign key) does not load, one error. Then its leaf:
    // the watch loads that set only once the stamps changed again, so the next error is the
    // foreign identity refused, counted, and nothing else.
    let reloads = |result: &str| {
        let series = format!("identity_reloads_total{{result=\"{result}\"}}");
        async move {
            let m = metrics().await;
            let value = m
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<u64>().ok());
            value.unwrap_or(0)
        }
    };
    let wait_errors = |n: u64| async move {
        for _ in 0..500 {
            if reloads("error").await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("identity_reloads_total{{result=\"error\"}} never reached {n}");
    };
    let (errors, oks) = (reloads("error").await, reloads("ok").await);
    let foreign = pki
        .leaf("someone-else.west.serviceaccount.identity.linkerd.cluster.local")
        .unwrap();
    // Each file renamed into place: its stamp changes once, with the whole file.
    let install = |name: &str, text: &str| {
        std::fs::write(dir.join("next.tmp"), text).unwrap();
        std::fs::rename(dir.join("next.tmp"), dir.join(name)).unwrap();
    };
    install("tls.key", &foreign.key_pem);
    wait_errors(errors + 1).await;
    install("tls.crt", &foreign.cert_pem);
    wait_errors(errors + 2).await;
    assert_eq!(reloads("ok").await, oks, "a reload was counted as ok");
    assert_eq!(served_leaf(addr, client.clone()).await, now);
    assert_eq!(expiry_line(&metrics().await), expiry_after);
    assert!(http_get(admin, "/ready").await.starts_with("HTTP/1.1 200"));

    gw.stop().await;
}

#[tokio::test]
async fn rotated_trust_anchor_bundle_admits_the_new_root() {
    let pki = Pki::new().unwrap();
    let next = Pki::new().unwrap();
    let gw = start_reloading(&pki).await;
    let (dir, addr) = (gw.dir.path(), gw.addr);
    // A client of the next root; it trusts both roots, as clients do during a rotation.
    let bundle = format!("{}{}", pki.anchor_pem(), next.anchor_pem());
    let client_leaf = next.leaf(FRONTEND).unwrap();
    let client = crossgate::tls::client_config_from_pem(
        &bundle,
        &client_leaf.cert_pem,
        &client_leaf.key_pem,
        ALPN_TRANSPORT,
    )
    .unwrap();
    let admitted = |client: std::sync::Arc<rustls::ClientConfig>| async move {
        // TLS 1.3: the client finishes first; the server's verdict shows on the first read.
        let Ok(mut tls) = crossgate::tls::connect(addr, client, GATEWAY).await else {
            return false;
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(b"x").await;
        let mut b = [0u8; 1];
        // Admitted connections wait for the rest of the header: the read times out.
        tokio::time::timeout(Duration::from_millis(200), tls.read(&mut b))
            .await
            .is_err()
    };
    assert!(
        !admitted(client.clone()).await,
        "the next root was trusted before the rotation"
    );

    std::fs::write(dir.join("ca.crt"), &bundle).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if admitted(client.clone()).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ok, "the rotated anchor bundle was never applied");

    gw.stop().await;
}
