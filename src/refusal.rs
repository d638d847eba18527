//! Every way the gateway refuses a connection or a request, and the one function per view of a
//! refusal (HTTP status, `l5d-proxy-error` text, metric label, gRPC status), so they never drift.

use std::borrow::Cow;

/// A refusal the gateway itself makes (DESIGN.md part 2, "Refusals: one table, one function").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unauthorized")]
    Unauthorized,
    #[error("bad gateway domain")]
    BadGatewayDomain,
    #[error("gateway loop detected")]
    GatewayLoop,
    #[error("upstream: {0}")]
    Upstream(String),
    /// An in-domain name that is neither static nor known to DNS (NXDOMAIN, or no address
    /// records): the client asked for a service that does not exist. Counted apart from
    /// connection failures, and 502 rather than 503 so that retry policies that retry 503
    /// (loadshed) do not ask again for a name that is not there.
    #[error("upstream: no such service")]
    NoSuchService,
    #[error("loadshed")]
    Loadshed,
    #[error("response timeout")]
    ResponseTimeout,
    /// No endpoint of the target has been ready for `failfast_timeout`: the balancer fails
    /// requests at once until one is, as Linkerd's gateway answers it (504).
    #[error("service in fail-fast")]
    FailFast,
    /// The client's own request was malformed (a body that does not parse): the client's
    /// error, never counted against the upstream.
    #[error("client: {0}")]
    Client(String),
    /// A negotiated ALPN the gateway does not serve (rustls offers only ours, so a
    /// connection-level refusal in practice never answered over HTTP).
    #[error("unknown protocol")]
    UnknownProtocol,
    /// The peer's address is outside every `[server] allow_sources` network: closed at
    /// accept, before the TLS handshake, so never answered over HTTP.
    #[error("unauthorized source")]
    UnauthorizedSource,
    /// `[policy]`: no authorization of the target pod's own policy admits the caller (on the
    /// request's route), as the pod's proxy answers. Counted in the authorization deny
    /// families with the policy's labels.
    #[error("unauthorized request on route")]
    PolicyUnauthorized(Box<crate::policy::Labels>),
    /// `[policy]`: no route of the target pod's policy matches the request.
    #[error("no route found for request")]
    RouteNotFound(Box<crate::policy::Labels>),
    /// `[policy]`: over the target pod's local rate limit, counted for the caller.
    #[error("{}", .0.message())]
    RateLimited(Box<crate::policy::RateLimited>),
    /// `[policy]`: the target pod's policy could not be read (or not evaluated here).
    #[error("invalid server policy: {0}")]
    PolicyInvalid(std::sync::Arc<str>),
    /// SNI named one target for the connection and the request (or transport header) names
    /// another: SNI wins for the connection, the request is refused rather than re-routed.
    #[error("misdirected request")]
    Misdirected,
    /// The passthrough port could not take a target from the client's first bytes (no
    /// SNI, an IP literal, a name not routed or not allowed, bytes that are not a ClientHello,
    /// one too large or too slow): closed, never answered over HTTP.
    #[error("sni: {0}")]
    Sni(&'static str),
}

impl Refusal {
    /// The HTTP status answered in plain HTTP mode or on a served HTTP connection.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::Unauthorized => 403,
            Refusal::BadGatewayDomain => 404,
            Refusal::GatewayLoop => 508,
            Refusal::Upstream(_) | Refusal::NoSuchService => 502,
            Refusal::Loadshed => 503,
            Refusal::ResponseTimeout | Refusal::FailFast => 504,
            Refusal::UnknownProtocol | Refusal::Client(_) => 400,
            Refusal::UnauthorizedSource | Refusal::PolicyUnauthorized(_) => 403,
            Refusal::RouteNotFound(_) => 404,
            Refusal::RateLimited(_) => 429,
            Refusal::PolicyInvalid(_) => 500,
            Refusal::Misdirected => 421,
            Refusal::Sni(_) => 400,
        }
    }

    /// The value of the `l5d-proxy-error` header.
    pub fn proxy_error(&self) -> Cow<'static, str> {
        match self {
            Refusal::Upstream(reason) => Cow::Owned(format!("upstream: {reason}")),
            Refusal::Client(reason) => Cow::Owned(format!("client: {reason}")),
            Refusal::RateLimited(_) | Refusal::PolicyInvalid(_) => Cow::Owned(self.to_string()),
            Refusal::Sni(reason) => Cow::Owned(format!("sni: {reason}")),
            other => Cow::Borrowed(other.static_text()),
        }
    }

    fn static_text(&self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::BadGatewayDomain => "bad gateway domain",
            Refusal::GatewayLoop => "gateway loop detected",
            Refusal::Upstream(_) => "upstream",
            Refusal::NoSuchService => "upstream: no such service",
            Refusal::Loadshed => "loadshed",
            Refusal::ResponseTimeout => "response timeout",
            Refusal::FailFast => "service in fail-fast",
            Refusal::UnknownProtocol => "unknown protocol",
            Refusal::Client(_) => "client",
            Refusal::UnauthorizedSource => "unauthorized source",
            Refusal::PolicyUnauthorized(_) => "unauthorized request on route",
            Refusal::RouteNotFound(_) => "no route found for request",
            Refusal::RateLimited(_) => "rate limit exceeded",
            Refusal::PolicyInvalid(_) => "invalid server policy",
            Refusal::Misdirected => "misdirected request",
            Refusal::Sni(_) => "sni",
        }
    }

    /// The `error` label in `inbound_{tcp,http}_errors_total`; `None` for authorization
    /// denials, which are counted in the authz families only, and for a pod policy's route
    /// misses and rate limits, counted in their own families.
    pub fn error_label(&self) -> Option<&'static str> {
        match self {
            Refusal::Unauthorized => None,
            Refusal::BadGatewayDomain => Some("gateway domain invalid"),
            Refusal::GatewayLoop => Some("gateway loop"),
            Refusal::Upstream(_) => Some("i/o"),
            Refusal::NoSuchService => Some("no such service"),
            Refusal::Loadshed => Some("loadshed"),
            Refusal::ResponseTimeout => Some("response timeout"),
            Refusal::FailFast => Some("failfast"),
            Refusal::UnknownProtocol => Some("unexpected"),
            Refusal::Client(_) => Some("client"),
            Refusal::UnauthorizedSource => Some("unauthorized source"),
            Refusal::PolicyUnauthorized(_) | Refusal::RouteNotFound(_) => None,
            Refusal::RateLimited(_) => None,
            Refusal::PolicyInvalid(_) => Some("invalid policy"),
            Refusal::Misdirected => Some("misdirected"),
            Refusal::Sni(_) => Some("sni"),
        }
    }

    /// The gRPC status code answered to gRPC requests (with HTTP 200).
    pub fn grpc_status(&self) -> u8 {
        match self {
            Refusal::Unauthorized => 7,     // PERMISSION_DENIED
            Refusal::BadGatewayDomain => 5, // NOT_FOUND
            Refusal::GatewayLoop => 10,     // ABORTED
            Refusal::Upstream(_) | Refusal::NoSuchService | Refusal::Loadshed => 14, // UNAVAILABLE
            Refusal::ResponseTimeout | Refusal::FailFast => 4, // DEADLINE_EXCEEDED
            Refusal::UnknownProtocol => 12, // UNIMPLEMENTED
            Refusal::Client(_) => 3,        // INVALID_ARGUMENT
            Refusal::UnauthorizedSource | Refusal::PolicyUnauthorized(_) => 7, // PERMISSION_DENIED
            Refusal::RouteNotFound(_) => 5, // NOT_FOUND
            Refusal::RateLimited(_) => 8,   // RESOURCE_EXHAUSTED
            Refusal::PolicyInvalid(_) => 13, // INTERNAL
            Refusal::Misdirected => 9,      // FAILED_PRECONDITION
            Refusal::Sni(_) => 3,           // INVALID_ARGUMENT
        }
    }

    /// `Retry-After` in seconds: when a rate-limited request may come again.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited(r) => Some(r.retry_after_secs()),
            _ => None,
        }
    }
}

