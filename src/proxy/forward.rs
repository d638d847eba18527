//! One admitted request on its way upstream and back, as Linkerd's gateway does it:
//! `l5d-orig-proto` undone (HTTP/2 to HTTP/1.x) and echoed back, `l5d-client-id` replaced,
//! `Forwarded` appended, `Host` set for HTTP/1, hop-by-hop headers dropped, the URI made
//! absolute to the routed target; sent through [`crate::upstream::Upstream::send`] (which picks
//! the endpoint and its connection) under the response deadline; the answer streamed back
//! through [`Observed`].

use super::answer::respond_refusal;
use super::headers::{self, L5D_CLIENT_ID, L5D_ORIG_PROTO};
use super::http::{Conn, Handled, HttpContext, RespBody};
use super::observe::{Admitted, Observed, Recorder, RequestLine};
use super::routed::Routed;
use super::tunnel::{connect_tunnel, splice_upgrades};
use crate::refusal::Refusal;
use crate::rules::Rules;
use crate::upstream::{AbsoluteForm, Caller, RequestBody, ResponseBody};
use http::header::{HOST, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{Instrument, Span};

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() != Version::HTTP_2 && headers::asks_upgrade(req.headers())
}

/// The exchange with upstream; it answers its own refusals.
pub(super) type Exchanging = Pin<Box<dyn Future<Output = Response<RespBody>> + Send>>;

/// What a request was decided with: its connection, its routed target, the rules snapshot it
/// was checked under (a tunnel's upstream resolves static endpoints from the same one), and
/// what its answer is recorded with.
pub(super) struct Decided {
    pub(super) conn: Arc<Conn>,
    pub(super) routed: Arc<Routed>,
    pub(super) rules: Arc<Rules>,
    pub(super) grpc: bool,
    pub(super) start: Instant,
    /// In `[log] access = "refusals"` mode, what a request failing upstream still needs of
    /// the request for its line.
    pub(super) method: Option<Method>,
}

/// Rewrites the request as Linkerd's gateway does, sends it upstream, and streams the answer.
/// The rewrite happens now, in the caller's task, and a refusal met there is answered at once;
/// the exchange returned holds only what it needs (the request is boxed), so that it stays
/// within the allocator's thread cache ([`within_thread_cache`]).
pub(super) fn forward(
    decided: Decided,
    req: Request<Incoming>,
    admitted: Admitted,
    mut line: Option<Box<RequestLine>>,
    span: Span,
) -> Handled {
    let Decided { conn, routed, .. } = &decided;
    // Who asks, for the target pod's policy: the client, counted under the route's labels.
    let caller = Caller {
        id: conn.client.id.clone(),
        addr: conn.client.addr,
        peer: Some(routed.metrics.labels.0.clone()),
    };
    if req.method() == Method::CONNECT {
        // CONNECT is rare: its future may be as large as it needs.
        let tunnel = async move {
            let Decided {
                conn,
                routed,
                rules,
                ..
            } = &decided;
            match connect_tunnel(&conn.ctx, routed, rules, &caller, req).await {
                Ok(response) => response,
                Err(refusal) => decided.refused(&refusal, line),
            }
        };
        return Handled::Later(Box::pin(tunnel.instrument(span)));
    }
    let (request, downgrade, client_upgrade) = match rewrite(conn, routed, req, &mut line) {
        Ok(rewritten) => rewritten,
        Err(refusal) => return Handled::now(decided.refused(&refusal, line)),
    };
    let exchange = async move {
        let Decided { conn, routed, .. } = &decided;
        let ctx = &conn.ctx;
        let statics = routed.statics.as_ref();
        let sent = ctx.upstream.send(&routed.target, statics, &caller, request);
        let response = match ctx.settings.response_timeout {
            // Boxed under a deadline (the timer would not fit beside it in the thread cache).
            Some(t) => tokio::time::timeout(t, Box::pin(sent))
                .await
                .unwrap_or(Err(Refusal::ResponseTimeout)),
            None => sent.await,
        };
        match response {
            Ok((response, endpoint)) => {
                let exchange = Exchange {
                    ctx,
                    routed,
                    grpc: decided.grpc,
                    start: decided.start,
                    downgrade,
                };
                answer(exchange, response, endpoint, client_upgrade, admitted, line)
            }
            Err(refusal) => decided.refused(&refusal, line),
        }
    };
    Handled::Later(Box::pin(within_thread_cache(exchange.instrument(span))))
}

/// The most glibc's per-thread cache serves (`tcache_max`, 1,032 bytes on 64-bit): a larger
/// allocation takes malloc's slower path, and `malloc_consolidate` with it, on every request.
const THREAD_CACHE_MAX: usize = 1032;

