//! HTTP through the gateway. A connection is served as HTTP when its transport header names a
//! session protocol (target fixed by the header, authorized once), or in plain HTTP mode
//! (ALPN `h2`/`http/1.1`, or none and sniffed) where each request names its target by
//! `l5d-dst-canonical` or its authority and is routed and authorized on its own.
//! Each request is forwarded through a pooled upstream client with Linkerd's header semantics;
//! bodies and trailers stream both ways; refusals are answered by [`super::answer`], and
//! `Upgrade` and `CONNECT` continue in [`super::tunnel`].

use super::answer::{error_chain, refuse, respond_refusal, upstream_refusal};
use super::headers::{self, L5D_CLIENT_ID, L5D_DST_CANONICAL, L5D_ORIG_PROTO};
use super::observe::{Activity, Admitted, Observed, Recorder, RouteMetrics};
use super::tcp::Metered;
use super::tunnel::{connect_tunnel, splice_upgrades};
use crate::Gateway;
use crate::authz;
use crate::metrics::{Leg, PeerLabels, RequestLabels};
use crate::refusal::Refusal;
use crate::route::Target;
use crate::server::Client;
use crate::tls::Accepted;
use crate::transport_header::SessionProtocol;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The most a request head may take (HTTP/1 read buffer, HTTP/2 header list): generous for
/// real traffic, and a bound on what one peer can make the gateway hold.
const MAX_HEADERS: usize = 64 * 1024;

/// A response body: streamed from upstream, or made by the gateway.
pub type RespBody = Either<Observed, Full<Bytes>>;

/// What one served connection shares across its requests.
struct Conn {
    gw: Arc<Gateway>,
    client: Arc<str>,
    client_header: HeaderValue,
    /// Set when the transport header fixed the target for the whole connection.
    fixed: Option<Routed>,
    /// The rules deny this client the fixed target: every request is answered 403.
    denied: bool,
    /// Plain mode: the last authority a request named and its route, as clients mostly send
    /// every request on a connection to one target.
    last: Mutex<Option<(Box<str>, Routed)>>,
    /// Requests in flight and the idle clock.
    activity: Arc<Activity>,
}

/// A routed target and what is derived from it once.
#[derive(Clone)]
pub(super) struct Routed {
    pub(super) target: Target,
    pub(super) authority: Authority,
    pub(super) metrics: Arc<RouteMetrics>,
    pub(super) forwarded: HeaderValue,
    /// `Host` for HTTP/1 upstream requests: the authority, made once.
    pub(super) host: HeaderValue,
}

impl Conn {
    fn routed(&self, target: Target) -> Result<Routed, Refusal> {
        let text = target.to_string();
        let authority =
            Authority::try_from(text.as_str()).map_err(|_| Refusal::BadGatewayDomain)?;
        let forwarded = headers::forwarded_element(self.gw.identity(), &self.client, &text);
        let host = HeaderValue::from_str(&text).map_err(|_| Refusal::BadGatewayDomain)?;
        let labels = RequestLabels(Arc::new(PeerLabels {
            client_id: self.client.to_string(),
            authority: text,
        }));
        Ok(Routed {
            metrics: Arc::new(RouteMetrics::new(&self.gw.metrics, labels)),
            forwarded: HeaderValue::try_from(forwarded).map_err(|_| Refusal::BadGatewayDomain)?,
            host,
            authority,
            target,
        })
    }
}

/// Serves HTTP on a connection whose transport header named `target` and `protocol`;
/// `authorized` is the rules' decision for this client and target, taken once.
pub async fn serve_transport(
    gw: &Arc<Gateway>,
    tls: Accepted,
    client: &Client,
    target: Target,
    protocol: SessionProtocol,
    authorized: bool,
    leg: &Leg,
) -> bool {
    let mut conn = new_conn(gw, client);
    conn.denied = !authorized;
    match conn.routed(target) {
        Ok(r) => conn.fixed = Some(r),
        Err(_) => return false,
    }
    let mode = match protocol {
        SessionProtocol::Http1 => Mode::Http1,
        SessionProtocol::Http2 => Mode::Http2,
    };
    serve(Arc::new(conn), tls, mode, leg).await
}

