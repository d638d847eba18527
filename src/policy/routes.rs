//! Which route of a server a request takes, as linkerd2-proxy's `linkerd-http-route` finds
//! it: among the routes whose hosts match (a route without hosts matches any), the rule with
//! the best match wins: a longer host match first, then (HTTP) the longer path match, more
//! headers, more query parameters, a method; (gRPC) the longer service, then method, then
//! more headers. A rule without matches matches everything at the lowest rank; on a tie the
//! first wins. Pure. Regular expressions are not evaluated here: a policy using one is read
//! as invalid ([`super::proto`]).

use super::{Authorization, Meta};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use std::cmp::Ordering;
use std::sync::Arc;

/// The policy of the rules of one route: who the route is and who may use it (its own
/// authorizations, then the server's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    pub meta: Arc<Meta>,
    pub authorizations: Arc<[Authorization]>,
}

/// A route: the hosts it applies to and its rules.
#[derive(Clone, Debug)]
pub struct Route<M> {
    pub hosts: Vec<HostMatch>,
    pub rules: Vec<Rule<M>>,
}

/// A rule: any of its matches (none: every request) selects its policy.
#[derive(Clone, Debug)]
pub struct Rule<M> {
    pub matches: Vec<M>,
    pub policy: RoutePolicy,
}

pub type HttpRoute = Route<RequestMatch>;
pub type GrpcRoute = Route<GrpcMatch>;

/// A host the route applies to: exactly, or any name under a suffix (labels reversed:
/// `*.example.com` is `["com", "example"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    Suffix(Vec<String>),
}

/// How well a host matched: exact beats suffix; longer beats shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HostRank {
    Suffix(usize),
    Exact(usize),
}

impl HostMatch {
    fn rank(&self, uri: &Uri) -> Option<HostRank> {
        let mut host = uri.authority()?.host();
        match self {
            HostMatch::Exact(h) => {
                if !h.ends_with('.') {
                    host = host.strip_suffix('.').unwrap_or(host);
                }
                h.eq_ignore_ascii_case(host)
                    .then_some(HostRank::Exact(h.len()))
            }
            HostMatch::Suffix(labels) => {
                if labels.first().map(String::as_str) != Some("") {
                    host = host.strip_suffix('.').unwrap_or(host);
                }
                let mut len = 0;
                for label in labels {
                    let cut = host.len().checked_sub(label.len())?;
                    let (head, tail) = host.split_at_checked(cut)?;
                    if !tail.eq_ignore_ascii_case(label) {
                        return None;
                    }
                    host = head.strip_suffix('.')?;
                    len += label.len() + 1;
                }
                Some(HostRank::Suffix(len))
            }
        }
    }
}

/// An HTTP request match: every part present must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestMatch {
    pub path: Option<PathMatch>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub method: Option<Method>,
}

/// A path: exactly, or a prefix on `/` boundaries (`/foo` matches `/foo` and `/foo/bar`,
/// not `/foobar`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// A header with exactly this value (any of its values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl HeaderMatch {
    fn matches(&self, headers: &http::HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| *v == self.value)
    }
}

/// A query parameter with exactly this value (both compared decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMatch {
    pub name: String,
    pub value: String,
}

/// How well an HTTP request matched: path length, then headers, query parameters, method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HttpRank(usize, usize, usize, bool);

impl Default for HttpRank {
    /// What an empty match (or a rule without matches) ranks as: a prefix `/`.
    fn default() -> HttpRank {
        HttpRank(1, 0, 0, false)
    }
}

impl PathMatch {
    fn len(&self, path: &str) -> Option<usize> {
        match self {
            PathMatch::Exact(p) => (p == path).then_some(p.len()),
            PathMatch::Prefix(p) if p == "/" => Some(1),
            PathMatch::Prefix(p) => {
                let p = p.trim_end_matches('/');
                let rest = path.trim_end_matches('/').strip_prefix(p)?;
                (rest.is_empty() || rest.starts_with('/')).then_some(p.len())
            }
        }
    }
}

