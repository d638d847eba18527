//! Clients run inside the netns: a gRPC-ish HTTP/2 POST with trailers, a TCP echo check
//! with half-close, and a bounded load generator.

use crate::{Args, Error};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn addr_of(uri: &Uri) -> Result<SocketAddr, Error> {
    let a = uri.authority().ok_or("URL needs host:port")?;
    Ok(format!("{}:{}", a.host(), a.port_u16().unwrap_or(80)).parse()?)
}

/// stubcp grpc http://VIP:PORT/pkg.Svc/Method
pub async fn grpc(args: &Args) -> Result<(), Error> {
    let uri: Uri = args.pos.first().ok_or("usage: stubcp grpc URL")?.parse()?;
    let tcp = TcpStream::connect(addr_of(&uri)?).await?;
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    // One gRPC message: flag 0, length 5, "hello".
    let msg = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    let mut t = HeaderMap::new();
    t.insert("x-req-trailer", HeaderValue::from_static("t1"));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(msg.clone())),
        Ok(Frame::trailers(t)),
    ];
    let body: BoxBody<Bytes, Infallible> = StreamBody::new(futures::stream::iter(frames)).boxed();
    let req = Request::post(uri.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-case", args.get("case", "grpc"))
        .body(body)?;
    let rsp = tokio::time::timeout(Duration::from_secs(10), tx.send_request(req)).await??;
    println!("status: {}", rsp.status().as_u16());
    for (k, v) in rsp.headers() {
        println!("header {}: {}", k, String::from_utf8_lossy(v.as_bytes()));
    }
    let c = rsp.into_body().collect().await?;
    let trailers = c.trailers().cloned();
    let data = c.to_bytes();
    println!(
        "body: {} bytes, echo {}",
        data.len(),
        if data == msg { "ok" } else { "MISMATCH" }
    );
    if let Some(t) = trailers {
        for (k, v) in &t {
            println!("trailer {}: {}", k, String::from_utf8_lossy(v.as_bytes()));
        }
    }
    Ok(())
}

/// stubcp tcp VIP:PORT [--bytes N]: writes N bytes, half-closes, expects them echoed then EOF.
pub async fn tcp(args: &Args) -> Result<(), Error> {
    let addr: SocketAddr = args.pos.first().ok_or("usage: stubcp tcp ADDR")?.parse()?;
    let n: usize = args.get("bytes", "65536").parse()?;
    let t0 = Instant::now();
    let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
    s.set_nodelay(true)?;
    let (mut r, mut w) = s.into_split();
    let pattern: Vec<u8> = (0..n)
        .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36])
        .collect();
    let p2 = pattern.clone();
    let writer = tokio::spawn(async move {
        for chunk in p2.chunks(64 * 1024) {
            w.write_all(chunk).await?;
        }
        w.shutdown().await?; // half-close
        Ok::<_, std::io::Error>(w)
    });
    let mut got = Vec::with_capacity(n);
    let read = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut got)).await;
    let _w = writer.await??;
    let secs = t0.elapsed().as_secs_f64();
    match read {
        Err(_) => Err(format!("timeout: got {} of {n} bytes, no EOF", got.len()).into()),
        Ok(Err(e)) => Err(format!("read: {e} after {} bytes", got.len()).into()),
        Ok(Ok(_)) if got != pattern => {
            Err(format!("mismatch: sent {n} bytes, got {} back", got.len()).into())
        }
        Ok(Ok(_)) => {
            println!(
                "ok sent={n} echoed={} eof=yes secs={secs:.3} MiB/s={:.1}",
                got.len(),
                (2 * n) as f64 / secs / 1048576.0
            );
            Ok(())
        }
    }
}

/// stubcp load URL [--h2] [--conns C] [--secs S] [--max N]: C connections, each sending
/// requests one after another (HTTP/1 keep-alive, or HTTP/2 prior knowledge) for S seconds
/// (at most 20) or N requests in all.
pub async fn load(args: &Args) -> Result<(), Error> {
    let uri: Uri = args.pos.first().ok_or("usage: stubcp load URL")?.parse()?;
    let h2 = args.has("h2");
    let conns: usize = args.get("conns", "4").parse()?;
    let secs: f64 = args.get("secs", "10").parse::<f64>()?.min(20.0);
    let max: u64 = args.get("max", "2000000").parse()?;
    let addr = addr_of(&uri)?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let uri = uri.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_err = None;
            'outer: while Instant::now() < deadline {
                let tcp = match TcpStream::connect(addr).await {
                    Ok(t) => t,
                    Err(e) => {
                        errors += 1;
                        first_err.get_or_insert(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let io = TokioIo::new(tcp);
                enum S {
                    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
                    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
                }
                let mut s = if h2 {
                    match hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await {
                        Ok((s, c)) => {
                            tokio::spawn(c);
                            S::H2(s)
                        }
                        Err(e) => {
                            errors += 1;
                            first_err.get_or_insert(e.to_string());
                            continue;
                        }
                    }
                } else {
                    match hyper::client::conn::http1::handshake(io).await {
                        Ok((s, c)) => {
                            tokio::spawn(c);
                            S::H1(s)
                        }
                        Err(e) => {
                            errors += 1;
                            first_err.get_or_insert(e.to_string());
                            continue;
                        }
                    }
                };
                while Instant::now() < deadline {
                    if count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= max {
                        break 'outer;
                    }
                    let t = Instant::now();
                    let res = match &mut s {
                        S::H1(s) => {
                            let req = Request::get(uri.path())
                                .header("host", uri.authority().unwrap().as_str())
                                .body(Empty::new())
                                .unwrap();
                            s.send_request(req).await
                        }
                        S::H2(s) => {
                            s.send_request(Request::get(uri.clone()).body(Empty::new()).unwrap())
                                .await
                        }
                    };
                    let ok = match res {
                        Ok(rsp) => {
                            let st = rsp.status();
                            match rsp.into_body().collect().await {
                                Ok(_) if st.is_success() => true,
                                Ok(_) => {
                                    first_err.get_or_insert(format!("status {st}"));
                                    false
                                }
                                Err(e) => {
                                    first_err.get_or_insert(e.to_string());
                                    false
                                }
                            }
                        }
                        Err(e) => {
                            first_err.get_or_insert(e.to_string());
                            false
                        }
                    };
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                        continue 'outer; // reconnect
                    }
                }
            }
            (lat, errors, first_err)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_err = None;
    for t in tasks {
        let (l, e, fe) = t.await?;
        lat.extend(l);
        errors += e;
        if first_err.is_none() {
            first_err = fe;
        }
    }
    let el = t0.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "requests={} errors={} secs={:.2} rps={:.0} p50_ms={:.2} p99_ms={:.2}{}",
        lat.len(),
        errors,
        el,
        lat.len() as f64 / el,
        pct(0.50),
        pct(0.99),
        first_err
            .map(|e| format!(" first_error={e:?}"))
            .unwrap_or_default()
    );
    Ok(())
}
