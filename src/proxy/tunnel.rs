//! Tunnels under HTTP: a WebSocket-style `Upgrade` joined to the upstream's upgraded
//! connection, and HTTP/1.1 `CONNECT` to the routed target. Both end as opaque TCP
//! ([`super::tcp::proxy`]) with the idle deadline; the request that opened them was routed,
//! authorized and counted by [`super::http`] first.

use super::http::{RespBody, Routed};
use crate::Gateway;
use crate::metrics::{Leg, TcpLabels};
use crate::refusal::Refusal;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;

/// Joins the client's and the upstream's upgraded connections (WebSocket and the like).
pub(super) async fn splice_upgrades(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let counters = || (Default::default(), Default::default());
            let r = super::tcp::proxy(
                TokioIo::new(c),
                TokioIo::new(u),
                idle,
                counters(),
                counters(),
            )
            .await;
            tracing::debug!(result = ?r.map(|_| ()), "upgraded connection ended");
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}

/// HTTP/1.1 `CONNECT`: answer 200, then tunnel the connection to the routed target.
pub(super) async fn connect_tunnel(
    gw: &Arc<Gateway>,
    routed: &Routed,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Refusal> {
    let (upstream, addr) = gw.discovery.connect(&routed.target).await?;
    let idle = gw.server.idle_timeout;
    // The client side is already counted by the connection's own leg, beneath the upgrade.
    let mut leg = Leg::open(
        &gw.metrics,
        TcpLabels::Outbound {
            authority: routed.metrics.labels.0.authority.as_str().into(),
            target_addr: addr.to_string().into(),
        },
    );
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let r = super::tcp::proxy(
                    TokioIo::new(upgraded),
                    upstream,
                    idle,
                    (Counter::default(), Counter::default()),
                    (leg.read.clone(), leg.write.clone()),
                )
                .await;
                if r.is_ok() {
                    leg.succeeded();
                }
                tracing::debug!(result = ?r.map(|_| ()), "CONNECT tunnel ended");
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Ok(Response::new(Either::Right(Full::new(Bytes::new()))))
}