impl RequestMatch {
    fn rank<B>(&self, req: &Request<B>) -> Option<HttpRank> {
        let mut rank = HttpRank::default();
        if let Some(m) = &self.method {
            if req.method() != m {
                return None;
            }
            rank.3 = true;
        }
        if let Some(p) = &self.path {
            rank.0 = p.len(req.uri().path())?;
        }
        if !self.headers.iter().all(|h| h.matches(req.headers())) {
            return None;
        }
        rank.1 = self.headers.len();
        let query = req.uri().query().unwrap_or_default();
        if !self
            .query
            .iter()
            .all(|q| query_has(query, &q.name, &q.value))
        {
            return None;
        }
        rank.2 = self.query.len();
        Some(rank)
    }
}

/// A gRPC match: `POST /<service>/<method>`, each part when set, and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrpcMatch {
    pub service: Option<String>,
    pub method: Option<String>,
    pub headers: Vec<HeaderMatch>,
}

/// How well a gRPC request matched: service length, method length, headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct GrpcRank(usize, usize, usize);

impl GrpcMatch {
    fn rank<B>(&self, req: &Request<B>) -> Option<GrpcRank> {
        if req.method() != Method::POST {
            return None;
        }
        let mut parts = req.uri().path().split('/');
        if !parts.next()?.is_empty() {
            return None;
        }
        let mut rank = GrpcRank::default();
        let service = parts.next()?;
        if let Some(s) = &self.service {
            if s != service {
                return None;
            }
            rank.0 = s.len();
        }
        let method = parts.next()?;
        if let Some(m) = &self.method {
            if m != method {
                return None;
            }
            rank.1 = m.len();
        }
        if !self.headers.iter().all(|h| h.matches(req.headers())) {
            return None;
        }
        rank.2 = self.headers.len();
        Some(rank)
    }
}

/// The policy of the HTTP route `req` takes, if any.
pub fn find_http<'r, B>(routes: &'r [HttpRoute], req: &Request<B>) -> Option<&'r RoutePolicy> {
    find(routes, req, |m, req| m.rank(req))
}

/// The policy of the gRPC route `req` takes, if any.
pub fn find_grpc<'r, B>(routes: &'r [GrpcRoute], req: &Request<B>) -> Option<&'r RoutePolicy> {
    find(routes, req, |m, req| m.rank(req))
}

fn find<'r, M, R: Ord + Default + Copy, B>(
    routes: &'r [Route<M>],
    req: &Request<B>,
    rank: impl Fn(&M, &Request<B>) -> Option<R>,
) -> Option<&'r RoutePolicy> {
    let candidates = routes.iter().filter_map(|route| {
        let host = if route.hosts.is_empty() {
            None
        } else {
            Some(route.hosts.iter().filter_map(|h| h.rank(req.uri())).max()?)
        };
        let rules = route.rules.iter().filter_map(|rule| {
            if rule.matches.is_empty() {
                return Some((R::default(), &rule.policy));
            }
            let best = rule.matches.iter().filter_map(|m| rank(m, req)).max()?;
            Some((best, &rule.policy))
        });
        let (r, policy) = best(rules)?;
        Some(((host, r), policy))
    });
    best(candidates).map(|(_, p)| p)
}

/// The highest-ranked item; on a tie, the first.
fn best<K: Ord, P>(items: impl Iterator<Item = (K, P)>) -> Option<(K, P)> {
    items.reduce(|a, b| {
        if a.0.cmp(&b.0) != Ordering::Less {
            a
        } else {
            b
        }
    })
}

/// Whether the query string has `name=value` (`application/x-www-form-urlencoded`: `+` is a
/// space, `%XX` a byte; a parameter without `=` has the empty value).
fn query_has(query: &str, name: &str, value: &str) -> bool {
    query.split('&').filter(|p| !p.is_empty()).any(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        form_decode(n) == name && form_decode(v) == value
    })
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
