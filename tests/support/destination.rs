//! A scriptable Linkerd Destination controller (`io.linkerd.proxy.destination.Destination`) on
//! 127.0.0.1:0, over h2c or mTLS. Each `Get` for a path (`name:port`) receives the path's
//! script, step by step, as Linkerd's destination controller sends updates; the stream then
//! stays open (a watch with nothing new) unless the script ends it. `push` sends more on the
//! open streams. Messages are built as the Go controller builds them (`endpoint_translator.go`)
//! and as linkerd2-proxy reads them (`api-resolve/src/pb.rs`).

use super::meshed::{SniResolver, certified_key, mtls_server_config};
use crossgate::certs::Pki;
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::destination::destination_server::{Destination, DestinationServer};
use linkerd2_proxy_api::destination::{
    self as pb, GetDestination, Update, protocol_hint, tls_identity,
};
use linkerd2_proxy_api::net::{self as pbnet, TcpAddress, ip_address};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Request, Response, Status};

/// The weight Linkerd's controller gives every address.
pub const DEFAULT_WEIGHT: u32 = 10_000;

/// One endpoint as the controller describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub addr: SocketAddr,
    /// A DNS-like identity (`TlsIdentity.strategy = DnsLikeIdentity`).
    pub identity: Option<String>,
    /// `TlsIdentity.server_name`; defaults to `identity` when an identity is set.
    pub server_name: Option<String>,
    /// A URI-like identity (`spiffe://...`); wins over `identity` as the strategy.
    pub uri_identity: Option<String>,
    /// `ProtocolHint.protocol = H2`.
    pub h2: bool,
    /// `ProtocolHint.opaque_transport.inbound_port`; without `h2`, also `protocol = Opaque`.
    pub opaque_transport: Option<u32>,
    pub authority_override: Option<String>,
    /// Per-address `metric_labels`.
    pub labels: Vec<(String, String)>,
}

impl Addr {
    /// A plaintext endpoint: no identity, no hint (an unmeshed pod).
    pub fn plain(addr: SocketAddr) -> Addr {
        Addr {
            addr,
            identity: None,
            server_name: None,
            uri_identity: None,
            h2: false,
            opaque_transport: None,
            authority_override: None,
            labels: Vec::new(),
        }
    }

    /// A meshed pod on a non-opaque port: its DNS-like identity (also as server name, as the
    /// controller sends it) and the H2 hint.
    pub fn meshed(addr: SocketAddr, identity: &str) -> Addr {
        Addr {
            addr,
            identity: Some(identity.to_string()),
            h2: true,
            ..Addr::plain(addr)
        }
    }
}

/// What a `Get` stream receives next.
#[derive(Clone, Debug)]
pub enum Step {
    Add(Vec<Addr>),
    /// An `Add` whose set carries `metric_labels` (the controller's `namespace`, `service`).
    AddSet(Vec<(String, String)>, Vec<Addr>),
    Remove(Vec<SocketAddr>),
    NoEndpoints {
        exists: bool,
    },
    /// A gRPC error. As the first step of a script, the `Get` itself fails (trailers-only, as
    /// a Go gRPC handler returning an error answers); later, the stream ends with it.
    Error(Code),
    /// Ends the stream cleanly (status OK).
    Close,
    /// Keeps the stream open and sends nothing more from the script.
    Pause,
}

/// `TcpAddress`: IPv4 as a big-endian `u32` (fixed32), IPv6 as `{first, last}` halves.
pub fn tcp_address(sa: SocketAddr) -> TcpAddress {
    let ip = match sa.ip() {
        IpAddr::V4(v4) => ip_address::Ip::Ipv4(u32::from_be_bytes(v4.octets())),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            ip_address::Ip::Ipv6(pbnet::IPv6 {
                first: u64::from_be_bytes(o[..8].try_into().unwrap()),
                last: u64::from_be_bytes(o[8..].try_into().unwrap()),
            })
        }
    };
    TcpAddress {
        ip: Some(pbnet::IpAddress { ip: Some(ip) }),
        port: u32::from(sa.port()),
    }
}

