//! Micro-benchmarks of the pure decisions on the connection path:
//! `cargo bench --bench micro`.

use criterion::{Criterion, criterion_group, criterion_main};
use crossgate::authz::{self, Pattern, Policy, Rule};
use crossgate::route::Routes;
use crossgate::transport_header::{self, SessionProtocol, TransportHeader};
use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::hint::black_box;

const GW: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
const CLIENT: &str = "frontend.west.serviceaccount.identity.linkerd.cluster.local";

fn header(c: &mut Criterion) {
    let bytes = TransportHeader {
        port: 9898,
        name: Some("podinfo.test.svc.cluster.local".into()),
        protocol: Some(SessionProtocol::Http2),
    }
    .encode();
    c.bench_function("transport_header::decode (captured h2-hint shape)", |b| {
        b.iter(|| transport_header::decode(black_box(&bytes)))
    });
}

fn routing(c: &mut Criterion) {
    let mut statics = HashMap::new();
    statics.insert(
        ("bb.mc-demo.svc.cluster.local".to_string(), 8080),
        vec!["127.0.0.1:18080".parse().unwrap()],
    );
    let routes = Routes::new("cluster.local", statics);
    c.bench_function("route (cluster name)", |b| {
        b.iter(|| routes.route(black_box("podinfo.test.svc.cluster.local"), 9898))
    });
    c.bench_function("route (refused, outside the domain)", |b| {
        b.iter(|| routes.route(black_box("podinfo.test.example.com"), 9898))
    });
}

fn patterns(c: &mut Criterion) {
    let policy = Policy {
        own_identity: GW.into(),
        rules: vec![
            Rule {
                identities: vec![
                    "*.east.serviceaccount.identity.linkerd.cluster.local"
                        .parse::<Pattern>()
                        .unwrap(),
                ],
                services: vec![Pattern::Any],
            },
            Rule {
                identities: vec![
                    "*.west.serviceaccount.identity.linkerd.cluster.local"
                        .parse()
                        .unwrap(),
                ],
                services: vec!["*.test.svc.cluster.local".parse().unwrap()],
            },
        ],
    };
    let target = Routes::new("cluster.local", HashMap::new())
        .route("podinfo.test.svc.cluster.local", 9898)
        .unwrap();
    c.bench_function("authorize (second of two rules matches)", |b| {
        b.iter(|| authz::authorize(black_box(CLIENT), &target, &policy))
    });
}

fn san(c: &mut Criterion) {
    let pki = crossgate::certs::Pki::new().unwrap();
    let leaf = pki.leaf(CLIENT).unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    c.bench_function("identity_of (SAN from a DER leaf)", |b| {
        b.iter(|| crossgate::identity::identity_of(black_box(&der)))
    });
}

criterion_group!(benches, header, routing, patterns, san);
criterion_main!(benches);
