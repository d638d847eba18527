//! OutboundPolicies (one route to the Destination backend, opaque or protocol detection) and
//! InboundServerPolicies (authenticated-only on the meshed pod's app ports, else
//! all-unauthenticated).

use super::{log, once_then_pending, BoxStream, Cp, Inner, Lookup, Svc};
use linkerd2_proxy_api::{inbound, meta, outbound};
use std::{net::SocketAddr, time::Duration};
use tonic::{Request, Response, Status};

impl Inner {
    fn outbound_policy(&self, s: &Svc, dst_path: String) -> outbound::OutboundPolicy {
        use outbound::proxy_protocol;
        let backend = backend(&dst_path);
        let kind = if s.opaque {
            proxy_protocol::Kind::Opaque(proxy_protocol::Opaque {
                routes: vec![opaque_route(backend)],
            })
        } else {
            let route = http_route(backend.clone());
            proxy_protocol::Kind::Detect(proxy_protocol::Detect {
                timeout: Some(Duration::from_secs(10).try_into().unwrap()),
                http1: Some(proxy_protocol::Http1 {
                    routes: vec![route.clone()],
                    ..Default::default()
                }),
                http2: Some(proxy_protocol::Http2 {
                    routes: vec![route],
                    ..Default::default()
                }),
                opaque: Some(proxy_protocol::Opaque {
                    routes: vec![opaque_route(backend)],
                }),
            })
        };
        outbound::OutboundPolicy {
            metadata: Some(default_meta()),
            protocol: Some(outbound::ProxyProtocol { kind: Some(kind) }),
        }
    }
}

fn default_meta() -> meta::Metadata {
    meta::Metadata {
        kind: Some(meta::metadata::Kind::Default("default".to_string())),
    }
}

fn backend(dst: &str) -> outbound::Backend {
    use outbound::backend::{self, balance_p2c, endpoint_discovery, EndpointDiscovery};
    outbound::Backend {
        metadata: Some(default_meta()),
        queue: Some(outbound::Queue {
            capacity: 100,
            failfast_timeout: Some(Duration::from_secs(3).try_into().unwrap()),
        }),
        kind: Some(backend::Kind::Balancer(backend::BalanceP2c {
            discovery: Some(EndpointDiscovery {
                kind: Some(endpoint_discovery::Kind::Dst(
                    endpoint_discovery::DestinationGet {
                        path: dst.to_string(),
                    },
                )),
            }),
            load: Some(balance_p2c::Load::PeakEwma(balance_p2c::PeakEwma {
                default_rtt: Some(Duration::from_millis(30).try_into().unwrap()),
                decay: Some(Duration::from_secs(10).try_into().unwrap()),
            })),
        })),
    }
}

fn http_route(b: outbound::Backend) -> outbound::HttpRoute {
    use linkerd2_proxy_api::http_route as hr;
    use outbound::http_route::{self, distribution};
    outbound::HttpRoute {
        metadata: Some(default_meta()),
        hosts: vec![],
        rules: vec![http_route::Rule {
            matches: vec![hr::HttpRouteMatch {
                path: Some(hr::PathMatch {
                    kind: Some(hr::path_match::Kind::Prefix("/".to_string())),
                }),
                ..Default::default()
            }],
            backends: Some(http_route::Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable {
                        backends: vec![http_route::RouteBackend {
                            backend: Some(b),
                            ..Default::default()
                        }],
                    },
                )),
            }),
            ..Default::default()
        }],
    }
}

fn opaque_route(b: outbound::Backend) -> outbound::OpaqueRoute {
    use outbound::opaque_route::{self, distribution};
    outbound::OpaqueRoute {
        metadata: Some(default_meta()),
        rules: vec![opaque_route::Rule {
            backends: Some(opaque_route::Distribution {
                kind: Some(distribution::Kind::FirstAvailable(
                    distribution::FirstAvailable {
                        backends: vec![opaque_route::RouteBackend {
                            backend: Some(b),
                            filters: vec![],
                        }],
                    },
                )),
            }),
            filters: vec![],
        }],
    }
}

/// A Server with one authorization that admits any mesh identity over mTLS from anywhere,
/// as Linkerd's policy controller serves for a MeshTLSAuthentication with identities ["*"]
/// (or the `all-authenticated` default): suffixes = [[]] (the empty suffix matches all).
/// Plaintext and TLS-without-identity clients are refused.
fn authenticated_only(allow: &[String]) -> inbound::Server {
    inbound::Server {
        protocol: Some(inbound::ProxyProtocol {
            kind: Some(inbound::proxy_protocol::Kind::Detect(
                inbound::proxy_protocol::Detect {
                    timeout: Some(Duration::from_secs(10).try_into().unwrap()),
                    http_routes: vec![],
                    http_local_rate_limit: None,
                },
            )),
        }),
        authorizations: vec![inbound::Authz {
            networks: vec![inbound::Network {
                net: Some(ipnet::IpNet::default().into()),
                except: vec![],
            }],
            authentication: Some(inbound::Authn {
                permit: Some(inbound::authn::Permit::MeshTls(
                    inbound::authn::PermitMeshTls {
                        clients: Some(inbound::authn::permit_mesh_tls::Clients::Identities(
                            if allow.is_empty() {
                                inbound::authn::permit_mesh_tls::PermitClientIdentities {
                                    identities: vec![],
                                    suffixes: vec![inbound::IdentitySuffix { parts: vec![] }],
                                }
                            } else {
                                inbound::authn::permit_mesh_tls::PermitClientIdentities {
                                    identities: allow
                                        .iter()
                                        .map(|n| inbound::Identity { name: n.clone() })
                                        .collect(),
                                    suffixes: vec![],
                                }
                            },
                        )),
                    },
                )),
            }),
            labels: Default::default(),
            metadata: Some(meta::Metadata {
                kind: Some(meta::metadata::Kind::Resource(meta::Resource {
                    group: "policy.linkerd.io".into(),
                    kind: "authorizationpolicy".into(),
                    name: "podinfo-meshed-authn".into(),
                    namespace: "test".into(),
                    ..Default::default()
                })),
            }),
        }],
        server_ips: vec![],
        labels: [
            ("name".to_string(), "podinfo-meshed".to_string()),
            ("kind".to_string(), "server".to_string()),
        ]
        .into(),
    }
}

