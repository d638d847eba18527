//! The gateway's own answers: a refusal counted (error or authorization metric, and a
//! response for admitted requests) and turned into its HTTP or gRPC response from the one
//! table in [`crate::refusal`].

use super::headers::{self, L5D_PROXY_ERROR};
use super::http::{ConnError, HttpContext, RespBody};
use super::observe::{Recorder, RequestLine};
use super::routed::Routed;
use crate::access::Outcome;
use crate::metrics::Scope;
use crate::refusal::Refusal;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use tokio::time::Instant;

pub use crate::refusal::error_chain;

/// True when `e` is, or was caused by, a TLS peer closing without `close_notify` (rustls'
/// `UnexpectedEof`).
pub(super) fn closed_without_notify(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// When hyper could not parse the client's HTTP/1 request head (its line, its headers, their
/// framing: two different `Content-Length`s, a `Transfer-Encoding` not ending in `chunked`),
/// it has answered 400 (414, 431) itself and closed: the client's error, counted as `client`
/// as a malformed body is, not as an i/o failure. The connection's failure, if so.
pub(super) fn malformed_head(
    ctx: &HttpContext,
    e: &(dyn std::error::Error + 'static),
) -> Option<ConnError> {
    let hyper = e.downcast_ref::<hyper::Error>()?;
    if !hyper.is_parse() {
        return None;
    }
    let refusal = Refusal::Client("malformed request head".into());
    ctx.metrics.refused(Scope::Request, None, &refusal);
    Some(ConnError::MalformedHead(error_chain(e)))
}

/// Counts, logs and answers a refusal made before the request was admitted.
pub(super) fn refuse(
    ctx: &HttpContext,
    routed: Option<&Routed>,
    refusal: &Refusal,
    grpc: bool,
    line: Option<Box<RequestLine>>,
) -> Response<RespBody> {
    let peer = routed.map(|r| &*r.metrics.labels.0);
    ctx.metrics.refused(Scope::Request, peer, refusal);
    let response = refusal_response(refusal, grpc);
    if let Some(mut line) = line {
        line.status = response.status().as_u16();
        line.write(Outcome::Refused(refusal));
    }
    response
}

/// Counts and answers a failure after the request was admitted (counted as a response too).
pub(super) fn respond_refusal(
    ctx: &HttpContext,
    routed: &Routed,
    refusal: &Refusal,
    grpc: bool,
    start: Instant,
    line: Option<Box<RequestLine>>,
) -> Response<RespBody> {
    let response = refuse(ctx, Some(routed), refusal, grpc, line);
    Recorder {
        metrics: ctx.metrics.clone(),
        route: routed.metrics.clone(),
        status: response.status().as_u16(),
        grpc_ok: grpc.then_some(false),
        start,
    }
    .record();
    response
}

/// The gateway's own answer to a refusal: its status and `l5d-proxy-error`, or for gRPC
/// HTTP 200 with `grpc-status` and `grpc-message`, as Linkerd answers.
pub fn refusal_response(refusal: &Refusal, grpc: bool) -> Response<RespBody> {
    let text = refusal.proxy_error();
    let value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("upstream"));
    let mut r = if grpc {
        let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(
            headers::GRPC_STATUS,
            HeaderValue::from(u16::from(refusal.grpc_status())),
        );
        h.insert(headers::GRPC_MESSAGE, value.clone());
        r
    } else {
        let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!("{text}\n")))));
        *r.status_mut() =
            StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    r.headers_mut().insert(L5D_PROXY_ERROR, value);
    if let Some(secs) = refusal.retry_after() {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
