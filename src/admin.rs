//! The admin port: `/live`, `/ready`, `/metrics`. One socket serves plaintext HTTP (kubelet,
//! Prometheus) and mTLS HTTP (the remote service-mirror probing through its meshed proxy),
//! told apart by the first byte; each in HTTP/1.1 and HTTP/2. `[[authorization]]` rules do not
//! apply here: an mTLS client needs only a chain to the anchors. The same code serves the
//! private plaintext metrics port (`[server] metrics`); the admin port then answers `/metrics`
//! with 404.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The first byte of a TLS ClientHello record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the admin port answers from: narrow handles, not the whole gateway. The gateway and
/// the prober each build one.
pub struct AdminState {
    /// `/ready`: 200 when it returns true, else 503.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The OpenMetrics text of `/metrics`.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Whether this port answers `/metrics`; false on the public admin port when `[server]
    /// metrics` moves it to a private address (then `/metrics` is 404 here).
    pub serve_metrics: bool,
    /// The current mTLS acceptor (rebuilt on rotation); `None`: plaintext only, and a TLS
    /// ClientHello is refused by closing the connection.
    pub tls: Option<Arc<dyn Fn() -> TlsAcceptor + Send + Sync>>,
    /// Deadline for the first byte and, over mTLS, for the handshake.
    pub handshake_timeout: Duration,
    /// Deadline for an HTTP/1 request head.
    pub header_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog, so a flood of idle admin
    /// connections cannot take the descriptors the data plane needs.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2,
    /// before the first request and between requests).
    pub idle_timeout: Duration,
}

/// Serves the admin port until the task is aborted: it keeps answering while the gateway
/// drains, so `/ready` says 503 and `/live` 200 until the process ends.
pub async fn serve(state: Arc<AdminState>, listener: TcpListener) {
    let permits = Arc::new(tokio::sync::Semaphore::new(state.max_connections));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((tcp, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    serve_connection(state, tcp).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The admin port served on a thread of its own; see [`serve_dedicated`].
pub struct Dedicated {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Serves the admin port on its own thread and current-thread runtime, so `/ready` answers
/// within milliseconds while the data plane's workers are saturated: on the shared runtime a
/// probe's accept and handshake queue behind every busy connection task (measured: mTLS
/// `/ready` p99 95-119 ms under full load, against 17 ms idle). Runs until [`Dedicated::stop`].
pub fn serve_dedicated(
    state: Arc<AdminState>,
    listener: TcpListener,
) -> std::io::Result<Dedicated> {
    let listener = listener.into_std()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("crossgate-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => tokio::select! {
                        _ = serve(state, listener) => {}
                        _ = stopped => {}
                    },
                    Err(e) => tracing::error!(error = %e, "admin listener unusable"),
                }
            });
            // Dropping the runtime here ends every admin connection and closes the socket.
        })?;
    Ok(Dedicated { stop, thread })
}

impl Dedicated {
    /// Stops serving and waits until the admin socket is closed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

async fn serve_connection(state: Arc<AdminState>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let deadline = state.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE {
        return http(state, TokioIo::new(tcp)).await;
    }
    let Some(acceptor) = state.tls.as_ref().map(|tls| tls()) else {
        tracing::debug!("admin TLS ClientHello on a plaintext-only port; closed");
        return;
    };
    match tokio::time::timeout(deadline, acceptor.accept(tcp).into_fallible()).await {
        Ok(Ok(tls)) => http(state, TokioIo::new(tls)).await,
        Ok(Err((e, tcp))) => {
            let reason = crate::tls::failure_reason(&e);
            tracing::debug!(reason, error = %e, "admin mTLS handshake refused");
            // The client reads its alert, not a reset.
            // Boxed: its read buffer would otherwise enlarge every connection's future.
            Box::pin(crate::tls::linger(tcp)).await;
        }
        Err(_) => tracing::debug!("admin mTLS handshake not complete in time"),
    }
}

async fn http<I>(state: Arc<AdminState>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let idle = state.idle_timeout;
    let activity = Arc::new(Requests::default());
    let counted = activity.clone();
    let header_timeout = state.header_timeout;
    let service = service_fn(move |req| {
        let (state, counted) = (state.clone(), counted.clone());
        async move {
            let _request = counted.begin();
            Ok::<_, Infallible>(answer(&state, &req))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut served = std::pin::pin!(builder.serve_connection(io, service));
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        let last = activity.last();
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "admin connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(last + idle), if closing_since.is_none() => {
                if activity.idle_since(last) {
                    tracing::debug!(?idle, "idle admin connection closed");
                    served.as_mut().graceful_shutdown();
                    closing_since = Some(tokio::time::Instant::now());
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)), if closing_since.is_some() => {
                // A graceful close waits for a half-sent request that may never complete.
                return;
            }
        }
    }
}

/// Requests in flight on one admin connection, and when the last one ended.
struct Requests {
    in_flight: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            in_flight: Default::default(),
            last: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }
}

impl Requests {
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    fn last(&self) -> tokio::time::Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No request in flight, and none ended since `last`.
    fn idle_since(&self, last: tokio::time::Instant) -> bool {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 0 && self.last() == last
    }
}

struct RequestGuard(Arc<Requests>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" if (state.ready)() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" if state.serve_metrics => {
            let mut r = Response::new(Full::new(Bytes::from((state.metrics)())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
