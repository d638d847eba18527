//! One long-lived HTTP/2 session behind the transport header (the captured H2-hint header, as a
//! Linkerd source proxy holds one open) through everything an operator does to a running
//! gateway, on the binary: the leaf rotated, the trust anchors rotated the way Linkerd rotates
//! them (the new root added to the bundle, the gateway's leaf from the new root, the old root
//! removed), each by SIGHUP; then SIGTERM. The session's client sends requests all along and
//! none fails; each step is proven in force by a new connection; after SIGTERM the client
//! reads the gateway's GOAWAY and its connection's end within `drain_timeout`, as it measures.
//! A request the client opens while the GOAWAY is on its way may be refused unprocessed (never
//! written, or above the final GOAWAY's last stream id: RFC 9113 6.8, safe to retry); such
//! requests are counted apart and proven never to have reached the backend.

mod http_support;
mod support;

use crossgate::certs::{GATEWAY_IDENTITY, Pki};
use http_support::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ALPN_TRANSPORT, FRONTEND, GATEWAY, client_config, serial_of_der, serial_of_pem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Replaces `name` in the gateway's folder by renaming a complete file over it.
fn install(gw: &BinaryGateway, name: &str, text: &str) {
    let tmp = gw.file(&format!("{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, gw.file(name)).unwrap();
}

/// SIGHUP, then waits until the `n`th identity reload has succeeded.
async fn reload(gw: &BinaryGateway, n: usize) {
    gw.signal("HUP").await;
    gw.wait_metric(&format!("identity_reloads_total{{result=\"ok\"}} {n}"))
        .await;
}

/// A new mTLS connection as `config`: the serial of the leaf the gateway presented, and whether
/// one plain-mode HTTP/1.1 request through it was answered 200 (`None`: refused).
async fn new_connection(
    gw: &BinaryGateway,
    config: Arc<rustls::ClientConfig>,
) -> Option<(Vec<u8>, bool)> {
    let mut tls = crossgate::tls::connect(gw.listen, config, GATEWAY)
        .await
        .ok()?;
    let serial = serial_of_der(&tls.get_ref().1.peer_certificates()?[0]);
    let req = format!("GET /new HTTP/1.1\r\nhost: {PODINFO}\r\nconnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    Some((serial, answer.starts_with(b"HTTP/1.1 200")))
}

/// What the session's client saw.
#[derive(Default)]
struct Session {
    ok: AtomicUsize,
    /// Requests that failed: sent and not answered `200 ok`.
    failures: Mutex<Vec<String>>,
    /// The paths of requests the gateway's GOAWAY refused unprocessed: never written (hyper's
    /// `Canceled`), or on a stream above the final GOAWAY's last stream id (`NO_ERROR`), which
    /// RFC 9113 6.8 lets a client retry elsewhere. hyper's HTTP/2 client may still open a
    /// stream after the first, graceful GOAWAY (last id 2^31-1) and before the final one.
    refused: Mutex<Vec<String>>,
}

/// True when `e` says the request was not processed by the server: never sent, or refused by
/// a graceful GOAWAY.
fn refused_unprocessed(e: &hyper::Error) -> bool {
    use std::error::Error;
    let goaway = e
        .source()
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .is_some_and(|h| {
            h.is_go_away() && h.is_remote() && h.reason() == Some(h2::Reason::NO_ERROR)
        });
    e.is_canceled() || goaway
}

impl Session {
    /// Waits (10 s at most) until `more` requests past `from` were answered.
    async fn progress(&self, from: usize, more: usize, what: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok.load(Ordering::SeqCst) < from + more {
            assert!(Instant::now() < deadline, "the session stalled {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.ok.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_h2_session_across_leaf_and_anchor_rotation_then_sigterm() {
    let backend = Backend::start().await;
    let routes = static_routes(&[(PODINFO, backend.addr)]);
    let mut gw = BinaryGateway::start_logged(
        &format!("drain_timeout = \"{}s\"", DRAIN_TIMEOUT.as_secs()),
        // In [identity]: only SIGHUP reloads, so each step is the one the test made.
        &format!("reload_interval = \"1h\"\n{routes}"),
        "info",
        false,
    )
    .await;
    let old = &gw.pki;
    let next = Pki::new().unwrap();
    let bundle = format!("{}{}", old.anchor_pem(), next.anchor_pem());

    // The session: the captured H2-hint header, then HTTP/2; its client trusts the old root
    // only, as a source proxy that has not rotated yet. Its end is timed by the client.
    let tls = connect_tls(
        gw.listen,
        gw.client(FRONTEND, ALPN_TRANSPORT),
        Some(&support::vector("h2-hint.hex")),
    )
    .await;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<(Instant, String)>();
    tokio::spawn(async move {
        let r = conn.await;
        let _ = ended_tx.send((Instant::now(), format!("{r:?}")));
    });
    let session = Arc::new(Session::default());
    let goaway_seen: Arc<Mutex<Option<Instant>>> = Arc::default();
    // Two request loops on the one connection, as concurrent callers share a proxy's session;
    // one sends HTTP/1.1 upgraded by the source proxy (`l5d-orig-proto`), one HTTP/2.
    let mut loops = Vec::new();
    for (i, orig) in [(0, Some("HTTP/1.1")), (1, None)] {
        let (mut send, session, goaway_seen) = (send.clone(), session.clone(), goaway_seen.clone());
        loops.push(tokio::spawn(async move {
            let going_away = || {
                goaway_seen.lock().unwrap().get_or_insert(Instant::now());
            };
            for n in 0.. {
                // The gateway's GOAWAY: the connection takes no new request; nothing was sent.
                if send.ready().await.is_err() {
                    return going_away();
                }
                let headers: Vec<(&str, &str)> =
                    orig.iter().map(|o| ("l5d-orig-proto", *o)).collect();
                let path = format!("/loop{i}/{n}");
                let req = get(&format!("http://{PODINFO}{path}"), &headers);
                match send.send_request(req).await {
                    Ok(resp) => {
                        let a = collect(resp).await;
                        if a.status == 200 && &a.body[..] == b"ok" {
                            session.ok.fetch_add(1, Ordering::SeqCst);
                        } else {
                            let failed = format!("{path}: {a:?}");
                            session.failures.lock().unwrap().push(failed);
                        }
                    }
                    Err(e) if refused_unprocessed(&e) => {
                        session.refused.lock().unwrap().push(path);
                        return going_away();
                    }
                    Err(e) => session
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("{path}: {e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    drop(send);
    let mut done = session.progress(0, 20, "before any rotation").await;
    let old_client = client_config(old, &old.leaf(FRONTEND).unwrap(), &[b"http/1.1"]);

    // 1. The leaf rotated (same root).
    let leaf = old.leaf(GATEWAY_IDENTITY).unwrap();
    install(&gw, "tls.crt", &leaf.cert_pem);
    install(&gw, "tls.key", &leaf.key_pem);
    reload(&gw, 1).await;
    let (serial, served) = new_connection(&gw, old_client.clone())
        .await
        .expect("leaf rotated");
    assert_eq!((serial, served), (serial_of_pem(&leaf.cert_pem), true));
    done = session.progress(done, 20, "after the leaf rotation").await;

    // 2. The new root added to the bundle: clients of either root are admitted.
    install(&gw, "ca.crt", &bundle);
    reload(&gw, 2).await;
    let next_client = client_config(&next, &next.leaf(FRONTEND).unwrap(), &[b"http/1.1"]);
    let with_bundle = |pki: &Pki| {
        let leaf = pki.leaf(FRONTEND).unwrap();
        let alpn: &[&[u8]] = &[b"http/1.1"];
        crossgate::tls::client_config_from_pem(&bundle, &leaf.cert_pem, &leaf.key_pem, alpn)
            .unwrap()
    };
    let (old_via_bundle, next_via_bundle) = (with_bundle(old), with_bundle(&next));
    assert_eq!(
        new_connection(&gw, next_via_bundle.clone())
            .await
            .map(|c| c.1),
        Some(true)
    );
    done = session.progress(done, 20, "after the bundle").await;

    // 3. The gateway's leaf from the new root (its issuer in the chain).
    let next_leaf = next.leaf(GATEWAY_IDENTITY).unwrap();
    install(&gw, "tls.crt", &next_leaf.cert_pem);
    install(&gw, "tls.key", &next_leaf.key_pem);
    reload(&gw, 3).await;
    let (serial, served) = new_connection(&gw, next_client.clone())
        .await
        .expect("a client of the new root only");
    assert_eq!((serial, served), (serial_of_pem(&next_leaf.cert_pem), true));
    done = session
        .progress(done, 20, "after the leaf from the new root")
        .await;

    // 4. The old root removed: a new client of it is refused; the session keeps going.
    install(&gw, "ca.crt", &next.anchor_pem());
    reload(&gw, 4).await;
    assert_ne!(
        new_connection(&gw, old_via_bundle).await.map(|c| c.1),
        Some(true),
        "a client of the removed root was served"
    );
    done = session
        .progress(done, 20, "after the old root was removed")
        .await;
    let (failures, refused) = (
        session.failures.lock().unwrap().clone(),
        session.refused.lock().unwrap().clone(),
    );
    assert!(
        failures.is_empty() && refused.is_empty(),
        "requests failed during the rotations: {failures:?} {refused:?}"
    );

    // SIGTERM: the session's client reads the GOAWAY and the connection's end, soon and within
    // drain_timeout; nothing it had sent fails.
    let term = Instant::now();
    gw.signal("TERM").await;
    let (ended, how) = within(10, "the session's end after SIGTERM", ended_rx)
        .await
        .unwrap();
    for l in loops {
        within(5, "the request loops", l).await.unwrap();
    }
    let (to_end, to_goaway) = (
        ended.duration_since(term),
        goaway_seen.lock().unwrap().map(|g| g.duration_since(term)),
    );
    let (failures, refused) = (
        session.failures.lock().unwrap().clone(),
        session.refused.lock().unwrap().clone(),
    );
    eprintln!(
        "rotation_drain: {done} requests on one HTTP/2 session through a leaf and an anchor \
         rotation, {} after SIGTERM, {} refused unprocessed by the GOAWAY; GOAWAY seen after \
         {to_goaway:?}, connection ended ({how}) after {to_end:?} (drain_timeout \
         {DRAIN_TIMEOUT:?})",
        session.ok.load(Ordering::SeqCst) - done,
        refused.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    // What the GOAWAY refused never reached the backend, and every answered request did:
    // nothing the gateway took was lost.
    let seen: Vec<String> = backend
        .seen()
        .iter()
        .map(|s| s.uri.path().to_string())
        .collect();
    let looped = seen.iter().filter(|p| p.starts_with("/loop")).count();
    assert!(
        refused.iter().all(|p| !seen.contains(p)),
        "refused {refused:?}, yet processed"
    );
    assert_eq!(
        looped,
        session.ok.load(Ordering::SeqCst),
        "backend: {seen:?}"
    );
    assert!(
        to_goaway.is_some(),
        "the client never saw the connection go away"
    );
    assert!(
        to_end < DRAIN_TIMEOUT,
        "the session ended {to_end:?} after SIGTERM"
    );
    let status = gw.wait_exit(15).await;
    let stderr = gw.stderr();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.contains("drained: all connections closed"),
        "{last}\n{stderr}"
    );
}
