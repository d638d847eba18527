//! What the gateway observes of each HTTP request: `response_total` and
//! `response_latency_ms` through per-target handles taken once ([`RouteMetrics`]), recorded at
//! the response head or, for gRPC, when the trailers arrive ([`Observed`]); each
//! connection's [`Activity`], for which a request lasts until its response body ends; and, with
//! `[log] access = "all"`, the bytes each way and the access line at the body's end
//! ([`RequestBody`], [`RequestLine`]).

use crate::access::{AccessLog, Outcome, RequestRecord};
use crate::metrics::{AuthzLabels, Metrics, RequestLabels, ResponseLabels};
pub use crate::upstream::RequestBody;
use crate::upstream::{BodyError, ResponseBody};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// The metric handles of one routed target, taken once so that requests do not hash label
/// sets on the hot path.
pub(crate) struct RouteMetrics {
    pub(crate) labels: RequestLabels,
    pub(crate) requests: Counter,
    pub(crate) authz_allow: Counter,
    /// `(status, success)` -> `response_total` and `response_latency_ms`; a handful per target.
    responses: Mutex<Vec<(u16, bool, Counter, Histogram)>>,
}

impl RouteMetrics {
    pub(crate) fn new(m: &Metrics, labels: RequestLabels) -> RouteMetrics {
        RouteMetrics {
            requests: m.http.request_total.get_or_create_owned(&labels),
            authz_allow: m
                .http
                .authz_allow
                .get_or_create_owned(&AuthzLabels::Rules((*labels.0).clone())),
            labels,
            responses: Mutex::new(Vec::new()),
        }
    }

    fn response(&self, m: &Metrics, status: u16, success: bool) -> (Counter, Histogram) {
        let mut cache = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c, h)) = cache.iter().find(|e| e.0 == status && e.1 == success) {
            return (c.clone(), h.clone());
        }
        let labels = ResponseLabels {
            peer: self.labels.clone(),
            status_code: status,
            success,
        };
        let handles = (
            m.http.response_total.get_or_create_owned(&labels),
            m.http.response_latency_ms.get_or_create_owned(&labels),
        );
        cache.push((status, success, handles.0.clone(), handles.1.clone()));
        handles
    }
}

/// Records `response_total` and `response_latency_ms` once.
pub(crate) struct Recorder {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) route: Arc<RouteMetrics>,
    pub(crate) status: u16,
    /// `Some(true)` when a gRPC status 0 was seen, `Some(false)` another one.
    pub(crate) grpc_ok: Option<bool>,
    pub(crate) start: Instant,
}

impl Recorder {
    pub(crate) fn record(self) {
        let success = self.status < 500 && self.grpc_ok != Some(false);
        let (total, latency) = self.route.response(&self.metrics, self.status, success);
        total.inc();
        latency.observe(self.start.elapsed().as_secs_f64() * 1000.0);
    }
}

/// One HTTP connection's activity, for its idle deadline: the requests admitted and not yet
/// finished (a response body still streaming counts), and when the last one finished.
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` of the last request's end, or of the client's first bytes.
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Restarts the idle clock.
    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When the idle clock last restarted.
    pub(crate) fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// What an admitted request holds until its response body has ended or been dropped: its
/// in-flight permit and its place in the connection's [`Activity`].
pub(crate) struct Admitted {
    _permit: OwnedSemaphorePermit,
    activity: Arc<Activity>,
}

impl Admitted {
    pub(crate) fn new(permit: OwnedSemaphorePermit, activity: Arc<Activity>) -> Admitted {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Admitted {
            _permit: permit,
            activity,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream response body, streamed frame by frame. Holds its request's [`Admitted`] until
/// the body ends, and, for gRPC, records the response when its trailers arrive.
pub struct Observed {
    inner: ResponseBody,
    recorder: Option<Recorder>,
    line: Option<Box<RequestLine>>,
    _admitted: Admitted,
}

impl Observed {
    /// `recorder` is `Some` when the response is to be recorded at the body's end; `line`
    /// when an access line is to be written then.
    pub(crate) fn new(
        inner: ResponseBody,
        recorder: Option<Recorder>,
        line: Option<Box<RequestLine>>,
        admitted: Admitted,
    ) -> Observed {
        Observed {
            inner,
            recorder,
            line,
            _admitted: admitted,
        }
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(line)) = (&polled, this.line.as_mut())
            && let Some(data) = frame.data_ref()
        {
            line.bytes_out += data.len() as u64;
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let (Some(trailers), Some(rec)) = (frame.trailers_ref(), this.recorder.as_mut())
        {
            rec.grpc_ok = trailers
                .get(super::headers::GRPC_STATUS)
                .map(|v| v.as_bytes() == b"0");
        }
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            && let Some(rec) = this.recorder.take()
        {
            rec.record();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(mut rec) = self.recorder.take() {
            // The client went away before the trailers: not a success.
            if rec.grpc_ok.is_none() {
                rec.grpc_ok = Some(false);
            }
            rec.record();
        }
        if let Some(line) = self.line.take() {
            line.write(Outcome::Ok);
        }
    }
}

/// One request's access line, written when its response ends (`[log] access = "all"`) or
/// when the gateway refuses it.
pub(crate) struct RequestLine {
    pub(crate) access: AccessLog,
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) client_id: Arc<str>,
    pub(crate) method: http::Method,
    pub(crate) target: Option<Arc<str>>,
    pub(crate) endpoint: Option<std::net::SocketAddr>,
    pub(crate) protocol: &'static str,
    pub(crate) status: u16,
    pub(crate) start: Instant,
    pub(crate) bytes_in: Option<Arc<AtomicU64>>,
    pub(crate) bytes_out: u64,
}

impl RequestLine {
    pub(crate) fn write(&self, outcome: Outcome<'_>) {
        self.access.request(&RequestRecord {
            peer: self.peer,
            client_id: &self.client_id,
            method: self.method.as_str(),
            target: self.target.as_deref(),
            endpoint: self.endpoint,
            protocol: self.protocol,
            status: self.status,
            outcome,
            bytes_in: self
                .bytes_in
                .as_ref()
                .map_or(0, |b| b.load(Ordering::Relaxed)),
            bytes_out: self.bytes_out,
            duration: self.start.elapsed(),
        });
    }
}