/// The `WeightedAddr` for `a`.
pub fn weighted_addr(a: &Addr) -> pb::WeightedAddr {
    use tls_identity::{DnsLikeIdentity, Strategy, UriLikeIdentity};
    let dns = |name: &str| DnsLikeIdentity {
        name: name.to_string(),
    };
    let strategy = match (&a.uri_identity, &a.identity) {
        (Some(uri), _) => Some(Strategy::UriLikeIdentity(UriLikeIdentity {
            uri: uri.clone(),
        })),
        (None, Some(id)) => Some(Strategy::DnsLikeIdentity(dns(id))),
        (None, None) => None,
    };
    let tls_identity = strategy.map(|strategy| pb::TlsIdentity {
        strategy: Some(strategy),
        server_name: a.server_name.as_deref().or(a.identity.as_deref()).map(dns),
    });
    let protocol = if a.h2 {
        Some(protocol_hint::Protocol::H2(protocol_hint::H2 {}))
    } else if a.opaque_transport.is_some() {
        Some(protocol_hint::Protocol::Opaque(protocol_hint::Opaque {}))
    } else {
        None
    };
    let protocol_hint = protocol.map(|protocol| pb::ProtocolHint {
        protocol: Some(protocol),
        opaque_transport: a
            .opaque_transport
            .map(|inbound_port| protocol_hint::OpaqueTransport { inbound_port }),
    });
    pb::WeightedAddr {
        addr: Some(tcp_address(a.addr)),
        weight: DEFAULT_WEIGHT,
        metric_labels: a.labels.iter().cloned().collect(),
        tls_identity,
        protocol_hint,
        authority_override: a
            .authority_override
            .clone()
            .map(|authority_override| pb::AuthorityOverride { authority_override }),
        http2: None,
        resource_ref: None,
    }
}

/// The `Update` a step sends; `None` for `Error`, `Close` and `Pause`.
pub fn update(step: &Step) -> Option<Update> {
    use pb::update::Update as U;
    let u = match step {
        Step::Add(addrs) => U::Add(pb::WeightedAddrSet {
            addrs: addrs.iter().map(weighted_addr).collect(),
            metric_labels: HashMap::new(),
        }),
        Step::AddSet(labels, addrs) => U::Add(pb::WeightedAddrSet {
            addrs: addrs.iter().map(weighted_addr).collect(),
            metric_labels: labels.iter().cloned().collect(),
        }),
        Step::Remove(addrs) => U::Remove(pb::AddrSet {
            addrs: addrs.iter().copied().map(tcp_address).collect(),
        }),
        Step::NoEndpoints { exists } => U::NoEndpoints(pb::NoEndpoints { exists: *exists }),
        Step::Error(_) | Step::Close | Step::Pause => return None,
    };
    Some(Update { update: Some(u) })
}

type Tx = mpsc::UnboundedSender<Result<Update, Status>>;

#[derive(Default)]
struct State {
    scripts: HashMap<String, Vec<Step>>,
    gets: HashMap<String, usize>,
    tokens: Vec<String>,
    client_ids: Vec<String>,
    refused: usize,
    open: HashMap<String, Vec<Tx>>,
    tasks: Vec<AbortHandle>,
    not_found_as_status: bool,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one step on `tx`; whether the stream stays open.
fn send(tx: &Tx, step: &Step) -> bool {
    match step {
        Step::Close => false,
        Step::Error(code) => {
            let _ = tx.send(Err(Status::new(*code, "scripted error")));
            false
        }
        Step::Pause => !tx.is_closed(),
        step => tx.send(Ok(update(step).expect("an update step"))).is_ok(),
    }
}

/// The running stub. Dropping it stops it.
pub struct DestinationStub {
    pub addr: SocketAddr,
    state: Shared,
}

impl DestinationStub {
    /// h2c gRPC on 127.0.0.1:0.
    pub async fn plaintext() -> DestinationStub {
        start(None).await
    }

