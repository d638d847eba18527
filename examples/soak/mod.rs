//! `loadkit soak ADDR SNI CA CERT KEY CONNS SECONDS TARGET BACKEND ADMIN PID`: the client side
//! of `benches/soak.sh`.
//!
//! Serves a keep-alive HTTP/1.1 backend (`200 ok`) on BACKEND, opens CONNS mTLS connections to
//! the gateway at ADDR in plain HTTP mode (ALPN http/1.1), and holds them SECONDS. A tenth of
//! them send one request a second (`l5d-dst-canonical: TARGET`), the rest stay idle. Every 10 s
//! it samples the gateway's VmRSS (/proc/PID/status) and `tcp_open_connections` (from ADMIN's
//! `/metrics`) and prints a line of the curve. At the end every held connection sends one more
//! request. Verdict: bounded (every sample of the last third within 10 % of the baseline) and
//! nothing lost (all CONNS established, no request failed); exit 1 otherwise.
//!
//! The baseline is the first sample after a warm-up of 60 s (a fifth of shorter soaks), not the
//! one taken right after connecting: the gateway gives an HTTP connection its buffers only once
//! the client speaks, and the upstream pool fills as traffic starts, so the first minute grows by
//! design (127 to 157 MiB at 10,000 connections). Both are printed.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Sender = SendRequest<Empty<Bytes>>;