/// `exchange`, which is boxed for every request: the build fails if it outgrows the thread
/// cache, in every profile (measured: 944 bytes in release, the exchange with upstream 904 of
/// them; it was 1,800 when the whole request was one `async fn`).
fn within_thread_cache<F: Future>(exchange: F) -> F {
    const {
        assert!(
            std::mem::size_of::<F>() <= THREAD_CACHE_MAX,
            "a request's future outgrew the allocator's thread cache"
        )
    };
    exchange
}

impl Decided {
    /// The answer to a request refused once under way; in `refusals` mode it gets its access
    /// line even when none was kept for it.
    fn refused(&self, refusal: &Refusal, line: Option<Box<RequestLine>>) -> Response<RespBody> {
        let Decided {
            conn,
            routed,
            grpc,
            start,
            method,
            ..
        } = self;
        let line = line.or_else(|| conn.request_line(method.clone()?, Some(routed), *start));
        respond_refusal(&conn.ctx, routed, refusal, *grpc, *start, line)
    }
}

/// A rewritten request, the version `l5d-orig-proto` asked for, and the client's upgrade.
type Rewritten = (
    Box<Request<RequestBody>>,
    Option<Version>,
    Option<OnUpgrade>,
);

/// The request as it goes upstream: hop-by-hop headers dropped, `l5d-client-id` set,
/// `Forwarded` appended, the URI absolute to the routed target, `l5d-orig-proto` undone.
fn rewrite(
    conn: &Conn,
    routed: &Routed,
    mut req: Request<Incoming>,
    line: &mut Option<Box<RequestLine>>,
) -> Result<Rewritten, Refusal> {
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let absolute_form = parts.version != Version::HTTP_2 && parts.uri.scheme().is_some();
    let downgrade = match parts.version {
        Version::HTTP_2 => headers::orig_proto(&parts.headers),
        _ => None,
    };
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(L5D_ORIG_PROTO);
    parts.headers.remove(HOST);
    parts
        .headers
        .insert(L5D_CLIENT_ID, conn.client_header.clone());
    parts
        .headers
        .append(headers::FORWARDED, routed.forwarded.clone());
    if absolute_form {
        parts.extensions.insert(AbsoluteForm);
    }
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(routed.authority.clone());
    uri.path_and_query = Some(path);
    parts.uri = Uri::from_parts(uri).map_err(|e| Refusal::Upstream(e.to_string()))?;
    if parts.version != Version::HTTP_2 || downgrade.is_some() {
        parts.version = downgrade.unwrap_or(Version::HTTP_11);
        parts.headers.insert(HOST, routed.host.clone());
    }
    let bytes_in = line.as_ref().map(|_| Arc::default());
    if let Some(l) = line.as_mut() {
        l.bytes_in = bytes_in.clone();
    }
    let request = Request::from_parts(parts, RequestBody::new(body, bytes_in));
    Ok((Box::new(request), downgrade, client_upgrade))
}

/// What the answer is recorded and rewritten with.
struct Exchange<'a> {
    ctx: &'a HttpContext,
    routed: &'a Routed,
    grpc: bool,
    start: Instant,
    downgrade: Option<Version>,
}

/// The upstream's answer as the client gets it: upgrades spliced, hop-by-hop headers dropped,
/// `l5d-orig-proto` echoed, recorded (now, or at the end of a gRPC body), observed.
fn answer(
    exchange: Exchange<'_>,
    mut response: Response<ResponseBody>,
    endpoint: SocketAddr,
    client_upgrade: Option<OnUpgrade>,
    admitted: Admitted,
    mut line: Option<Box<RequestLine>>,
) -> Response<RespBody> {
    let Exchange {
        ctx,
        routed,
        grpc,
        start,
        downgrade,
    } = exchange;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(splice_upgrades(
            client_upgrade,
            upstream_upgrade,
            ctx.settings.idle_timeout,
        ));
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(
        &mut parts.headers,
        parts.status == StatusCode::SWITCHING_PROTOCOLS,
    );
    if let Some(v) = downgrade {
        let text = if v == Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        parts
            .headers
            .insert(L5D_ORIG_PROTO, HeaderValue::from_static(text));
    }
    let grpc_status = parts
        .headers
        .get(headers::GRPC_STATUS)
        .map(|v| v.as_bytes() == b"0");
    if let Some(l) = line.as_mut() {
        l.status = parts.status.as_u16();
        l.endpoint = Some(endpoint);
    }
    let recorder = Recorder {
        metrics: ctx.metrics.clone(),
        route: routed.metrics.clone(),
        status: parts.status.as_u16(),
        grpc_ok: grpc_status,
        start,
    };
    // gRPC answers in trailers: record when the body ends. Others: now.
    let recorder = if grpc && grpc_status.is_none() {
        Some(recorder)
    } else {
        recorder.record();
        None
    };
    let body = Observed::new(body, recorder, line, admitted);
    Response::from_parts(parts, Either::Left(body))
}
