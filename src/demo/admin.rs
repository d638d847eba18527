//! The demo's admin step: `/ready`, and the lines of `/metrics` the earlier steps moved,
//! with the mean latency per target.

use anyhow::ensure;
use std::net::SocketAddr;

/// Reads `/ready` and `/metrics` from the admin port and prints what the demo did to them.
pub async fn step(admin_addr: SocketAddr) -> anyhow::Result<()> {
    use super::admin_get;
    let ready = admin_get(admin_addr, "/ready").await?;
    println!(
        "   GET /ready -> {}",
        ready.lines().next().unwrap_or_default()
    );
    let metrics = admin_get(admin_addr, "/metrics").await?;
    println!("   GET /metrics (some lines):");
    for line in metrics.lines().filter(|l| {
        (l.starts_with("tcp_open_total")
            || l.starts_with("tcp_read_bytes_total")
            || l.starts_with("inbound_tls_handshake_failures_total")
            || l.starts_with("inbound_tcp_errors_total")
            || l.starts_with("inbound_tcp_authz_allow_total")
            || l.starts_with("response_total")
            || l.starts_with("inbound_http_authz_deny_total")
            || l.starts_with("discovery_updates_total"))
            && !l.ends_with(" 0")
    }) {
        println!("     {line}");
    }
    ensure!(
        metrics.contains("inbound_tls_handshake_failures_total{reason=\"untrusted\"} 1"),
        "intruder not counted"
    );
    println!("   per-target latency:");
    for line in latency_lines(&metrics) {
        println!("     {line}");
    }
    Ok(())
}

/// `authority: mean ms over n requests` for each target in `response_latency_ms`.
fn latency_lines(metrics: &str) -> Vec<String> {
    let mut sums = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for line in metrics.lines() {
        let sum = line.starts_with("response_latency_ms_sum{");
        let count = line.starts_with("response_latency_ms_count{");
        if !(sum || count) {
            continue;
        }
        let Some(auth) = line
            .split("authority=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let e = sums.entry(auth.to_string()).or_default();
        if sum { e.0 += v } else { e.1 += v }
    }
    sums.into_iter()
        .filter(|(_, (_, n))| *n > 0.0)
        .map(|(a, (s, n))| format!("{a}: {n} responses, mean {:.2} ms", s / n))
        .collect()
}
