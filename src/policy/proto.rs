//! The controller's `inbound.Server` read into a [`ServerPolicy`], as linkerd2-proxy reads it
//! (`proxy/server-policy/src/{lib,authz,http,grpc,meta,local_rate_limit}.rs`): every field the
//! proxy requires is required, a server's routes get its authorizations after their own, a
//! protocol without routes gets the proxy's default route (`default:default`, every request).
//! Not read: filters (the pod's own proxy applies them when the request reaches it), the
//! detect timeout's value, `server_ips`. Not evaluated: regular expressions (no regex engine
//! here): a policy with one is an error, which the watch turns into an invalid policy (every
//! request refused with the reason) rather than guess. No `localhost` authorization is added.

use super::routes::{
    GrpcMatch, HeaderMatch, HostMatch, PathMatch, QueryMatch, RequestMatch, Route, RoutePolicy,
    Rule,
};
use super::{
    Authentication, Authorization, LocalRateLimit, Meta, Network, Protocol, ServerPolicy, Suffix,
};
use linkerd2_proxy_api::inbound as api;
use linkerd2_proxy_api::{grpc_route as grpc_api, http_route as http_api, meta as meta_api};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Reads `pb`; the rate limit's buckets start full at `epoch`. `Err` names what is wrong.
pub fn server_policy(pb: api::Server, epoch: Instant) -> Result<ServerPolicy, String> {
    use api::proxy_protocol::Kind;
    let api::Server {
        protocol,
        authorizations,
        labels,
        server_ips: _,
    } = pb;
    let kind = protocol
        .and_then(|p| p.kind)
        .ok_or("missing proxy protocol")?;
    let authzs: Arc<[Authorization]> = authorizations
        .into_iter()
        .map(authorization)
        .collect::<Result<_, _>>()?;
    let (protocol, limit) = match kind {
        Kind::Detect(d) => {
            d.timeout.ok_or("missing protocol detection timeout")?;
            let http = routes(d.http_routes, &authzs, http_route)?;
            let tcp = authzs;
            (Protocol::Detect { http, tcp }, d.http_local_rate_limit)
        }
        Kind::Http1(h) => (
            Protocol::Http(routes(h.routes, &authzs, http_route)?),
            h.local_rate_limit,
        ),
        Kind::Http2(h) => (
            Protocol::Http(routes(h.routes, &authzs, http_route)?),
            h.local_rate_limit,
        ),
        Kind::Grpc(g) => (Protocol::Grpc(routes(g.routes, &authzs, grpc_route)?), None),
        Kind::Opaque(_) | Kind::Tls(_) => (Protocol::Opaque(authzs), None),
    };
    Ok(ServerPolicy {
        meta: meta_from_labels(labels, "policy.linkerd.io", "server")?,
        protocol,
        rate_limit: rate_limit(limit.unwrap_or_default(), epoch)?,
    })
}

/// Reads one route of the API, given the server's authorizations.
type ReadRoute<R, M> = fn(R, &Arc<[Authorization]>) -> Result<Route<M>, String>;

/// The routes of a protocol; none means the proxy's default route.
fn routes<R, M>(
    pb: Vec<R>,
    server: &Arc<[Authorization]>,
    read: ReadRoute<R, M>,
) -> Result<Arc<[Route<M>]>, String> {
    if pb.is_empty() {
        let policy = RoutePolicy {
            meta: Meta::default_named("default"),
            authorizations: server.clone(),
        };
        let rule = Rule {
            matches: Vec::new(),
            policy,
        };
        return Ok(Arc::from(vec![Route {
            hosts: Vec::new(),
            rules: vec![rule],
        }]));
    }
    pb.into_iter().map(|r| read(r, server)).collect()
}

/// A route's metadata, hosts and authorizations (its own, then the server's).
fn route_head(
    metadata: Option<meta_api::Metadata>,
    hosts: Vec<http_api::HostMatch>,
    authzs: Vec<api::Authz>,
    server: &Arc<[Authorization]>,
) -> Result<(Vec<HostMatch>, RoutePolicy), String> {
    let meta = meta(metadata.ok_or("route: missing metadata")?)?;
    let hosts = hosts.into_iter().map(host).collect::<Result<_, _>>()?;
    let mut all = authzs
        .into_iter()
        .map(authorization)
        .collect::<Result<Vec<_>, _>>()?;
    all.extend(server.iter().cloned());
    let policy = RoutePolicy {
        meta,
        authorizations: all.into(),
    };
    Ok((hosts, policy))
}

