//! `crossgate check` (the binary) refuses configurations that load but would break traffic,
//! naming the keys and the fix, exit 64: two ports on one address, an empty rule list, a
//! cluster domain that starts with `svc.`, a leaf as trust anchors; it warns, exit 0, about an
//! issuer as trust anchor. `run` refuses the same in the same words before binding anything.
//! `check` also validates a prober's configuration (`[[link]]`).

mod refusal_support;
mod support;
use refusal_support::{crossgate, dev_pki, naming, refused, text};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Writes `toml` as the configuration in `dir`, over the dev PKI's files.
fn config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("crossgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

const IDENTITY: &str = "[identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"gateway.crt\"\nkey = \"gateway.key\"\n";

fn check(config: &Path) -> Output {
    crossgate(&["check", "--config", config.to_str().unwrap()])
}

/// `crossgate run` with `args` after the configuration; it must exit on its own within 10 s
/// (a gateway that started instead is stopped, and the test fails).
fn run(config: &Path, args: &[&str]) -> Output {
    refusal_support::exits_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_crossgate"))
            .args(["run", "--config", config.to_str().unwrap()])
            .args(args),
    )
}

#[test]
fn two_ports_on_one_address_are_refused_by_check_and_run_alike() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let port = support::free_port();
    let cases = [
        // listen = admin.
        (
            format!("listen = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{port}\"\n"),
            ["server.listen and server.admin", "both are"],
        ),
        // metrics = admin.
        (
            format!(
                "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:{port}\"\n\
                 metrics = \"127.0.0.1:{port}\"\n"
            ),
            ["server.admin and server.metrics", "both are"],
        ),
        // A wildcard covers the other address.
        (
            format!("listen = \"0.0.0.0:{port}\"\nadmin = \"127.0.0.1:{port}\"\n"),
            ["server.listen and server.admin", "0.0.0.0 covers"],
        ),
    ];
    for (server, keys) in cases {
        let cfg = config(dir.path(), &format!("[server]\n{server}{IDENTITY}"));
        let errors = refused(&check(&cfg));
        let line = naming(&errors, &keys);
        assert!(line.contains(cfg.to_str().unwrap()), "{line}");
        assert!(line.contains("give each its own port"), "{line}");
        // run: the same words, before any port is bound.
        assert_eq!(refused(&run(&cfg, &[])), errors, "run and check differ");
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was left free");
    }
    // A flag is named as the flag.
    let cfg = config(
        dir.path(),
        &format!("[server]\nadmin = \"127.0.0.1:{port}\"\n{IDENTITY}"),
    );
    let listen = format!("127.0.0.1:{port}");
    let errors = refused(&run(&cfg, &["--listen", &listen]));
    naming(&errors, &["--listen and server.admin", &listen]);
}

#[test]
fn an_empty_rule_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let cfg = config(
        dir.path(),
        &format!(
            "{IDENTITY}[[authorization]]\nidentities = []\n\
             [[authorization]]\nidentities = [\"*\"]\nservices = []\n"
        ),
    );
    let errors = refused(&check(&cfg));
    let identities = naming(&errors, &["authorization[0].identities", "empty"]);
    assert!(identities.contains("admits no client"), "{identities}");
    let services = naming(&errors, &["authorization[1].services", "empty"]);
    assert!(services.contains("admits no service"), "{services}");
    assert_eq!(
        refused(&run(
            &cfg,
            &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
        )),
        errors
    );
}

#[test]
fn a_cluster_domain_starting_with_svc_is_refused_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let cfg = config(
        dir.path(),
        &format!("{IDENTITY}[routing]\ncluster_domain = \"svc.cluster.local\"\n"),
    );
    let errors = refused(&check(&cfg));
    let line = naming(
        &errors,
        &["routing.cluster_domain", "\"svc.cluster.local\""],
    );
    assert!(line.contains("svc.svc.cluster.local"), "{line}");
    assert!(line.ends_with("write \"cluster.local\""), "{line}");
    // A domain that merely contains "svc" is fine.
    let cfg = config(
        dir.path(),
        &format!("{IDENTITY}[routing]\ncluster_domain = \"svcs.example\"\n"),
    );
    assert_eq!(check(&cfg).status.code(), Some(0));
}

