//! What the binary says when the gateway's own files are wrong: the key of `[identity]`, the
//! file and the fix, the same from `check` and from `run` (which binds nothing), and never a
//! Rust `Debug` shape (`UnknownIssuer`, `KeyMismatch`, `DnsName(..)`, `Os { .. }`, Unix
//! seconds). `run` and `probe` refuse with `error: ` lines, or JSON lines under
//! `--log-format json`.

mod refusal_support;
use crossgate::certs::{GATEWAY_IDENTITY as GATEWAY, LeafSpec, Pki};
use refusal_support::{crossgate, dev_pki, exits_within, naming, refused, text};
use std::path::Path;
use std::process::{Command, Output};

fn check(config: &Path) -> Output {
    crossgate(&["check", "--config", config.to_str().unwrap()])
}

/// `run` on ephemeral ports; it must refuse (and so end) within 10 s.
fn run(config: &Path) -> Output {
    crossgate(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ])
}

/// `check` and `run` refuse `config` with the same lines; those lines.
fn refused_alike(config: &Path) -> Vec<String> {
    let errors = refused(&check(config));
    assert_eq!(
        refused(&run(config)),
        errors,
        "check and run say different things"
    );
    errors
}

#[test]
fn a_leaf_without_its_issuer_says_append_the_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_pki(dir.path());
    let cert = dir.path().join("gateway.crt");
    let bundle = std::fs::read_to_string(&cert).unwrap();
    let end = "-----END CERTIFICATE-----\n";
    let leaf_only = &bundle[..bundle.find(end).unwrap() + end.len()];
    std::fs::write(&cert, leaf_only).unwrap();
    let errors = refused_alike(&config);
    let line = naming(&errors, &["identity.certificate", cert.to_str().unwrap()]);
    assert!(
        line.contains("holds only the leaf: append the issuer certificate"),
        "{line}"
    );
}

#[test]
fn an_empty_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_pki(dir.path());
    let key = dir.path().join("gateway.key");
    std::fs::write(&key, "").unwrap();
    let errors = refused_alike(&config);
    let line = naming(&errors, &["identity.key", key.to_str().unwrap()]);
    assert!(
        line.contains("holds no PEM private key (the file is empty)"),
        "{line}"
    );
    assert!(!line.contains("no items found"), "{line}");
}

#[test]
fn a_key_of_another_leaf_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_pki(dir.path());
    let (key, cert) = (
        dir.path().join("gateway.key"),
        dir.path().join("gateway.crt"),
    );
    std::fs::copy(dir.path().join("client.key"), &key).unwrap();
    let errors = refused_alike(&config);
    let line = naming(&errors, &[key.to_str().unwrap(), cert.to_str().unwrap()]);
    assert!(line.contains("the key in"), "{line}");
    assert!(line.contains("does not match the certificate"), "{line}");
}

#[test]
fn a_name_the_leaf_does_not_carry_is_printed_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_pki(dir.path());
    for name in [
        "other.ns.serviceaccount.identity.linkerd.cluster.local",
        // A URI the leaf does not carry was taken before, unchecked.
        "spiffe://cluster.local/ns/other/sa/gw",
    ] {
        let toml = std::fs::read_to_string(&config).unwrap().replace(
            "key = \"gateway.key\"\n",
            &format!("key = \"gateway.key\"\nname = \"{name}\"\n"),
        );
        std::fs::write(&config, toml).unwrap();
        let errors = refused_alike(&config);
        let line = naming(&errors, &["identity.name", name]);
        assert!(line.contains(&format!("it carries {GATEWAY};")), "{line}");
        dev_pki_config_again(&config);
    }
}

/// Rewrites the dev PKI's configuration without `name`.
fn dev_pki_config_again(config: &Path) {
    let toml = std::fs::read_to_string(config).unwrap();
    let kept: Vec<_> = toml.lines().filter(|l| !l.starts_with("name = ")).collect();
    std::fs::write(config, kept.join("\n") + "\n").unwrap();
}

