//! `crossgate gateways`: reads a prober's `/metrics` over plain HTTP and prints one row per
//! gateway, `CLUSTER ALIVE NUM_SVC LATENCY` (Linkerd's columns) plus `P50 P95 P99` estimated
//! from the latency histogram as Prometheus's `histogram_quantile` does. The rows are pure
//! functions of the parsed samples; only [`gateways`] and `fetch` do I/O.

use super::openmetrics::{self, Sample};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The default `--prober`: the prober's default admin port on this host.
pub const DEFAULT_PROBER: &str = "http://127.0.0.1:4192/metrics";

/// Exit codes of `crossgate gateways`.
pub const ALL_ALIVE: u8 = 0;
pub const SOME_DEAD: u8 = 1;
pub const UNREADABLE: u8 = 2;

/// How `gateways` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// One gateway, with Linkerd's JSON field names. Latencies in milliseconds; `None` (JSON
/// `null`, `-` in the table) when no probe has succeeded.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRow {
    pub cluster_name: String,
    pub alive: bool,
    pub number_of_services: u64,
    pub latency: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Probes made so far, successful or not (not printed).
    #[serde(skip)]
    pub probes: u64,
    /// Failed probes so far (not printed).
    #[serde(skip)]
    pub failed: u64,
}

/// One row per `gateway_enabled` series, sorted by cluster name.
pub fn rows(samples: &[Sample]) -> Vec<GatewayRow> {
    let cluster = |s: &Sample| s.label("target_cluster_name").map(str::to_string);
    let mut rows: BTreeMap<String, GatewayRow> = BTreeMap::new();
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut successes: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == "gateway_enabled") {
        if let Some(name) = cluster(s) {
            rows.insert(name.clone(), empty_row(name));
        }
    }
    for s in samples {
        let Some(name) = cluster(s) else { continue };
        let Some(row) = rows.get_mut(&name) else {
            continue;
        };
        let count = if s.value.is_finite() && s.value > 0.0 {
            s.value
        } else {
            0.0
        };
        match s.name.as_str() {
            "gateway_alive" => row.alive = s.value == 1.0,
            "gateway_mirrored_services" => row.number_of_services = count as u64,
            "gateway_latency" if s.value.is_finite() => row.latency = Some(s.value),
            "gateway_probes_total" => {
                row.probes += count as u64;
                match s.label("probe_successful") {
                    Some("true") => {
                        successes.insert(name, count);
                    }
                    Some("false") => row.failed = count as u64,
                    _ => {}
                }
            }
            "gateway_probe_latency_ms_bucket" => {
                if let Some(le) = s.label("le").and_then(le_bound) {
                    buckets.entry(name).or_default().push((le, count));
                }
            }
            _ => {}
        }
    }
    for (name, row) in rows.iter_mut() {
        if successes.get(name).copied().unwrap_or(0.0) == 0.0 {
            row.latency = None;
        }
        let b = buckets.get(name).map(Vec::as_slice).unwrap_or_default();
        // Microseconds are the most an estimate from buckets can mean.
        let micros = |v: Option<f64>| v.map(|ms| (ms * 1000.0).round() / 1000.0);
        row.p50 = micros(quantile(0.50, b));
        row.p95 = micros(quantile(0.95, b));
        row.p99 = micros(quantile(0.99, b));
    }
    rows.into_values().collect()
}

fn empty_row(cluster_name: String) -> GatewayRow {
    GatewayRow {
        cluster_name,
        alive: false,
        number_of_services: 0,
        latency: None,
        p50: None,
        p95: None,
        p99: None,
        probes: 0,
        failed: 0,
    }
}

fn le_bound(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => v.parse().ok(),
    }
}

/// The `q` quantile of a histogram given as (upper bound, cumulative count) pairs, as
/// Prometheus's `histogram_quantile`: linear interpolation within the bucket that holds the
/// rank, the lowest bucket starting at 0, and the highest finite bound when the rank falls in
/// the `+Inf` bucket. `None` without observations or without a `+Inf` bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut b = buckets.to_vec();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let &(last_le, total) = b.last()?;
    if last_le != f64::INFINITY || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let i = b.iter().position(|&(_, c)| c >= rank)?;
    let (upper, count) = b[i];
    if upper == f64::INFINITY {
        return Some(if i == 0 { 0.0 } else { b[i - 1].0 });
    }
    let (lower, below) = if i == 0 { (0.0, 0.0) } else { b[i - 1] };
    if count == below {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / (count - below))
}

/// `12ms`; one decimal under 10 ms, so loopback latencies are not all `0ms` or `1ms`.
fn millis(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{ms:.0}ms"),
    }
}

