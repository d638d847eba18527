//! stubcp: the pieces around a real linkerd2-proxy that the crossgate interop harness needs.
//!
//!   stubcp init    --state DIR [--gateway-id ID] [--source-id ID] [--meshed-id ID]
//!       writes a Linkerd-style PKI (trust anchor -> issuer -> leaves) under DIR:
//!       pki/{ca,issuer}.{crt,key}, gateway/identity/{ca.crt,tls.crt,tls.key},
//!       id/{src,gw,meshed}/{key.p8,csr.der,token} (identity dirs for the three proxies).
//!   stubcp serve   --state DIR [--listen 127.0.0.1:8086] [--gateway IP:PORT] [--backend-ip IP]
//!                  [--meshed-ip IP] [--meshed-id ID] [--meshed-workload JSON] [--meshed-ports P,P]
//!       plaintext gRPC: Identity.Certify, Destination.Get/GetProfile,
//!       OutboundPolicies.Get/Watch, InboundServerPolicies.GetPort/WatchPort
//!       (authenticated-only for the meshed workload's app ports, all-unauthenticated otherwise).
//!   stubcp capture --state DIR [--listen IP:PORT]
//!       a TLS 1.3 mTLS server with the gateway's identity that records, per connection,
//!       the transport header and the requests/bytes that follow into DIR/capture.
//!   stubcp backend --http IP:PORT --tcp IP:PORT [--log FILE]
//!       HTTP/1 + h2c echo reporting what it received, and a TCP echo (half-close aware).
//!   stubcp grpc URL                      gRPC-ish HTTP/2 POST with request trailers.
//!   stubcp tcp ADDR [--bytes N]          sends N bytes, half-closes, checks the echo.
//!   stubcp load URL [--h2] [--conns C] [--secs S] [--max N]   bounded load generator.

mod backend;
mod capture;
mod client;
mod cp;
mod pki;

use std::collections::HashMap;

pub const GATEWAY_ID: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
pub const SOURCE_ID: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";
/// The meshed target pod (behind its own linkerd2-proxy, inbound requires mTLS).
pub const MESHED_ID: &str = "podinfo-meshed.test.serviceaccount.identity.linkerd.cluster.local";
/// LINKERD2_PROXY_POLICY_WORKLOAD of the meshed target pod's proxy.
pub const MESHED_WORKLOAD: &str = r#"{"ns":"test","pod":"podinfo-meshed-0"}"#;

pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `--key value` flags and positional arguments.
pub struct Args {
    pub pos: Vec<String>,
    pub flags: HashMap<String, String>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Self {
        let mut pos = Vec::new();
        let mut flags = HashMap::new();
        let mut it = args.peekable();
        while let Some(a) = it.next() {
            if let Some(k) = a.strip_prefix("--") {
                if let Some((k, v)) = k.split_once('=') {
                    flags.insert(k.to_string(), v.to_string());
                } else if it.peek().map(|n| !n.starts_with("--")).unwrap_or(false) {
                    flags.insert(k.to_string(), it.next().unwrap());
                } else {
                    flags.insert(k.to_string(), "true".to_string());
                }
            } else {
                pos.push(a);
            }
        }
        Args { pos, flags }
    }
    pub fn get(&self, k: &str, default: &str) -> String {
        self.flags
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
    pub fn has(&self, k: &str) -> bool {
        self.flags.contains_key(k)
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: stubcp init|serve|capture|backend|grpc|tcp|load ... (see the top of src/main.rs)"
    );
    std::process::exit(64)
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_else(|| usage());
    let args = Args::parse(argv);
    let res = match cmd.as_str() {
        "init" => pki::init(&args),
        "serve" => cp::serve(&args).await,
        "capture" => capture::run(&args).await,
        "backend" => backend::run(&args).await,
        "grpc" => client::grpc(&args).await,
        "tcp" => client::tcp(&args).await,
        "load" => client::load(&args).await,
        _ => usage(),
    };
    if let Err(e) = res {
        eprintln!("stubcp {cmd}: error: {e}");
        std::process::exit(1);
    }
}