/// An error with its sources, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let rows = [
            (Refusal::Unauthorized, 403, "unauthorized", None, 7),
            (
                Refusal::BadGatewayDomain,
                404,
                "bad gateway domain",
                Some("gateway domain invalid"),
                5,
            ),
            (
                Refusal::GatewayLoop,
                508,
                "gateway loop detected",
                Some("gateway loop"),
                10,
            ),
            (
                Refusal::Upstream("connection refused".into()),
                502,
                "upstream: connection refused",
                Some("i/o"),
                14,
            ),
            (
                Refusal::NoSuchService,
                502,
                "upstream: no such service",
                Some("no such service"),
                14,
            ),
            (Refusal::Loadshed, 503, "loadshed", Some("loadshed"), 14),
            (
                Refusal::ResponseTimeout,
                504,
                "response timeout",
                Some("response timeout"),
                4,
            ),
            (
                Refusal::FailFast,
                504,
                "service in fail-fast",
                Some("failfast"),
                4,
            ),
            (
                Refusal::Client("invalid chunk size".into()),
                400,
                "client: invalid chunk size",
                Some("client"),
                3,
            ),
            (
                Refusal::UnknownProtocol,
                400,
                "unknown protocol",
                Some("unexpected"),
                12,
            ),
            (
                Refusal::UnauthorizedSource,
                403,
                "unauthorized source",
                Some("unauthorized source"),
                7,
            ),
            (
                Refusal::Misdirected,
                421,
                "misdirected request",
                Some("misdirected"),
                9,
            ),
            (
                Refusal::Sni("not allowed"),
                400,
                "sni: not allowed",
                Some("sni"),
                3,
            ),
        ];
        let labels = crate::policy::Labels {
            server: crate::policy::Meta::resource("policy.linkerd.io", "server", "web"),
            port: 8080,
            route: None,
            authz: None,
        };
        let limited = crate::policy::RateLimited {
            labels: labels.clone(),
            limit: None,
            kind: crate::policy::LimitKind::PerIdentity,
            rps: 5,
            retry_after: std::time::Duration::from_millis(200),
        };
        let policy_rows = [
            (
                Refusal::PolicyUnauthorized(Box::new(labels.clone())),
                403,
                "unauthorized request on route",
                None,
                7,
            ),
            (
                Refusal::RouteNotFound(Box::new(labels)),
                404,
                "no route found for request",
                None,
                5,
            ),
            (
                Refusal::RateLimited(Box::new(limited)),
                429,
                "per-identity rate limit exceeded: 5rps",
                None,
                8,
            ),
            (
                Refusal::PolicyInvalid("path match: regex".into()),
                500,
                "invalid server policy: path match: regex",
                Some("invalid policy"),
                13,
            ),
        ];
        for (r, status, text, label, grpc) in rows.into_iter().chain(policy_rows) {
            let retry = matches!(r, Refusal::RateLimited(_)).then_some(1);
            assert_eq!(r.retry_after(), retry);
            assert_eq!(r.http_status(), status);
            assert_eq!(r.proxy_error(), text);
            assert_eq!(r.to_string(), text);
            assert_eq!(r.error_label(), label);
            assert_eq!(r.grpc_status(), grpc);
        }
    }
}