fn all_unauthenticated() -> inbound::Server {
    inbound::Server {
        protocol: Some(inbound::ProxyProtocol {
            kind: Some(inbound::proxy_protocol::Kind::Detect(
                inbound::proxy_protocol::Detect {
                    timeout: Some(Duration::from_secs(10).try_into().unwrap()),
                    http_routes: vec![],
                    http_local_rate_limit: None,
                },
            )),
        }),
        authorizations: vec![inbound::Authz {
            networks: vec![inbound::Network {
                net: Some(ipnet::IpNet::default().into()),
                except: vec![],
            }],
            authentication: Some(inbound::Authn {
                permit: Some(inbound::authn::Permit::Unauthenticated(
                    inbound::authn::PermitUnauthenticated {},
                )),
            }),
            labels: Default::default(),
            metadata: Some(meta::Metadata {
                kind: Some(meta::metadata::Kind::Default("all-unauthenticated".into())),
            }),
        }],
        server_ips: vec![],
        labels: [
            ("name".to_string(), "all-unauthenticated".to_string()),
            ("kind".to_string(), "default".to_string()),
        ]
        .into(),
    }
}

impl Cp {
    fn policy_for(&self, spec: &outbound::TrafficSpec) -> Result<outbound::OutboundPolicy, Status> {
        use outbound::traffic_spec::Target;
        let key = match &spec.target {
            Some(Target::Addr(a)) => SocketAddr::try_from(a.clone())
                .map_err(|_| Status::invalid_argument("bad addr"))?
                .to_string(),
            Some(Target::Authority(a)) => a.clone(),
            None => return Err(Status::invalid_argument("no target")),
        };
        match self.0.lookup(&key) {
            Some(Lookup::Mirror(s)) => {
                log(format!(
                    "OutboundPolicies {key} -> {} backend {}:{}",
                    if s.opaque { "opaque" } else { "detect" },
                    s.mirror,
                    s.vip.port()
                ));
                Ok(self
                    .0
                    .outbound_policy(s, format!("{}:{}", s.mirror, s.vip.port())))
            }
            Some(Lookup::Target(s)) => {
                log(format!(
                    "OutboundPolicies {key} -> {} backend {}",
                    if s.opaque { "opaque" } else { "detect" },
                    s.target
                ));
                Ok(self.0.outbound_policy(s, s.target.to_string()))
            }
            None => {
                log(format!("OutboundPolicies {key} -> not found"));
                Err(Status::not_found("unknown target"))
            }
        }
    }
}

#[tonic::async_trait]
impl outbound::outbound_policies_server::OutboundPolicies for Cp {
    async fn get(
        &self,
        req: Request<outbound::TrafficSpec>,
    ) -> Result<Response<outbound::OutboundPolicy>, Status> {
        Ok(Response::new(self.policy_for(req.get_ref())?))
    }

    type WatchStream = BoxStream<outbound::OutboundPolicy>;
    async fn watch(
        &self,
        req: Request<outbound::TrafficSpec>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(once_then_pending(
            self.policy_for(req.get_ref())?,
        )))
    }
}

impl Cp {
    /// The meshed target pod's proxy (by its POLICY_WORKLOAD) gets authenticated-only on
    /// its app ports; everything else (the source and gateway proxies, admin ports) keeps
    /// all-unauthenticated.
    fn inbound_policy(&self, r: &inbound::PortSpec) -> (&'static str, inbound::Server) {
        if r.workload.trim() == self.0.meshed_workload.trim()
            && self.0.meshed_ports.contains(&r.port)
        {
            if self.0.meshed_allow.is_empty() {
                (
                    "authenticated-only (meshTLS, any identity)",
                    authenticated_only(&[]),
                )
            } else {
                (
                    "authenticated-only (meshTLS, listed identities)",
                    authenticated_only(&self.0.meshed_allow),
                )
            }
        } else {
            ("all-unauthenticated", all_unauthenticated())
        }
    }
}

#[tonic::async_trait]
impl inbound::inbound_server_policies_server::InboundServerPolicies for Cp {
    async fn get_port(
        &self,
        req: Request<inbound::PortSpec>,
    ) -> Result<Response<inbound::Server>, Status> {
        let r = req.into_inner();
        let (name, srv) = self.inbound_policy(&r);
        log(format!(
            "InboundServerPolicies.GetPort {} port {} -> {name}",
            r.workload, r.port
        ));
        Ok(Response::new(srv))
    }

    type WatchPortStream = BoxStream<inbound::Server>;
    async fn watch_port(
        &self,
        req: Request<inbound::PortSpec>,
    ) -> Result<Response<Self::WatchPortStream>, Status> {
        let r = req.into_inner();
        let (name, srv) = self.inbound_policy(&r);
        log(format!(
            "InboundServerPolicies.WatchPort {} port {} -> {name}",
            r.workload, r.port
        ));
        Ok(Response::new(once_then_pending(srv)))
    }
}
