//! Load helpers for `benches/compare.py`, the side-by-side benchmark:
//! - `loadkit sink ADDR`: a TCP sink; on EOF it writes back the byte count (8 bytes, BE).
//! - `loadkit stream ADDR SNI CA CERT KEY MB [NAME:PORT]`: one mTLS stream of MB MiB to the
//!   sink through a proxy (with a Linkerd transport header when NAME:PORT is given); prints MB/s.
//! - `loadkit idle ADDR SNI CA CERT KEY N SECONDS [transport]`: opens N mTLS connections (ALPN
//!   http/1.1, or transport.l5d.io/v1), holds them SECONDS, prints how many were established.
//! - `loadkit linkerd ADDR SNI CA CERT KEY CONNS STREAMS SECS NAME:PORT [orig-proto]`: traffic
//!   shaped as a Linkerd source proxy sends it to a multicluster gateway: CONNS mTLS
//!   connections (ALPN transport.l5d.io/v1), each starting with a transport header naming
//!   NAME:PORT with session protocol HTTP/2, then HTTP/2 with STREAMS requests in flight for
//!   SECS seconds: `GET http://NAME:PORT/` (`:authority` only, no `host`), with
//!   `l5d-orig-proto: HTTP/1.1` when `orig-proto` is given. Prints one line of JSON:
//!   `{"ok":N,"errors":M,"p50_ms":X,"p99_ms":Y,"secs":S}`.
//! - `loadkit soak ...`: the soak behind `benches/soak.sh` (see [`soak`]).
//! - `loadkit delayed ADDR DELAY_MS`: an HTTP/1.1 + h2c backend answering `ok` after
//!   DELAY_MS; `GET /count` answers how many other requests it served (for
//!   `benches/balancer.py`).

mod common;
mod soak;

use crossgate::transport_header::{SessionProtocol, TransportHeader};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sink") => sink(&args[1]).await,
        Some("stream") => stream(&args[1..]).await,
        Some("idle") => idle(&args[1..]).await,
        Some("linkerd") => linkerd(&args[1..]).await,
        Some("soak") => soak::run(&args[1..]).await,
        Some("delayed") => delayed(&args[1..]).await,
        _ => anyhow::bail!("usage: loadkit sink|stream|idle|linkerd|soak|delayed ..."),
    }
}

async fn delayed(args: &[String]) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::atomic::{AtomicU64, Ordering};
    anyhow::ensure!(args.len() == 2, "usage: loadkit delayed ADDR DELAY_MS");
    let l = TcpListener::bind(&args[0]).await?;
    let delay = Duration::from_millis(args[1].parse()?);
    let served = Arc::new(AtomicU64::new(0));
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        let served = served.clone();
        let service = hyper::service::service_fn(move |req: http::Request<_>| {
            let served = served.clone();
            async move {
                let body = if req.uri().path() == "/count" {
                    served.load(Ordering::Relaxed).to_string()
                } else {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    "ok".to_string()
                };
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(body),
                )))
            }
        });
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), service)
                .await;
        });
    }
}

async fn sink(addr: &str) -> anyhow::Result<()> {
    Ok(common::count_sink(TcpListener::bind(addr).await?).await?)
}

fn client(args: &[String], alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let read = |i: usize| std::fs::read_to_string(&args[i]);
    Ok(crossgate::tls::client_config_from_pem(
        &read(2)?,
        &read(3)?,
        &read(4)?,
        alpn,
    )?)
}

async fn stream(args: &[String]) -> anyhow::Result<()> {
    let header = args.get(6).map(|t| {
        let (name, port) = t.rsplit_once(':').expect("NAME:PORT");
        TransportHeader {
            port: port.parse().expect("port"),
            name: Some(name.to_string()),
            protocol: None,
        }
    });
    let alpn: &[&[u8]] = if header.is_some() {
        &[crossgate::transport_header::ALPN]
    } else {
        &[]
    };
    let config = client(args, alpn)?;
    let mb: u64 = args[5].parse()?;
    let total = mb * 1024 * 1024;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut tls = crossgate::tls::connect(args[0].parse()?, config, &args[1]).await?;
    if let Some(h) = header {
        tls.write_all(&h.encode()).await?;
    }
    let mut sent = 0u64;
    while sent < total {
        tls.write_all(&chunk).await?;
        sent += chunk.len() as u64;
    }
    tls.shutdown().await?;
    let mut n = [0u8; 8];
    tls.read_exact(&mut n).await?;
    anyhow::ensure!(
        u64::from_be_bytes(n) == sent,
        "sink counted {}",
        u64::from_be_bytes(n)
    );
    println!("{:.1}", total as f64 / 1e6 / start.elapsed().as_secs_f64());
    Ok(())
}