/// Serves plain HTTP mode: ALPN `h2` or `http/1.1`, or no ALPN and the protocol sniffed.
pub async fn serve_plain(gw: &Arc<Gateway>, tls: Accepted, client: &Client, leg: &Leg) -> bool {
    let mode = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => Mode::Http2,
        Some(b"http/1.1") => Mode::Http1,
        _ => Mode::Sniff,
    };
    serve(Arc::new(new_conn(gw, client)), tls, mode, leg).await
}

fn new_conn(gw: &Arc<Gateway>, client: &Client) -> Conn {
    Conn {
        gw: gw.clone(),
        client: client.id.clone(),
        // Identities are DNS names or URIs: always valid header values.
        client_header: HeaderValue::from_str(&client.id)
            .unwrap_or(HeaderValue::from_static("unknown")),
        fixed: None,
        denied: false,
        last: Mutex::new(None),
        activity: Arc::new(Activity::new()),
    }
}

enum Mode {
    Http1,
    Http2,
    Sniff,
}

async fn serve(conn: Arc<Conn>, mut tls: Accepted, mode: Mode, leg: &Leg) -> bool {
    let gw = conn.gw.clone();
    let idle = gw.server.http_idle_timeout;
    // hyper allocates its buffers as soon as it is polled: start it once the client speaks.
    let first_request = idle.max(gw.server.header_timeout);
    let mut stop = gw.stopping();
    let spoke = tokio::select! {
        r = tokio::time::timeout(first_request, crate::tls::until_readable(&mut tls)) => r.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    };
    if !spoke {
        tracing::debug!(client = %conn.client, ?first_request, "HTTP connection closed before a request");
        // Nothing is buffered: close_notify goes out at once, unless the socket is stuck.
        let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, tls.shutdown()).await;
        return true;
    }
    let activity = conn.activity.clone();
    // The idle clock starts when the client first speaks.
    activity.touch();
    let io = Metered::new(tls, (leg.read.clone(), leg.write.clone()), None);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // No per-request head timer (hyper would arm one for every request): the idle
        // clock below closes a connection whose request head never completes.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADERS as u32)
        .max_concurrent_streams(gw.server.h2_max_concurrent_streams)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = match mode {
        Mode::Http1 => builder.http1_only(),
        Mode::Http2 => builder.http2_only(),
        Mode::Sniff => builder,
    };
    let svc_conn = conn.clone();
    let service = service_fn(move |req| handle(svc_conn.clone(), req));
    // Boxed so that this future stays small while it waits for the first request above.
    let mut served = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
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
        tokio::select! {
            biased;
            r = served.as_mut() => break r,
            _ = stop.wait_for(|s| *s), if !closing => {
                served.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(deadline), if !closing => {
                if activity.last() == last && activity.in_flight() == 0 {
                    tracing::debug!(client = %conn.client, ?idle, "idle HTTP connection closed");
                    served.as_mut().graceful_shutdown();
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
                gw.metrics.tcp_error("i/o");
                tracing::debug!(client = %conn.client, ?idle, "HTTP connection closed: request head incomplete");
                return false;
            }
        }
    };
    match result {
        Ok(()) => true,
        // Closing by our own choice (idle, drain): a peer that hangs up first is not an error.
        Err(_) if closing => true,
        Err(e) => {
            gw.metrics.tcp_error("i/o");
            tracing::debug!(client = %conn.client, error = %error_chain(&*e), "HTTP connection failed");
            false
        }
    }
}

