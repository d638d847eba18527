//! The admin port: `/live`, `/ready`, `/metrics`. One socket serves plaintext HTTP (kubelet,
//! Prometheus) and mTLS HTTP (the remote service-mirror probing through its meshed proxy),
//! told apart by the first byte; each in HTTP/1.1 and HTTP/2. Open to anyone who reaches the
//! LoadBalancer, so no client can make a probe wait: a request head must be complete within
//! [`HEAD_DEADLINE`] (or `header_timeout`, if shorter), and a connection past the cap is not
//! left in the backlog but accepted on [`PROBATION`]: it must send a complete head at once and
//! is closed after one request. Slow clients hold at most the capped slots, for seconds;
//! a kubelet or prober is answered whatever they do. `[[authorization]]` rules do not
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

mod requests;

use requests::Requests;

/// The longest a connection may take for a request head on the admin port, from its accept
/// or its last request: kubelet, Prometheus and a prober send a head in one segment right
/// after connecting (or the handshake), so seconds are only ever taken by a slow client.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);

/// Past `max_connections`, the time a new connection has from its accept to a complete
/// request head (the mTLS handshake included): enough for a prober across a WAN, short
/// enough that slow clients cycling through it hold few descriptors.
pub const PROBATION: Duration = Duration::from_secs(1);

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
    /// Deadline for a request head (at most [`HEAD_DEADLINE`]).
    pub header_timeout: Duration,
    /// Connections served as usual at most, so a flood of admin connections cannot hold the
    /// descriptors the data plane needs; more are accepted on [`PROBATION`].
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2,
    /// before the first request and between requests).
    pub idle_timeout: Duration,
}

/// Serves the admin port until the task is aborted: it keeps answering while the gateway
/// drains, so `/ready` says 503 and `/live` 200 until the process ends.
pub async fn serve(state: Arc<AdminState>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(state.max_connections));
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                // None: past the cap, on probation.
                let slot = slots.clone().try_acquire_owned().ok();
                let requests = Arc::new(Requests::new(tokio::time::Instant::now()));
                let state = state.clone();
                tokio::spawn(async move {
                    serve_connection(state, tcp, requests, slot.is_none()).await;
                    drop(slot);
                });
                // Lets the new connection read its head before the next accept.
                tokio::task::yield_now().await;
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

async fn serve_connection(
    state: Arc<AdminState>,
    tcp: TcpStream,
    activity: Arc<Requests>,
    probation: bool,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = if probation {
        state.handshake_timeout.min(PROBATION)
    } else {
        state.handshake_timeout
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE {
        return http(state, TokioIo::new(tcp), activity, probation).await;
    }
    let Some(acceptor) = state.tls.as_ref().map(|tls| tls()) else {
        tracing::debug!("admin TLS ClientHello on a plaintext-only port; closed");
        return;
    };
    match tokio::time::timeout(deadline, acceptor.accept(tcp).into_fallible()).await {
        Ok(Ok(tls)) => http(state, TokioIo::new(tls), activity, probation).await,
        Ok(Err((e, tcp))) => {
            let reason = crate::tls::failure_reason(&e);
            tracing::debug!(reason, error = %crate::explain::io(&e), "admin mTLS handshake refused");
            // The client reads its alert, not a reset.
            // Boxed: its read buffer would otherwise enlarge every connection's future.
            Box::pin(crate::tls::linger(tcp)).await;
        }
        Err(_) => tracing::debug!("admin mTLS handshake not complete in time"),
    }
}

/// Serves HTTP until the client closes, the idle timeout, or the head deadline. On probation:
/// the head must be complete within [`PROBATION`] of the accept, and the connection closes
/// after its first request.
async fn http<I>(state: Arc<AdminState>, io: I, activity: Arc<Requests>, probation: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let idle = if probation {
        Duration::ZERO
    } else {
        state.idle_timeout
    };
    let counted = activity.clone();
    let header_timeout = state.header_timeout.min(HEAD_DEADLINE);
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
        .header_read_timeout(header_timeout)
        // On probation HTTP/1 answers one request and closes, however fast the next one comes.
        .keep_alive(!probation);
    let mut served = std::pin::pin!(builder.serve_connection(io, service));
    let mut closing_since: Option<tokio::time::Instant> = None;
    // The first head's deadline runs from the accept and covers what hyper's header timeout
    // does not: the bytes read to tell HTTP/1 from HTTP/2, and an HTTP/2 preface.
    let accepted = activity.last();
    let first_deadline = accepted
        + if probation {
            header_timeout.min(PROBATION)
        } else {
            header_timeout
        };
    loop {
        let last = activity.last();
        let first_head = last == accepted && activity.in_flight() == 0;
        // While a request is in flight, look again shortly rather than spin on a past instant.
        let idle_check = if activity.in_flight() > 0 {
            tokio::time::Instant::now() + Duration::from_millis(5)
        } else {
            last + idle
        };
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "admin connection ended");
                }
                return;
            }
            // On probation only after its one request.
            _ = tokio::time::sleep_until(idle_check), if closing_since.is_none() && !(probation && first_head) => {
                if activity.idle_since(last) {
                    tracing::debug!(?idle, "idle admin connection closed");
                    served.as_mut().graceful_shutdown();
                    closing_since = Some(tokio::time::Instant::now());
                }
            }
            _ = tokio::time::sleep_until(first_deadline), if first_head => {
                if activity.idle_since(accepted) {
                    tracing::debug!(?header_timeout, "admin request head not complete in time");
                    return;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)), if closing_since.is_some() => {
                // A graceful close waits for a half-sent request that may never complete.
                return;
            }
        }
    }
}

fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        // RFC 9110 15.5.6: a 405 says which methods are served.
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        let allow = header::HeaderValue::from_static("GET, HEAD");
        r.headers_mut().insert(header::ALLOW, allow);
        return r;
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
