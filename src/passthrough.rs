//! The passthrough port (`[passthrough] listen`): TLS that the gateway does not terminate.
//! Each connection, through the same [`accept_loop`](crate::server::accept_loop) as the mTLS
//! port: the ClientHello read from the raw bytes under the handshake deadline and within
//! [`MAX_HELLO`] ([`client_hello`]) → its SNI to a target, routed and allowed
//! ([`plan::plan_passthrough`]) → plain TCP to an endpoint → the bytes read so far, then a
//! splice both ways with the idle deadline. The workload's own proxy does TLS (mTLS) end to
//! end: the gateway never learns who the client is, so `[passthrough] allow` is all that keeps
//! the port from being an open relay. A connection refused (no SNI, a name not allowed, an IP
//! literal, bytes that are not a ClientHello) is closed and counted as
//! `inbound_tcp_errors_total{error="sni"}`.

use crate::Gateway;
use crate::access::{ConnRecord, Outcome};
use crate::client_hello::{self, Hello, HelloError, MAX_HELLO};
use crate::metrics::{Leg, Scope, TcpLabels};
use crate::plan;
use crate::proxy::tcp::{Counters, StreamError};
use crate::refusal::Refusal;
use crate::server::Handler;
use crate::upstream::{Connected, Opened};
use bytes::BufMut;
use prometheus_client::metrics::counter::Counter;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{Span, debug, field};

/// The copy buffer per direction of a splice: a TLS record's worth, as nginx's stream proxy
/// buffers by default. The 64 KiB of a terminated opaque stream would be zeroed for every
/// connection, mostly to carry a handshake and a request or two.
const SPLICE_BUF: usize = 16 * 1024;

/// The passthrough port: what the accept loop runs for each of its connections.
pub struct PassthroughPort {
    gw: Arc<Gateway>,
}

impl PassthroughPort {
    /// The port's handler over the gateway's rules, upstream, telemetry and settings.
    pub fn new(gw: Arc<Gateway>) -> PassthroughPort {
        PassthroughPort { gw }
    }
}

impl Handler for PassthroughPort {
    fn admit(&self, peer: SocketAddr) -> bool {
        crate::server::source_admitted(&self.gw, peer)
    }

    async fn serve(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        // Boxed: the task holds only the state the connection reached.
        Box::pin(splice(&self.gw, tcp, peer)).await
    }
}

/// How the bytes before the ClientHello's end went.
enum Read {
    Hello(Option<String>),
    /// The client closed without sending a byte (a TCP health check): not an error.
    Nothing,
}

/// One passthrough connection, from its first byte to its access line.
async fn splice(gw: &Gateway, mut tcp: TcpStream, peer: SocketAddr) {
    let start = Instant::now();
    let _ = tcp.set_nodelay(true);
    let line = |target: Option<&str>, outcome: Outcome<'_>, bytes, endpoint| {
        access_line(gw, peer, start, target, outcome, bytes, endpoint)
    };
    let refused = |refusal: &Refusal, target: Option<&str>| {
        gw.metrics.refused(Scope::Connection, None, refusal);
        access_line(
            gw,
            peer,
            start,
            target,
            Outcome::Refused(refusal),
            (0, 0),
            None,
        );
    };
    let mut hello = Vec::with_capacity(4096);
    let deadline = gw.settings.handshake_timeout;
    let sni = match tokio::time::timeout(deadline, read_hello(&mut tcp, &mut hello)).await {
        Ok(Ok(Read::Hello(sni))) => sni,
        Ok(Ok(Read::Nothing)) => return debug!("closed before a byte"),
        Ok(Err(reason)) => return refused(&Refusal::Sni(reason), None),
        Err(_) => return refused(&Refusal::Sni("client hello timeout"), None),
    };
    let rules = gw.rules.load();
    let target = match plan::plan_passthrough(sni.as_deref(), &rules) {
        Ok(target) => target,
        Err(refusal) => return refused(&refusal, None),
    };
    Span::current().record("target", field::display(&target));
    let text = target.to_string();
    let opened = gw.upstream.open_raw(&target, &rules).await;
    drop(rules);
    let Opened {
        connected: Connected {
            io: mut upstream,
            leg: mut up_leg,
        },
        addr,
        // The stream's share of the endpoint's load, until it ends.
        in_flight: _in_flight,
        // No caller is known here: no pod policy was applied, none can be revoked.
        revoked: _,
    } = match opened {
        Ok(o) => o,
        Err(refusal) => return refused(&refusal, Some(&text)),
    };
    // After the dial: a target reached is known, and its name a label.
    let sni = match gw.metrics.targets.is_known(&target) {
        true => target.name.clone(),
        false => crate::metrics::OTHER.into(),
    };
    let mut leg = Leg::open(&gw.metrics, TcpLabels::Passthrough { sni });
    let local = (Counter::default(), Counter::default());
    let first = hello.len() as u64;
    let sent = upstream.write_all(&hello).await;
    drop(hello);
    for c in [&leg.read, &local.0, &up_leg.write] {
        c.inc_by(first);
    }
    let result = match sent {
        Ok(()) => {
            crate::proxy::tcp::proxy_with_buffers(
                tcp,
                upstream,
                gw.settings.idle_timeout,
                Counters::from((leg.read.clone(), leg.write.clone())).also(local.clone()),
                (up_leg.read.clone(), up_leg.write.clone()),
                SPLICE_BUF,
            )
            .await
        }
        Err(e) => Err(StreamError::Io(e)),
    };
    let bytes = (local.0.get(), local.1.get());
    match result {
        Ok(_) => {
            leg.succeeded();
            up_leg.succeeded();
            line(Some(&text), Outcome::Ok, bytes, Some(addr));
        }
        Err(e) => {
            if matches!(e, StreamError::Io(_)) {
                gw.metrics.tcp.error("i/o");
            }
            debug!(%addr, error = %e, "stream ended");
            line(
                Some(&text),
                Outcome::Failed(&e.to_string()),
                bytes,
                Some(addr),
            );
        }
    }
}

/// The connection's access line (`protocol="passthrough"`, no client identity).
fn access_line(
    gw: &Gateway,
    peer: SocketAddr,
    start: Instant,
    target: Option<&str>,
    outcome: Outcome<'_>,
    bytes: (u64, u64),
    endpoint: Option<SocketAddr>,
) {
    gw.access.connection(&ConnRecord {
        peer,
        client_id: None,
        target,
        endpoint,
        protocol: "passthrough",
        outcome,
        bytes_in: bytes.0,
        bytes_out: bytes.1,
        duration: start.elapsed(),
    })
}

/// Reads until `buf` holds a whole ClientHello (or is refused), at most [`MAX_HELLO`] bytes.
async fn read_hello(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Read, &'static str> {
    loop {
        let room = MAX_HELLO - buf.len();
        let n = tcp
            .read_buf(&mut buf.limit(room))
            .await
            .map_err(|_| "i/o error before a client hello")?;
        if n == 0 {
            return match buf.is_empty() {
                true => Ok(Read::Nothing),
                false => Err("closed before a whole client hello"),
            };
        }
        match client_hello::parse(buf) {
            Ok(Hello::Complete { sni }) => return Ok(Read::Hello(sni)),
            Ok(Hello::Partial) => {}
            Err(e) => return Err(reason(e)),
        }
    }
}

fn reason(e: HelloError) -> &'static str {
    match e {
        HelloError::NotHello => "not a client hello",
        HelloError::Malformed => "malformed client hello",
        HelloError::TooLarge => "client hello too large",
    }
}
