//! `crossgate certs` on disk, through the binary: what it refuses to write over, the modes of
//! the keys it keeps, the loopback config, identities it refuses, and `certs issue` making
//! leaves that chain to the PKI's anchor (checked by `openssl verify` and `crossgate check`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{GATEWAY, crossgate, text};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn certs(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["certs", "--out", s(out)];
    args.extend_from_slice(extra);
    crossgate(&args)
}

fn issue(from: &Path, out: &Path, name: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "certs",
        "issue",
        "--name",
        name,
        "--out",
        s(out),
        "--from",
        s(from),
    ];
    args.extend_from_slice(extra);
    crossgate(&args)
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_the_pki_with_secret_keys_0600_and_a_loopback_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    assert_exit(&certs(&dir, &[]), 0);
    for f in [
        "ca.crt",
        "issuer.crt",
        "gateway.crt",
        "client.crt",
        "crossgate.toml",
    ] {
        assert!(dir.join(f).is_file(), "{f} not written");
    }
    for key in [
        "gateway.key",
        "client.key",
        "secret/ca.key",
        "secret/issuer.key",
    ] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&dir.join("secret")), 0o700);
    let config = crossgate::config::Config::load(
        &dir.join("crossgate.toml"),
        &crossgate::config::Overrides::default(),
    )
    .unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:4143".parse().unwrap());
    assert_eq!(config.server.admin, "127.0.0.1:4191".parse().unwrap());
}

#[test]
fn refuses_a_folder_that_is_not_empty_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("crossgate.toml"), "# mine\n").unwrap();
    let out = certs(dir, &[]);
    assert_exit(&out, 64);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(s(dir)) && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("crossgate.toml")).unwrap(),
        "# mine\n"
    );
    assert!(!dir.join("ca.crt").exists(), "wrote despite refusing");

    assert_exit(&certs(dir, &["--force"]), 0);
    let config = std::fs::read_to_string(dir.join("crossgate.toml")).unwrap();
    assert!(config.contains("[identity]"), "{config}");
    let before = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    assert_exit(&certs(dir, &[]), 64);
    assert_exit(&certs(dir, &["--force"]), 0);
    assert_ne!(before, std::fs::read_to_string(dir.join("ca.crt")).unwrap());
    assert_eq!(mode(&dir.join("secret/issuer.key")), 0o600);
}

#[test]
fn refuses_a_client_identity_that_is_not_a_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let out = certs(&dir, &["--client-identity", "not valid!"]);
    assert_exit(&out, 64);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--client-identity"), "{stderr}");
    assert!(stderr.contains("\"not valid!\""), "{stderr}");
    assert!(!dir.exists(), "wrote despite refusing");
}

/// The identity of the first certificate in `path`.
fn identity_of(path: &Path) -> Option<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    crossgate::identity::identity_of(&leaf)
}

#[test]
fn issued_leaf_chains_to_the_anchor_and_carries_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let leaf = tmp.path().join("leaf");
    assert_exit(&certs(&pki, &[]), 0);
    let name = "billing.shop.serviceaccount.identity.linkerd.cluster.local";
    let out = issue(&pki, &leaf, name, &[]);
    assert_exit(&out, 0);
    assert_eq!(identity_of(&leaf.join("tls.crt")).as_deref(), Some(name));
    assert_eq!(mode(&leaf.join("tls.key")), 0o600);
    let key = std::fs::read_to_string(leaf.join("tls.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "not PKCS#8");
    assert_eq!(
        std::fs::read(leaf.join("ca.crt")).unwrap(),
        std::fs::read(pki.join("ca.crt")).unwrap()
    );
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile", s(&pki.join("ca.crt"))])
        .args(["-untrusted", s(&pki.join("issuer.crt"))])
        .arg(leaf.join("tls.crt"))
        .output()
        .unwrap();
    assert_exit(&verify, 0);

    let spiffe = "spiffe://cluster.local/ns/shop/sa/billing";
    let other = tmp.path().join("spiffe");
    assert_exit(&issue(&pki, &other, spiffe, &[]), 0);
    assert_eq!(identity_of(&other.join("tls.crt")).as_deref(), Some(spiffe));
}

#[test]
fn check_accepts_an_issued_leaf_in_the_gateways_place() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    assert_exit(&certs(&pki, &[]), 0);
    // From inside the PKI folder, as an operator would: --from defaults to ".".
    let out = Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .args(["certs", "issue", "--name", GATEWAY, "--out", "gw2"])
        .current_dir(&pki)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let config = pki.join("crossgate.toml");
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"gateway.crt\"", "\"gw2/tls.crt\"")
        .replace("\"gateway.key\"", "\"gw2/tls.key\"");
    std::fs::write(&config, toml).unwrap();
    let out = crossgate(&["check", "--config", s(&config)]);
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains(GATEWAY), "{}", text(&out.stdout));
}

#[test]
fn issue_refuses_bad_names_missing_issuers_and_overwriting() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let leaf = tmp.path().join("leaf");
    assert_exit(&certs(&pki, &[]), 0);

    let out = issue(&pki, &leaf, "not valid!", &[]);
    assert_exit(&out, 64);
    assert!(
        text(&out.stderr).contains("--name"),
        "{}",
        text(&out.stderr)
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = issue(&empty, &leaf, GATEWAY, &[]);
    assert_exit(&out, 64);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("secret/issuer.key"), "{stderr}");
    assert!(!leaf.exists(), "wrote despite refusing");

    assert_exit(&issue(&pki, &leaf, GATEWAY, &[]), 0);
    let first = std::fs::read(leaf.join("tls.crt")).unwrap();
    let out = issue(&pki, &leaf, GATEWAY, &[]);
    assert_exit(&out, 64);
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(first, std::fs::read(leaf.join("tls.crt")).unwrap());
    assert_exit(&issue(&pki, &leaf, GATEWAY, &["--force"]), 0);
    assert_ne!(first, std::fs::read(leaf.join("tls.crt")).unwrap());
}

#[test]
fn help_describes_every_flag() {
    for (args, flags) in [
        (&["check", "--help"][..], &["--config"][..]),
        (
            &["certs", "--help"][..],
            &["--out", "--client-identity", "--force"][..],
        ),
        (
            &["certs", "issue", "--help"][..],
            &["--name", "--out", "--from", "--force"][..],
        ),
    ] {
        let out = crossgate(args);
        assert_exit(&out, 0);
        let help = text(&out.stdout);
        let lines: Vec<&str> = help.lines().map(str::trim).collect();
        for flag in flags {
            let at = lines
                .iter()
                .position(|l| l.starts_with(flag))
                .unwrap_or_else(|| panic!("{flag} not in {args:?}:\n{help}"));
            // clap writes the description after the flag, or on the next line.
            let described = match lines[at].split_once("  ") {
                Some((_, d)) => d.trim(),
                None => lines.get(at + 1).copied().unwrap_or(""),
            };
            assert!(
                !described.is_empty() && !described.starts_with('-'),
                "{args:?}: {flag} has no description:\n{help}"
            );
        }
    }
}
