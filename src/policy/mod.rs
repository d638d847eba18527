//! A target pod's inbound policy, as Linkerd's policy controller serves it to the pod's own
//! proxy (`InboundServerPolicies.WatchPort`), and what it decides for one caller of the
//! gateway: pure, over plain values, with no I/O and no metrics. The evaluation follows
//! linkerd2-proxy's inbound (`linkerd/app/inbound/src/policy/`, `proxy/server-policy`,
//! `http/route`): a connection is held to the server's authorizations; an HTTP request to the
//! best-matching route's (its own and the server's, as the proxy joins them), gRPC likewise;
//! an authorization admits a caller when the caller's address is in its networks and its
//! identity matches the `meshTLS` identities or suffixes (or it permits anyone). Then the
//! server's local rate limit ([`ratelimit`]). Where it differs on purpose: no implicit
//! `localhost` authorization (no remote caller is the pod's own localhost), and the caller
//! always has an mTLS identity (the gateway requires one). [`proto`] reads the controller's
//! messages; the watch that fetches them is `discovery::policy`.

pub mod proto;
pub mod ratelimit;
pub mod routes;

pub use ratelimit::{LimitKind, LocalRateLimit, RateLimited};
pub use routes::{GrpcRoute, HttpRoute};

use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Which policy resource said something: Linkerd's `Meta` (`group`, `kind`, `name`), the
/// values of the `srv_*`, `route_*`, `authz_*` and `ratelimit_*` metric labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meta {
    pub group: Arc<str>,
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

impl Meta {
    /// A default of the proxy's own (`group=""`, `kind="default"`), e.g. `default:deny`.
    pub fn default_named(name: &str) -> Arc<Meta> {
        Arc::new(Meta {
            group: "".into(),
            kind: "default".into(),
            name: name.into(),
        })
    }

    /// A resource: `policy.linkerd.io`/`server`/`web`, ...
    pub fn resource(group: &str, kind: &str, name: &str) -> Arc<Meta> {
        Arc::new(Meta {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
        })
    }
}

/// One port's policy: the server that selects it, its protocol with the routes and
/// authorizations, and its local rate limit (with the buckets, shared by every caller).
#[derive(Debug)]
pub struct ServerPolicy {
    pub meta: Arc<Meta>,
    pub protocol: Protocol,
    pub rate_limit: LocalRateLimit,
}

/// What the server expects on the port, and what authorizes it.
#[derive(Clone, Debug)]
pub enum Protocol {
    /// Protocol detection: HTTP requests by `http` routes, other connections by `tcp`.
    Detect {
        http: Arc<[HttpRoute]>,
        tcp: Arc<[Authorization]>,
    },
    /// HTTP/1 or HTTP/2 only: requests by routes.
    Http(Arc<[HttpRoute]>),
    /// gRPC: requests by gRPC routes.
    Grpc(Arc<[GrpcRoute]>),
    /// Opaque or TLS: whole connections by the server's authorizations.
    Opaque(Arc<[Authorization]>),
    /// What the controller sent could not be read (or not evaluated here): every request is
    /// refused with the reason, every connection denied, as the proxy's invalid policy.
    Invalid(Arc<str>),
}

/// One authorization: who (networks and authentication) may use a server or route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub networks: Vec<Network>,
    pub authentication: Authentication,
    pub meta: Arc<Meta>,
}

/// A network and its exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub net: IpNet,
    pub except: Vec<IpNet>,
}

impl Network {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.net.contains(ip) && !self.except.iter().any(|n| n.contains(ip))
    }
}

/// What an authorization asks of the caller's TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// Anyone, with or without TLS.
    Unauthenticated,
    /// Any TLS client (`meshTLS` with unauthenticated clients).
    TlsUnauthenticated,
    /// `meshTLS` identities: exact names (DNS-like in normal form, or URIs), or DNS suffixes.
    TlsAuthenticated {
        identities: Vec<Arc<str>>,
        suffixes: Vec<Suffix>,
    },
}

/// An identity suffix: `.cluster.local` from the parts `["cluster", "local"]`; the empty
/// suffix (no parts) matches every DNS-like identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suffix(pub Arc<str>);

impl Suffix {
    /// From the controller's parts, lower-cased: `["cluster", "local"]` is `.cluster.local`.
    pub fn from_parts(parts: &[String]) -> Suffix {
        if parts.is_empty() {
            return Suffix("".into());
        }
        Suffix(format!(".{}", parts.join(".")).to_ascii_lowercase().into())
    }

    pub fn contains(&self, name: &str) -> bool {
        name.ends_with(&*self.0)
    }
}

