//! The parser's answers: defaults, the full example, every problem at once, overrides.
use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let dir = std::env::temp_dir();
    for f in ["cg-test-ca.crt", "cg-test-tls.crt", "cg-test-tls.key"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    Config::parse(text, "test.toml", &dir, &Overrides::default())
}

const IDENTITY: &str = "[identity]\ntrust_anchors = \"cg-test-ca.crt\"\ncertificate = \"cg-test-tls.crt\"\nkey = \"cg-test-tls.key\"\n";

#[test]
fn minimal_defaults() {
    let c = parse(IDENTITY).unwrap();
    assert_eq!(c.server.listen.port(), 4143);
    assert_eq!(c.server.admin.port(), 4191);
    assert_eq!(c.routing.cluster_domain, "cluster.local");
    assert!(c.authorization.is_empty());
    assert!(!c.server.tls_resumption);
    assert_eq!(c.server.h2_max_concurrent_streams, 1000);
}

#[test]
fn full_example() {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:5143\"\nadmin = \"127.0.0.1:5191\"\nhandshake_timeout = \"250ms\"\n{IDENTITY}\
         [routing]\ncluster_domain = \"example.org\"\n[routing.static]\n\"bb.mc-demo.svc.cluster.local:8080\" = [\"127.0.0.1:18080\"]\n\
         [[authorization]]\nidentities = [\"*.west.serviceaccount.identity.linkerd.cluster.local\"]\nservices = [\"*.mc-demo.svc.cluster.local\"]\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:5143".parse().unwrap());
    assert_eq!(c.server.handshake_timeout, Duration::from_millis(250));
    assert_eq!(c.routing.statics.len(), 1);
    assert_eq!(c.authorization.len(), 1);
}

#[test]
fn every_problem_reported() {
    let text = "[server]\nlisten = \"nope\"\nhandshake_timeout = \"soon\"\nbogus = 1\n\
                [identity]\ntrust_anchors = \"/nonexistent/ca.crt\"\ncertificate = \"cg-test-tls.crt\"\n\
                [routing.static]\n\"10.0.0.1:80\" = [\"127.0.0.1:1\"]\n\"a.b.svc.cluster.local:80\" = [\"x\"]\n\
                [[authorization]]\nidentities = [\"a*b\"]\n";
    let errs = parse(text).unwrap_err().0;
    let all = errs.join("\n");
    for needle in [
        "server.listen",
        "server.handshake_timeout",
        "server.bogus",
        "identity.trust_anchors",
        "identity.key",
        "10.0.0.1:80",
        "a.b.svc.cluster.local:80",
        "authorization[0].identities",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
    assert!(errs.iter().all(|e| e.starts_with("test.toml: ")));
}

#[test]
fn overrides_win() {
    let dir = std::env::temp_dir();
    parse(IDENTITY).unwrap();
    let c = Config::parse(
        IDENTITY,
        "t",
        &dir,
        &Overrides {
            listen: Some("127.0.0.1:1".into()),
            admin: Some("bad".into()),
        },
    )
    .unwrap_err();
    assert!(c.0.iter().any(|e| e.contains("--admin")));
}

#[test]
fn hardening_keys() {
    let c = parse(IDENTITY).unwrap();
    assert_eq!(c.server.admin_max_connections, 100);
    assert_eq!(c.server.admin_idle_timeout, Duration::from_secs(10));
    assert_eq!(c.server.max_metric_targets, 1000);
    assert_eq!(c.server.drain_delay, Duration::ZERO);
    assert!(c.server.allow_sources.is_none() && c.server.metrics.is_none());
    let text = format!(
        "[server]\ndrain_delay = \"10s\"\nallow_sources = [\"10.1.2.3/8\", \"2001:db8::/32\", \"192.0.2.7\"]\n\
         metrics = \"[::1]:9090\"\n{IDENTITY}"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.drain_delay, Duration::from_secs(10));
    let nets: Vec<String> = c
        .server
        .allow_sources
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]);
    assert_eq!(c.server.metrics, Some("[::1]:9090".parse().unwrap()));
    let bad =
        format!("[server]\nallow_sources = [\"10.0.0.0/33\", 7]\ndrain_delay = \"x\"\n{IDENTITY}");
    let e = parse(&bad).unwrap_err().to_string();
    assert!(
        e.contains("server.allow_sources") && e.contains("10.0.0.0/33"),
        "{e}"
    );
    assert!(e.contains("server.drain_delay"), "{e}");
}

