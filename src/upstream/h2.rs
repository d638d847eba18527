//! An endpoint's HTTP/2 connection, driven through `h2` directly: a request is sent from the
//! task that serves it and its response awaited there, with no dispatch task, channel or
//! callback between (hyper's client adds a task and two channels per request). The
//! connection's own task reads and writes frames and pings the endpoint when it goes quiet.

use super::RequestBody;
use super::http::SendError;
use crate::refusal::Refusal;
use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{HeaderMap, Method, Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connection quiet for this long is pinged...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and closed when the answer takes longer than this.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One endpoint's HTTP/2 connection, shared by every request to it.
#[derive(Clone)]
pub(super) struct H2Conn {
    send: SendRequest<Bytes>,
    /// Set when the connection's task ends.
    closed: Arc<AtomicBool>,
}

impl H2Conn {
    /// Whether the connection has ended (a request then needs a new one).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The HTTP/2 handshake over `io`, and the task that drives the connection from then on;
/// `done` is told how it ended.
pub(super) async fn handshake<T>(
    io: T,
    done: impl FnOnce(Result<(), String>) + Send + 'static,
) -> Result<H2Conn, Refusal>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // hyper's client defaults, which this connection had before it was driven directly.
    let (send, mut conn) = h2::client::Builder::new()
        .initial_max_send_streams(100)
        .initial_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(5 * 1024 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .enable_push(false)
        .handshake::<T, Bytes>(io)
        .await
        .map_err(|e| refused(&e))?;
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let ping = conn.ping_pong();
    tokio::spawn(async move {
        let ended = drive(&mut conn, ping).await;
        flag.store(true, Ordering::Relaxed);
        done(ended);
    });
    Ok(H2Conn { send, closed })
}

/// Runs the connection until it ends, pinging it every [`KEEP_ALIVE_INTERVAL`]: a ping not
/// answered within [`KEEP_ALIVE_TIMEOUT`] ends it (the endpoint or the path to it is gone).
async fn drive<T>(
    conn: &mut h2::client::Connection<T, Bytes>,
    ping: Option<PingPong>,
) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |e: h2::Error| crate::refusal::error_chain(&e);
    let Some(mut ping) = ping else {
        return conn.await.map_err(failed);
    };
    loop {
        // The timer is polled once and then only when due: the task wakes for every frame.
        let sleep = std::pin::pin!(tokio::time::sleep(KEEP_ALIVE_INTERVAL));
        let due = crate::due::timer(sleep);
        tokio::select! {
            ended = &mut *conn => return ended.map_err(failed),
            () = due => {}
        }
        let pong = tokio::time::timeout(KEEP_ALIVE_TIMEOUT, ping.ping(Ping::opaque()));
        tokio::select! {
            ended = &mut *conn => return ended.map_err(failed),
            answered = pong => match answered {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(failed(e)),
                Err(_) => return Err("keep-alive ping unanswered".into()),
            },
        }
    }
}

/// Sends `req` on `conn` and waits for its response. A connection that can no longer open a
/// stream gives the request back (nothing of it was sent).
pub(super) async fn send(
    mut conn: H2Conn,
    req: Box<Request<RequestBody>>,
) -> Result<Response<H2Body>, SendError> {
    if let Err(e) = poll_fn(|cx| conn.send.poll_ready(cx)).await {
        // Going away (GOAWAY) or gone: it takes no new stream, though its task may still be
        // finishing streams in flight; the next request opens a new connection.
        conn.closed.store(true, Ordering::Relaxed);
        return Err(SendError::NotSent(refused(&e), req));
    }
    let (response, failed) = open_stream(&mut conn, req)?;
    match response.await {
        Ok(response) => {
            let (parts, recv) = response.into_parts();
            let body = H2Body::new(recv, &parts.headers);
            Ok(Response::from_parts(parts, body))
        }
        Err(e) => {
            // A body the client sent malformed is the client's error, not the endpoint's.
            let client = failed.as_ref().and_then(|f| f.get().cloned());
            Err(SendError::Failed(client.unwrap_or_else(|| refused(&e))))
        }
    }
}

/// Where the task copying a request's body leaves the client's error, if it made one.
type BodyFailed = Arc<OnceLock<Refusal>>;

/// Opens `req`'s stream and sends its head, its body following in a task of its own. Not
/// `async`: the request's parts are not held across the wait for the response, which keeps
/// every request's future smaller.
fn open_stream(
    conn: &mut H2Conn,
    req: Box<Request<RequestBody>>,
) -> Result<(ResponseFuture, Option<BodyFailed>), SendError> {
    let (mut parts, body) = req.into_parts();
    if let Some(len) = body.size_hint().exact()
        && (len != 0 || has_payload(&parts.method))
        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, len.into());
    }
    let eos = body.is_end_stream();
    let (response, stream) = match conn.send.send_request(Request::from_parts(parts, ()), eos) {
        Ok(sent) => sent,
        Err(e) => {
            if e.is_go_away() || e.is_io() {
                conn.closed.store(true, Ordering::Relaxed);
            }
            return Err(SendError::Failed(refused(&e)));
        }
    };
    // The client's body, if any, goes by a task of its own, as the response may come first.
    let failed = (!eos).then(|| {
        let failed = Arc::new(OnceLock::new());
        tokio::spawn(pipe(body, stream, failed.clone()));
        failed
    });
    Ok((response, failed))
}

