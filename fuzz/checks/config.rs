//! The configuration parser on arbitrary text, with a base folder where `ca.crt`, `tls.crt` and
//! `tls.key` exist (so identity paths can pass). It never panics; when it accepts, what it
//! accepted is well-formed: the cluster domain and static names are DNS names (never IP
//! literals, ports above 0, endpoints present), patterns print back to themselves, durations
//! and counts are above zero, identity paths exist.

use crossgate::authz::Pattern;
use crossgate::config::{Config, Overrides};
use crossgate::names::{is_dns_name, is_ip_literal};
use std::path::Path;
use std::sync::OnceLock;

fn base() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        for f in ["ca.crt", "tls.crt", "tls.key"] {
            std::fs::write(dir.path().join(f), "not a PEM\n").expect("dummy file");
        }
        dir
    })
    .path()
}

fn check_pattern(p: &Pattern) {
    match p {
        Pattern::Any => {}
        Pattern::Suffix(s) => assert!(s.starts_with('.') && s.len() > 1 && !s.contains('*')),
        Pattern::Exact(s) => assert!(!s.is_empty() && !s.contains('*')),
    }
    assert_eq!(&p.to_string().parse::<Pattern>().unwrap(), p);
}

/// One input, as libFuzzer hands it to the target (and `tests/fuzz_known.rs` replays it).
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Config::parse(text, "fuzz.toml", base(), &Overrides::default()) else {
        return;
    };
    // The addresses are parsed values; they print and parse back.
    for a in [c.server.listen, c.server.admin] {
        assert_eq!(a.to_string().parse::<std::net::SocketAddr>().unwrap(), a);
    }
    let s = &c.server;
    for d in [
        s.handshake_timeout,
        s.header_timeout,
        s.connect_timeout,
        s.idle_timeout,
        s.http_idle_timeout,
        s.drain_timeout,
        c.identity.reload_interval,
    ] {
        assert!(!d.is_zero());
    }
    assert!(s.response_timeout.is_none_or(|d| !d.is_zero()));
    assert!(s.max_connections > 0 && s.max_in_flight > 0 && s.h2_max_concurrent_streams > 0);
    assert!(s.threads.is_none_or(|t| t > 0));
    assert!(
        is_dns_name(&c.routing.cluster_domain),
        "{:?}",
        c.routing.cluster_domain
    );
    for ((name, port), eps) in &c.routing.statics {
        assert!(is_dns_name(name) && !is_ip_literal(name), "static {name:?}");
        assert_eq!(name, &crossgate::names::normalize(name));
        assert!(*port > 0 && !eps.is_empty());
    }
    for rule in &c.authorization {
        rule.identities
            .iter()
            .chain(&rule.services)
            .for_each(check_pattern);
    }
    for p in [
        &c.identity.trust_anchors,
        &c.identity.certificate,
        &c.identity.key,
    ] {
        assert!(p.exists(), "{p:?}");
    }
    if let Some(n) = &c.identity.name {
        assert!(crossgate::names::is_identity_syntax(n));
    }
}
