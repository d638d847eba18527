//! GATEWAY=capture: a TLS 1.3 mTLS server holding the gateway's identity. For each
//! connection it records SNI, ALPN, the client's identity, the raw transport header, and
//! then what follows (HTTP requests as received, or the first raw bytes), into
//! DIR/capture/conn-NNNN.txt (+ conn-NNNN.hdr.hex). It answers like the echo backend, so
//! the source proxy's clients get well-formed answers; it is not a gateway (it does not
//! forward, authorize or refuse anything).

use crate::{backend, Args, Error};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::{
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

pub const PREFACE: &[u8] = b"transport.l5d.io/v1\r\n\r\n";
pub const ALPN: &[u8] = b"transport.l5d.io/v1";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Header {
    pub port: u64,
    pub name: Option<String>,
    /// None: opaque; Some("Http1"|"Http2"|"unknown").
    pub protocol: Option<String>,
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let x = *b.get(*i)?;
        *i += 1;
        v |= ((x & 0x7f) as u64) << shift;
        if x & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Decodes `transport.l5d.io.Header` (just enough protobuf for its three fields).
pub fn decode(b: &[u8]) -> Option<Header> {
    let mut h = Header::default();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        match (key >> 3, key & 7) {
            (1, 0) => h.port = varint(b, &mut i)?,
            (n, 2) => {
                let len = varint(b, &mut i)? as usize;
                let v = b.get(i..i + len)?;
                i += len;
                if n == 2 {
                    h.name = Some(String::from_utf8_lossy(v).into_owned());
                } else if n == 3 {
                    let mut j = 0;
                    let k = varint(v, &mut j).unwrap_or(0) >> 3;
                    h.protocol = Some(match k {
                        1 => "Http1".into(),
                        2 => "Http2".into(),
                        _ => "unknown".into(),
                    });
                }
            }
            (_, 0) => {
                varint(b, &mut i)?;
            }
            _ => return None,
        }
    }
    Some(h)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn load_server_config(idir: &Path) -> Result<rustls::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(idir.join("ca.crt"))? {
        roots.add(c?)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(idir.join("tls.crt"))?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(idir.join("tls.key"))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The first DNS (or URI) SAN of a DER certificate.
pub fn first_san(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|g| match g {
        GeneralName::DNSName(s) => Some(s.to_string()),
        GeneralName::URI(s) => Some(s.to_string()),
        _ => None,
    })
}

struct Rec(Mutex<std::fs::File>);
impl Rec {
    fn line(&self, s: impl AsRef<str>) {
        let mut f = self.0.lock().unwrap();
        let _ = f.write_all(s.as_ref().as_bytes());
        let _ = f.flush();
    }
}

pub async fn run(args: &Args) -> Result<(), Error> {
    let state = PathBuf::from(args.get("state", "/tmp/l5d-interop"));
    let listen: SocketAddr = args.get("listen", "192.0.2.10:4143").parse()?;
    let out = PathBuf::from(args.get("out", &state.join("capture").to_string_lossy()));
    std::fs::create_dir_all(&out)?;
    let cfg = load_server_config(&state.join("gateway/identity"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind(listen).await?;
    eprintln!(
        "stubcp capture: mTLS on {listen}, recording into {}",
        out.display()
    );
    let n = Arc::new(AtomicU64::new(0));
    loop {
        let (tcp, peer) = l.accept().await?;
        let id = n.fetch_add(1, Ordering::Relaxed) + 1;
        let acceptor = acceptor.clone();
        let out = out.clone();
        tokio::spawn(async move {
            if let Err(e) = conn(id, peer, tcp, acceptor, &out).await {
                eprintln!("stubcp capture: conn {id}: {e}");
            }
        });
    }
}

async fn conn(
    id: u64,
    peer: SocketAddr,
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    out: &Path,
) -> Result<(), Error> {
    let _ = tcp.set_nodelay(true);
    let rec = Arc::new(Rec(Mutex::new(std::fs::File::create(
        out.join(format!("conn-{id:04}.txt")),
    )?)));
    rec.line(format!("conn {id} from {peer}\n"));
    let mut tls = match acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            rec.line(format!("tls handshake failed: {e}\n"));
            return Ok(());
        }
    };
    let (sni, alpn, client, version, suite, kx) = {
        let (_, c) = tls.get_ref();
        (
            c.server_name().map(str::to_string),
            c.alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            c.peer_certificates()
                .and_then(|cs| cs.first())
                .and_then(|c| first_san(c)),
            c.protocol_version().map(|v| format!("{v:?}")),
            c.negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            c.negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
        )
    };
    rec.line(format!(
        "tls: {} {} kx {} (this server offers ring's X25519, P-256, P-384)\nsni: {}\nalpn: {}\nclient-id: {}\n",
        version.unwrap_or_default(),
        suite.unwrap_or_default(),
        kx.unwrap_or_default(),
        sni.unwrap_or_else(|| "-".into()),
        alpn.clone().unwrap_or_else(|| "-".into()),
        client.unwrap_or_else(|| "-".into()),
    ));

    let mut header = None;
    if alpn.as_deref().map(str::as_bytes) == Some(ALPN) {
        let mut pre = [0u8; 23];
        tls.read_exact(&mut pre).await?;
        let mut len = [0u8; 4];
        tls.read_exact(&mut len).await?;
        let n = u32::from_be_bytes(len) as usize;
        if pre != PREFACE || n > 65536 {
            rec.line(format!("bad preface/len: {} {}\n", hex(&pre), hex(&len)));
            return Ok(());
        }
        let mut body = vec![0u8; n];
        tls.read_exact(&mut body).await?;
        let h = decode(&body);
        std::fs::write(
            out.join(format!("conn-{id:04}.hdr.hex")),
            format!("{}\n{}{}\n", hex(&pre), hex(&len), hex(&body)),
        )?;
        rec.line(format!(
            "header-hex: {} {}\nheader: {:?}\n",
            hex(&len),
            hex(&body),
            h
        ));
        header = h;
    } else {
        rec.line("header: none (no transport ALPN)\n");
    }

    let proto = header.as_ref().and_then(|h| h.protocol.clone());
    let svc_rec = rec.clone();
    let svc = hyper::service::service_fn(move |req| {
        let rec = svc_rec.clone();
        let k = REQS.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let (parts, body) = req.into_parts();
            // Record before answering (the echo also needs the body).
            rec.line(format!(
                "request {k}: {}",
                backend::report(&parts, 0, None).replace("  (body 0 bytes)\n", "")
            ));
            let req = hyper::Request::from_parts(parts, body);
            Ok::<_, Infallible>(backend::echo(req, "capture", id, peer, None).await)
        }
    });
    let io = TokioIo::new(tls);
    match (header.is_some(), proto.as_deref()) {
        (true, Some("Http2")) => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await?
        }
        (true, Some("Http1")) => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await?
        }
        (true, _) => {
            // Opaque: record the first bytes, echo everything, half-close after the peer does.
            let mut tls = io.into_inner();
            let mut buf = vec![0u8; 16 * 1024];
            let mut first = true;
            let mut total = 0usize;
            loop {
                let n = tls.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                if first {
                    rec.line(format!(
                        "opaque first bytes ({n}): {:?}\n",
                        String::from_utf8_lossy(&buf[..n.min(256)])
                    ));
                    first = false;
                }
                total += n;
                tls.write_all(&buf[..n]).await?;
            }
            rec.line(format!("opaque total {total} bytes, peer half-closed\n"));
            tls.shutdown().await?;
        }
        (false, _) => {
            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await?
        }
    }
    rec.line("closed\n");
    Ok(())
}

static REQS: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn decodes_design_example() {
        // DESIGN.md part 1: {port 4040, name "foo.bar.example.com", Http2}
        let b = "08c81f1213666f6f2e6261722e6578616d706c652e636f6d1a021200";
        let b: Vec<u8> = (0..b.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&b[i..i + 2], 16).unwrap())
            .collect();
        let h = decode(&b).unwrap();
        assert_eq!(h.port, 4040);
        assert_eq!(h.name.as_deref(), Some("foo.bar.example.com"));
        assert_eq!(h.protocol.as_deref(), Some("Http2"));
    }
}