/// Methods whose request has a payload by definition (RFC 9110 9.3), so that an empty body
/// is still announced as `content-length: 0`, as hyper's client did.
fn has_payload(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

fn refused(e: &h2::Error) -> Refusal {
    Refusal::Upstream(crate::refusal::error_chain(e))
}

/// Copies the client's body to the stream under HTTP/2 flow control. A malformed body is
/// recorded in `failed` (the client's error) and the stream reset; a reset from the endpoint
/// ends the copy.
async fn pipe(mut body: RequestBody, mut tx: SendStream<Bytes>, failed: Arc<OnceLock<Refusal>>) {
    loop {
        let frame = poll_fn(|cx| {
            if tx.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let frame = match frame {
            None => return,
            Some(None) => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Some(Err(refusal))) => {
                let _ = failed.set(refusal);
                tx.send_reset(Reason::CANCEL);
                return;
            }
            Some(Some(Ok(frame))) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                match frame.into_trailers() {
                    Ok(trailers) => drop(tx.send_trailers(trailers)),
                    // A frame of a kind HTTP/2 cannot carry: the request cannot be finished.
                    Err(_) => tx.send_reset(Reason::INTERNAL_ERROR),
                }
                return;
            }
        };
        while !data.is_empty() {
            tx.reserve_capacity(data.len());
            let n = match poll_fn(|cx| tx.poll_capacity(cx)).await {
                Some(Ok(n)) => n.min(data.len()),
                // The stream was reset or the connection went: nothing more can be sent.
                None | Some(Err(_)) => return,
            };
            if n == 0 {
                continue;
            }
            let chunk = data.split_to(n);
            let end = data.is_empty() && body.is_end_stream();
            if tx.send_data(chunk, end).is_err() || end {
                return;
            }
        }
    }
}

/// A response body as `h2` receives it: data (its flow-control capacity given back as it is
/// taken), then trailers if any.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
    /// What `content-length` says is still to come, if it says.
    remaining: Option<u64>,
}

impl H2Body {
    fn new(recv: RecvStream, headers: &HeaderMap) -> H2Body {
        let remaining = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        H2Body {
            recv,
            data_done: false,
            remaining,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.remaining = this.remaining.map(|n| n.saturating_sub(data.len() as u64));
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(ended(e)),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            _ if self.recv.is_end_stream() => SizeHint::with_exact(0),
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A reset with `NO_ERROR` or `CANCEL` while data is read ends the body cleanly (as hyper's
/// client reads it); any other error is the body's.
fn ended(e: h2::Error) -> Option<Result<Frame<Bytes>, h2::Error>> {
    match e.reason() {
        Some(Reason::NO_ERROR | Reason::CANCEL) => None,
        _ => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// A connection nobody holds any more ends (its keep-alive pinger does not keep it open),
    /// and one that is held stays open.
    #[tokio::test]
    async fn a_connection_ends_when_its_last_holder_drops_it() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tx, mut ended) = tokio::sync::oneshot::channel();
        let conn = handshake(tcp, move |r| drop(tx.send(r))).await.unwrap();
        let answer = conn
            .send
            .clone()
            .send_request(
                Request::get(format!("http://{addr}/")).body(()).unwrap(),
                true,
            )
            .unwrap()
            .0
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        drop(answer);
        let held = tokio::time::timeout(Duration::from_millis(300), &mut ended).await;
        assert!(held.is_err(), "a held connection ended: {held:?}");
        assert!(!conn.is_closed());
        drop(conn);
        let ended = tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .expect("an unheld connection ends")
            .unwrap();
        assert_eq!(ended, Ok(()));
    }
}