/// A configuration in `dir` over a leaf of `spec` (the PKI written there too).
fn config_with(dir: &Path, spec: LeafSpec) -> std::path::PathBuf {
    let pki = Pki::new().unwrap();
    let leaf = pki.leaf_with(spec).unwrap();
    std::fs::write(dir.join("ca.crt"), pki.anchor_pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), leaf.key_pem).unwrap();
    let config = dir.join("crossgate.toml");
    std::fs::write(
        &config,
        "[identity]\ntrust_anchors = \"ca.crt\"\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\n",
    )
    .unwrap();
    config
}

#[test]
fn run_names_an_expired_leaf_with_its_date_as_check_does() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let not_after = (now - hour).replace_nanosecond(0).unwrap();
    let config = config_with(
        dir.path(),
        LeafSpec {
            not_before: now - 25 * hour,
            not_after,
            ..LeafSpec::identity(GATEWAY)
        },
    );
    let errors = refused_alike(&config);
    assert_eq!(errors.len(), 1, "the date said once: {errors:?}");
    let date = not_after
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let line = naming(&errors, &["identity.certificate", "tls.crt", "expired at"]);
    assert!(
        line.contains(&format!("expired at {date} (1h 0m ago)")),
        "{line}"
    );
}

#[test]
fn an_unreadable_key_names_the_file_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dev_pki(dir.path());
    let key = dir.path().join("gateway.key");
    // Others may read the folder and every file but the key (mode 0600, or 0000).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let root = rustix::process::getuid().is_root();
    let mode = if root { 0o600 } else { 0o000 };
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    // Root reads any file: the binary runs as nobody then.
    let as_reader = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossgate"));
        cmd.args(args);
        if root {
            cmd.uid(65534).gid(65534);
        }
        exits_within(&mut cmd)
    };
    let c = config.to_str().unwrap();
    let errors = refused(&as_reader(&["check", "--config", c]));
    let line = naming(
        &errors,
        &["identity.key", key.to_str().unwrap(), "permission denied"],
    );
    assert!(line.contains("fsGroup"), "{line}");
    assert!(line.contains("defaultMode: 0440"), "{line}");
    let run = as_reader(&[
        "run",
        "--config",
        c,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert_eq!(refused(&run), errors);
}

#[test]
fn run_and_probe_refusals_are_error_lines_or_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = dev_pki(dir.path());
    std::fs::write(dir.path().join("gateway.key"), "").unwrap();
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml = toml.replace("[server]\n", "[server]\nhandshake_timeout = \"soon\"\n");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, &toml).unwrap();
    let probe = dir.path().join("probe.toml");
    std::fs::write(
        &probe,
        "[[link]]\nname = \"east\"\naddress = \"not an address\"\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    let p = probe.to_str().unwrap();
    // Text: `error: ` lines, each naming the key (config, then identity).
    let text_run = refused(&run(&bad));
    naming(&text_run, &["server.handshake_timeout", b]);
    let text_probe = refused(&crossgate(&["probe", "--config", p]));
    naming(&text_probe, &["link[0].address", p]);
    // Fix the config: the identity's error comes from `run` in the same form.
    std::fs::write(&bad, toml.replace("handshake_timeout = \"soon\"\n", "")).unwrap();
    naming(
        &refused(&run(&bad)),
        &["identity.key", "holds no PEM private key"],
    );
    std::fs::write(&bad, &toml).unwrap();

    // JSON: one JSON object per line, level ERROR, the same words as the message.
    for (args, want) in [
        (
            vec![
                "--log-format",
                "json",
                "run",
                "--config",
                b,
                "--listen",
                "127.0.0.1:0",
            ],
            &text_run,
        ),
        (
            vec!["--log-format", "json", "probe", "--config", p],
            &text_probe,
        ),
    ] {
        let out = crossgate(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        let messages: Vec<String> = stderr
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
                assert_eq!(v["level"], "ERROR", "{l}");
                format!("error: {}", v["fields"]["message"].as_str().unwrap())
            })
            .collect();
        assert_eq!(&messages, want, "JSON and text differ");
    }
}
