//! Shared by the prober tests: a prober run in-process on 127.0.0.1:0, its `[[link]]` TOML,
//! the series it exports, and a gateway that can be stopped and started again on one port.
#![allow(dead_code)]

use crate::support::{self, FRONTEND, TestGateway};
use crossgate::certs::Pki;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A prober running in this test's runtime.
pub struct TestProber {
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestProber {
    /// Stops the prober; a prober task that ended by itself mid-test (a panic) fails the test.
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut t) = self.task.take()
            && t.is_finished()
            && !std::thread::panicking()
        {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(Err(e)) = std::pin::Pin::new(&mut t).poll(&mut cx)
                && let Ok(payload) = e.try_into_panic()
            {
                std::panic::resume_unwind(payload);
            }
        }
        support::assert_no_src_panic();
    }
}

/// Starts a prober with the client identity `files` (if any) and `links` (`[probe]` and
/// `[[link]]` tables), its admin port on 127.0.0.1:0.
pub async fn start_prober(files: Option<&support::ClientFiles>, links: &str) -> TestProber {
    support::watch_src_panics();
    let dir = tempfile::tempdir().unwrap();
    let identity = files.map_or(String::new(), |f| {
        format!(
            "[identity]\ntrust_anchors = {:?}\ncertificate = {:?}\nkey = {:?}\n",
            f.ca, f.cert, f.key
        )
    });
    let text = format!("[server]\nadmin = \"127.0.0.1:0\"\n{identity}{links}");
    let config = crossgate::probe::ProbeConfig::parse(&text, "probe.toml", dir.path())
        .unwrap_or_else(|e| panic!("config:\n{e}\n---\n{text}"));
    let prober = crossgate::probe::Prober::build(&config).unwrap();
    let listener = tokio::net::TcpListener::bind(config.admin).await.unwrap();
    let admin = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crossgate::probe::run(prober, listener, async {
        let _ = rx.await;
    }));
    TestProber {
        admin,
        _dir: dir,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestProber {
    /// The prober's `/metrics` body ("" while it does not answer).
    pub async fn metrics(&self) -> String {
        let raw = support::try_http_get(self.admin, "/metrics")
            .await
            .unwrap_or_default();
        raw.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default()
    }

    pub async fn value(&self, series: &str) -> Option<f64> {
        value(&self.metrics().await, series)
    }

    /// Waits up to 5 s until `series` has a value that satisfies `ok`.
    pub async fn wait(&self, series: &str, ok: impl Fn(f64) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.metrics().await;
            if value(&m, series).is_some_and(&ok) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{series} never reached the expected value:\n{m}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `http://<admin>/metrics`, for `crossgate gateways --prober`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.admin)
    }
}

/// A `[[link]]` table with two mirrored services.
pub fn link(
    name: &str,
    address: &str,
    port: u16,
    identity: Option<&str>,
    period: &str,
    threshold: u32,
) -> String {
    let identity = identity.map_or(String::new(), |i| format!("identity = \"{i}\"\n"));
    format!(
        "[[link]]\nname = \"{name}\"\naddress = \"{address}\"\nport = {port}\nperiod = \"{period}\"\n\
         timeout = \"2s\"\nfailure_threshold = {threshold}\n{identity}services = [\"podinfo\", \"web\"]\n"
    )
}

/// The value of `series` (e.g. `gateway_alive{target_cluster_name="east"}`) in `metrics`.
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

pub fn cluster(family: &str, name: &str) -> String {
    format!("{family}{{target_cluster_name=\"{name}\"}}")
}

pub fn probes(name: &str, ok: bool) -> String {
    format!("gateway_probes_total{{target_cluster_name=\"{name}\",probe_successful=\"{ok}\"}}")
}

pub fn failures(name: &str, reason: &str) -> String {
    format!("gateway_probe_failures_total{{target_cluster_name=\"{name}\",reason=\"{reason}\"}}")
}

/// The prober's client identity (FRONTEND) under `gw`'s trust anchor.
pub fn prober_files(gw: &TestGateway) -> support::ClientFiles {
    let leaf = gw.pki.leaf(FRONTEND).unwrap();
    gw.write_client_files("prober", &leaf)
}

/// The prober's client identity under `pki`, written into `dir`.
pub fn write_prober_files(pki: &Pki, dir: &Path) -> support::ClientFiles {
    let leaf = pki.leaf(FRONTEND).unwrap();
    let files = support::ClientFiles {
        ca: dir.join("prober-ca.crt"),
        issuer: dir.join("prober-issuer.crt"),
        cert: dir.join("prober.crt"),
        key: dir.join("prober.key"),
    };
    std::fs::write(&files.ca, pki.anchor_pem()).unwrap();
    std::fs::write(&files.issuer, pki.issuer_pem()).unwrap();
    std::fs::write(&files.cert, &leaf.cert_pem).unwrap();
    std::fs::write(&files.key, &leaf.key_pem).unwrap();
    files
}

/// A gateway whose admin address is chosen by the test, so it can be started again on the
/// port a prober probes.
pub struct RunningGateway {
    pub admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    pub async fn start(pki: &Pki, dir: &Path, admin: &str) -> RunningGateway {
        support::watch_src_panics();
        let leaf = pki.leaf(support::GATEWAY).unwrap();
        std::fs::write(dir.join("ca.crt"), pki.anchor_pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
        let toml = "[server]\nlisten = \"127.0.0.1:0\"\n\
                    [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n";
        let overrides = crossgate::config::Overrides {
            listen: None,
            admin: Some(admin.to_string()),
        };
        let config = crossgate::config::Config::parse(toml, "gw.toml", dir, &overrides).unwrap();
        let gw = crossgate::Gateway::build(&config).unwrap();
        let listeners = crossgate::Listeners::bind(&config.server).await.unwrap();
        let admin = listeners.addrs().unwrap().1;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crossgate::run(gw, listeners, async {
            let _ = rx.await;
        }));
        for _ in 0..300 {
            if let Ok(r) = support::try_http_get(admin, "/ready").await
                && r.starts_with("HTTP/1.1 200")
            {
                return RunningGateway { admin, stop, task };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gateway on {admin} never ready");
    }

    /// Stops the gateway and waits until its ports are closed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        support::join_within(self.task, Duration::from_secs(10), "the gateway's run task").await;
        support::assert_no_src_panic();
    }
}