/// The caller as the gateway knows it: the identity of its leaf (DNS-like in normal form:
/// lower-case, no trailing dot; or a `spiffe://` URI) and the address of its TCP connection.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub id: &'a str,
    pub addr: IpAddr,
}

/// Who decided, for the metric labels: the server and port, the route (HTTP), the
/// authorization (when one admitted the caller).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Labels {
    pub server: Arc<Meta>,
    pub port: u16,
    pub route: Option<Arc<Meta>>,
    pub authz: Option<Arc<Meta>>,
}

/// Why a caller may not go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No authorization of the server (connection) or route (request) admits the caller.
    Unauthorized(Labels),
    /// No route of the server matches the request.
    RouteNotFound(Labels),
    /// Admitted, but over the server's local rate limit.
    RateLimited(RateLimited),
    /// The server's policy could not be read: the reason.
    Invalid(Labels, Arc<str>),
}

impl ServerPolicy {
    /// What the proxy uses when the controller's answer does not parse.
    pub fn invalid(reason: impl Into<Arc<str>>) -> ServerPolicy {
        ServerPolicy {
            meta: Meta::default_named("invalid"),
            protocol: Protocol::Invalid(reason.into()),
            rate_limit: LocalRateLimit::none(),
        }
    }

    fn labels(&self, port: u16) -> Labels {
        Labels {
            server: self.meta.clone(),
            port,
            route: None,
            authz: None,
        }
    }
}

/// Whether `authz` admits `caller`: its address in a network, then its TLS identity.
pub fn is_authorized(authz: &Authorization, caller: &Caller) -> bool {
    let ip = caller.addr.to_canonical();
    if !authz.networks.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    match &authz.authentication {
        Authentication::Unauthenticated | Authentication::TlsUnauthenticated => true,
        Authentication::TlsAuthenticated {
            identities,
            suffixes,
        } => {
            let exact = identities.iter().any(|i| **i == *caller.id);
            // A URI identity matches exactly or not at all.
            exact || (!caller.id.contains("://") && suffixes.iter().any(|s| s.contains(caller.id)))
        }
    }
}

/// A connection (opaque TCP, `CONNECT`) on `port` of a server with `policy`: admitted by the
/// first of the server's connection authorizations that admits the caller. Servers that
/// only take HTTP or gRPC admit no connection, as in the proxy.
pub fn check_connection(
    policy: &ServerPolicy,
    port: u16,
    caller: &Caller,
) -> Result<Labels, Denied> {
    let mut labels = policy.labels(port);
    let authzs: &[Authorization] = match &policy.protocol {
        Protocol::Detect { tcp, .. } => tcp,
        Protocol::Opaque(authzs) => authzs,
        Protocol::Http(_) | Protocol::Grpc(_) | Protocol::Invalid(_) => &[],
    };
    match authzs.iter().find(|a| is_authorized(a, caller)) {
        Some(a) => {
            labels.authz = Some(a.meta.clone());
            Ok(labels)
        }
        None => Err(Denied::Unauthorized(labels)),
    }
}

/// An HTTP request on `port` of a server with `policy`, at `now`: its route (the best match,
/// as the proxy finds it), an authorization of the route admitting the caller, then the
/// server's rate limit keyed by the caller's identity. A request to an opaque server is held
/// to the server's authorizations, as its connection would be.
pub fn check_request<B>(
    policy: &ServerPolicy,
    port: u16,
    caller: &Caller,
    req: &http::Request<B>,
    now: Instant,
) -> Result<Labels, Denied> {
    let mut labels = policy.labels(port);
    let found = match &policy.protocol {
        Protocol::Detect { http, .. } | Protocol::Http(http) => routes::find_http(http, req),
        Protocol::Grpc(grpc) => routes::find_grpc(grpc, req),
        Protocol::Opaque(_) => {
            labels = check_connection(policy, port, caller)?;
            None
        }
        Protocol::Invalid(reason) => return Err(Denied::Invalid(labels, reason.clone())),
    };
    if labels.authz.is_none() {
        let Some(route) = found else {
            return Err(Denied::RouteNotFound(labels));
        };
        labels.route = Some(route.meta.clone());
        let Some(authz) = route
            .authorizations
            .iter()
            .find(|a| is_authorized(a, caller))
        else {
            return Err(Denied::Unauthorized(labels));
        };
        labels.authz = Some(authz.meta.clone());
    }
    match policy.rate_limit.check(caller.id, now) {
        Ok(()) => Ok(labels),
        Err((kind, rps, retry_after)) => Err(Denied::RateLimited(RateLimited {
            labels,
            limit: policy.rate_limit.meta(),
            kind,
            rps,
            retry_after,
        })),
    }
}

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