/// The table, columns separated by at least two spaces.
pub fn render_table(rows: &[GatewayRow]) -> String {
    let mut lines = vec![
        [
            "CLUSTER", "ALIVE", "NUM_SVC", "LATENCY", "P50", "P95", "P99",
        ]
        .map(String::from),
    ];
    for r in rows {
        lines.push([
            r.cluster_name.clone(),
            r.alive.to_string(),
            r.number_of_services.to_string(),
            millis(r.latency),
            millis(r.p50),
            millis(r.p95),
            millis(r.p99),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = (0..7)
            .map(|c| format!("{:<w$}", l[c], w = widths[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The JSON list, pretty-printed.
pub fn render_json(rows: &[GatewayRow]) -> String {
    // Serializing plain structs cannot fail.
    serde_json::to_string_pretty(rows).unwrap_or_default() + "\n"
}

/// `crossgate gateways`: reads `url`, prints the rows in `format`, returns the exit code.
/// With `wait`, retries until the prober answers and every gateway it lists has finished at
/// least one probe, or `wait` has passed (then prints what it last read, if anything).
pub async fn gateways(url: &str, format: Format, wait: Option<Duration>) -> u8 {
    let deadline = Instant::now() + wait.unwrap_or_default();
    let mut last: Result<Vec<GatewayRow>, String>;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let bound = remaining.clamp(Duration::from_millis(200), Duration::from_secs(5));
        last = match tokio::time::timeout(bound, read(url)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{url}: no answer within {:.1} s",
                bound.as_secs_f64()
            )),
        };
        let settled = matches!(&last, Ok(rows) if rows.iter().all(|r| r.probes > 0));
        if settled || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100).min(remaining)).await;
    }
    match last {
        Err(e) => {
            eprintln!("error: cannot read the prober: {e}");
            UNREADABLE
        }
        Ok(rows) => {
            match format {
                Format::Table => print!("{}", render_table(&rows)),
                Format::Json => print!("{}", render_json(&rows)),
            }
            if rows.iter().all(|r| r.alive) {
                ALL_ALIVE
            } else {
                SOME_DEAD
            }
        }
    }
}

/// Fetches and parses the prober's metrics at `url` ([`prober_url`]); an error that says so
/// when what answers is not a prober.
pub async fn read(url: &str) -> Result<Vec<GatewayRow>, String> {
    let url = prober_url(url)?;
    let not_prober = |what: &str| {
        format!(
            "{url} is not a crossgate prober's /metrics ({what}); the prober serves it on its \
             [server] admin address, by default http://<prober>:4192/metrics"
        )
    };
    let text = fetch(&url).await.map_err(|e| match e {
        Fetch::Status(status) => not_prober(&format!("it answered {status}")),
        Fetch::Other(e) => format!("{url}: {e}"),
    })?;
    let samples =
        openmetrics::parse(&text).map_err(|e| not_prober(&format!("not Prometheus text: {e}")))?;
    let rows = rows(&samples);
    if rows.is_empty() {
        return Err(not_prober(
            "metrics without gateway_enabled: a gateway's admin port?",
        ));
    }
    Ok(rows)
}

/// `--prober` as people type it: `http://host:port/metrics`, or the prober's origin
/// (`http://host:port`, `host:port`), to which `/metrics` is added.
pub fn prober_url(input: &str) -> Result<String, String> {
    let with_scheme = if input.contains("://") {
        input.to_string()
    } else {
        format!("http://{input}")
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| format!("{input}: not a URL ({e}); e.g. http://127.0.0.1:4192/metrics"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{input}: only http:// URLs are supported (the prober's admin port is plaintext)"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{input}: no host"));
    }
    Ok(match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("" | "/") => format!("{}/metrics", with_scheme.trim_end_matches('/')),
        Some(_) => with_scheme,
    })
}

/// Why a fetch gave no body: an HTTP status other than 200, or anything else (in words).
enum Fetch {
    Status(http::StatusCode),
    Other(String),
}

/// Plain HTTP/1.1 GET of `url`; the body of a 200 answer.
async fn fetch(url: &str) -> Result<String, Fetch> {
    let other = |e: &dyn std::fmt::Display| Fetch::Other(e.to_string());
    let uri: http::Uri = url.parse().map_err(|e| other(&e))?;
    let host = uri.host().ok_or(Fetch::Other("no host".into()))?;
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| {
            Fetch::Other(format!(
                "cannot connect: {e} (is crossgate probe running, its [server] admin there?)"
            ))
        })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| other(&e))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| other(&e))?;
    let result = async {
        let resp = send.send_request(req).await.map_err(|e| other(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), 16 << 20)
            .collect()
            .await
            .map_err(|e| other(&e))?
            .to_bytes();
        if status != http::StatusCode::OK {
            return Err(Fetch::Status(status));
        }
        String::from_utf8(body.to_vec()).map_err(|_| Fetch::Other("body is not UTF-8".into()))
    }
    .await;
    conn.abort();
    result
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
