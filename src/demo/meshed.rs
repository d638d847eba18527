//! The demo's meshed pod and its destination controller: a pod that, like one behind its
//! Linkerd proxy, takes only mTLS with a client certificate under the anchor (and answers with
//! the identity it saw), and a minimal `Destination.Get` server that names the pod, its
//! identity and the H2 hint, as Linkerd's controller would. The gateway learns the pod from it
//! and dials it as itself.

use crate::certs::Pki;
use linkerd2_proxy_api::destination as pb;
use linkerd2_proxy_api::net::{IpAddress, TcpAddress, ip_address};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::codegen::tokio_stream::{self, Stream};

/// The pod: mTLS as `identity`, client certificate required; HTTP/2; answers with the
/// client's identity and `l5d-orig-proto`.
pub(super) async fn spawn_pod(
    pki: &Pki,
    identity: &str,
    dir: &std::path::Path,
) -> anyhow::Result<SocketAddr> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let leaf = pki.leaf(identity)?;
    let roots = anchors_store(&pki.anchor_pem())?;
    let (cert, key) = (dir.join("pod.crt"), dir.join("pod.key"));
    std::fs::write(&cert, &leaf.cert_pem)?;
    std::fs::write(&key, &leaf.key_pem)?;
    let provider = crate::tls::provider();
    let creds = crate::identity::Credentials::load(&cert, &key, None, &roots, &provider)
        .map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let store = Arc::new(crate::identity::CredentialStore::new(creds));
    let config =
        crate::tls::server_config(store, roots, provider, &[b"h2"], false, &Default::default())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let conn = tls.get_ref().1;
                let peer = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| crate::identity::identity_of(c))
                    .unwrap_or_else(|| "-".into());
                let sni = conn.server_name().unwrap_or("-").to_string();
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let orig = req
                        .headers()
                        .get("l5d-orig-proto")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    let body = format!(
                        "pod saw {:?} from {peer} (sni {sni}), l5d-orig-proto={orig}",
                        req.version()
                    );
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Step 8: HTTP/2, then HTTP/1.1 (riding the pod's HTTP/2 connection) to the meshed pod
/// through the gateway; the pod must have seen the gateway's identity.
pub(super) async fn step(
    gw_addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> anyhow::Result<()> {
    use super::{POD, http_via};
    use crate::certs::GATEWAY_IDENTITY;
    use crate::transport_header::{SessionProtocol, TransportHeader};
    use anyhow::ensure;
    let pod_uri = format!("http://{POD}:8443/meshed");
    let pod_header = |protocol| TransportHeader {
        port: 8443,
        name: Some(POD.into()),
        protocol: Some(protocol),
    };
    let (status, _, body) = http_via(
        gw_addr,
        client.clone(),
        Some(pod_header(SessionProtocol::Http2)),
        true,
        &pod_uri,
        None,
    )
    .await?;
    println!("   h2:       {status}: {body}");
    ensure!(
        status == 200 && body.contains(&format!("from {GATEWAY_IDENTITY}")),
        "the meshed pod did not see the gateway's identity"
    );
    let (status, _, body) = http_via(
        gw_addr,
        client.clone(),
        Some(pod_header(SessionProtocol::Http1)),
        false,
        "/meshed",
        None,
    )
    .await?;
    println!("   http/1.1: {status}: {body}");
    ensure!(
        status == 200 && body.contains("l5d-orig-proto=HTTP/1.1"),
        "HTTP/1.1 did not ride the pod's HTTP/2 connection"
    );
    Ok(())
}

fn anchors_store(pem: &str) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c?)?;
    }
    Ok(Arc::new(roots))
}

/// A destination controller on 127.0.0.1 (plaintext gRPC, as on loopback) that answers a
/// `Get` for `path` with one `Add` naming `pod` with `identity` and the H2 hint, and
/// `NoEndpoints{exists: false}` for anything else.
pub(super) async fn spawn_destination(
    path: &str,
    pod: SocketAddr,
    identity: &str,
) -> anyhow::Result<SocketAddr> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower_service::Service;
    let svc = pb::destination_server::DestinationServer::new(Controller {
        path: path.into(),
        pod,
        identity: identity.into(),
    });
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = svc.clone();
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                let mut svc = svc.clone();
                async move { svc.call(req).await }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

struct Controller {
    path: String,
    pod: SocketAddr,
    identity: String,
}

type Updates = Pin<Box<dyn Stream<Item = Result<pb::Update, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl pb::destination_server::Destination for Controller {
    type GetStream = Updates;
    type GetProfileStream =
        Pin<Box<dyn Stream<Item = Result<pb::DestinationProfile, tonic::Status>> + Send>>;

    async fn get(
        &self,
        request: tonic::Request<pb::GetDestination>,
    ) -> Result<tonic::Response<Updates>, tonic::Status> {
        let update = if request.get_ref().path == self.path {
            pb::update::Update::Add(pb::WeightedAddrSet {
                addrs: vec![self.weighted_addr()],
                metric_labels: [("namespace".to_string(), "demo".to_string())].into(),
            })
        } else {
            pb::update::Update::NoEndpoints(pb::NoEndpoints { exists: false })
        };
        let first = tokio_stream::once(Ok(pb::Update {
            update: Some(update),
        }));
        // The stream stays open, as the controller's does.
        let open = tokio_stream::pending();
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::StreamExt::chain(first, open),
        )))
    }

    async fn get_profile(
        &self,
        _: tonic::Request<pb::GetDestination>,
    ) -> Result<tonic::Response<Self::GetProfileStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("no profiles in the demo"))
    }
}

impl Controller {
    fn weighted_addr(&self) -> pb::WeightedAddr {
        let ip = match self.pod.ip() {
            IpAddr::V4(v4) => ip_address::Ip::Ipv4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                ip_address::Ip::Ipv6(linkerd2_proxy_api::net::IPv6 {
                    first: (bits >> 64) as u64,
                    last: bits as u64,
                })
            }
        };
        let name = pb::tls_identity::DnsLikeIdentity {
            name: self.identity.clone(),
        };
        pb::WeightedAddr {
            addr: Some(TcpAddress {
                ip: Some(IpAddress { ip: Some(ip) }),
                port: u32::from(self.pod.port()),
            }),
            weight: 10_000,
            metric_labels: [("pod".to_string(), "pod-0".to_string())].into(),
            tls_identity: Some(pb::TlsIdentity {
                strategy: Some(pb::tls_identity::Strategy::DnsLikeIdentity(name.clone())),
                server_name: Some(name),
            }),
            protocol_hint: Some(pb::ProtocolHint {
                protocol: Some(pb::protocol_hint::Protocol::H2(pb::protocol_hint::H2 {})),
                opaque_transport: None,
            }),
            ..Default::default()
        }
    }
}
