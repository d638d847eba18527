//! The cost of one upstream mTLS handshake with the gateway as the TLS client, as it dials a
//! meshed pod: TLS 1.3, the gateway's leaf as client certificate, no resumption, the server's
//! chain verified to the anchor and its *server id* checked (`crossgate::client_tls`).
//!
//!   cargo run --release --example upstream_handshake -- [N]      (N handshakes, default 2000)
//!
//! A dev PKI is made in memory (nothing is written). A rustls server on 127.0.0.1, on its own
//! OS thread with its own current-thread runtime, presents a leaf for the pod's identity and
//! requires a client certificate chained to the anchor (as tests/support/meshed.rs does). The
//! main thread, on a current-thread runtime, performs N sequential `ClientTls::connect`
//! handshakes, each over a fresh `TcpStream`, after a few warm-up ones. Reported: the main
//! thread's CPU per handshake (TCP connect and close included) from /proc/thread-self/schedstat
//! (nanoseconds on CPU) and /proc/thread-self/stat (utime + stime, clock ticks), wall time and
//! handshakes/s (a sequential rate: the client waits for the server's thread each time), and
//! the process's other CPU (the server thread, in clock ticks) per handshake for scale. The
//! server counts completed handshakes: the run fails unless all N completed there too (TLS 1.3
//! clients finish before the server has checked their certificate).

use crossgate::certs::{GATEWAY_IDENTITY, Leaf, Pki};
use crossgate::client_tls::ClientTls;
use crossgate::discovery::ServerId;
use crossgate::identity::{CredentialStore, Credentials};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const POD: &str = "podinfo-meshed.test.serviceaccount.identity.linkerd.cluster.local";
const WARMUP: usize = 50;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000);
    let provider = crossgate::tls::provider();
    let pki = Pki::new()?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.anchor_pem().as_bytes()) {
        roots.add(c?)?;
    }
    let roots = Arc::new(roots);

    // The pod: TLS 1.3, a client certificate chained to the anchor required, ALPN h2 offered
    // (a client offering none is served too), no tickets.
    let (pod_chain, pod_key) = pem_pair(&pki.leaf(POD)?)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pod_chain, pod_key)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    server.send_tls13_tickets = 0;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    {
        let (accepted, refused) = (accepted.clone(), refused.clone());
        std::thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("listener");
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = tcp.set_nodelay(true);
                        let (acceptor, accepted, refused) =
                            (acceptor.clone(), accepted.clone(), refused.clone());
                        tokio::spawn(async move {
                            match acceptor.accept(tcp).await {
                                Ok(_tls) => accepted.fetch_add(1, Ordering::Relaxed),
                                Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                            };
                        });
                    }
                })
            })?;
    }

    // The gateway: its leaf in a credential store, as Gateway::build makes it.
    let gw = pki.leaf(GATEWAY_IDENTITY)?;
    let now = crossgate::identity::unix_now();
    let store = Arc::new(CredentialStore::new(Credentials {
        key: certified_key(&gw, &provider)?,
        identity: GATEWAY_IDENTITY.to_string(),
        not_before: now - 60,
        not_after: now + 86_400,
    }));
    let client = ClientTls::new(store, roots, provider);
    let server_id = ServerId {
        id: POD.into(),
        server_name: POD.into(),
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let one = || async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            client.connect(tcp, &server_id, None).await
        };
        let mut last = None;
        for _ in 0..WARMUP {
            last = Some(one().await?);
        }
        if let Some(tls) = &last {
            let (_, conn) = tls.get_ref();
            println!(
                "negotiated: {:?}, {:?}, key exchange {:?}, ALPN {:?}",
                conn.protocol_version(),
                conn.negotiated_cipher_suite().map(|s| s.suite()),
                conn.negotiated_key_exchange_group().map(|g| g.name()),
                conn.alpn_protocol().map(String::from_utf8_lossy),
            );
        }
        drop(last);
        wait_for(&accepted, &refused, WARMUP).await?;

        let (ns0, ticks0, proc0) = (sched_ns()?, thread_ticks()?, process_ticks()?);
        let t0 = Instant::now();
        for _ in 0..n {
            drop(one().await?);
        }
        let wall = t0.elapsed();
        let (ns1, ticks1, proc1) = (sched_ns()?, thread_ticks()?, process_ticks()?);
        wait_for(&accepted, &refused, WARMUP + n).await?;

        let tick_us = 1e6 / clock_ticks_per_sec() as f64;
        let per = |x: f64| x / n as f64;
        let client_ticks = (ticks1 - ticks0) as f64;
        println!(
            "{n} handshakes: client CPU {:.1} us/handshake (schedstat), {:.1} us (utime+stime \
             ticks); wall {:.1} us/handshake, {:.0} handshakes/s; rest of the process (server \
             thread) {:.1} us/handshake (ticks)",
            per((ns1 - ns0) as f64 / 1e3),
            per(client_ticks * tick_us),
            per(wall.as_secs_f64() * 1e6),
            n as f64 / wall.as_secs_f64(),
            per(((proc1 - proc0) as f64 - client_ticks) * tick_us),
        );
        anyhow::Ok(())
    })
}

/// A leaf's chain (leaf then issuer) and key, DER.
fn pem_pair(leaf: &Leaf) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    Ok((
        chain,
        PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?,
    ))
}

/// A leaf with its key, for the credential store.
fn certified_key(
    leaf: &Leaf,
    provider: &rustls::crypto::CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let (chain, key) = pem_pair(leaf)?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider)?))
}

/// Waits until the server has finished `want` handshakes; fails on any refused one.
async fn wait_for(
    accepted: &AtomicUsize,
    refused: &AtomicUsize,
    want: usize,
) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, bad) = (
            accepted.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
        );
        anyhow::ensure!(bad == 0, "the server refused {bad} handshakes");
        if ok >= want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < end,
            "the server completed {ok} of {want} handshakes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// This thread's time on CPU, nanoseconds (first field of /proc/thread-self/schedstat).
fn sched_ns() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    Ok(s.split_whitespace()
        .next()
        .ok_or_else(|| anyhow::anyhow!("empty schedstat"))?
        .parse()?)
}

/// utime + stime in clock ticks from a /proc/.../stat line.
fn stat_ticks(path: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(path)?;
    let rest = s
        .rsplit_once(')')
        .ok_or_else(|| anyhow::anyhow!("{path}: no ')'"))?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)", field 3 (state) is f[0]: utime (14) is f[11], stime (15) f[12].
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn thread_ticks() -> anyhow::Result<u64> {
    stat_ticks("/proc/thread-self/stat")
}

fn process_ticks() -> anyhow::Result<u64> {
    stat_ticks("/proc/self/stat")
}

/// USER_HZ, the unit of /proc's utime and stime (`getconf CLK_TCK`; 100 if that fails).
fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
