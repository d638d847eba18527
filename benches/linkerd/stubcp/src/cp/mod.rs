//! The stub control plane: plaintext gRPC that both linkerd2-proxies (source and, in
//! GATEWAY=proxy mode, the baseline gateway) talk to.
//!
//! Source view (looked up by service VIP): each test service is a "mirror service" whose
//! only endpoint is the gateway, with the gateway's TLS identity, an authority override to
//! the real target in the remote cluster, and per case an H2 protocol hint or none.
//! Gateway view (looked up by name): the real target resolves to the backend, plaintext,
//! except the meshed target (`podinfo-meshed`), which resolves like Linkerd's destination
//! controller answers for a meshed pod: pod IP:port, the pod's TLS identity, H2 hint. That
//! pod's own linkerd2-proxy gets an authenticated-only inbound policy (any mesh identity).
//!
//! `destination` answers Destination.Get/GetProfile, `policy` the outbound and inbound
//! policies; this module holds the test services, the shared state, Identity and `serve`.

mod destination;
mod policy;

use crate::{pki::Signer, Args, Error, GATEWAY_ID, MESHED_ID, MESHED_WORKLOAD};
use futures::{stream, Stream, StreamExt};
use linkerd2_proxy_api::{
    destination::destination_server::DestinationServer,
    identity::{self as id, identity_server::IdentityServer, CertifyRequest, CertifyResponse},
    inbound::inbound_server_policies_server::InboundServerPoliciesServer,
    outbound::outbound_policies_server::OutboundPoliciesServer,
};
use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};
use tonic::{Request, Response, Status};

/// One test service as the source cluster sees it.
#[derive(Clone, Debug)]
pub struct Svc {
    pub case: &'static str,
    /// The ClusterIP of the mirror service in the source cluster (redirected to the proxy).
    pub vip: SocketAddr,
    /// The mirror service's name (what the source proxy resolves).
    pub mirror: &'static str,
    /// The authority override: the real service in the target cluster.
    pub target: &'static str,
    pub h2_hint: bool,
    pub opaque: bool,
    pub backend_port: u16,
    /// The target is a meshed pod (`--meshed-ip`, identity `--meshed-id`) behind its own
    /// linkerd2-proxy, instead of the plaintext backend.
    pub meshed: bool,
}

pub fn services() -> Vec<Svc> {
    let vip = |last: u8, port: u16| SocketAddr::from(([192, 0, 2, last], port));
    vec![
        Svc {
            case: "h2-hint",
            vip: vip(65, 9898),
            mirror: "podinfo-east.test.svc.cluster.local",
            target: "podinfo.test.svc.cluster.local:9898",
            h2_hint: true,
            opaque: false,
            backend_port: 9898,
            meshed: false,
        },
        Svc {
            case: "h1-nohint",
            vip: vip(66, 9898),
            mirror: "podinfo-h1-east.test.svc.cluster.local",
            target: "podinfo-h1.test.svc.cluster.local:9898",
            h2_hint: false,
            opaque: false,
            backend_port: 9898,
            meshed: false,
        },
        Svc {
            case: "opaque",
            vip: vip(67, 9899),
            mirror: "tcpecho-east.test.svc.cluster.local",
            target: "tcpecho.test.svc.cluster.local:9899",
            h2_hint: false,
            opaque: true,
            backend_port: 9899,
            meshed: false,
        },
        Svc {
            case: "bad-domain",
            vip: vip(68, 9898),
            mirror: "outside-east.test.svc.cluster.local",
            target: "podinfo.test.example.com:9898",
            h2_hint: true,
            opaque: false,
            backend_port: 9898,
            meshed: false,
        },
        Svc {
            case: "meshed-backend",
            vip: vip(69, 9898),
            mirror: "podinfo-meshed-east.test.svc.cluster.local",
            target: "podinfo-meshed.test.svc.cluster.local:9898",
            h2_hint: true,
            opaque: false,
            backend_port: 9898,
            meshed: true,
        },
    ]
}

#[derive(Clone)]
struct Cp(Arc<Inner>);