    /// gRPC over TLS 1.3 on 127.0.0.1:0: a leaf for `identity` issued by `pki` (any SNI), a
    /// client certificate chained to `pki`'s anchor required, ALPN `h2`. Records each
    /// client's identity (first SAN of its leaf).
    pub async fn mtls(pki: &Pki, identity: &str) -> DestinationStub {
        let leaf = pki.leaf(identity).unwrap();
        let resolver = SniResolver {
            name: None,
            key: certified_key(&leaf),
        };
        let config = mtls_server_config(pki, Arc::new(resolver), &[b"h2"]);
        start(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    /// What a `Get` for `path` receives, in order (replaces an earlier script for it).
    pub fn script(&self, path: &str, updates: Vec<Step>) {
        lock(&self.state).scripts.insert(path.to_string(), updates);
    }

    /// An unscripted path: `true` fails the `Get` with NotFound; `false` (the default) sends
    /// `NoEndpoints { exists: false }` and keeps the stream open.
    pub fn not_found_as_status(&self, on: bool) {
        lock(&self.state).not_found_as_status = on;
    }

    /// How many `Get` streams were opened for `path`.
    pub fn gets(&self, path: &str) -> usize {
        lock(&self.state).gets.get(path).copied().unwrap_or(0)
    }

    /// The `context_token` of every `Get`, in order.
    pub fn context_tokens(&self) -> Vec<String> {
        lock(&self.state).tokens.clone()
    }

    /// The identity of each client that completed an mTLS handshake, in order.
    pub fn client_ids(&self) -> Vec<String> {
        lock(&self.state).client_ids.clone()
    }

    /// mTLS handshakes that failed.
    pub fn refused(&self) -> usize {
        lock(&self.state).refused
    }

    /// How many `Get` streams of `path` are open now.
    pub fn open_streams(&self, path: &str) -> usize {
        let mut st = lock(&self.state);
        let txs = st.open.entry(path.to_string()).or_default();
        txs.retain(|tx| !tx.is_closed());
        txs.len()
    }

    /// Sends `step` on every open stream of `path` (`Close`, `Error` end them).
    pub fn push(&self, path: &str, step: Step) {
        let mut st = lock(&self.state);
        if let Some(txs) = st.open.get_mut(path) {
            txs.retain(|tx| !tx.is_closed() && send(tx, &step));
        }
    }

    /// Closes the listener and every connection: open streams end abruptly (a connection
    /// error, never a clean end of stream).
    pub fn stop(&self) {
        // The senders stay: dropping them first would let a stream end cleanly (status OK)
        // before its connection is cut.
        for t in lock(&self.state).tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for DestinationStub {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> DestinationStub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state: Shared = Arc::default();
    let svc = DestinationServer::new(Svc(state.clone()));
    let accept = tokio::spawn(accept_loop(listener, tls, svc, state.clone()));
    lock(&state).tasks.push(accept.abort_handle());
    DestinationStub { addr, state }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    svc: DestinationServer<Svc>,
    state: Shared,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, svc, st) = (tls.clone(), svc.clone(), state.clone());
        let task = tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return serve_h2(tcp, svc).await;
            };
            match acceptor.accept(tcp).await {
                Ok(stream) => {
                    let (_, conn) = stream.get_ref();
                    let id = conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crossgate::identity::identity_of(c));
                    lock(&st).client_ids.push(id.unwrap_or_default());
                    serve_h2(stream, svc).await
                }
                Err(_) => lock(&st).refused += 1,
            }
        });
        let mut st = lock(&state);
        st.tasks.retain(|t| !t.is_finished());
        st.tasks.push(task.abort_handle());
    }
}

async fn serve_h2<I>(io: I, svc: DestinationServer<Svc>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut svc = svc.clone();
        tower_service::Service::call(&mut svc, req)
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

#[derive(Clone)]
struct Svc(Shared);

#[tonic::async_trait]
impl Destination for Svc {
    type GetStream = UnboundedReceiverStream<Result<Update, Status>>;

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        let req = req.into_inner();
        let mut st = lock(&self.0);
        *st.gets.entry(req.path.clone()).or_default() += 1;
        st.tokens.push(req.context_token);
        let steps = match st.scripts.get(&req.path) {
            Some(steps) => steps.clone(),
            None if st.not_found_as_status => {
                return Err(Status::not_found(format!("unknown path {}", req.path)));
            }
            None => vec![Step::NoEndpoints { exists: false }],
        };
        if let Some(Step::Error(code)) = steps.first() {
            return Err(Status::new(*code, "scripted error"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut open = true;
        for step in &steps {
            if matches!(step, Step::Pause) {
                break;
            }
            open = send(&tx, step);
            if !open {
                break;
            }
        }
        if open {
            st.open.entry(req.path).or_default().push(tx);
        }
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    type GetProfileStream = UnboundedReceiverStream<Result<pb::DestinationProfile, Status>>;

    async fn get_profile(
        &self,
        _req: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        Err(Status::unimplemented("the stub serves no profiles"))
    }
}