fn http_route(
    pb: api::HttpRoute,
    server: &Arc<[Authorization]>,
) -> Result<Route<RequestMatch>, String> {
    let api::HttpRoute {
        metadata,
        hosts,
        authorizations,
        rules,
    } = pb;
    let (hosts, policy) = route_head(metadata, hosts, authorizations, server)?;
    let matches = rules.into_iter().map(|r| r.matches);
    Ok(Route {
        hosts,
        rules: route_rules(matches, request_match, &policy)?,
    })
}

fn grpc_route(
    pb: api::GrpcRoute,
    server: &Arc<[Authorization]>,
) -> Result<Route<GrpcMatch>, String> {
    let api::GrpcRoute {
        metadata,
        hosts,
        authorizations,
        rules,
    } = pb;
    let (hosts, policy) = route_head(metadata, hosts, authorizations, server)?;
    let matches = rules.into_iter().map(|r| r.matches);
    Ok(Route {
        hosts,
        rules: route_rules(matches, grpc_match, &policy)?,
    })
}

/// A route's rules, each its matches read by `read` under the route's `policy`.
fn route_rules<P, M>(
    rules: impl Iterator<Item = Vec<P>>,
    read: impl Fn(P) -> Result<M, String> + Copy,
    policy: &RoutePolicy,
) -> Result<Vec<Rule<M>>, String> {
    rules
        .map(|matches| {
            Ok(Rule {
                matches: matches.into_iter().map(read).collect::<Result<_, _>>()?,
                policy: policy.clone(),
            })
        })
        .collect()
}

fn host(pb: http_api::HostMatch) -> Result<HostMatch, String> {
    use http_api::host_match::Match;
    match pb.r#match.ok_or("host match: missing")? {
        Match::Exact(h) => Ok(HostMatch::Exact(h)),
        Match::Suffix(s) => Ok(HostMatch::Suffix(s.reverse_labels)),
    }
}

const REGEX: &str = "regular expressions are not evaluated by crossgate";

fn request_match(pb: http_api::HttpRouteMatch) -> Result<RequestMatch, String> {
    use http_api::path_match::Kind;
    use http_api::query_param_match::Value;
    let path = match pb.path.map(|p| p.kind) {
        None => None,
        Some(None) => return Err("path match: missing".into()),
        Some(Some(Kind::Exact(p))) => Some(PathMatch::Exact(p)),
        Some(Some(Kind::Prefix(p))) => Some(PathMatch::Prefix(p)),
        Some(Some(Kind::Regex(_))) => return Err(format!("path match: {REGEX}")),
    };
    let headers = pb
        .headers
        .into_iter()
        .map(header)
        .collect::<Result<_, _>>()?;
    let query = pb
        .query_params
        .into_iter()
        .map(|q| match q.value {
            _ if q.name.is_empty() => Err("query parameter match: missing name".to_string()),
            Some(Value::Exact(value)) => Ok(QueryMatch {
                name: q.name,
                value,
            }),
            Some(Value::Regex(_)) => Err(format!("query parameter match: {REGEX}")),
            None => Err("query parameter match: missing value".into()),
        })
        .collect::<Result<_, _>>()?;
    let method = pb
        .method
        .map(http::Method::try_from)
        .transpose()
        .map_err(|e| format!("method match: {e}"))?;
    Ok(RequestMatch {
        path,
        headers,
        query,
        method,
    })
}

fn grpc_match(pb: grpc_api::GrpcRouteMatch) -> Result<GrpcMatch, String> {
    let rpc = pb.rpc.ok_or("gRPC match: missing rpc")?;
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(GrpcMatch {
        service: some(rpc.service),
        method: some(rpc.method),
        headers: pb
            .headers
            .into_iter()
            .map(header)
            .collect::<Result<_, _>>()?,
    })
}

fn header(pb: http_api::HeaderMatch) -> Result<HeaderMatch, String> {
    use http_api::header_match::Value;
    let name = http::HeaderName::from_bytes(pb.name.as_bytes())
        .map_err(|e| format!("header match {:?}: {e}", pb.name))?;
    match pb.value.ok_or("header match: missing value")? {
        Value::Exact(v) => Ok(HeaderMatch {
            value: http::HeaderValue::from_bytes(&v).map_err(|e| format!("header match: {e}"))?,
            name,
        }),
        Value::Regex(_) => Err(format!("header match: {REGEX}")),
    }
}

