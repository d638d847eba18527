//! Destination.Get and GetProfile: the source proxy's mirror services resolve to the gateway
//! (its identity, the authority override, the hint), the gateway's targets to the backend or
//! the meshed pod.

use super::{log, once_then_pending, strip_port, BoxStream, Cp, Inner, Lookup, Svc};
use linkerd2_proxy_api::{
    destination::{
        self as dst, protocol_hint, tls_identity, update, DestinationProfile, GetDestination,
        ProtocolHint, TlsIdentity, Update, WeightedAddr, WeightedAddrSet,
    },
    net::TcpAddress,
};
use std::net::SocketAddr;
use tonic::{Request, Response, Status};

impl Inner {
    fn gateway_endpoint(&self, s: &Svc) -> WeightedAddr {
        let idn = tls_identity::DnsLikeIdentity {
            name: self.gateway_id.clone(),
        };
        WeightedAddr {
            addr: Some(TcpAddress::from(self.gateway)),
            weight: 10_000,
            metric_labels: [("gateway".to_string(), "east".to_string())].into(),
            tls_identity: Some(TlsIdentity {
                strategy: Some(tls_identity::Strategy::DnsLikeIdentity(idn.clone())),
                server_name: Some(idn),
            }),
            protocol_hint: s.h2_hint.then_some(ProtocolHint {
                protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
                opaque_transport: None,
            }),
            authority_override: Some(dst::AuthorityOverride {
                authority_override: s.target.to_string(),
            }),
            http2: None,
            resource_ref: None,
        }
    }

    fn backend_endpoint(&self, s: &Svc) -> WeightedAddr {
        if s.meshed {
            return self.meshed_endpoint(s);
        }
        WeightedAddr {
            addr: Some(TcpAddress::from(SocketAddr::new(
                self.backend_ip,
                s.backend_port,
            ))),
            weight: 10_000,
            ..Default::default()
        }
    }

    /// What Linkerd's destination controller answers for a meshed pod on a non-opaque port:
    /// the pod IP and target port (the pod's iptables send it to the proxy's inbound), the
    /// pod's identity (DNS-like, also as server name), and the H2 hint (H2 upgrade on).
    fn meshed_endpoint(&self, s: &Svc) -> WeightedAddr {
        let idn = tls_identity::DnsLikeIdentity {
            name: self.meshed_id.clone(),
        };
        WeightedAddr {
            addr: Some(TcpAddress::from(SocketAddr::new(
                self.meshed_ip,
                s.backend_port,
            ))),
            weight: 10_000,
            metric_labels: [
                ("pod".to_string(), "podinfo-meshed-0".to_string()),
                ("serviceaccount".to_string(), "podinfo-meshed".to_string()),
            ]
            .into(),
            tls_identity: Some(TlsIdentity {
                strategy: Some(tls_identity::Strategy::DnsLikeIdentity(idn.clone())),
                server_name: Some(idn),
            }),
            protocol_hint: Some(ProtocolHint {
                protocol: Some(protocol_hint::Protocol::H2(protocol_hint::H2 {})),
                opaque_transport: None,
            }),
            authority_override: None,
            http2: None,
            resource_ref: None,
        }
    }
}

#[tonic::async_trait]
impl dst::destination_server::Destination for Cp {
    type GetStream = BoxStream<Update>;
    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Self::GetStream>, Status> {
        let path = req.into_inner().path;
        let up = match self.0.lookup(&path) {
            Some(Lookup::Mirror(s)) => {
                log(format!(
                    "Destination.Get {path} -> [{}] gateway {} override {} hint {}",
                    s.case,
                    self.0.gateway,
                    s.target,
                    if s.h2_hint { "h2" } else { "none" }
                ));
                Update {
                    update: Some(update::Update::Add(WeightedAddrSet {
                        addrs: vec![self.0.gateway_endpoint(s)],
                        metric_labels: Default::default(),
                    })),
                }
            }
            Some(Lookup::Target(s)) if s.meshed => {
                log(format!(
                    "Destination.Get {path} -> meshed pod {}:{} identity {} hint h2",
                    self.0.meshed_ip, s.backend_port, self.0.meshed_id
                ));
                // Set-level labels as Linkerd's destination controller sends them: with the
                // per-address `pod` label they name the pod's policy workload.
                let svc = strip_port(&path)
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                Update {
                    update: Some(update::Update::Add(WeightedAddrSet {
                        addrs: vec![self.0.backend_endpoint(s)],
                        metric_labels: [
                            ("namespace".to_string(), self.0.meshed_namespace()),
                            ("service".to_string(), svc),
                        ]
                        .into(),
                    })),
                }
            }
            Some(Lookup::Target(s)) => {
                log(format!(
                    "Destination.Get {path} -> backend {}:{}",
                    self.0.backend_ip, s.backend_port
                ));
                Update {
                    update: Some(update::Update::Add(WeightedAddrSet {
                        addrs: vec![self.0.backend_endpoint(s)],
                        metric_labels: Default::default(),
                    })),
                }
            }
            None => {
                log(format!("Destination.Get {path} -> no endpoints"));
                Update {
                    update: Some(update::Update::NoEndpoints(dst::NoEndpoints {
                        exists: false,
                    })),
                }
            }
        };
        Ok(Response::new(once_then_pending(up)))
    }

    type GetProfileStream = BoxStream<DestinationProfile>;
    async fn get_profile(
        &self,
        req: Request<GetDestination>,
    ) -> Result<Response<Self::GetProfileStream>, Status> {
        let path = req.into_inner().path;
        let profile = match self.0.lookup(&path) {
            Some(Lookup::Mirror(s)) => DestinationProfile {
                fully_qualified_name: s.mirror.to_string(),
                opaque_protocol: s.opaque,
                ..Default::default()
            },
            Some(Lookup::Target(s)) => DestinationProfile {
                fully_qualified_name: strip_port(s.target).to_string(),
                opaque_protocol: s.opaque,
                ..Default::default()
            },
            None => {
                log(format!("Destination.GetProfile {path} -> rejected"));
                return Err(Status::invalid_argument("unknown destination"));
            }
        };
        log(format!(
            "Destination.GetProfile {path} -> {}",
            profile.fully_qualified_name
        ));
        Ok(Response::new(once_then_pending(profile)))
    }
}