/// Request outcomes.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.len() == 11,
        "usage: loadkit soak ADDR SNI CA CERT KEY CONNS SECONDS TARGET BACKEND ADMIN PID"
    );
    let addr: SocketAddr = args[0].parse()?;
    let sni = args[1].clone();
    let read = |i: usize| std::fs::read_to_string(&args[i]);
    let config =
        crossgate::tls::client_config_from_pem(&read(2)?, &read(3)?, &read(4)?, &[b"http/1.1"])?;
    let conns: usize = args[5].parse()?;
    let seconds: u64 = args[6].parse()?;
    let target = Arc::new(args[7].clone());
    let admin: SocketAddr = args[9].parse()?;
    let pid: u32 = args[10].parse()?;
    tokio::spawn(backend(TcpListener::bind(&args[8]).await?));

    let start = Instant::now();
    let senders = connect_all(addr, &sni, config, conns).await;
    let established = senders.len();
    println!(
        "connected {established}/{conns} in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // A tenth send one request a second, spread over the second.
    let counts = Arc::new(Counts::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut senders = senders.into_iter();
    let active: Vec<_> = senders
        .by_ref()
        .take(established / 10)
        .enumerate()
        .map(|(i, s)| {
            let offset = Duration::from_millis((i * 1000 / (established / 10).max(1)) as u64);
            tokio::spawn(traffic(
                s,
                target.clone(),
                counts.clone(),
                stop.clone(),
                offset,
            ))
        })
        .collect();
    let idle: Vec<Sender> = senders.collect();

    println!("{:>6} {:>9} {:>10}", "t_s", "rss_mib", "open_conns");
    let held = Instant::now();
    let mut samples = Vec::new();
    loop {
        let t = held.elapsed().as_secs();
        let rss = rss_mib(pid)?;
        let open = open_connections(admin).await.unwrap_or(-1.0);
        println!("{t:>6} {rss:>9.1} {open:>10}");
        samples.push((t, rss));
        if t >= seconds {
            break;
        }
        let next = Duration::from_secs((t / 10 + 1) * 10).min(Duration::from_secs(seconds));
        tokio::time::sleep(next.saturating_sub(held.elapsed())).await;
    }
    let _ = stop_tx.send(true);
    let mut all = idle;
    for a in active {
        if let Ok(Some(s)) = a.await {
            all.push(s);
        }
    }
    let traffic_ok = counts.ok.load(Ordering::SeqCst);
    let traffic_failed = counts.failed.load(Ordering::SeqCst);

    // Every held connection still works.
    let lost_before = established - all.len();
    let end = Arc::new(Counts::default());
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let checks: Vec<_> = all
        .into_iter()
        .map(|mut s| {
            let (target, end, sem) = (target.clone(), end.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                let ok = request(&mut s, &target).await;
                let c = if ok { &end.ok } else { &end.failed };
                c.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for c in checks {
        let _ = c.await;
    }
    let end_ok = end.ok.load(Ordering::SeqCst);
    let end_failed = end.failed.load(Ordering::SeqCst);

    let at_connect = samples[0].1;
    let warmup = 60.min(seconds / 5);
    let (warm_t, first) = *samples
        .iter()
        .find(|(t, _)| *t >= warmup)
        .unwrap_or(&samples[0]);
    let last_third: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t * 3 >= seconds * 2)
        .map(|s| s.1)
        .collect();
    let worst = last_third.iter().cloned().fold(first, f64::max);
    let bounded = last_third.iter().all(|r| (r - first).abs() <= first * 0.10);
    let lost = (conns - established) as u64 + lost_before as u64 + traffic_failed + end_failed;
    println!(
        "traffic: {traffic_ok} requests ok, {traffic_failed} failed; final check: {end_ok} \
         connections answered, {end_failed} failed; {lost_before} active connections ended early"
    );
    let last = samples[samples.len() - 1].1;
    println!(
        "rss: {at_connect:.1} MiB right after connecting, baseline {first:.1} MiB at {warm_t} s; \
         last third max {worst:.1} MiB ({:+.1} % of the baseline), at the end {last:.1} MiB",
        (worst - first) / first * 100.0
    );
    let verdict = if bounded && lost == 0 { "PASS" } else { "FAIL" };
    println!(
        "verdict: {verdict}: rss {} (last third within 10 % of the baseline), {} \
         (connections not established, ended or failing: {lost})",
        if bounded { "bounded" } else { "NOT bounded" },
        if lost == 0 {
            "no connection lost"
        } else {
            "connections LOST"
        },
    );
    anyhow::ensure!(verdict == "PASS", "soak failed");
    Ok(())
}

/// Opens `n` mTLS HTTP/1.1 connections, 64 handshakes at a time.
async fn connect_all(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
    n: usize,
) -> Vec<Sender> {
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (config, sni, sem) = (config.clone(), sni.to_string(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.ok()?;
                let tls = crossgate::tls::connect(addr, config, &sni).await.ok()?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .ok()?;
                tokio::spawn(conn);
                Some(send)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            out.push(s);
        }
    }
    out
}

/// One request a second on `send` until `stop`; gives the connection back unless it failed.
async fn traffic(
    mut send: Sender,
    target: Arc<String>,
    counts: Arc<Counts>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    offset: Duration,
) -> Option<Sender> {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return Some(send),
        }
        if request(&mut send, &target).await {
            counts.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
}

/// One GET through the gateway; true when it answered 200 `ok` within 10 s.
async fn request(send: &mut Sender, target: &str) -> bool {
    let req = http::Request::get("/")
        .header("host", target)
        .header("l5d-dst-canonical", target)
        .body(Empty::new())
        .expect("request");
    let done = async {
        send.ready().await.ok()?;
        let resp = send.send_request(req).await.ok()?;
        let status = resp.status();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(status == 200 && body == "ok")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), done).await,
        Ok(Some(true))
    )
}

/// The backend: HTTP/1.1 keep-alive, `200 ok` to everything.
async fn backend(l: TcpListener) {
    while let Ok((tcp, _)) = l.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The gateway's resident set in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(kib / 1024.0)
}

/// The sum of the inbound `tcp_open_connections` series on the admin port's `/metrics`.
async fn open_connections(admin: SocketAddr) -> anyhow::Result<f64> {
    let mut s = tokio::net::TcpStream::connect(admin).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("tcp_open_connections{") && l.contains("direction=\"inbound\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
