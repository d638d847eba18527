//! A Linkerd identity controller of our own (`io.linkerd.proxy.identity.Identity`) on
//! 127.0.0.1:0, over h2c or TLS with a server name: it checks the token and signs the CSR
//! with the test PKI's issuer, as Linkerd's controller does; or answers as scripted (an
//! error, a leaf for another name, a leaf for another key, an expired leaf). And a gateway in
//! `[identity.linkerd]` mode pointed at it.

use super::TestGateway;
use super::meshed::{SniResolver, certified_key};
use crossgate::certs::{LeafSpec, Pki};
use crossgate::config::{Config, Overrides};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::identity::identity_server::{Identity, IdentityServer};
use linkerd2_proxy_api::identity::{CertifyRequest, CertifyResponse};
use rcgen::{CertificateSigningRequestParams, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

/// The controller's identity, as Linkerd names it.
pub const CONTROLLER: &str =
    "linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local";

/// How the controller answers the next Certify calls.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Signs the CSR: a leaf valid from a minute ago for this long.
    Issue(Duration),
    Error(Code),
    /// A leaf for the CSR's key naming another identity.
    OtherName,
    /// A leaf for the requested name with a key of its own.
    OtherKey,
    /// A leaf for the CSR that expired a minute ago (`valid_until` still in the future).
    Expired,
}

struct State {
    answer: Answer,
    token: Vec<u8>,
    /// Tokens received, in order.
    tokens: Vec<Vec<u8>>,
}

/// The running stub; dropping it stops it.
pub struct IdentityStub {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::AbortHandle,
}

impl Drop for IdentityStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdentityStub {
    /// h2c on 127.0.0.1:0, accepting `token`.
    pub async fn plaintext(pki: &Pki, token: &str) -> IdentityStub {
        start(pki, token, None).await
    }

    /// TLS 1.3 on 127.0.0.1:0 with a leaf for [`CONTROLLER`], presented only to a client
    /// sending SNI = [`CONTROLLER`]; no client certificate asked for.
    pub async fn tls(pki: &Pki, token: &str) -> IdentityStub {
        IdentityStub::tls_with(pki, token, true).await
    }

    /// [`IdentityStub::tls`]; with `sni_required` false the leaf goes to any client.
    pub async fn tls_with(pki: &Pki, token: &str, sni_required: bool) -> IdentityStub {
        let leaf = pki.leaf(CONTROLLER).unwrap();
        let resolver = SniResolver {
            name: sni_required.then(|| CONTROLLER.into()),
            key: certified_key(&leaf),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(crossgate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec()];
        start(pki, token, Some(Arc::new(config).into())).await
    }

    pub fn set_answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = answer;
    }

    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = token.as_bytes().to_vec();
    }

    /// The tokens received so far.
    pub fn tokens(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.tokens
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }
}

async fn start(pki: &Pki, token: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> IdentityStub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State {
        answer: Answer::Issue(Duration::from_secs(3600)),
        token: token.as_bytes().to_vec(),
        tokens: Vec::new(),
    }));
    let svc = IdentityServer::new(Svc {
        state: state.clone(),
        issuer_pem: pki.issuer_pem(),
        issuer_key_pem: pki.issuer_key_pem(),
        pki_leaf: Arc::new(pki.leaf_with(LeafSpec::identity(super::GATEWAY)).unwrap()),
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (tls, svc) = (tls.clone(), svc.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_h2(tcp, svc).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve_h2(stream, svc).await
                        }
                    }
                }
            });
        }
    });
    IdentityStub {
        addr,
        state,
        task: task.abort_handle(),
    }
}

