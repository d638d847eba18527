//! A scriptable Linkerd policy controller (`io.linkerd.proxy.inbound.InboundServerPolicies`)
//! on 127.0.0.1:0, h2c, shaped like the Destination stub beside it: each `WatchPort` for a
//! workload and port receives the policy set for them (none set: the stream stays open and
//! silent), then every policy [`PolicyStub::set`] later; [`PolicyStub::stop`] cuts every
//! connection. The `Server` messages are built as Linkerd's policy controller builds them
//! (`policy-controller/grpc/src/inbound.rs`): metadata on authorizations and routes, labels
//! `name`/`kind`/`group` on the server, a protocol with a detect timeout.

use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::inbound::inbound_server_policies_server::{
    InboundServerPolicies, InboundServerPoliciesServer,
};
use linkerd2_proxy_api::inbound::{self as pb, authn, proxy_protocol};
use linkerd2_proxy_api::{http_route, meta};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

type Key = (String, u32);
type Tx = mpsc::UnboundedSender<Result<pb::Server, Status>>;

#[derive(Default)]
struct State {
    policies: HashMap<Key, pb::Server>,
    watches: HashMap<Key, usize>,
    open: HashMap<Key, Vec<Tx>>,
    tasks: Vec<AbortHandle>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running stub. Dropping it stops it.
pub struct PolicyStub {
    pub addr: SocketAddr,
    state: Shared,
}

impl PolicyStub {
    pub async fn start() -> PolicyStub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Shared = Arc::default();
        let svc = InboundServerPoliciesServer::new(Svc(state.clone()));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let svc = svc.clone();
                let task = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let mut svc = svc.clone();
                        tower_service::Service::call(&mut svc, req)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                let mut st = lock(&st);
                st.tasks.retain(|t| !t.is_finished());
                st.tasks.push(task.abort_handle());
            }
        });
        lock(&state).tasks.push(accept.abort_handle());
        PolicyStub { addr, state }
    }

    /// The policy of `workload`'s `port`, for new watches and sent on the open ones.
    pub fn set(&self, workload: &str, port: u16, server: pb::Server) {
        let key = (workload.to_string(), u32::from(port));
        let mut st = lock(&self.state);
        if let Some(txs) = st.open.get_mut(&key) {
            txs.retain(|tx| tx.send(Ok(server.clone())).is_ok());
        }
        st.policies.insert(key, server);
    }

    /// How many `WatchPort` streams were opened for `workload`'s `port`.
    pub fn watches(&self, workload: &str, port: u16) -> usize {
        let key = (workload.to_string(), u32::from(port));
        lock(&self.state).watches.get(&key).copied().unwrap_or(0)
    }

    /// Every `WatchPort` opened, whatever its workload.
    pub fn all_watches(&self) -> usize {
        lock(&self.state).watches.values().sum()
    }

    /// Closes the listener and every connection: open streams end abruptly.
    pub fn stop(&self) {
        for t in lock(&self.state).tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for PolicyStub {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
struct Svc(Shared);

#[tonic::async_trait]
impl InboundServerPolicies for Svc {
    async fn get_port(&self, _: Request<pb::PortSpec>) -> Result<Response<pb::Server>, Status> {
        Err(Status::unimplemented("the gateway watches"))
    }

    type WatchPortStream = UnboundedReceiverStream<Result<pb::Server, Status>>;

    async fn watch_port(
        &self,
        req: Request<pb::PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let spec = req.into_inner();
        let key = (spec.workload, spec.port);
        let mut st = lock(&self.0);
        *st.watches.entry(key.clone()).or_default() += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(server) = st.policies.get(&key) {
            let _ = tx.send(Ok(server.clone()));
        }
        st.open.entry(key).or_default().push(tx);
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

/// A resource's metadata (`group`, `kind`, `name`), as the controller names policies.
pub fn resource(group: &str, kind: &str, name: &str) -> Option<meta::Metadata> {
    Some(meta::Metadata {
        kind: Some(meta::metadata::Kind::Resource(meta::Resource {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: "test".into(),
            ..Default::default()
        })),
    })
}

/// Networks `nets` (`"0.0.0.0/0"`, ...).
fn networks(nets: &[&str]) -> Vec<pb::Network> {
    nets.iter()
        .map(|n| {
            let (net, except) = n.split_once(" except ").unwrap_or((n, ""));
            let ip = |s: &str| s.parse::<ipnet::IpNet>().unwrap().into();
            pb::Network {
                net: Some(ip(net)),
                except: except
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(ip)
                    .collect(),
            }
        })
        .collect()
}

/// An `AuthorizationPolicy` with a `MeshTLSAuthentication`: identities and suffixes (each a
/// dotted suffix, `""` for the empty one that admits every identity), from `nets` (each
/// `"cidr"` or `"cidr except cidr,cidr"`).
pub fn mesh_tls(name: &str, identities: &[&str], suffixes: &[&str], nets: &[&str]) -> pb::Authz {
    use authn::permit_mesh_tls::{Clients, PermitClientIdentities};
    let clients = Clients::Identities(PermitClientIdentities {
        identities: identities
            .iter()
            .map(|i| pb::Identity {
                name: i.to_string(),
            })
            .collect(),
        suffixes: suffixes
            .iter()
            .map(|s| pb::IdentitySuffix {
                parts: s
                    .split('.')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            })
            .collect(),
    });
    authz(
        name,
        nets,
        authn::Permit::MeshTls(authn::PermitMeshTls {
            clients: Some(clients),
        }),
    )
}

/// An `AuthorizationPolicy` with a `NetworkAuthentication` only: anyone from `nets`.
pub fn unauthenticated(name: &str, nets: &[&str]) -> pb::Authz {
    authz(
        name,
        nets,
        authn::Permit::Unauthenticated(authn::PermitUnauthenticated {}),
    )
}

fn authz(name: &str, nets: &[&str], permit: authn::Permit) -> pb::Authz {
    pb::Authz {
        networks: networks(nets),
        authentication: Some(pb::Authn {
            permit: Some(permit),
        }),
        labels: HashMap::new(),
        metadata: resource("policy.linkerd.io", "authorizationpolicy", name),
    }
}

/// An `HTTPRoute` matching the path prefix `prefix`, with its own authorizations.
pub fn http_route(name: &str, prefix: &str, authzs: Vec<pb::Authz>) -> pb::HttpRoute {
    pb::HttpRoute {
        metadata: resource("policy.linkerd.io", "httproute", name),
        hosts: vec![],
        authorizations: authzs,
        rules: vec![pb::http_route::Rule {
            matches: vec![http_route::HttpRouteMatch {
                path: Some(http_route::PathMatch {
                    kind: Some(http_route::path_match::Kind::Prefix(prefix.into())),
                }),
                ..Default::default()
            }],
            filters: vec![],
        }],
    }
}

/// An `HTTPLocalRateLimitPolicy`: `total` and `identity` rps (0: none), and overrides.
pub fn rate_limit(total: u32, identity: u32, overrides: &[(u32, &str)]) -> pb::HttpLocalRateLimit {
    use pb::http_local_rate_limit::{Limit, Override, r#override::ClientIdentities};
    let limit = |rps| {
        (rps > 0).then_some(Limit {
            requests_per_second: rps,
        })
    };
    pb::HttpLocalRateLimit {
        metadata: resource("policy.linkerd.io", "httplocalratelimitpolicy", "web-limit"),
        total: limit(total),
        identity: limit(identity),
        overrides: overrides
            .iter()
            .map(|(rps, id)| Override {
                limit: limit(*rps),
                clients: Some(ClientIdentities {
                    identities: vec![pb::Identity {
                        name: id.to_string(),
                    }],
                }),
            })
            .collect(),
    }
}

/// A `Server` named `name` on a port with protocol detection: `authzs` for the whole server,
/// `routes` (none: the proxy's default route), an optional rate limit.
pub fn detect(
    name: &str,
    authzs: Vec<pb::Authz>,
    routes: Vec<pb::HttpRoute>,
    limit: Option<pb::HttpLocalRateLimit>,
) -> pb::Server {
    server(
        name,
        authzs,
        proxy_protocol::Kind::Detect(proxy_protocol::Detect {
            timeout: Some(Duration::from_secs(10).try_into().unwrap()),
            http_routes: routes,
            http_local_rate_limit: limit,
        }),
    )
}

/// A `Server` named `name` for opaque traffic.
pub fn opaque(name: &str, authzs: Vec<pb::Authz>) -> pb::Server {
    server(
        name,
        authzs,
        proxy_protocol::Kind::Opaque(proxy_protocol::Opaque {}),
    )
}

fn server(name: &str, authzs: Vec<pb::Authz>, kind: proxy_protocol::Kind) -> pb::Server {
    pb::Server {
        protocol: Some(pb::ProxyProtocol { kind: Some(kind) }),
        server_ips: vec![],
        authorizations: authzs,
        labels: [
            ("group".to_string(), "policy.linkerd.io".to_string()),
            ("kind".to_string(), "server".to_string()),
            ("name".to_string(), name.to_string()),
        ]
        .into(),
    }
}

/// The meshed target of the policy tests: pod `web-0` in namespace `test`.
pub const WEB: &str = "web.test.svc.cluster.local";
pub const WEB_ID: &str = "web.test.serviceaccount.identity.linkerd.cluster.local";
/// The pod's policy workload, as its proxy names itself.
pub const WORKLOAD: &str = r#"{"ns":"test","pod":"web-0"}"#;

/// How a [`World`] is made.
pub struct Opts {
    /// The pod's port: the application port (HTTP/2), or the proxy's inbound port (a
    /// transport header first; opaque TCP echoes) behind the application port 9898.
    pub mode: super::meshed::Mode,
    /// Whether the controller gives the pod its `pod` and `namespace` labels.
    pub labelled: bool,
    /// The pod's policy, if the policy controller knows one.
    pub server: Option<pb::Server>,
    /// Where the policy controller is; default: the stub.
    pub policy_addr: Option<SocketAddr>,
    /// More `[policy]` keys.
    pub keys: &'static str,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            mode: super::meshed::Mode::App,
            labelled: true,
            server: None,
            policy_addr: None,
            keys: "",
        }
    }
}

/// A meshed pod behind `web.test.svc.cluster.local:9898`, its Destination controller, a
/// policy controller, and a gateway holding callers to the pod's policy.
pub struct World {
    pub gw: super::TestGateway,
    pub pod: super::meshed::MeshedBackend,
    pub dst: super::destination::DestinationStub,
    pub policy: PolicyStub,
    /// The port the pod's policy is watched for (the endpoint's port).
    pub port: u16,
}

impl World {
    pub async fn start(opts: Opts) -> World {
        use super::destination::{Addr, DestinationStub, Step};
        use super::meshed::{MeshedBackend, Mode};
        let pki = crossgate::certs::Pki::new().unwrap();
        let pod = MeshedBackend::start(&pki, WEB_ID, WEB_ID, opts.mode).await;
        let mut addr = Addr::meshed(pod.addr, WEB_ID);
        if opts.mode == Mode::Inbound {
            addr.addr = SocketAddr::new(pod.addr.ip(), 9898);
            addr.h2 = false;
            addr.opaque_transport = Some(u32::from(pod.addr.port()));
        }
        let port = addr.addr.port();
        let mut set = vec![];
        if opts.labelled {
            addr.labels = vec![("pod".into(), "web-0".into())];
            set = vec![
                ("namespace".into(), "test".into()),
                ("service".into(), "web".into()),
            ];
        }
        let dst = DestinationStub::plaintext().await;
        dst.script(
            &format!("{WEB}:9898"),
            vec![Step::AddSet(set, vec![addr]), Step::Pause],
        );
        let policy = PolicyStub::start().await;
        if let Some(server) = opts.server {
            policy.set(WORKLOAD, port, server);
        }
        let extra = format!(
            "[discovery]\ndestination_addr = \"{}\"\nstream_initial_timeout = \"2s\"\n\
             failfast_timeout = \"1s\"\n[policy]\npolicy_addr = \"{}\"\n{}\n",
            dst.addr,
            opts.policy_addr.unwrap_or(policy.addr),
            opts.keys
        );
        let leaf = pki.leaf(super::GATEWAY).unwrap();
        let gw = super::start_with(pki, leaf, &extra).await;
        World {
            gw,
            pod,
            dst,
            policy,
            port,
        }
    }

    /// `client_id`, `authority` and the server's labels of the `web` server, as metric text.
    pub fn server_labels(&self, client: &str, server: &str) -> String {
        format!(
            "client_id=\"{client}\",authority=\"{WEB}:9898\",srv_group=\"policy.linkerd.io\",\
             srv_kind=\"server\",srv_name=\"{server}\",srv_port=\"{}\"",
            self.port
        )
    }
}
