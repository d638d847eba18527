//! HTTP through the gateway, over any byte stream (a TLS stream in production, an in-memory
//! duplex in tests). The [`crate::plan`] said how: a target fixed by the transport header or
//! SNI, or plain HTTP mode where each request names its own. Each request is then routed,
//! checked ([`plan::check_request`]: loops, authorization under the rules of its time),
//! admitted (`max_in_flight`) and sent upstream in `forward.rs`; refusals are answered by
//! [`super::answer`]; `Upgrade` and `CONNECT` continue in [`super::tunnel`]; bodies, metrics
//! and access lines are observed in [`super::observe`].
use super::answer::{closed_without_notify, error_chain, malformed_head, refuse, respond_refusal};
use super::headers;
use super::observe::{Activity, Admitted, Observed, RequestLine};
pub use super::routed::RouteCache;
use super::routed::{Cached, Routed};
use super::tcp::{Counters, Metered};
use crate::access::AccessLog;
use crate::due::WhenDue;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::plan::{self, ClientInfo, HttpMode, HttpTarget};
use crate::refusal::Refusal;
use crate::route::Target;
use crate::rules::RulesHandle;
use crate::upstream::Upstream;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// The most a request head may take (HTTP/1 read buffer, HTTP/2 header list): generous for
/// real traffic, and a bound on what one peer can make the gateway hold.
const MAX_HEADERS: usize = 64 * 1024;

/// How long an idle close waits for hyper to finish before dropping the connection.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A response body: streamed from upstream, or made by the gateway.
pub type RespBody = Either<Observed, Full<Bytes>>;

/// What HTTP serving needs of the gateway: narrow handles, so that it can be built without
/// credentials (tests serve HTTP over `tokio::io::duplex`).
pub struct HttpContext {
    pub settings: Arc<crate::config::Server>,
    pub rules: Arc<RulesHandle>,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    /// Permits for requests in flight; none left means load shedding.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    pub lifecycle: Arc<Lifecycle>,
    pub access: AccessLog,
    /// The gateway's identity: `Forwarded: by=` and loop detection.
    pub own_identity: Arc<str>,
    /// Targets fixed for a connection, routed once for every connection of a client to them.
    pub routes: RouteCache,
}

/// Why an HTTP connection ended other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("request head incomplete after the idle timeout")]
    HeadIncomplete,
    /// hyper answered the head it could not parse (400, 414 or 431) and closed.
    #[error("client: malformed request head: {0}")]
    MalformedHead(String),
    #[error("i/o: {0}")]
    Io(String),
}

/// What one served connection shares across its requests.
pub(super) struct Conn {
    pub(super) ctx: Arc<HttpContext>,
    pub(super) client: ClientInfo,
    pub(super) client_header: HeaderValue,
    /// `Some` when the transport header or SNI fixed the target for the whole connection.
    pub(super) fixed: Option<Target>,
    /// SNI fixed it: a request naming another host is misdirected.
    pub(super) by_sni: bool,
    /// The last target requests named, with the rules generation it was routed under, as
    /// clients mostly send every request on a connection to one target.
    pub(super) last: Mutex<Option<Cached>>,
    /// Requests in flight and the idle clock.
    activity: Arc<Activity>,
    protocol: &'static str,
}