fn authorization(pb: api::Authz) -> Result<Authorization, String> {
    use api::authn::Permit;
    use api::authn::permit_mesh_tls::Clients;
    if pb.networks.is_empty() {
        return Err("authorization: missing networks".into());
    }
    let networks = pb
        .networks
        .into_iter()
        .map(|n| {
            let net = n.net.ok_or("authorization: missing network")?;
            let net = ipnet::IpNet::try_from(net).map_err(|e| format!("network: {e}"))?;
            let except = n
                .except
                .into_iter()
                .map(|e| ipnet::IpNet::try_from(e).map_err(|e| format!("network: {e}")))
                .collect::<Result<_, _>>()?;
            Ok(Network { net, except })
        })
        .collect::<Result<_, String>>()?;
    let missing = "authorization: missing authentication";
    let permit = pb.authentication.and_then(|a| a.permit).ok_or(missing)?;
    let authentication = match permit {
        Permit::Unauthenticated(_) => Authentication::Unauthenticated,
        Permit::MeshTls(m) => match m.clients.ok_or(missing)? {
            Clients::Unauthenticated(_) => Authentication::TlsUnauthenticated,
            Clients::Identities(ids) => Authentication::TlsAuthenticated {
                identities: ids
                    .identities
                    .into_iter()
                    .map(|i| identity(&i.name))
                    .collect(),
                suffixes: ids
                    .suffixes
                    .iter()
                    .map(|s| Suffix::from_parts(&s.parts))
                    .collect(),
            },
        },
    };
    let meta = match pb.metadata {
        Some(m) => meta(m)?,
        None => meta_from_labels(pb.labels, "policy.linkerd.io", "serverauthorization")?,
    };
    Ok(Authorization {
        networks,
        authentication,
        meta,
    })
}

/// An identity in the form callers' are compared in: DNS-like ones lower-case without a
/// trailing dot, URIs as they are.
fn identity(name: &str) -> Arc<str> {
    if name.contains("://") {
        name.into()
    } else {
        crate::names::normalize(name).into()
    }
}

fn rate_limit(pb: api::HttpLocalRateLimit, epoch: Instant) -> Result<LocalRateLimit, String> {
    let meta = pb.metadata.map(meta).transpose()?;
    let rps = |l: Option<api::http_local_rate_limit::Limit>| l.map(|l| l.requests_per_second);
    let overrides = pb
        .overrides
        .into_iter()
        .map(|o| {
            let ids = o.clients.map(|c| c.identities).unwrap_or_default();
            (
                rps(o.limit).unwrap_or(0),
                ids.iter().map(|i| identity(&i.name)).collect(),
            )
        })
        .collect();
    Ok(LocalRateLimit::new(
        meta,
        epoch,
        rps(pb.total),
        rps(pb.identity),
        overrides,
    ))
}

fn meta(pb: meta_api::Metadata) -> Result<Arc<Meta>, String> {
    match pb.kind.ok_or("metadata: missing")? {
        meta_api::metadata::Kind::Default(name) => Ok(Meta::default_named(&name)),
        meta_api::metadata::Kind::Resource(r) => Ok(Meta::resource(&r.group, &r.kind, &r.name)),
    }
}

/// Old-style labels (`name`, `group`, `kind`; `default:<name>` in older controllers).
fn meta_from_labels(
    mut labels: HashMap<String, String>,
    group: &str,
    kind: &str,
) -> Result<Arc<Meta>, String> {
    let name = labels.remove("name").ok_or("labels: missing 'name'")?;
    let group = labels.remove("group").unwrap_or_else(|| group.to_string());
    if let Some(k) = labels.remove("kind") {
        if group.is_empty() && k == "default" {
            return Ok(Meta::default_named(&name));
        }
        return Ok(Meta::resource(&group, &k, &name));
    }
    Ok(match name.split_once(':') {
        Some(("default", n)) => Meta::default_named(n),
        Some((k, n)) => Meta::resource(&group, k, n),
        None => Meta::resource(&group, kind, &name),
    })
}

#[cfg(test)]
mod tests;
