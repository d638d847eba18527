//! The runtime the binary picks: `threads` when set, else one worker per core the process may
//! use, each a current-thread runtime (the main thread, which accepts on the gateway port, and
//! `threads - 1` worker threads it hands connections to, each with its own upstream). Pinned
//! to one core with `taskset`, as a pod limited to one CPU is, the default is one thread; the
//! start log says which.

mod http_support;
mod support;

use http_support::BinaryGateway;

/// The `runtime` line of the gateway's log.
fn runtime_line(gw: &BinaryGateway) -> String {
    let log = gw.stderr();
    log.lines()
        .find(|l| l.contains(" runtime") && l.contains("scheduler"))
        .unwrap_or_else(|| panic!("no runtime line in\n{log}"))
        .to_string()
}

#[tokio::test]
async fn one_core_by_default_runs_the_current_thread_scheduler() {
    let mut gw = BinaryGateway::start_under(&["taskset", "-c", "0"], "", "", "info", false).await;
    let line = runtime_line(&gw);
    assert!(line.contains("threads=1"), "{line}");
    assert!(line.contains("cores available"), "{line}");
    assert!(line.contains("current-thread"), "{line}");
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}

#[tokio::test]
async fn threads_set_runs_that_many_workers() {
    let mut gw =
        BinaryGateway::start_under(&["taskset", "-c", "0"], "threads = 3", "", "info", false).await;
    let line = runtime_line(&gw);
    assert!(line.contains("threads=3"), "{line}");
    assert!(line.contains("server.threads"), "{line}");
    assert!(line.contains("current-thread per worker"), "{line}");
    // Two worker threads beside the main one (`comm` holds 15 bytes of the name).
    let tasks = std::fs::read_dir(format!("/proc/{}/task", gw.pid())).unwrap();
    let workers = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("crossgate-worke"))
        .count();
    assert_eq!(workers, 2);
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}

/// A thread's CPU time (utime + stime, in ticks) in the gateway process, by its name.
fn ticks(gw: &BinaryGateway, name: &str) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", gw.pid())).unwrap();
    tasks
        .filter_map(|t| {
            let path = t.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            (comm.trim() == name).then(|| {
                let stat = std::fs::read_to_string(path.join("stat")).unwrap();
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                let f: Vec<&str> = after.split(' ').collect();
                f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
            })
        })
        .sum()
}

/// The CPU ticks of the main thread and of the worker thread.
fn main_and_worker(gw: &BinaryGateway) -> (u64, u64) {
    let main = std::fs::read_to_string(format!("/proc/{}/comm", gw.pid())).unwrap();
    (ticks(gw, main.trim()), ticks(gw, "crossgate-worke"))
}

/// Held by each test below that reads which thread did the work: another's load on the two
/// cores would make the main thread look busy.
static ONE_LOAD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The target the `threads = 2` gateways below route to `backend`.
const TARGET: &str = "web.east.svc.cluster.local";

/// A backend and a gateway with `threads = 2` routing [`TARGET`] to it.
async fn two_threads() -> (http_support::Backend, BinaryGateway) {
    let backend = http_support::Backend::start().await;
    let routes = http_support::static_routes(&[(&format!("{TARGET}:80"), backend.addr)]);
    (backend, BinaryGateway::start("threads = 2", &routes).await)
}

/// One request on a connection of its own to [`TARGET`]: whether it was answered 200.
async fn one_request(
    addr: std::net::SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = crossgate::tls::connect(addr, client, support::GATEWAY)
        .await
        .unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: {TARGET}\r\nconnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200")
}

/// One request per connection, one connection at a time, through `threads = 2`: a load that
/// fits on one thread stays on the main one, and the worker does none of it (threads that
/// share such a load each sleep and wake for their part, 1.1× the CPU per request).
#[tokio::test]
async fn a_light_load_stays_on_one_thread() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let (backend, mut gw) = two_threads().await;
    let (main0, worker0) = main_and_worker(&gw);
    let client = gw.client(support::FRONTEND, &[b"http/1.1"]);
    for _ in 0..60 {
        assert!(one_request(gw.listen, client.clone()).await);
    }
    assert_eq!(backend.count(), 60);
    let (main1, worker1) = main_and_worker(&gw);
    assert!(main1 > main0, "the main thread did no work");
    // A tick is 10 ms: a worker that served nothing shows none (at most one, at a boundary).
    assert!(
        worker1 - worker0 <= 1,
        "the worker took {} ticks",
        worker1 - worker0
    );
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}

/// Short connections a few at a time, more of them alive at once than the main thread's
/// slack for connections that stay: they end as fast as they come, so they stay on the main
/// thread, which carries them with time to spare, and the worker does none of it (split over
/// two threads, a full handshake cost 1.07× the CPU of one).
#[tokio::test]
async fn short_connections_a_few_at_a_time_stay_on_one_thread() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let (backend, mut gw) = two_threads().await;
    let client = gw.client(support::FRONTEND, &[b"http/1.1"]);
    // Connections that end: the main thread learns that they do not stay.
    for _ in 0..10 {
        assert!(one_request(gw.listen, client.clone()).await);
    }
    let (main0, worker0) = main_and_worker(&gw);
    for _ in 0..50 {
        let round = (0..8).map(|_| tokio::spawn(one_request(gw.listen, client.clone())));
        for r in round.collect::<Vec<_>>() {
            assert!(r.await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(backend.count(), 10 + 50 * 8);
    let (main1, worker1) = main_and_worker(&gw);
    assert!(main1 > main0, "the main thread did no work");
    assert!(
        worker1 - worker0 <= 2,
        "the worker took {} ticks, the main thread {}",
        worker1 - worker0,
        main1 - main0
    );
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}

/// Every worker serves: many connections at once through `threads = 2` are all answered, and
/// the worker thread's CPU time grew with them (the main thread hands connections over once
/// it holds more than its slack).
#[tokio::test]
async fn every_worker_serves_the_gateway_port() {
    let _alone = ONE_LOAD_AT_A_TIME.lock().await;
    let (backend, mut gw) = two_threads().await;
    let idle = ticks(&gw, "crossgate-worke");
    let client = gw.client(support::FRONTEND, &[b"http/1.1"]);
    let requests = (0..200).map(|_| tokio::spawn(one_request(gw.listen, client.clone())));
    let mut ok = 0;
    for r in requests.collect::<Vec<_>>() {
        ok += usize::from(r.await.unwrap());
    }
    assert_eq!(ok, 200);
    assert_eq!(backend.count(), 200);
    // The worker thread did handshakes: it spent CPU on this traffic.
    assert!(
        ticks(&gw, "crossgate-worke") > idle,
        "the worker thread did no work"
    );
    gw.signal("TERM").await;
    assert!(gw.wait_exit(15).await.success());
}
