//! The backends: an HTTP/1 + h2c echo that reports what it received, and a TCP echo.

use crate::{Args, Error};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};

pub type RspBody = BoxBody<Bytes, Infallible>;

/// Renders what a request carried: request line, headers, body size, trailers.
pub fn report(
    parts: &http::request::Parts,
    body_len: usize,
    trailers: Option<&HeaderMap>,
) -> String {
    let mut s = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
    for (k, v) in &parts.headers {
        s.push_str(&format!(
            "  {}: {}\n",
            k,
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    s.push_str(&format!("  (body {body_len} bytes)\n"));
    if let Some(t) = trailers {
        for (k, v) in t {
            s.push_str(&format!(
                "  trailer {}: {}\n",
                k,
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
    }
    s
}

/// Answers like the echo backend. `who` names the answering side in the report.
pub async fn echo(
    req: Request<Incoming>,
    who: &str,
    conn_id: u64,
    peer: SocketAddr,
    log: Option<&Mutex<std::fs::File>>,
) -> Response<RspBody> {
    let (parts, body) = req.into_parts();
    let (data, trailers) = match body.collect().await {
        Ok(c) => {
            let t = c.trailers().cloned();
            (c.to_bytes(), t)
        }
        Err(e) => {
            let mut rsp =
                Response::new(Full::new(Bytes::from(format!("body error: {e}\n"))).boxed());
            *rsp.status_mut() = http::StatusCode::BAD_REQUEST;
            return rsp;
        }
    };
    let rep = report(&parts, data.len(), trailers.as_ref());
    if let (Some(log), Some(case)) = (log, parts.headers.get("x-case")) {
        let mut f = log.lock().unwrap();
        let _ = writeln!(
            f,
            "=== {who} conn {conn_id} from {peer} case {}\n{rep}",
            String::from_utf8_lossy(case.as_bytes())
        );
    }
    let path = parts.uri.path();
    let mut rsp = if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0).min(64 << 20);
        Response::new(Full::new(Bytes::from(vec![b'x'; n])).boxed())
    } else if parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes().starts_with(b"application/grpc"))
        .unwrap_or(false)
    {
        // gRPC-ish: echo the body, answer with trailers (and reflect request trailers).
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("grpc-message", HeaderValue::from_static("ok"));
        if let Some(rt) = &trailers {
            let s: Vec<String> = rt
                .iter()
                .map(|(k, v)| format!("{}={}", k, String::from_utf8_lossy(v.as_bytes())))
                .collect();
            if let Ok(v) = HeaderValue::from_str(&s.join(";")) {
                t.insert("x-request-trailers", v);
            }
        }
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(data)),
            Ok(Frame::trailers(t)),
        ];
        let mut r = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from(rep)).boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        r
    };
    rsp.headers_mut()
        .insert("x-answered-by", HeaderValue::from_str(who).unwrap());
    rsp.headers_mut().insert(
        "x-conn-id",
        HeaderValue::from_str(&conn_id.to_string()).unwrap(),
    );
    if let Some(op) = parts.headers.get("l5d-orig-proto") {
        rsp.headers_mut().insert("l5d-orig-proto", op.clone());
    }
    rsp
}

pub async fn run(args: &Args) -> Result<(), Error> {
    let http: SocketAddr = args.get("http", "192.0.2.20:9898").parse()?;
    let tcp: SocketAddr = args.get("tcp", "192.0.2.20:9899").parse()?;
    let log: Option<Arc<Mutex<std::fs::File>>> = match args.flags.get("log") {
        Some(p) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(p))?,
        ))),
        None => None,
    };
    let hl = TcpListener::bind(http).await?;
    let tl = TcpListener::bind(tcp).await?;
    eprintln!("stubcp backend: http echo on {http}, tcp echo on {tcp}");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = tl.accept().await else {
                continue;
            };
            tokio::spawn(tcp_echo(s));
        }
    });
    let conns = Arc::new(AtomicU64::new(0));
    loop {
        let (s, peer) = hl.accept().await?;
        let _ = s.set_nodelay(true);
        let id = conns.fetch_add(1, Ordering::Relaxed) + 1;
        let log = log.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let log = log.clone();
                async move { Ok::<_, Infallible>(echo(req, "backend", id, peer, log.as_deref()).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

/// Echoes until the peer half-closes, then half-closes too.
pub async fn tcp_echo(s: TcpStream) {
    let _ = s.set_nodelay(true);
    let (mut r, mut w) = s.into_split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}