async fn serve_h2<I>(io: I, svc: IdentityServer<Svc>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut svc = svc.clone();
        tower_service::Service::call(&mut svc, req)
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

#[derive(Clone)]
struct Svc {
    state: Arc<Mutex<State>>,
    issuer_pem: String,
    issuer_key_pem: String,
    /// A leaf for the gateway's name with a key that is not the gateway's.
    pki_leaf: Arc<crossgate::certs::Leaf>,
}

#[tonic::async_trait]
impl Identity for Svc {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let req = req.into_inner();
        let answer = {
            let mut st = self.state.lock().unwrap();
            st.tokens.push(req.token.clone());
            if req.token != st.token {
                return Err(Status::unauthenticated("token does not authenticate"));
            }
            st.answer.clone()
        };
        let issuer_der = first_der(&self.issuer_pem);
        let now = time::OffsetDateTime::now_utc();
        let (leaf, until) = match answer {
            Answer::Error(code) => return Err(Status::new(code, "scripted failure")),
            Answer::OtherKey => (
                first_der(&self.pki_leaf.cert_pem),
                now + time::Duration::hours(1),
            ),
            Answer::Issue(life) => {
                let until = now + life;
                (
                    self.sign(&req, now - time::Duration::minutes(1), until, None)?,
                    until,
                )
            }
            Answer::OtherName => {
                let until = now + time::Duration::hours(1);
                let other = "other.ns.serviceaccount.identity.linkerd.cluster.local";
                (self.sign(&req, now, until, Some(other))?, until)
            }
            Answer::Expired => {
                let until = now - time::Duration::minutes(1);
                let leaf = self.sign(&req, now - time::Duration::hours(1), until, None)?;
                (leaf, now + time::Duration::hours(1))
            }
        };
        let valid_until =
            SystemTime::UNIX_EPOCH + Duration::from_secs(until.unix_timestamp() as u64);
        Ok(Response::new(CertifyResponse {
            leaf_certificate: leaf,
            intermediate_certificates: vec![issuer_der],
            valid_until: Some(prost_types::Timestamp::from(valid_until)),
        }))
    }
}

impl Svc {
    /// Signs the CSR with the issuer, as the controller does: its key, its SAN (or `other`).
    fn sign(
        &self,
        req: &CertifyRequest,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
        other: Option<&str>,
    ) -> Result<Vec<u8>, Status> {
        let der = CertificateSigningRequestDer::from(req.certificate_signing_request.clone());
        let mut csr = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| Status::invalid_argument(format!("CSR: {e}")))?;
        let p = &mut csr.params;
        let spec = LeafSpec::identity(other.unwrap_or(&req.identity));
        p.subject_alt_names = spec.sans;
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = not_before;
        p.not_after = not_after;
        // A fresh serial per leaf, as the controller's (rcgen would derive it from the key).
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        p.serial_number = Some(rcgen::SerialNumber::from(nanos.to_be_bytes().to_vec()));
        let key = KeyPair::from_pem(&self.issuer_key_pem).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&self.issuer_pem, key).unwrap();
        let cert = csr
            .signed_by(&issuer)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(cert.der().to_vec())
    }
}

fn first_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Starts a gateway whose leaf comes from `stub` (TLS to [`CONTROLLER`] when `tls`), with the
/// token file `token` holding `token_text`, and `linkerd` more keys of `[identity.linkerd]`.
/// Does not wait for readiness.
pub async fn start_gateway(
    pki: Pki,
    stub: &IdentityStub,
    tls: bool,
    token_text: &str,
    linkerd: &str,
) -> TestGateway {
    super::watch_src_panics();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), pki.anchor_pem()).unwrap();
    std::fs::write(dir.path().join("token"), token_text).unwrap();
    let server_name = if tls {
        format!("server_name = \"{CONTROLLER}\"\n")
    } else {
        String::new()
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [identity]\ntrust_anchors = \"ca.crt\"\nname = \"{}\"\nreload_interval = \"100ms\"\n\
         [identity.linkerd]\naddr = \"{}\"\ntoken_file = \"token\"\n{server_name}{linkerd}\n",
        super::GATEWAY,
        stub.addr
    );
    let config = Config::parse(&toml, "test.toml", dir.path(), &Overrides::default())
        .unwrap_or_else(|e| panic!("config:\n{e}\n---\n{toml}"));
    let gw = crossgate::Gateway::build(&config).unwrap();
    let listeners = crossgate::Listeners::bind(&config.server).await.unwrap();
    let (addr, admin) = listeners.addrs().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crossgate::run(gw.clone(), listeners, async {
        let _ = rx.await;
    }));
    TestGateway {
        addr,
        admin,
        metrics_addr: None,
        passthrough: None,
        gw,
        pki,
        dir,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestGateway {
    /// Waits until `/ready` answers 200.
    pub async fn until_ready(&self) {
        self.wait_ready().await
    }

    /// The serial of the leaf the gateway presents to a client of `pki`.
    pub async fn served_serial(&self) -> std::io::Result<Vec<u8>> {
        let config = self.client(super::FRONTEND, super::ALPN_TRANSPORT);
        let tls = crossgate::tls::connect(self.addr, config, super::GATEWAY).await?;
        let (_, conn) = tls.get_ref();
        let leaf = conn.peer_certificates().and_then(|c| c.first()).unwrap();
        Ok(super::serial_of_der(leaf))
    }
}
