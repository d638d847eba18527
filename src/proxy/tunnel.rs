//! Tunnels under HTTP: a WebSocket-style `Upgrade` joined to the upstream's upgraded
//! connection, and HTTP/1.1 `CONNECT` to the routed target. Both end as opaque TCP
//! ([`super::tcp::proxy`]) with the idle deadline; the request that opened them was routed,
//! authorized and counted by [`super::http`] first.

use super::http::{HttpContext, RespBody};
use super::routed::Routed;
use crate::refusal::Refusal;
use crate::rules::Rules;
use crate::upstream::{Caller, Connected, Opened};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
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
    ctx: &HttpContext,
    routed: &Routed,
    rules: &Rules,
    caller: &Caller,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Refusal> {
    // The client side is already counted by the connection's own leg, beneath the upgrade.
    let Opened { connected, .. } = ctx.upstream.open(&routed.target, rules, caller).await?;
    let Connected {
        io: upstream,
        mut leg,
    } = connected;
    let idle = ctx.settings.idle_timeout;
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
