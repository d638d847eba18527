//! What each plan does once decided: opaque TCP to a dialled endpoint, or HTTP served once
//! the client speaks. Each returns how the connection ended, for its access line.

use super::{End, Ended, count_allow, refuse_connection};
use crate::Gateway;
use crate::metrics::Leg;
use crate::plan::{ClientInfo, HttpMode, HttpTarget};
use crate::proxy::http::{self, HttpContext};
use crate::proxy::tcp::Counters;
use crate::route::Target;
use crate::rules::Rules;
use crate::tls::Accepted;
use crate::upstream::{Caller, Connected, Opened, Upstream};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tracing::debug;

/// What HTTP serving takes of the gateway: its narrow handles.
/// The HTTP serving context of a port whose connections go upstream through `upstream`.
pub(super) fn http_context(gw: &Gateway, upstream: Arc<Upstream>) -> HttpContext {
    HttpContext {
        settings: gw.settings.clone(),
        rules: gw.rules.clone(),
        upstream,
        metrics: gw.metrics.clone(),
        in_flight: gw.in_flight.clone(),
        lifecycle: gw.lifecycle.clone(),
        access: gw.access,
        own_identity: gw.identity().into(),
        routes: Default::default(),
    }
}

pub(super) async fn forward_opaque(
    gw: &Gateway,
    upstream: &Upstream,
    rules: &Rules,
    tls: Accepted,
    client: &ClientInfo,
    target: Target,
    leg: &Leg,
) -> Ended {
    let caller = Caller {
        id: client.id.clone(),
        addr: client.addr,
        peer: None,
    };
    let opened = upstream.open(&target, rules, &caller).await;
    // Counted after the dial, so that a target reached for the first time is labelled by
    // its name rather than `other`.
    count_allow(gw, client, &target);
    let Opened {
        connected: Connected {
            io: stream,
            leg: mut up_leg,
        },
        addr,
        // The stream's share of the endpoint's load, until it ends.
        in_flight: _in_flight,
        revoked,
    } = match opened {
        Ok(d) => d,
        Err(refusal) => {
            refuse_connection(gw, client, Some(&target), &refusal);
            return Ended::new("opaque", Some(&target), End::Refused(refusal));
        }
    };
    // The connection's own byte counts, for its access line whatever its end.
    let local = (Counter::default(), Counter::default());
    // Bulk from here on: read whole records per system call beneath rustls (`crate::wire`).
    let (mut tls, mut stream) = (tls, stream);
    tls.get_mut().0.read_ahead(crate::proxy::tcp::READ_AHEAD);
    stream.read_ahead(crate::proxy::tcp::READ_AHEAD);
    let proxied = crate::proxy::tcp::proxy(
        tls,
        stream,
        gw.settings.idle_timeout,
        Counters::from((leg.read.clone(), leg.write.clone())).also(local.clone()),
        (up_leg.read.clone(), up_leg.write.clone()),
    );
    // `[policy]`: the pod's proxy cuts a connection its new policy no longer admits; so here.
    let revoked = async {
        match revoked {
            Some(r) => r.await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = proxied => r,
        refusal = revoked => {
            let peer = super::peer_labels(gw, client, &target);
            gw.metrics.policy.terminated(&peer, &refusal);
            debug!(%addr, "terminated: the pod's policy no longer admits the connection");
            let mut ended = Ended::new("opaque", Some(&target), End::Refused(refusal));
            ended.endpoint = Some(addr);
            ended.bytes = (local.0.get(), local.1.get());
            return ended;
        }
    };
    let mut ended = Ended::new("opaque", Some(&target), End::Ok);
    ended.endpoint = Some(addr);
    ended.bytes = (local.0.get(), local.1.get());
    match result {
        Ok(_) | Err(crate::proxy::tcp::StreamError::ClosedWithoutNotify) => up_leg.succeeded(),
        Err(e) => {
            if matches!(e, crate::proxy::tcp::StreamError::Io(_)) {
                gw.metrics.tcp.error("i/o");
            }
            debug!(%addr, error = %e, "stream ended");
            ended.end = End::Failed(e.to_string());
        }
    }
    ended
}

/// An HTTP connection's access-line start: its protocol, and its target when fixed.
pub(super) fn http_ended(mode: HttpMode, target: &HttpTarget) -> Ended {
    let fixed = target.fixed().map(|(t, _)| t);
    Ended::new(target.protocol_label(mode), fixed, End::Ok)
}

/// How long an idle close waits for a `close_notify` to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A client that never spoke, or was still silent when the gateway began to stop: closed
/// with a `close_notify` and no protocol state ever built.
pub(super) async fn close_silent(mut tls: Accepted, ended: Ended) -> Ended {
    debug!("HTTP connection closed before a request");
    // Nothing is buffered: close_notify goes out at once, unless the socket is stuck.
    let _ = tokio::time::timeout(CLOSE_GRACE, tls.shutdown()).await;
    ended
}

/// Serves HTTP to a client that has spoken (hyper allocates its buffers as soon as it is
/// polled, so it starts only then).
pub(super) async fn serve_http(
    gw: &Gateway,
    http: &Arc<HttpContext>,
    tls: Accepted,
    client: &ClientInfo,
    mode: HttpMode,
    target: HttpTarget,
    leg: &Leg,
) -> Ended {
    let mut ended = http_ended(mode, &target);
    // The access line's byte counts, whenever a line may be written (a failed connection's
    // in `refusals` mode too).
    let local = (gw.access != crate::access::AccessLog::Off)
        .then(|| (Counter::default(), Counter::default()));
    let counters = Counters::from((leg.read.clone(), leg.write.clone()));
    let counters = match &local {
        Some(l) => counters.also(l.clone()),
        None => counters,
    };
    if let Err(e) = http::serve(http, tls, client, mode, target, counters).await {
        debug!(error = %e, "HTTP connection failed");
        ended.end = End::Failed(e.to_string());
    }
    if let Some((read, write)) = local {
        ended.bytes = (read.get(), write.get());
    }
    ended
}
