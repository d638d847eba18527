//! The one connect path: an [`Endpoint`] to a connected [`UpstreamIo`] with its outbound leg.
//! TCP for endpoints discovery knows nothing of; for a meshed endpoint, mTLS as the gateway's
//! own identity (SNI = its server name, its leaf must name its server id), and when its proxy
//! is reached on the inbound port or through an authority override, a transport header first
//! (ALPN `transport.l5d.io/v1`), as a linkerd2-proxy outbound client does. One deadline covers
//! the TCP connect, the handshake and the header.

use crate::client_tls::ClientTls;
use crate::discovery::Endpoint;
#[cfg(doc)]
use crate::metered::Metered;
use crate::metrics::{Leg, Metrics, TcpLabels};
use crate::refusal::Refusal;
use crate::route::Target;
use crate::transport_header::{self, SessionProtocol, TransportHeader};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A connected upstream: plaintext TCP or the gateway's mTLS to a meshed pod.
pub use crate::client_tls::ClientIo as UpstreamIo;

/// An upstream connection and the outbound leg that counts it (the caller meters the bytes
/// through [`Metered`] with the leg's counters).
pub struct Connected {
    pub io: UpstreamIo,
    pub leg: Leg,
}

/// Connects to endpoints under one deadline; labels each connection's leg.
pub struct Connector {
    /// `None`: no identity to dial meshed endpoints with (tests without a PKI).
    pub(super) tls: Option<Arc<ClientTls>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) timeout: Duration,
}

impl Connector {
    /// Connects to `endpoint` of `target`; `session` is what follows a transport header
    /// (`None`: opaque), sent only to endpoints that take one.
    pub async fn connect(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        session: Option<SessionProtocol>,
    ) -> Result<Connected, Refusal> {
        self.connect_as(target, endpoint, Dial::AsDiscovered(session))
            .await
    }

    /// Plain TCP to `endpoint`'s own address (not its proxy's inbound port), whatever
    /// discovery says of it: for the passthrough port, whose client speaks TLS end to end.
    pub async fn connect_raw(
        &self,
        target: &Target,
        endpoint: &Endpoint,
    ) -> Result<Connected, Refusal> {
        self.connect_as(target, endpoint, Dial::Raw).await
    }

    async fn connect_as(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        dial: Dial,
    ) -> Result<Connected, Refusal> {
        let (addr, session) = match dial {
            Dial::AsDiscovered(session) => (endpoint.connect_addr(), Some(session)),
            Dial::Raw => (endpoint.addr, None),
        };
        let io = tokio::time::timeout(self.timeout, self.open(endpoint, addr, session))
            .await
            .map_err(|_| {
                Refusal::Upstream(format!(
                    "connect {addr}: timed out after {:?}",
                    self.timeout
                ))
            })??;
        // Reached: the target's name may be a metric label from now on.
        self.metrics.targets.reached(target);
        let leg = Leg::open(
            &self.metrics,
            TcpLabels::Outbound {
                authority: self.metrics.targets.authority(target).into(),
                target_addr: endpoint.addr.to_string().into(),
                server_id: match dial {
                    Dial::AsDiscovered(_) => endpoint.identity.as_ref().map(|s| s.id.clone()),
                    Dial::Raw => None,
                },
                dst: endpoint.labels.clone(),
            },
        );
        Ok(Connected { io, leg })
    }

    /// `session`: `None` dials plain TCP; else as discovery says, with what follows a
    /// transport header.
    async fn open(
        &self,
        endpoint: &Endpoint,
        addr: std::net::SocketAddr,
        session: Option<Option<SessionProtocol>>,
    ) -> Result<UpstreamIo, Refusal> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            tracing::debug!(%addr, error = %e, "upstream connect failed");
            Refusal::Upstream(format!("connect {addr}: {e}"))
        })?;
        let _ = tcp.set_nodelay(true);
        let (Some(server), Some(session)) = (&endpoint.identity, session) else {
            return Ok(UpstreamIo::Tcp(tcp));
        };
        let header = endpoint.sends_header();
        let alpn = header.then_some(transport_header::ALPN);
        let Some(client_tls) = &self.tls else {
            return Err(Refusal::Upstream(format!(
                "tls {addr}: the gateway has no client identity"
            )));
        };
        let mut tls = client_tls.connect(tcp, server, alpn).await.map_err(|e| {
            tracing::debug!(%addr, server_id = %server.id, error = %e, "upstream TLS failed");
            Refusal::Upstream(format!("tls {addr}: {e}"))
        })?;
        if header {
            if tls.get_ref().1.alpn_protocol() != Some(transport_header::ALPN) {
                return Err(Refusal::Upstream(format!(
                    "tls {addr}: the endpoint did not take transport.l5d.io/v1"
                )));
            }
            let bytes = transport_header_for(endpoint, session).encode();
            tls.write_all(&bytes)
                .await
                .map_err(|e| Refusal::Upstream(format!("transport header to {addr}: {e}")))?;
        }
        Ok(UpstreamIo::Tls(Box::new(tls)))
    }
}

/// How an endpoint is dialled.
#[derive(Clone, Copy)]
enum Dial {
    /// As discovery says (mTLS to a meshed pod, a transport header when it takes one), with
    /// what follows the header.
    AsDiscovered(Option<SessionProtocol>),
    /// Plain TCP to the endpoint's own address.
    Raw,
}

/// The header a connection to `endpoint` opens with: the port the application asked for (the
/// override's, else the endpoint's), the override's name if any, and what follows.
pub fn transport_header_for(
    endpoint: &Endpoint,
    session: Option<SessionProtocol>,
) -> TransportHeader {
    let (port, name) = match &endpoint.authority_override {
        Some(a) => (
            a.port_u16().unwrap_or(endpoint.addr.port()),
            Some(a.host().to_string()),
        ),
        None => (endpoint.addr.port(), None),
    };
    TransportHeader {
        port,
        name,
        protocol: session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::ServerId;

    fn meshed() -> Endpoint {
        let mut e = Endpoint::plain("10.1.2.3:8080".parse().unwrap());
        e.identity = Some(ServerId {
            id: "web.ns.serviceaccount.identity.linkerd.cluster.local".into(),
            server_name: "web.ns.serviceaccount.identity.linkerd.cluster.local".into(),
        });
        e
    }

    #[test]
    fn header_names_the_application_port_or_the_override() {
        let mut e = meshed();
        e.opaque_transport = Some(4143);
        let h = transport_header_for(&e, Some(SessionProtocol::Http2));
        assert_eq!((h.port, h.name.as_deref()), (8080, None));
        assert_eq!(h.protocol, Some(SessionProtocol::Http2));
        e.authority_override = Some("web.ns.svc.cluster.local:9090".parse().unwrap());
        let h = transport_header_for(&e, None);
        assert_eq!(
            (h.port, h.name.as_deref()),
            (9090, Some("web.ns.svc.cluster.local"))
        );
        assert_eq!(h.protocol, None);
    }
}