#[test]
fn discovery_absent_and_defaults() {
    assert!(parse(IDENTITY).unwrap().discovery.is_none());
    let text = format!(
        "{IDENTITY}[discovery]\ndestination_addr = \"linkerd-dst-headless.linkerd.svc.cluster.local.:8086\"\n\
         destination_name = \"linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local\"\n"
    );
    let d = parse(&text).unwrap().discovery.unwrap();
    assert_eq!(
        d.destination_addr,
        "linkerd-dst-headless.linkerd.svc.cluster.local.:8086"
    );
    assert_eq!(
        d.destination_name.as_deref(),
        Some("linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(d.fallback, Fallback::Dns);
    assert_eq!(d.stream_initial_timeout, Duration::from_secs(3));
    let token: serde_json::Value = serde_json::from_str(&d.context_token).unwrap();
    for key in ["ns", "nodeName", "pod"] {
        assert!(token[key].is_string(), "{key} in {token}");
    }
}

#[test]
fn discovery_every_key() {
    let text = format!(
        "{IDENTITY}[discovery]\ndestination_addr = \"127.0.0.1:8086\"\ncontext_token = \"tok\"\n\
         fallback = \"fail\"\nstream_initial_timeout = \"250ms\"\n"
    );
    let d = parse(&text).unwrap().discovery.unwrap();
    assert_eq!(
        d,
        Discovery {
            destination_addr: "127.0.0.1:8086".into(),
            destination_name: None,
            context_token: "tok".into(),
            fallback: Fallback::Fail,
            stream_initial_timeout: Duration::from_millis(250),
        }
    );
    // Loopback needs no name: IPv4 and IPv6 literals and localhost.
    for addr in ["[::1]:8086", "localhost:8086", "127.9.9.9:1"] {
        let text = format!("{IDENTITY}[discovery]\ndestination_addr = \"{addr}\"\n");
        assert!(parse(&text).unwrap().discovery.is_some(), "{addr}");
    }
}

#[test]
fn discovery_problems_each_named() {
    let cases = [
        (
            "destination_name = \"dst.linkerd\"\n",
            "discovery.destination_addr: missing",
        ),
        (
            "destination_addr = 8086\n",
            "discovery.destination_addr: expected a string",
        ),
        (
            "destination_addr = \"dst.linkerd\"\n",
            "discovery.destination_addr: \"dst.linkerd\": no port",
        ),
        (
            "destination_addr = \"dst:0\"\n",
            "discovery.destination_addr: \"dst:0\": bad port",
        ),
        (
            "destination_addr = \"a b:80\"\n",
            "discovery.destination_addr: \"a b:80\": \"a b\" is neither",
        ),
        (
            "destination_addr = \"10.0.0.1:8086\"\n",
            "discovery.destination_name: missing",
        ),
        (
            "destination_addr = \"dst.linkerd:8086\"\n",
            "discovery.destination_name: missing",
        ),
        (
            "destination_addr = \"127.0.0.1:8086\"\ndestination_name = \"spiffe://x/y\"\n",
            "discovery.destination_name: \"spiffe://x/y\" is not a DNS-like identity",
        ),
        (
            "destination_addr = \"127.0.0.1:1\"\nfallback = \"static\"\n",
            "discovery.fallback: \"static\": expected",
        ),
        (
            "destination_addr = \"127.0.0.1:1\"\nfallback = true\n",
            "discovery.fallback: expected a string",
        ),
        (
            "destination_addr = \"127.0.0.1:1\"\ncontext_token = 1\n",
            "discovery.context_token: expected a string",
        ),
        (
            "destination_addr = \"127.0.0.1:1\"\nstream_initial_timeout = \"0s\"\n",
            "discovery.stream_initial_timeout: duration must be above zero",
        ),
        (
            "destination_addr = \"127.0.0.1:1\"\nstream_initial_timeout = \"soon\"\n",
            "discovery.stream_initial_timeout: bad duration",
        ),
        (
            "destination_addr = \"127.0.0.1:1\"\npolicy_addr = \"x\"\n",
            "discovery.policy_addr: unknown key",
        ),
    ];
    for (body, want) in cases {
        let text = format!("{IDENTITY}[discovery]\n{body}");
        let all = parse(&text).unwrap_err().to_string();
        assert!(
            all.contains(&format!("test.toml: {want}")),
            "want {want:?} in:\n{all}"
        );
    }
    let all = parse(&format!("discovery = 1\n{IDENTITY}"))
        .unwrap_err()
        .to_string();
    assert!(
        all.contains("test.toml: discovery: expected a table"),
        "{all}"
    );
    // Every problem at once.
    let text =
        format!("{IDENTITY}[discovery]\ndestination_addr = \"dst\"\nfallback = \"x\"\nbogus = 1\n");
    let errs = parse(&text).unwrap_err().0;
    assert_eq!(errs.len(), 3, "{errs:?}");
}
