//! The demo's last step: a prober (the source side of a link) probes the gateway's `/ready`
//! over mTLS every 100 ms, `crossgate gateways` prints its table, then the gateway stops and
//! the prober marks it dead after three consecutive failures, not before.

use crate::certs::GATEWAY_IDENTITY;
use crate::probe::table::{self, GatewayRow};
use crate::probe::{Format, ProbeConfig, Prober};
use anyhow::{Context, anyhow, bail, ensure};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const THRESHOLD: u64 = 3;

/// Runs a prober against the gateway whose admin port is `gateway_admin`, with the client
/// identity in `dir` (`ca.crt`, `client.crt`, `client.key`); `stop_gateway` stops it.
pub(super) async fn probe_then_stop(
    dir: &Path,
    gateway_admin: SocketAddr,
    stop_gateway: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let port = gateway_admin.port();
    let toml = format!(
        "[server]\nadmin = \"127.0.0.1:0\"\n\
         [identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"client.crt\"\nkey = \"client.key\"\n\
         [[link]]\nname = \"east\"\naddress = \"127.0.0.1\"\nport = {port}\n\
         identity = \"{GATEWAY_IDENTITY}\"\nperiod = \"100ms\"\ntimeout = \"1s\"\n\
         failure_threshold = {THRESHOLD}\nservices = [\"echo\", \"web\"]\n"
    );
    let config = ProbeConfig::parse(&toml, "probe.toml", dir)?;
    let prober = Prober::build(&config).map_err(|e| anyhow!(e.join("; ")))?;
    let listener = tokio::net::TcpListener::bind(config.admin).await?;
    let admin = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(crate::probe::run(prober, listener, async {
        let _ = stop_rx.await;
    }));
    println!(
        "   prober admin on {admin}; link east -> 127.0.0.1:{port}, SNI {GATEWAY_IDENTITY},\n   \
         every 100 ms (+ up to 10 % jitter), dead after {THRESHOLD} consecutive failures"
    );
    let url = format!("http://{admin}/metrics");
    let east = wait_for(&url, |r| r.probes >= THRESHOLD && r.alive).await?;
    println!(
        "   after {} probes: crossgate gateways --prober {url}",
        east.probes
    );
    let code = crate::probe::gateways(&url, Format::Table, None).await;
    ensure!(
        code == table::ALL_ALIVE,
        "gateways exited {code} while alive"
    );

    println!("   stopping the gateway");
    let stopped = Instant::now();
    stop_gateway.await?;
    let failed_before = east.failed;
    let mut last_failed = failed_before;
    let dead = wait_for(&url, |r| {
        if r.failed > last_failed && r.alive {
            println!(
                "   {:>5.0?}: probe failed ({} in a row), ALIVE still true",
                stopped.elapsed(),
                r.failed - failed_before
            );
            last_failed = r.failed;
        }
        !r.alive
    })
    .await?;
    let failures = dead.failed - failed_before;
    println!(
        "   {:>5.0?}: ALIVE false after {failures} consecutive failed probes",
        stopped.elapsed()
    );
    ensure!(
        failures >= THRESHOLD,
        "dead after {failures} failures, below the threshold"
    );
    let code = crate::probe::gateways(&url, Format::Table, None).await;
    ensure!(
        code == table::SOME_DEAD,
        "gateways exited {code} with the gateway dead"
    );
    println!("   crossgate gateways exited {code}: one gateway dead");
    let _ = stop_tx.send(());
    running.await.context("prober task")
}

/// Reads the prober until its `east` row satisfies `done` (called on every reading), within 5 s.
async fn wait_for(
    url: &str,
    mut done: impl FnMut(&GatewayRow) -> bool,
) -> anyhow::Result<GatewayRow> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(rows) = table::read(url).await
            && let Some(east) = rows.into_iter().find(|r| r.cluster_name == "east")
            && done(&east)
        {
            return Ok(east);
        }
        if Instant::now() >= deadline {
            bail!("the prober's east row did not reach the expected state in 5 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