/// Serves HTTP on `io` until the client closes, the connection idles out or the gateway
/// drains. `counters` count the client leg's bytes read and written.
pub async fn serve<I>(
    ctx: &Arc<HttpContext>,
    io: I,
    client: &ClientInfo,
    mode: HttpMode,
    target: HttpTarget,
    counters: Counters,
) -> Result<(), ConnError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = target.protocol_label(mode);
    let by_sni = matches!(target, HttpTarget::Sni { .. });
    let fixed = target.fixed().map(|(t, _)| t.clone());
    let conn = Arc::new(Conn {
        ctx: ctx.clone(),
        // Identities are DNS names or URIs: always valid header values.
        client_header: HeaderValue::from_str(&client.id)
            .unwrap_or(HeaderValue::from_static("unknown")),
        client: client.clone(),
        fixed,
        by_sni,
        last: Mutex::new(None),
        activity: Arc::new(Activity::new()),
        protocol,
    });
    // The idle clock starts when the client first speaks (the caller waited for that).
    conn.activity.touch();
    let io = Metered::new(io, counters, None);
    let svc_conn = conn.clone();
    // What hyper moves into each HTTP/2 stream's task is small ([`Handled`]): a refusal made
    // at once, or the exchange boxed, allocated once within the allocator's thread cache.
    let service = service_fn(move |req| handle(&svc_conn, req));
    let builder = builder(&ctx.settings, mode);
    // Boxed so that the connection's future stays small.
    let served = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    until_done(&conn, served, |c| c.graceful_shutdown()).await
}

fn builder(settings: &crate::config::Server, mode: HttpMode) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // No per-request head timer (hyper would arm one for every request): the idle
        // clock in `until_done` closes a connection whose request head never completes.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADERS as u32)
        .max_concurrent_streams(settings.h2_max_concurrent_streams)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    match mode {
        HttpMode::Http1 => builder.http1_only(),
        HttpMode::Http2 => builder.http2_only(),
        HttpMode::Sniff => builder,
    }
}