async fn idle(args: &[String]) -> anyhow::Result<()> {
    let alpn: &[u8] = match args.get(7).map(String::as_str) {
        Some("transport") => crossgate::transport_header::ALPN,
        _ => b"http/1.1",
    };
    let config = client(args, &[alpn])?;
    let n: usize = args[5].parse()?;
    let hold: u64 = args[6].parse()?;
    let addr = args[0].parse()?;
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (config, sni, sem) = (config.clone(), args[1].clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            let tls = crossgate::tls::connect(addr, config, &sni).await.ok();
            drop(permit);
            tls
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(tls)) = t.await {
            held.push(tls);
        }
    }
    println!("{}", held.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    drop(held);
    Ok(())
}

/// What one `linkerd` stream (or a connection that failed to open) counted.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    /// Latency of each ok request, in microseconds.
    micros: Vec<u32>,
}

async fn linkerd(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str =
        "usage: loadkit linkerd ADDR SNI CA CERT KEY CONNS STREAMS SECS NAME:PORT [orig-proto]";
    anyhow::ensure!(args.len() == 9 || args.len() == 10, USAGE);
    let orig_proto = match args.get(9).map(String::as_str) {
        None => false,
        Some("orig-proto") => true,
        Some(other) => anyhow::bail!("unknown option {other:?}; {USAGE}"),
    };
    let addr: std::net::SocketAddr = args[0].parse()?;
    let config = client(args, &[crossgate::transport_header::ALPN])?;
    let conns: usize = args[5].parse()?;
    let streams: usize = args[6].parse()?;
    let secs: f64 = args[7].parse()?;
    let target = &args[8];
    let (name, port) = target
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{target:?} is not NAME:PORT"))?;
    let header = TransportHeader {
        port: port.parse()?,
        name: Some(name.to_string()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    let uri: http::Uri = format!("http://{target}/").parse()?;

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut conn_tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (config, sni, header, uri) =
            (config.clone(), args[1].clone(), header.clone(), uri.clone());
        let connected = connected.clone();
        conn_tasks.push(tokio::spawn(async move {
            let send = match linkerd_connect(addr, config, &sni, &header).await {
                Ok(send) => send,
                Err(e) => {
                    eprintln!("connect: {e:#}");
                    return vec![Tally {
                        errors: 1,
                        ..Tally::default()
                    }];
                }
            };
            connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let streams: Vec<_> = (0..streams)
                .map(|_| {
                    let (send, uri) = (send.clone(), uri.clone());
                    tokio::spawn(linkerd_stream(send, uri, orig_proto, deadline))
                })
                .collect();
            drop(send);
            let mut out = Vec::with_capacity(streams.len());
            for s in streams {
                out.push(s.await.unwrap_or(Tally {
                    errors: 1,
                    ..Tally::default()
                }));
            }
            out
        }));
    }
    let mut total = Tally::default();
    for t in conn_tasks {
        for tally in t.await.unwrap_or_default() {
            total.ok += tally.ok;
            total.errors += tally.errors;
            total.micros.extend(tally.micros);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let connected = connected.load(std::sync::atomic::Ordering::Relaxed);
    if connected == 0 {
        eprintln!("loadkit linkerd: none of {conns} connections to {addr} could be established");
        std::process::exit(1);
    }
    total.micros.sort_unstable();
    let pct = |q: f64| -> f64 {
        match total.micros.len() {
            0 => 0.0,
            n => f64::from(total.micros[((n as f64 * q) as usize).min(n - 1)]) / 1e3,
        }
    };
    println!(
        "{{\"ok\":{},\"errors\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"secs\":{:.3}}}",
        total.ok,
        total.errors,
        pct(0.50),
        pct(0.99),
        elapsed
    );
    Ok(())
}

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// mTLS, the transport header, then an HTTP/2 (prior knowledge) client over the same stream.
async fn linkerd_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
    header: &[u8],
) -> anyhow::Result<H2Sender> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let connect = async {
        let mut tls = crossgate::tls::connect(addr, config, sni).await?;
        tls.write_all(header).await?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        anyhow::Ok(send)
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after 10 s"))?
}

/// One request at a time on `send` until `deadline`: `GET uri` as linkerd2-proxy sends it
/// (absolute-form, so hyper puts the authority in `:authority` and adds no `host`).
async fn linkerd_stream(
    mut send: H2Sender,
    uri: http::Uri,
    orig_proto: bool,
    deadline: Instant,
) -> Tally {
    use http_body_util::BodyExt;
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let mut req = http::Request::get(uri.clone())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        if orig_proto {
            req.headers_mut()
                .insert("l5d-orig-proto", http::HeaderValue::from_static("HTTP/1.1"));
        }
        let t0 = Instant::now();
        let exchange = async {
            send.ready().await?;
            let resp = send.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            anyhow::Ok(status)
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(Ok(status)) if status == http::StatusCode::OK => {
                tally.ok += 1;
                let us = t0.elapsed().as_micros();
                tally.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(Ok(_)) => tally.errors += 1,
            Ok(Err(_)) | Err(_) => {
                tally.errors += 1;
                // A dead connection fails every request at once; stop instead of spinning.
                if send.is_closed() {
                    break;
                }
            }
        }
    }
    tally
}