#[test]
fn a_leaf_as_trust_anchors_is_refused_an_issuer_warned() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    // The leaf bundle (tls.crt) where the anchors belong.
    let cfg = config(
        dir.path(),
        &IDENTITY.replace(
            "trust_anchors = \"ca.crt\"",
            "trust_anchors = \"gateway.crt\"",
        ),
    );
    let errors = refused(&check(&cfg));
    let line = naming(
        &errors,
        &["identity.trust_anchors", "gateway.crt", "not a CA"],
    );
    assert!(line.contains("Linkerd's trust anchor"), "{line}");
    assert_eq!(
        refused(&run(
            &cfg,
            &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
        )),
        errors
    );

    // The issuer: loads (a mesh may use an intermediate as its anchor), with a warning.
    let cfg = config(
        dir.path(),
        &IDENTITY.replace(
            "trust_anchors = \"ca.crt\"",
            "trust_anchors = \"issuer.crt\"",
        ),
    );
    let out = check(&cfg);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: identity.trust_anchors"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(
        warning.contains("holds the issuer of identity.certificate"),
        "{warning}"
    );
    assert!(
        warning.contains("CN=identity.linkerd.cluster.local"),
        "{warning}"
    );
    assert!(warning.contains("will be refused"), "{warning}");
    // The root: no warning.
    let out = check(&config(dir.path(), IDENTITY));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

const LINKS: &str = "[[link]]\nname = \"east\"\naddress = \"10.0.0.1\"\n\
                     identity = \"linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local\"\n\
                     services = [\"podinfo\"]\n\
                     [[link]]\nname = \"west\"\naddress = \"gw.west.example.com\"\nperiod = \"10s\"\ntimeout = \"2s\"\n";

#[test]
fn check_validates_a_prober_configuration() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let client = "[identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"client.crt\"\nkey = \"client.key\"\n";
    let probe = dir.path().join("probe.toml");
    std::fs::write(
        &probe,
        format!("[server]\nadmin = \"127.0.0.1:4192\"\n{client}{LINKS}"),
    )
    .unwrap();
    let out = check(&probe);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for line in [
        "ok: prober configuration, 2 link(s)",
        "prober admin port: 127.0.0.1:4192 (/live, /ready, /metrics)",
        "link east: GET 10.0.0.1:4191/ready (mTLS to linkerd-gateway.linkerd-multicluster.\
         serviceaccount.identity.linkerd.cluster.local) every 3s, timeout 30s, dead after 3 \
         failure(s), 1 service(s)",
        "link west: GET gw.west.example.com:4191/ready (plaintext) every 10s, timeout 2s, dead \
         after 3 failure(s), 0 service(s)",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "client identity: frontend.west.serviceaccount.identity.linkerd.cluster.local"
        ),
        "{stdout}"
    );

    // Every problem of the prober's file, as `probe` reports them.
    std::fs::write(
        &probe,
        format!(
            "[server]\nadmin = \"127.0.0.1:4192\"\n{LINKS}[[link]]\nname = \"east\"\n\
             address = \"not an address\"\n"
        ),
    )
    .unwrap();
    let errors = refused(&check(&probe));
    naming(
        &errors,
        &["link[0].identity", "needs the prober's own [identity]"],
    );
    naming(&errors, &["link[2].address", "\"not an address\""]);
    naming(
        &errors,
        &["link[2].name", "already the name of another link"],
    );
    let from_probe = refused(&crossgate(&["probe", "--config", probe.to_str().unwrap()]));
    assert_eq!(from_probe, errors, "probe and check differ");

    // The prober's client identity files are loaded as `probe` loads them.
    std::fs::write(dir.path().join("client.key"), "").unwrap();
    std::fs::write(&probe, format!("{client}{LINKS}")).unwrap();
    let errors = refused(&check(&probe));
    naming(
        &errors,
        &["identity.key", "client.key", "holds no PEM private key"],
    );
}