/// How long an idle close waits for hyper to finish before dropping the connection.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One request, from routing to the response head.
async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response<RespBody>, Infallible> {
    let start = Instant::now();
    let grpc = is_grpc(&req);
    let gw = &conn.gw;
    let routed = match &conn.fixed {
        Some(r) => Ok(r.clone()),
        None => plain_routed(&conn, &req),
    };
    let routed = match routed {
        Ok(r) => r,
        Err(refusal) => return Ok(refuse(gw, None, &refusal, grpc)),
    };
    if let Err(refusal) = authorize(&conn, &routed, &req) {
        return Ok(refuse(gw, Some(&routed), &refusal, grpc));
    }
    routed.metrics.requests.inc();
    let Ok(permit) = gw.in_flight.clone().try_acquire_owned() else {
        return Ok(respond_refusal(
            gw,
            &routed,
            &Refusal::Loadshed,
            grpc,
            start,
        ));
    };
    // In flight until its response body ends; then the idle clock restarts.
    let admitted = Admitted::new(permit, conn.activity.clone());
    let answer = forward(&conn, &routed, req, grpc, start, admitted).await;
    Ok(answer.unwrap_or_else(|refusal| respond_refusal(gw, &routed, &refusal, grpc, start)))
}

/// Plain HTTP mode: the target from `l5d-dst-canonical`, else the authority (port 80).
fn plain_routed(conn: &Conn, req: &Request<Incoming>) -> Result<Routed, Refusal> {
    let authority = req
        .headers()
        .get(L5D_DST_CANONICAL)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(Authority::as_str))
        .or_else(|| req.headers().get(HOST).and_then(|v| v.to_str().ok()))
        .ok_or(Refusal::BadGatewayDomain)?;
    let mut last = conn.last.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((raw, routed)) = last.as_ref()
        && **raw == *authority
    {
        return Ok(routed.clone());
    }
    let routed = conn.routed(conn.gw.routes.route_authority(authority, 80)?)?;
    *last = Some((authority.into(), routed.clone()));
    Ok(routed)
}

/// Loops (own identity, `Forwarded: by=<own>`), then, in plain mode, the rules.
fn authorize(conn: &Conn, routed: &Routed, req: &Request<Incoming>) -> Result<(), Refusal> {
    let gw = &conn.gw;
    if headers::forwarded_by(req.headers(), gw.identity()) {
        return Err(Refusal::GatewayLoop);
    }
    if conn.fixed.is_none() {
        authz::authorize(&conn.client, &routed.target, &gw.policy)?;
    } else if conn.denied {
        return Err(Refusal::Unauthorized);
    }
    routed.metrics.authz_allow.inc();
    Ok(())
}

fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() != Version::HTTP_2 && req.headers().contains_key(http::header::UPGRADE)
}

async fn forward(
    conn: &Conn,
    routed: &Routed,
    mut req: Request<Incoming>,
    grpc: bool,
    start: Instant,
    admitted: Admitted,
) -> Result<Response<RespBody>, Refusal> {
    let gw = &conn.gw;
    if req.method() == Method::CONNECT {
        // Boxed: CONNECT is rare, and its connect future would enlarge every request.
        return Box::pin(connect_tunnel(gw, routed, req)).await;
    }
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
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
    let h2 = parts.version == Version::HTTP_2 && downgrade.is_none();
    if !h2 {
        parts.version = downgrade.unwrap_or(Version::HTTP_11);
        parts.headers.insert(HOST, routed.host.clone());
    }
    let request = Request::from_parts(parts, body);
    let client = if h2 { &gw.upstream.h2 } else { &gw.upstream.h1 };
    let sent = client.request(request);
    let response = match gw.server.response_timeout {
        Some(t) => match tokio::time::timeout(t, sent).await {
            Ok(r) => r,
            Err(_) => return Err(Refusal::ResponseTimeout),
        },
        None => sent.await,
    };
    let mut response = response.map_err(upstream_refusal)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(splice_upgrades(
            client_upgrade,
            upstream_upgrade,
            gw.server.idle_timeout,
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
        .get("grpc-status")
        .map(|v| v.as_bytes() == b"0");
    let recorder = Recorder {
        gw: gw.clone(),
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
    let body = Observed::new(body, recorder, admitted);
    Ok(Response::from_parts(parts, Either::Left(body)))
}