struct Inner {
    svcs: Vec<Svc>,
    gateway: SocketAddr,
    gateway_id: String,
    backend_ip: std::net::IpAddr,
    meshed_ip: std::net::IpAddr,
    meshed_id: String,
    meshed_workload: String,
    /// The meshed pod's app ports (authenticated-only); its other ports (e.g. the admin
    /// port 4191, probes) keep all-unauthenticated, as Linkerd's policy controller does.
    meshed_ports: Vec<u32>,
    /// Identities the meshed pod's policy admits on its app ports (`--meshed-allow a,b`);
    /// empty: any mesh identity (the `all-authenticated` shape).
    meshed_allow: Vec<String>,
    signer: Signer,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream that yields one update and then stays open (like a watch that never changes).
fn once_then_pending<T: Send + 'static>(v: T) -> BoxStream<T> {
    Box::pin(stream::once(async move { Ok(v) }).chain(stream::pending()))
}

fn strip_port(s: &str) -> &str {
    s.rsplit_once(':').map(|(h, _)| h).unwrap_or(s)
}

fn port_of(s: &str) -> u16 {
    s.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80)
}

/// Normalizes "name.:port" / "name:port" for comparisons.
fn norm(s: &str) -> String {
    let (h, p) = (strip_port(s), port_of(s));
    format!("{}:{}", h.trim_end_matches('.'), p)
}

enum Lookup<'a> {
    /// Source side: the mirror service (by VIP or mirror name).
    Mirror(&'a Svc),
    /// Gateway side: the real target (by name).
    Target(&'a Svc),
}

impl Inner {
    fn lookup(&self, path: &str) -> Option<Lookup<'_>> {
        if let Ok(sa) = path.parse::<SocketAddr>() {
            return self.svcs.iter().find(|s| s.vip == sa).map(Lookup::Mirror);
        }
        let p = norm(path);
        for s in &self.svcs {
            if p == format!("{}:{}", s.mirror, s.vip.port()) {
                return Some(Lookup::Mirror(s));
            }
            if p == norm(s.target) && s.target.contains(".svc.cluster.local:") {
                return Some(Lookup::Target(s));
            }
        }
        None
    }

    /// The meshed pod's namespace, from its policy workload `{"ns":"…","pod":"…"}`.
    fn meshed_namespace(&self) -> String {
        self.meshed_workload
            .split("\"ns\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("default")
            .to_string()
    }
}

fn log(msg: String) {
    eprintln!("stubcp serve: {msg}");
}

#[tonic::async_trait]
impl id::identity_server::Identity for Cp {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let req = req.into_inner();
        let (leaf, not_after) = self
            .0
            .signer
            .sign_csr(&req.certificate_signing_request, &req.identity)
            .map_err(|e| Status::invalid_argument(format!("csr: {e}")))?;
        log(format!(
            "Identity.Certify {} -> leaf valid until {not_after}",
            req.identity
        ));
        let valid_until = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_secs(not_after.unix_timestamp() as u64);
        Ok(Response::new(CertifyResponse {
            leaf_certificate: leaf,
            intermediate_certificates: vec![self.0.signer.issuer_der.clone()],
            valid_until: Some(valid_until.into()),
        }))
    }
}

pub async fn serve(args: &Args) -> Result<(), Error> {
    let state = std::path::PathBuf::from(args.get("state", "/tmp/l5d-interop"));
    let listen: SocketAddr = args.get("listen", "127.0.0.1:8086").parse()?;
    let cp = Cp(Arc::new(Inner {
        svcs: services(),
        gateway: args.get("gateway", "192.0.2.10:4143").parse()?,
        gateway_id: args.get("gateway-id", GATEWAY_ID),
        backend_ip: args.get("backend-ip", "192.0.2.20").parse()?,
        meshed_ip: args.get("meshed-ip", "192.0.2.30").parse()?,
        meshed_id: args.get("meshed-id", MESHED_ID),
        meshed_workload: args.get("meshed-workload", MESHED_WORKLOAD),
        meshed_ports: args
            .get("meshed-ports", "9898,9899")
            .split(',')
            .map(|p| p.trim().parse())
            .collect::<Result<_, _>>()?,
        meshed_allow: args
            .get("meshed-allow", "")
            .split(',')
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect(),
        signer: Signer::load(&state)?,
    }));
    log(format!("listening on {listen} (plaintext gRPC)"));
    tonic::transport::Server::builder()
        .add_service(DestinationServer::new(cp.clone()))
        .add_service(IdentityServer::new(cp.clone()))
        .add_service(OutboundPoliciesServer::new(cp.clone()))
        .add_service(InboundServerPoliciesServer::new(cp))
        .serve(listen)
        .await?;
    Ok(())
}
