//! HTTP through the gateway (not yet served: connections are refused and counted).

use crate::Gateway;
use crate::metrics::Leg;
use crate::route::Target;
use crate::server::Client;
use crate::transport_header::SessionProtocol;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub async fn serve_plain(
    gw: &Arc<Gateway>,
    _tls: TlsStream<TcpStream>,
    client: &Client,
    _leg: &Leg,
) -> bool {
    gw.metrics.tcp_error("transport header");
    tracing::debug!(client = %client.id, "no transport header ALPN");
    false
}

pub async fn serve_transport(
    gw: &Arc<Gateway>,
    _tls: TlsStream<TcpStream>,
    _client: &Client,
    _target: Target,
    _protocol: SessionProtocol,
    _leg: &Leg,
) -> bool {
    gw.metrics.tcp_error("unexpected");
    false
}
