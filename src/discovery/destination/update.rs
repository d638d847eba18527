//! The controller's words as plain values, and what they do to a target's set: [`decode`] turns
//! one `Update` into a [`Change`] (endpoints with their identity, hint, transport port,
//! authority override and labels), [`apply`] folds it into the [`Set`]. Both are pure, and
//! both read controller input without trusting it: what does not parse is dropped with a log,
//! never a panic. The meaning follows linkerd2-proxy's `api-resolve` (`pb.rs`, `resolve.rs`)
//! and `resolve/recover.rs`.

use super::Answer;
use crate::discovery::{Endpoint, EndpointSet, ProtocolHint, ServerId};
use linkerd2_proxy_api::destination as api;
use linkerd2_proxy_api::net::TcpAddress;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// Labels kept per endpoint (the first by key order).
pub(crate) const MAX_LABELS: usize = 16;
/// Longest label value kept, in bytes; longer ones are cut at a character boundary.
pub(crate) const MAX_LABEL_VALUE: usize = 64;
/// Endpoints kept per target; addresses past it are ignored until others are removed.
pub(crate) const MAX_ENDPOINTS: usize = 10_000;

/// One update from the controller, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Endpoints added, or replaced when their address is known.
    Add(Vec<Endpoint>),
    Remove(Vec<SocketAddr>),
    /// No endpoints now; `exists: false` means the service does not exist.
    NoEndpoints {
        exists: bool,
    },
}

impl Change {
    /// The `op` label of `discovery_updates_total`.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Change::Add(_) => "add",
            Change::Remove(_) => "remove",
            Change::NoEndpoints { .. } => "no_endpoints",
        }
    }
}

/// What one target's watch knows, across the streams it opens.
#[derive(Debug, Default)]
pub(crate) struct Set {
    endpoints: BTreeMap<SocketAddr, Endpoint>,
    /// `None` until the controller has said anything.
    exists: Option<bool>,
    /// A new stream was opened: its first update replaces what is known.
    fresh: bool,
}

impl Set {
    /// A new stream starts: the last set keeps serving until its first update replaces it.
    pub(crate) fn stream_started(&mut self) {
        self.fresh = true;
    }

    /// The controller said the service does not exist (gRPC `NotFound`, `InvalidArgument`).
    pub(crate) fn does_not_exist(&mut self) {
        self.endpoints.clear();
        self.exists = Some(false);
        self.fresh = false;
    }

    /// The answer a resolve gets now; `None` until the controller has said anything.
    pub(crate) fn answer(&self) -> Option<Answer> {
        match self.exists? {
            false => Some(Answer::NoSuchService),
            true => {
                let set: EndpointSet = self.endpoints.values().cloned().collect();
                Some(Answer::Endpoints(set))
            }
        }
    }
}

/// Folds `change` into `set`. Returns false when the change was ignored (a `Remove` opening a
/// stream: linkerd2-proxy ignores it too, since a stream's first word must be the whole set).
pub(crate) fn apply(set: &mut Set, change: Change) -> bool {
    match change {
        Change::Add(endpoints) => {
            if std::mem::take(&mut set.fresh) {
                set.endpoints.clear();
            }
            for e in endpoints {
                if set.endpoints.len() >= MAX_ENDPOINTS && !set.endpoints.contains_key(&e.addr) {
                    tracing::warn!(limit = MAX_ENDPOINTS, addr = %e.addr, "endpoint ignored: too many");
                    continue;
                }
                set.endpoints.insert(e.addr, e);
            }
            set.exists = Some(true);
        }
        Change::Remove(addrs) => {
            if set.fresh {
                tracing::debug!("Remove opening a stream ignored");
                return false;
            }
            for a in addrs {
                set.endpoints.remove(&a);
            }
        }
        Change::NoEndpoints { exists } => {
            set.endpoints.clear();
            set.exists = Some(exists);
            set.fresh = false;
        }
    }
    true
}

/// The change an update makes; `None` for an empty update, or an `Add` or `Remove` none of
/// whose addresses parse.
pub(crate) fn decode(update: api::Update) -> Option<Change> {
    use api::update::Update;
    let change = match update.update? {
        Update::Add(set) => Change::Add(
            set.addrs
                .into_iter()
                .filter_map(|a| endpoint(a, &set.metric_labels))
                .collect(),
        ),
        Update::Remove(set) => {
            Change::Remove(set.addrs.into_iter().filter_map(socket_addr).collect())
        }
        Update::NoEndpoints(n) => Change::NoEndpoints { exists: n.exists },
    };
    match &change {
        Change::Add(v) if v.is_empty() => None,
        Change::Remove(v) if v.is_empty() => None,
        _ => Some(change),
    }
}

