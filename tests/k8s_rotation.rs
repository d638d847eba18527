//! Identity files rotated the way kubelet rotates a Secret volume, under a loop of new mTLS
//! connections and requests: no failed handshake or request, and the new leaf served after the
//! swap.
//!
//! kubelet's `AtomicWriter` lays a Secret volume out as user-visible symlinks through `..data`:
//! `tls.crt -> ..data/tls.crt`, `..data -> ..2026_12_01_10_00_00.123456789` (a timestamped
//! folder holding the real files). An update writes a new timestamped folder, points a
//! `..data_tmp` symlink at it, renames `..data_tmp` over `..data` (one atomic step for every
//! file), then removes the old folder. No file is ever rewritten in place, so a reader sees
//! either the old set or the new one.

mod http_support;
mod support;

use crossgate::certs::{Leaf, Pki};
use crossgate::config::{Config, Overrides};
use http_support::{Backend, static_routes};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "web.test.svc.cluster.local:8080";
/// Concurrent clients, each opening a new connection per request.
const CLIENTS: usize = 4;

/// A folder laid out as kubelet lays out a Secret volume.
struct SecretVolume {
    dir: PathBuf,
}

impl SecretVolume {
    const FILES: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];

    /// The first projection: a timestamped folder, `..data` pointing at it, and one symlink
    /// per key through `..data`.
    fn create(dir: &Path, files: &[(&str, String)]) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        let v = SecretVolume {
            dir: dir.to_path_buf(),
        };
        let ts = v.write_timestamped(files);
        std::os::unix::fs::symlink(&ts, dir.join("..data")).unwrap();
        for f in Self::FILES {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
        v
    }

    /// A new `..<timestamp>` folder holding `files`; its name (relative).
    fn write_timestamped(&self, files: &[(&str, String)]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let name = format!(
            "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let ts = self.dir.join(&name);
        std::fs::create_dir(&ts).unwrap();
        for (f, body) in files {
            std::fs::write(ts.join(f), body).unwrap();
        }
        name
    }

    /// kubelet's update: new folder, `..data_tmp` -> it, rename over `..data`, remove the old
    /// folder. Returns the instant of the rename, when the new files became visible.
    fn rotate(&self, files: &[(&str, String)]) -> Instant {
        let old = std::fs::read_link(self.dir.join("..data")).unwrap();
        let new = self.write_timestamped(files);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        let swapped = Instant::now();
        std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        swapped
    }
}

fn identity_files(pki: &Pki, leaf: &Leaf) -> Vec<(&'static str, String)> {
    vec![
        ("ca.crt", pki.anchor_pem()),
        ("tls.crt", leaf.cert_pem.clone()),
        ("tls.key", leaf.key_pem.clone()),
    ]
}

/// One handshake and one request on a new connection.
struct Attempt {
    started: Instant,
    handshake_done: Instant,
    serial: Vec<u8>,
}

/// A new mTLS connection (ALPN http/1.1), the leaf the gateway presented, then one request
/// through it to the backend. Any failure is an error naming the step.
async fn one_request(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> Result<Attempt, String> {
    let started = Instant::now();
    let mut tls = tokio::time::timeout(
        Duration::from_secs(5),
        crossgate::tls::connect(addr, client, GATEWAY),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    let handshake_done = Instant::now();
    let serial = serial_of_der(&tls.get_ref().1.peer_certificates().ok_or("no peer leaf")?[0]);
    let req = format!("GET / HTTP/1.1\r\nhost: {WEB}\r\nconnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut raw))
        .await
        .map_err(|_| "response timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let (status, _, body) = parse_response(&String::from_utf8_lossy(&raw));
    if status != 200 || body != "ok" {
        return Err(format!("answer {status} {body:?}"));
    }
    Ok(Attempt {
        started,
        handshake_done,
        serial,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_data_swap_under_load() {
    watch_src_panics();
    let pki = Pki::new().unwrap();
    let first = pki.leaf(GATEWAY).unwrap();
    let second = pki.leaf(GATEWAY).unwrap();
    let (old_serial, new_serial) = (
        serial_of_pem(&first.cert_pem),
        serial_of_pem(&second.cert_pem),
    );
    assert_ne!(old_serial, new_serial);

    let backend = Backend::start().await;
    let root = tempfile::tempdir().unwrap();
    let volume = SecretVolume::create(&root.path().join("identity"), &identity_files(&pki, &first));
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [identity]\ntrust_anchors = \"identity/ca.crt\"\ncertificate = \"identity/tls.crt\"\n\
         key = \"identity/tls.key\"\nreload_interval = \"100ms\"\n{}",
        static_routes(&[(WEB, backend.addr)])
    );
    let config = Config::parse(&toml, "k8s.toml", root.path(), &Overrides::default()).unwrap();
    let gw = crossgate::Gateway::build(&config).unwrap();
    let listeners = crossgate::Listeners::bind(&config.server).await.unwrap();
    let (addr, admin) = listeners.addrs().unwrap();
    let (stop_gw, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(crossgate::run(gw, listeners, async {
        let _ = stopped.await;
    }));
    while !http_support::admin_ready(admin).await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Clients: new connection per request, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = support::client_config(&pki, &pki.leaf(FRONTEND).unwrap(), &[b"http/1.1"]);
        let (stop, attempts, failures) = (stop.clone(), attempts.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match one_request(addr, client.clone()).await {
                    Ok(a) => attempts.lock().unwrap().push(a),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(700)).await;
    let swapped = volume.rotate(&identity_files(&pki, &second));
    // Run until the new leaf has been served for a while (bounded: 10 s).
    let deadline = swapped + Duration::from_secs(10);
    loop {
        let seen_new = attempts
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.serial == new_serial);
        if seen_new || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let before = attempts.iter().filter(|a| a.serial == old_serial).count();
    let after = attempts.iter().filter(|a| a.serial == new_serial).count();
    let first_new = attempts
        .iter()
        .filter(|a| a.serial == new_serial)
        .map(|a| a.handshake_done)
        .min();
    let listing: Vec<_> = std::fs::read_dir(&volume.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    eprintln!(
        "k8s rotation: {} requests ({before} with the old leaf, {after} with the new), {} failed; \
         volume after the swap: {listing:?}",
        attempts.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed handshakes or requests: {failures:?}"
    );
    assert!(before > 0, "no request before the swap");
    assert_eq!(
        before + after,
        attempts.len(),
        "a handshake presented a leaf that is neither the old nor the new one"
    );
    let first_new = first_new.unwrap_or_else(|| {
        panic!("the new leaf was never presented within 10 s of the ..data swap")
    });
    eprintln!(
        "k8s rotation: first handshake presenting the new leaf completed {:?} after the ..data \
         swap (reload_interval 100ms)",
        first_new.duration_since(swapped)
    );
    // Once the new leaf is served, every handshake that starts later presents it.
    let stale: Vec<_> = attempts
        .iter()
        .filter(|a| a.started > first_new && a.serial != new_serial)
        .map(|a| a.started.duration_since(first_new))
        .collect();
    assert!(
        stale.is_empty(),
        "handshakes started after the first new-leaf handshake still got the old leaf: {stale:?}"
    );
    assert!(after >= CLIENTS, "too few requests after the swap: {after}");

    let _ = stop_gw.send(());
    join_within(served, Duration::from_secs(10), "the gateway's run task").await;
    assert_no_src_panic();
}
