//! What discovery knows of one endpoint, and of a target's endpoints at one moment: plain
//! values with no I/O (the routing table holds the static ones), built by the static, DNS and
//! Destination sources alike, and read by the upstream to decide how to connect (TCP or mTLS,
//! which SNI, whether a transport header goes first) and which HTTP connection a request
//! rides.

use http::uri::Authority;
use std::net::SocketAddr;
use std::sync::Arc;

/// A meshed endpoint's TLS identity, as Linkerd's destination controller gives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerId {
    /// The identity the endpoint's leaf must carry as a SAN: a DNS-like Linkerd identity or a
    /// URI (`spiffe://...`).
    pub id: Arc<str>,
    /// The SNI to send: the controller's `server_name`, else the DNS-like id.
    pub server_name: Arc<str>,
}

/// How an endpoint speaks, from the controller's protocol hint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProtocolHint {
    /// No hint: HTTP/1 requests go over HTTP/1.1, HTTP/2 requests over HTTP/2.
    #[default]
    Unknown,
    /// The endpoint's proxy takes HTTP/2: HTTP/1 requests ride it with `l5d-orig-proto`.
    Http2,
    /// Opaque: no protocol detection at the endpoint's proxy.
    Opaque,
}

/// One endpoint of a target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where to connect (before `opaque_transport` redirects to the proxy's inbound port).
    pub addr: SocketAddr,
    /// `Some`: dial over mTLS and check the endpoint's leaf names this identity.
    pub identity: Option<ServerId>,
    pub hint: ProtocolHint,
    /// The endpoint's proxy inbound port, when the endpoint is reached through it with a
    /// transport header (`opaque_transport.inbound_port`).
    pub opaque_transport: Option<u16>,
    /// Send a transport header naming this authority (a gateway endpoint of another cluster).
    pub authority_override: Option<Authority>,
    /// The controller's `metric_labels`, sorted by key; empty for static and DNS endpoints.
    pub labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// The pod's policy workload, `{"ns":"<namespace>","pod":"<pod>"}` as its proxy names
    /// itself to the policy controller: from the controller's `namespace` and `pod` labels.
    /// `None` for static and DNS endpoints, and pods without those labels.
    pub workload: Option<Arc<str>>,
}

impl Endpoint {
    /// A plaintext endpoint with nothing known of it (static or DNS).
    pub fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            identity: None,
            hint: ProtocolHint::Unknown,
            opaque_transport: None,
            authority_override: None,
            labels: Arc::from(Vec::new()),
            workload: None,
        }
    }

    /// True when a transport header goes first on connections to this endpoint (then the
    /// connection's ALPN is `transport.l5d.io/v1`).
    pub fn sends_header(&self) -> bool {
        self.identity.is_some()
            && (self.opaque_transport.is_some() || self.authority_override.is_some())
    }

    /// Where the TCP connection goes: the proxy's inbound port when the header goes first.
    pub fn connect_addr(&self) -> SocketAddr {
        match (self.sends_header(), self.opaque_transport) {
            (true, Some(port)) => SocketAddr::new(self.addr.ip(), port),
            _ => self.addr,
        }
    }
}

/// A target's endpoints at one moment: shared, swapped whole when discovery learns more.
/// Empty means the service exists but has no endpoints now.
pub type EndpointSet = Arc<[Endpoint]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_only_to_meshed_endpoints_with_a_reason() {
        let addr: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let mut e = Endpoint::plain(addr);
        e.opaque_transport = Some(4143);
        // No identity: plaintext, no header, the application port.
        assert!(!e.sends_header());
        assert_eq!(e.connect_addr(), addr);
        e.identity = Some(ServerId {
            id: "a.b.serviceaccount.identity.linkerd.cluster.local".into(),
            server_name: "a.b.serviceaccount.identity.linkerd.cluster.local".into(),
        });
        assert!(e.sends_header());
        assert_eq!(e.connect_addr(), "10.0.0.1:4143".parse().unwrap());
        e.opaque_transport = None;
        assert!(!e.sends_header());
        e.authority_override = Some("gw.example:4143".parse().unwrap());
        assert!(e.sends_header());
        assert_eq!(e.connect_addr(), addr);
    }
}
