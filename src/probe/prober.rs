//! One link's probe loop and one probe. A probe resolves the link's address afresh, opens a new
//! TCP connection, makes a full TLS 1.3 handshake when the link names an identity (SNI = that
//! identity, the server's leaf checked for it, the prober's own leaf presented, no resumption),
//! then sends `GET path` over HTTP/1.1: a 2xx answer is a success. Everything after resolution
//! is under the link's `timeout`. What it does not own: the credentials (`probe::Prober`) and
//! the metric families (`probe::metrics`).

use super::config::Link;
use super::metrics::{Failure, LinkMetrics};
use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Answers larger than this are not read to the end; the status is what counts.
const MAX_BODY: usize = 64 * 1024;

/// What one probe needs besides the link: a resolver and, for mTLS, the current client config.
pub struct ProbeContext {
    pub resolver: Result<TokioResolver, String>,
    /// The prober's current client configuration (rebuilt when its identity rotates).
    pub tls: Option<Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>>,
}

/// The consecutive-failure count and liveness of one link.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub alive: bool,
    pub failures: u32,
}

impl Liveness {
    /// The state after a probe: dead after `threshold` consecutive failures, alive again at
    /// the first success. Not yet alive before the first success.
    pub fn after(self, success: bool, threshold: u32) -> Liveness {
        if success {
            return Liveness {
                alive: true,
                failures: 0,
            };
        }
        let failures = self.failures.saturating_add(1);
        Liveness {
            alive: self.alive && failures < threshold,
            failures,
        }
    }
}

/// Probes `link` every period (plus up to 10 % jitter), the first time at once, until dropped.
/// Each change of liveness is logged once at info: alive (at the first success, and again
/// after being dead), dead (after `failure_threshold` failures, never alive included) with the
/// last failure's reason.
pub async fn run(link: Link, ctx: Arc<ProbeContext>, metrics: LinkMetrics) {
    let span = tracing::info_span!("probe", link = %link.name, address = %link.address);
    let mut state = Liveness::default();
    // What was last logged: None before the first verdict.
    let mut announced: Option<bool> = None;
    loop {
        let outcome = probe(&link, &ctx).await;
        match &outcome {
            Ok(latency) => {
                let ms = latency.as_secs_f64() * 1000.0;
                metrics.latency.set(ms);
                metrics.latencies.observe(ms);
                metrics.succeeded.inc();
                tracing::debug!(parent: &span, latency_ms = ms, "probe succeeded");
            }
            Err((reason, detail)) => {
                metrics.failure(*reason).inc();
                metrics.failed.inc();
                tracing::debug!(parent: &span, reason = reason.label(), error = %detail, "probe failed");
            }
        }
        let next = state.after(outcome.is_ok(), link.failure_threshold);
        let verdict = match (next.alive, next.failures >= link.failure_threshold) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => announced,
        };
        if verdict != announced {
            match (&outcome, announced) {
                (Ok(_), None) => tracing::info!(parent: &span, "gateway alive"),
                (Ok(_), Some(_)) => tracing::info!(parent: &span, "gateway alive again"),
                (Err((reason, detail)), _) => tracing::info!(
                    parent: &span,
                    reason = reason.label(),
                    error = %detail,
                    failures = next.failures,
                    "gateway dead"
                ),
            }
            announced = verdict;
        }
        // Counted first, then the gauge: a scrape that sees alive 0 also sees the failures.
        metrics.alive.set(i64::from(next.alive));
        state = next;
        tokio::time::sleep(with_jitter(link.period)).await;
    }
}

/// `period` plus a random part of up to a tenth of it, so probers do not beat in step.
fn with_jitter(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let tenth = period.as_nanos() / 10;
    let extra = if tenth == 0 {
        0
    } else {
        u128::from(random) % tenth
    };
    period + Duration::from_nanos(extra as u64)
}

/// One probe: the time from the first connection attempt to the whole answer, or why it failed.
pub async fn probe(link: &Link, ctx: &ProbeContext) -> Result<Duration, (Failure, String)> {
    let deadline = Instant::now() + link.timeout;
    let addrs = tokio::time::timeout_at(deadline.into(), resolve(link, ctx))
        .await
        .map_err(|_| (Failure::Timeout, "resolving took too long".to_string()))??;
    let started = Instant::now();
    let exchange = async {
        let tcp = connect(&addrs).await?;
        match (&link.identity, &ctx.tls) {
            (Some(identity), Some(tls)) => {
                let name = rustls_pki_types::ServerName::try_from(identity.clone())
                    .map_err(|e| (Failure::Tls, e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(tls())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| (Failure::Tls, crate::explain::io(&e)))?;
                get(stream, link).await
            }
            (Some(_), None) => Err((Failure::Tls, "no client identity configured".into())),
            (None, _) => get(tcp, link).await,
        }
    };
    match tokio::time::timeout_at(deadline.into(), exchange).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err((
            Failure::Timeout,
            format!("no answer within {:?}", link.timeout),
        )),
    }
}

/// The link's addresses, asked for again at every probe (the resolver keeps no cache).
async fn resolve(link: &Link, ctx: &ProbeContext) -> Result<Vec<SocketAddr>, (Failure, String)> {
    if let Ok(ip) = link.address.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, link.port)]);
    }
    let resolver = ctx
        .resolver
        .as_ref()
        .map_err(|e| (Failure::Resolve, format!("no resolver: {e}")))?;
    let ips = resolver
        .lookup_ip(link.address.as_str())
        .await
        .map_err(|e| (Failure::Resolve, format!("{}: {e}", link.address)))?;
    let addrs: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| SocketAddr::new(ip, link.port))
        .collect();
    if addrs.is_empty() {
        return Err((Failure::Resolve, format!("{}: no addresses", link.address)));
    }
    Ok(addrs)
}

/// Connects to the first address that accepts, in the resolver's order.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, (Failure, String)> {
    let mut last = String::new();
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err((Failure::Connect, last))
}

/// `GET path` over HTTP/1.1 on `io`; success is a 2xx status and a body read to its end.
async fn get<I>(io: I, link: &Link) -> Result<(), (Failure, String)>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let status_err = |e: &dyn std::fmt::Display| (Failure::Status, e.to_string());
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| status_err(&e))?;
    let conn = tokio::spawn(conn);
    let host = link.identity.as_deref().unwrap_or(&link.address);
    let req = http::Request::get(link.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "crossgate-probe")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| status_err(&e))?;
    let result = async {
        let resp = send.send_request(req).await.map_err(|e| status_err(&e))?;
        let status = resp.status();
        Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| status_err(&*e))?;
        if status.is_success() {
            Ok(())
        } else {
            Err((Failure::Status, format!("answered {status}")))
        }
    }
    .await;
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_only_after_the_threshold_and_alive_at_the_first_success() {
        let mut s = Liveness::default().after(true, 3);
        assert!(s.alive);
        for n in 1..3 {
            s = s.after(false, 3);
            assert!(s.alive, "dead after {n} failures");
        }
        s = s.after(false, 3);
        assert!(!s.alive);
        s = s.after(false, 3).after(true, 3);
        assert_eq!(
            s,
            Liveness {
                alive: true,
                failures: 0
            }
        );
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let p = Duration::from_millis(3000);
        for _ in 0..100 {
            let d = with_jitter(p);
            assert!(d >= p && d < p + Duration::from_millis(300), "{d:?}");
        }
    }
}
