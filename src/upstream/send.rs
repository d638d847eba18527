//! One request on the endpoint chosen for it: over the endpoint's HTTP/2 connection (HTTP/2
//! requests, and HTTP/1 ones when the endpoint takes HTTP/2: `l5d-orig-proto` on the way out,
//! undone on the answer) or its HTTP/1.1 pool (origin form); a request no connection took comes
//! back as it was, for another endpoint.

use super::http::{EndpointConns, SendError};
use super::{AbsoluteForm, L5D_ORIG_PROTO, RequestBody, ResponseBody};
use crate::discovery::ProtocolHint;
use ::http::header::{HeaderValue, TRANSFER_ENCODING};
use ::http::{Method, Request, Response, Uri, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// Sends `req` over `conns`' connection for it, undoing the HTTP/2 upgrade on the answer.
/// The clock is read once: the round trip's start is the endpoint's last use.
pub(super) async fn send_to(
    conns: &Arc<EndpointConns>,
    mut req: Box<Request<RequestBody>>,
) -> Result<(Response<ResponseBody>, SocketAddr), SendError> {
    let now = Instant::now();
    let in_flight = conns.health.start(now);
    let addr = conns.endpoint.addr;
    let version = req.version();
    let upgrade = version != Version::HTTP_2
        && conns.endpoint.hint == ProtocolHint::Http2
        && upgradable(&req);
    if version != Version::HTTP_2 && !upgrade {
        let absolute = req.uri().clone();
        origin_form(&mut req);
        return match conns.send_h1(req, now).await {
            Ok(response) => Ok((response.map(|b| ResponseBody::h1(b, in_flight)), addr)),
            Err(SendError::NotSent(refusal, mut back)) => {
                *back.uri_mut() = absolute;
                Err(SendError::NotSent(refusal, back))
            }
            Err(e) => Err(e),
        };
    }
    if upgrade {
        let orig = orig_proto(version, req.extensions().get::<AbsoluteForm>().is_some());
        *req.version_mut() = Version::HTTP_2;
        let h = req.headers_mut();
        h.remove(TRANSFER_ENCODING);
        h.insert(L5D_ORIG_PROTO, orig);
    }
    let mut response = match conns.send_h2(req, now).await {
        Ok(r) => r,
        Err(SendError::NotSent(refusal, mut back)) if upgrade => {
            // Given back as it came: HTTP/1 again for whichever endpoint takes it next.
            *back.version_mut() = version;
            back.headers_mut().remove(L5D_ORIG_PROTO);
            return Err(SendError::NotSent(refusal, back));
        }
        Err(e) => return Err(e),
    };
    if upgrade {
        response.headers_mut().remove(L5D_ORIG_PROTO);
        *response.version_mut() = Version::HTTP_11;
    }
    Ok((response.map(|b| ResponseBody::h2(b, in_flight)), addr))
}

/// HTTP/1 requests that may ride HTTP/2: not `CONNECT`, not an `Upgrade`.
fn upgradable(req: &Request<RequestBody>) -> bool {
    req.method() != Method::CONNECT && !req.headers().contains_key(::http::header::UPGRADE)
}

fn orig_proto(version: Version, absolute: bool) -> HeaderValue {
    let text = match (version == Version::HTTP_10, absolute) {
        (true, false) => "HTTP/1.0",
        (true, true) => "HTTP/1.0; absolute-form",
        (false, false) => "HTTP/1.1",
        (false, true) => "HTTP/1.1; absolute-form",
    };
    HeaderValue::from_static(text)
}

/// An HTTP/1.1 connection's request line carries the path only; `Host` names the target.
fn origin_form(req: &mut Request<RequestBody>) {
    if req.method() == Method::CONNECT {
        return;
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = Uri::try_from(path) {
        *req.uri_mut() = uri;
    }
}