/// Drives the hyper connection `served` under the idle clock and the drain signal;
/// `shutdown` starts its graceful close.
async fn until_done<F>(
    conn: &Conn,
    mut served: Pin<Box<F>>,
    shutdown: impl Fn(Pin<&mut F>),
) -> Result<(), ConnError>
where
    F: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let idle = conn.ctx.settings.http_idle_timeout;
    let activity = &conn.activity;
    let mut stop = conn.ctx.lifecycle.stopping();
    // Whether the drain signal may have come, checked instead of polling its waiter.
    let stop_probe = stop.clone();
    let mut closing = false;
    // Set when the idle close finds no request in flight: if the connection is still open a
    // moment later with still none, what holds it is a request head that never completed
    // (hyper's graceful close waits for one), and it is dropped.
    let mut abandon_at: Option<Instant> = None;
    let result = loop {
        let last = activity.last();
        // With a request in flight (until its response body ends) the connection is not
        // idle: look again one period later.
        let deadline = if activity.in_flight() > 0 {
            Instant::now() + idle
        } else {
            last + idle
        };
        // The drain signal and the idle clock are polled once (to register) and then only
        // when due: the task wakes for its protocol several times per request.
        let stop_wait = std::pin::pin!(stop.wait_for(|s| *s));
        let stopped = WhenDue::new(stop_wait, |_: &_| stop_probe.has_changed().unwrap_or(true));
        let idle_sleep = std::pin::pin!(tokio::time::sleep_until(deadline));
        let idle_clock = crate::due::timer(idle_sleep);
        tokio::select! {
            biased;
            r = served.as_mut() => break r,
            _ = stopped, if !closing => {
                shutdown(served.as_mut());
                closing = true;
            }
            _ = idle_clock, if !closing => {
                if activity.last() == last && activity.in_flight() == 0 {
                    tracing::debug!(?idle, "idle HTTP connection closed");
                    shutdown(served.as_mut());
                    closing = true;
                    abandon_at = Some(Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
            _ = tokio::time::sleep_until(abandon_at.unwrap_or(deadline)), if abandon_at.is_some() => {
                if activity.in_flight() > 0 || activity.last() != last {
                    // A request came after all: the graceful close lets it finish; look again
                    // one grace period later.
                    abandon_at = Some(Instant::now() + IDLE_CLOSE_GRACE);
                    continue;
                }
                conn.ctx.metrics.tcp.error("i/o");
                return Err(ConnError::HeadIncomplete);
            }
        }
    };
    match result {
        Ok(()) => Ok(()),
        // Closing by our own choice (idle, drain): a peer that hangs up first is not an error.
        Err(_) if closing => Ok(()),
        // A client that closes without TLS close_notify has closed all the same.
        Err(e) if closed_without_notify(&*e) => Ok(()),
        Err(e) => Err(malformed_head(&conn.ctx, &*e).unwrap_or_else(|| {
            conn.ctx.metrics.tcp.error("i/o");
            ConnError::Io(error_chain(&*e))
        })),
    }
}

/// One request, from routing to the response head. Routing, the checks, admission and the
/// rewrite happen when hyper hands the request over; what is left to wait for (the exchange
/// with upstream) is boxed, alone ([`super::forward::forward`]).
fn handle(conn: &Arc<Conn>, req: Request<Incoming>) -> Handled {
    let start = Instant::now();
    let grpc = headers::is_grpc(req.headers());
    let ctx = &conn.ctx;
    let line = |routed: Option<&Routed>| conn.line(&req, routed, start);
    let rules = ctx.rules.load();
    let routed = match conn.routed(&req, &rules) {
        Ok(r) => r,
        Err(refusal) => return Handled::now(refuse(ctx, None, &refusal, grpc, line(None))),
    };
    let loop_by_forwarded = headers::forwarded_by(req.headers(), &ctx.own_identity);
    let checked = plan::check_request(&conn.client.id, &routed.target, loop_by_forwarded, &rules);
    if let Err(refusal) = checked {
        let line = line(Some(&routed));
        return Handled::now(refuse(ctx, Some(&routed), &refusal, grpc, line));
    }
    routed.metrics.authz_allow.inc();
    routed.metrics.requests.inc();
    let Ok(permit) = ctx.in_flight.clone().try_acquire_owned() else {
        let line = line(Some(&routed));
        let refusal = Refusal::Loadshed;
        return Handled::now(respond_refusal(ctx, &routed, &refusal, grpc, start, line));
    };
    // In flight until its response body ends; then the idle clock restarts.
    let admitted = Admitted::new(permit, conn.activity.clone());
    let line = ctx.access.all().then(|| line(Some(&routed))).flatten();
    let span = tracing::debug_span!("request", method = %req.method(), target = %routed.target);
    let decided = super::forward::Decided {
        conn: conn.clone(),
        routed: routed.clone(),
        rules,
        grpc,
        start,
        // In `refusals` mode a request that fails upstream still gets its line: what it needs
        // of the request is kept (a method is a cheap clone).
        method: (ctx.access == AccessLog::Refusals).then(|| req.method().clone()),
    };
    super::forward::forward(decided, req, admitted, line, span)
}

/// A request's answer: made at once (a refusal, boxed so that every stream's task stays as
/// small as the exchange's pointer makes it), or the exchange with upstream.
pub(super) enum Handled {
    Now(Option<Box<Response<RespBody>>>),
    Later(super::forward::Exchanging),
}

impl Handled {
    pub(super) fn now(response: Response<RespBody>) -> Handled {
        Handled::Now(Some(Box::new(response)))
    }
}

impl Future for Handled {
    type Output = Result<Response<RespBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Handled::Now(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(*response)),
                None => Poll::Pending,
            },
            Handled::Later(exchanging) => exchanging.as_mut().poll(cx).map(Ok),
        }
    }
}

impl Conn {
    /// The request's access line, if the access log may want it.
    fn line(
        &self,
        req: &Request<Incoming>,
        routed: Option<&Routed>,
        start: Instant,
    ) -> Option<Box<RequestLine>> {
        self.request_line(req.method().clone(), routed, start)
    }

    pub(super) fn request_line(
        &self,
        method: http::Method,
        routed: Option<&Routed>,
        start: Instant,
    ) -> Option<Box<RequestLine>> {
        if self.ctx.access == AccessLog::Off {
            return None;
        }
        Some(Box::new(RequestLine {
            access: self.ctx.access,
            peer: self.client.addr,
            client_id: self.client.id.clone(),
            method,
            target: routed.map(|r| r.text.clone()),
            endpoint: None,
            protocol: self.protocol,
            status: 0,
            start,
            bytes_in: None,
            bytes_out: 0,
        }))
    }
}