/// One endpoint from a `WeightedAddr` and its set's labels; `None` without a usable address.
pub(crate) fn endpoint(
    pb: api::WeightedAddr,
    set_labels: &HashMap<String, String>,
) -> Option<Endpoint> {
    let addr = socket_addr(pb.addr?)?;
    let mut hint = ProtocolHint::Unknown;
    let mut opaque_transport = None;
    if let Some(h) = pb.protocol_hint {
        use api::protocol_hint::Protocol;
        match h.protocol {
            Some(Protocol::H2(_)) => hint = ProtocolHint::Http2,
            Some(Protocol::Opaque(_)) => hint = ProtocolHint::Opaque,
            None => {}
        }
        // As linkerd2-proxy: 0 and 65535 are not inbound ports.
        if let Some(t) = h.opaque_transport
            && t.inbound_port > 0
            && t.inbound_port < u32::from(u16::MAX)
        {
            opaque_transport = Some(t.inbound_port as u16);
        }
    }
    let authority_override = pb.authority_override.and_then(|o| {
        o.authority_override
            .parse()
            .map_err(|_| {
                tracing::debug!(authority = %o.authority_override, "invalid authority override ignored")
            })
            .ok()
    });
    Some(Endpoint {
        addr,
        identity: pb.tls_identity.and_then(server_id),
        hint,
        opaque_transport,
        authority_override,
        labels: labels(set_labels, &pb.metric_labels),
        workload: workload(set_labels, &pb.metric_labels),
    })
}

/// The pod's policy workload from the address's `pod` label and the `namespace` label (the
/// set's, or the address's own), read before the metric labels are bounded, and only when
/// both are Kubernetes names (a namespace is a DNS label, a pod name a DNS subdomain): then
/// they need no escaping in the JSON.
fn workload(set: &HashMap<String, String>, own: &HashMap<String, String>) -> Option<Arc<str>> {
    let pod = own.get("pod")?;
    let ns = own.get("namespace").or_else(|| set.get("namespace"))?;
    let k8s_name = |s: &str, max: usize| {
        s.len() <= max
            && crate::names::is_dns_name(s)
            && !s.ends_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !(k8s_name(ns, 63) && !ns.contains('.') && k8s_name(pod, 253)) {
        tracing::debug!(%ns, %pod, "not a Kubernetes namespace and pod: no policy workload");
        return None;
    }
    Some(format!(r#"{{"ns":"{ns}","pod":"{pod}"}}"#).into())
}

/// A `TcpAddress` with an IP and a port in 1..=65535.
pub(crate) fn socket_addr(pb: TcpAddress) -> Option<SocketAddr> {
    let port = u16::try_from(pb.port).ok().filter(|p| *p != 0);
    let ip = pb.ip.and_then(|ip| std::net::IpAddr::try_from(ip).ok());
    match (ip, port) {
        (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
        _ => {
            tracing::debug!(port = pb.port, "invalid endpoint address ignored");
            None
        }
    }
}

/// The identity to require and the SNI to send. A URI identity without a `server_name` gets
/// no TLS (linkerd2-proxy does the same: there is no name to send).
fn server_id(pb: api::TlsIdentity) -> Option<ServerId> {
    use api::tls_identity::Strategy;
    let (id, dns) = match pb.strategy? {
        Strategy::DnsLikeIdentity(d) if crate::names::is_dns_name(&d.name) => (d.name, true),
        Strategy::UriLikeIdentity(u) if crate::names::is_identity_syntax(&u.uri) => (u.uri, false),
        Strategy::DnsLikeIdentity(d) => {
            tracing::warn!(identity = %d.name, "invalid DNS identity ignored: no TLS");
            return None;
        }
        Strategy::UriLikeIdentity(u) => {
            tracing::warn!(identity = %u.uri, "invalid URI identity ignored: no TLS");
            return None;
        }
    };
    let server_name = match pb.server_name {
        Some(n) if crate::names::is_dns_name(&n.name) => n.name,
        Some(n) => {
            tracing::warn!(server_name = %n.name, "invalid server name ignored: no TLS");
            return None;
        }
        None if dns => id.clone(),
        None => {
            tracing::warn!(identity = %id, "server name missing for a URI identity: no TLS");
            return None;
        }
    };
    Some(ServerId {
        id: id.into(),
        server_name: server_name.into(),
    })
}

/// The address's labels over its set's, sorted by key; only Prometheus label names, at most
/// [`MAX_LABELS`], values cut to [`MAX_LABEL_VALUE`] bytes.
fn labels(
    set: &HashMap<String, String>,
    own: &HashMap<String, String>,
) -> Arc<[(Arc<str>, Arc<str>)]> {
    let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in set.iter().chain(own.iter()) {
        if is_label_name(k) {
            merged.insert(k, v);
        }
    }
    merged
        .into_iter()
        .take(MAX_LABELS)
        .map(|(k, v)| (Arc::from(k), Arc::from(cut(v, MAX_LABEL_VALUE))))
        .collect()
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, at most 64 bytes, not starting with the reserved `__`.
fn is_label_name(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && k.len() <= 64
        && !k.starts_with("__")
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
