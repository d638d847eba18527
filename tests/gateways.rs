//! `crossgate gateways` (the built binary) against an in-process prober: the table and the
//! JSON checked field by field against the prober's own metrics, with one link alive and one
//! dead; exit codes 0 (all alive), 1 (one dead), 2 (prober unreadable, or not a prober, said
//! so); `--prober` as people type it (the prober's origin).
//! Links probe once (period 1h, the first probe at start), so the metrics hold still.

mod probe_support;
mod support;
use crossgate::metrics::LATENCY_BUCKETS_MS;
use probe_support::*;
use std::time::Duration;
use support::*;

/// Runs `crossgate gateways ARGS`; (exit code, stdout, stderr).
async fn gateways(args: &[&str]) -> (i32, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .arg("gateways")
        .args(args)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("gateways finished within 15 s")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The bounds of the bucket that holds `ms`, the lowest starting at 0.
fn bucket_of(ms: f64) -> (f64, f64) {
    let i = LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap();
    let lower = if i == 0 {
        0.0
    } else {
        LATENCY_BUCKETS_MS[i - 1]
    };
    (lower, LATENCY_BUCKETS_MS[i])
}

/// With one observation, quantile q lies q of the way through its bucket.
fn one_observation_quantile(ms: f64, q: f64) -> f64 {
    let (lower, upper) = bucket_of(ms);
    lower + (upper - lower) * q
}

fn as_table_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

#[tokio::test]
async fn table_and_json_with_one_gateway_dead() {
    let gw = start("").await;
    let files = prober_files(&gw);
    let links = format!(
        "{}{}",
        link("east", "127.0.0.1", gw.admin.port(), Some(GATEWAY), "1h", 1),
        link("west", "127.0.0.1", free_port(), Some(GATEWAY), "1h", 1),
    );
    let prober = start_prober(Some(&files), &links).await;
    prober.wait(&probes("east", true), |v| v == 1.0).await;
    prober.wait(&probes("west", false), |v| v == 1.0).await;
    let m = prober.metrics().await;
    let latency = value(&m, &cluster("gateway_latency", "east")).unwrap();
    // Estimates are given to the microsecond.
    let [p50, p95, p99] =
        [0.5, 0.95, 0.99].map(|q| (one_observation_quantile(latency, q) * 1000.0).round() / 1000.0);

    let (code, table, err) = gateways(&["--prober", &prober.url()]).await;
    assert_eq!(code, 1, "one gateway dead: {err}");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec![
                "CLUSTER", "ALIVE", "NUM_SVC", "LATENCY", "P50", "P95", "P99"
            ],
            vec![
                "east",
                "true",
                "2",
                &as_table_ms(latency),
                &as_table_ms(p50),
                &as_table_ms(p95),
                &as_table_ms(p99),
            ],
            vec!["west", "false", "2", "-", "-", "-", "-"],
        ],
        "{table}"
    );

    let (code, json, err) = gateways(&["--prober", &prober.url(), "-o", "json"]).await;
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json}");
    let (east, west) = (&rows[0], &rows[1]);
    assert_eq!(east["clusterName"], "east");
    assert_eq!(east["alive"], true);
    assert_eq!(east["numberOfServices"], 2);
    // The JSON gives milliseconds to the microsecond, like the estimates.
    let got = east["latency"].as_f64().unwrap();
    assert!(
        (got - latency).abs() <= 0.0005,
        "latency: {got} != {latency}"
    );
    for (key, want) in [("p50", p50), ("p95", p95), ("p99", p99)] {
        let got = east[key].as_f64().unwrap();
        // The JSON rounds estimates to microseconds.
        assert!((got - want).abs() <= 0.0005, "{key}: {got} != {want}");
    }
    assert_eq!(west["clusterName"], "west");
    assert_eq!(west["alive"], false);
    assert_eq!(west["numberOfServices"], 2);
    for key in ["latency", "p50", "p95", "p99"] {
        assert!(west[key].is_null(), "west {key}: {}", west[key]);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn exit_0_when_every_gateway_is_alive_after_waiting_for_the_first_probe() {
    let gw = start("").await;
    let prober = start_prober(
        None,
        &link("east", "127.0.0.1", gw.admin.port(), None, "1h", 3),
    )
    .await;
    // No wait for the probe here: --wait waits for it.
    let (code, table, err) = gateways(&["--prober", &prober.url(), "--wait", "10s"]).await;
    assert_eq!(code, 0, "{table}{err}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("east     true"),
        "{table}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn exit_2_when_the_prober_cannot_be_read() {
    let closed = format!("http://127.0.0.1:{}/metrics", free_port());
    let (code, out, err) = gateways(&["--prober", &closed]).await;
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("cannot read the prober"), "{err}");

    // --wait keeps trying until its deadline, then gives up the same way.
    let started = std::time::Instant::now();
    let (code, _, _) = gateways(&["--prober", &closed, "--wait", "500ms"]).await;
    assert_eq!(code, 2);
    assert!(started.elapsed() >= Duration::from_millis(500));

    // A gateway's /metrics is readable, but it is not a prober.
    let gw = start("").await;
    let url = format!("http://{}/metrics", gw.admin);
    let (code, _, err) = gateways(&["--prober", &url, "-o", "json"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{url} is not a crossgate prober's /metrics")),
        "{err}"
    );
    assert!(err.contains("a gateway's admin port?"), "{err}");
    // A web page, and a 404, say the same in their own words.
    let page = serve_once("200 OK", "<html><body>hello</body></html>").await;
    let (code, _, err) = gateways(&["--prober", &page]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("is not a crossgate prober's /metrics (not Prometheus text"),
        "{err}"
    );
    let missing = serve_once("404 Not Found", "").await;
    let (code, _, err) = gateways(&["--prober", &missing]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("is not a crossgate prober's /metrics (it answered 404"),
        "{err}"
    );
    gw.shutdown().await;
}

/// A plain HTTP server answering one request with `status` and `body`; its URL.
async fn serve_once(status: &'static str, body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read(&mut b).await.unwrap() == 0 {
                return;
            }
            head.push(b[0]);
        }
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(answer.as_bytes()).await.unwrap();
    });
    url
}

#[tokio::test]
async fn the_probers_origin_is_enough() {
    let gw = start("").await;
    let prober = start_prober(
        None,
        &link("east", "127.0.0.1", gw.admin.port(), None, "1h", 3),
    )
    .await;
    // As people type it: no /metrics, and no scheme either.
    for origin in [format!("http://{}", prober.admin), prober.admin.to_string()] {
        let (code, table, err) = gateways(&["--prober", &origin, "--wait", "10s"]).await;
        assert_eq!(code, 0, "{origin}: {table}{err}");
        assert!(
            table.lines().nth(1).unwrap().starts_with("east "),
            "{table}"
        );
    }
    gw.shutdown().await;
}
