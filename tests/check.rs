//! `crossgate check` on the binary: what it says about a configuration that loads (rules,
//! routes, the leaf's dates, a warning near the end of its life) and what it refuses (a port in
//! an authorization pattern, also refused by `run`; a leaf expired or not yet valid).

mod support;
use std::path::Path;
use std::process::Output;
use support::{GATEWAY, crossgate, text};

/// `crossgate certs --out DIR`: the dev PKI and its crossgate.toml.
fn dev_pki(dir: &Path) {
    let out = crossgate(&["certs", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "certs: {}", text(&out.stderr));
}

fn check(config: &Path) -> Output {
    crossgate(&["check", "--config", config.to_str().unwrap()])
}

/// Appends TOML to the file.
fn append(config: &Path, toml: &str) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(toml);
    std::fs::write(config, text).unwrap();
}

/// The line of `out` naming `key`, which must also name `file`.
fn line_naming<'a>(out: &'a str, key: &str, file: &Path) -> &'a str {
    let line = out
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("{key} not named in:\n{out}"));
    assert!(
        line.contains(file.to_str().unwrap()),
        "{key}: the file is not named: {line}"
    );
    line
}

const PORT_IN_PATTERN: &str = "\n[[authorization]]\nidentities = [\"*\"]\n\
                               services = [\"echo.demo.svc.cluster.local:8081\"]\n";

#[test]
fn check_refuses_a_port_in_a_services_pattern() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let config = dir.path().join("crossgate.toml");
    append(&config, PORT_IN_PATTERN);
    let out = check(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    let line = line_naming(&stderr, "authorization[0].services", &config);
    assert!(line.contains("port"), "{line}");
    assert!(line.contains("\"echo.demo.svc.cluster.local\""), "{line}");
}

#[test]
fn run_refuses_a_port_in_a_services_pattern_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let config = dir.path().join("crossgate.toml");
    append(&config, PORT_IN_PATTERN);
    let admin = format!("127.0.0.1:{}", support::free_port());
    let out = crossgate(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        &admin,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    line_naming(&stderr, "authorization[0].services", &config);
    std::net::TcpListener::bind(&admin).expect("admin port left free");
}

/// The RFC 3339 UTC date after `field ` in `out`, e.g. `2026-01-31T12:00:00Z`.
fn date_after<'a>(out: &'a str, field: &str) -> &'a str {
    let at = out
        .find(&format!("{field} "))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"));
    let date = &out[at + field.len() + 1..][..20];
    let b = date.as_bytes();
    assert!(
        b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[19] == b'Z',
        "{field} is not an RFC 3339 UTC date: {date}"
    );
    date
}

#[test]
fn check_summarizes_the_rules_routes_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let config = dir.path().join("crossgate.toml");
    let out = check(&config);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout
            .lines()
            .any(|l| l == "no rules: every identity under the anchors may reach every service"),
        "{stdout}"
    );
    assert!(stdout.contains("cluster domain cluster.local"), "{stdout}");
    assert!(stdout.contains("static routes: none"), "{stdout}");
    date_after(&stdout, "not_before");
    date_after(&stdout, "not_after");
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    append(
        &config,
        "[routing.static]\n\"bb.demo.svc.cluster.local:8080\" = [\"127.0.0.1:18080\"]\n\
         [[authorization]]\n\
         identities = [\"*.shop.serviceaccount.identity.linkerd.cluster.local\"]\n\
         services = [\"*.demo.svc.cluster.local\"]\n",
    );
    let out = check(&config);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.lines().any(|l| l
            == "rule 1: identities [\"*.shop.serviceaccount.identity.linkerd.cluster.local\"] \
                may reach services [\"*.demo.svc.cluster.local\"]"),
        "{stdout}"
    );
    assert!(!stdout.contains("no rules"), "{stdout}");
    assert!(
        stdout.contains("static route: bb.demo.svc.cluster.local:8080 -> 127.0.0.1:18080"),
        "{stdout}"
    );
}

/// A configuration whose gateway leaf is valid from `not_before` to `not_after`.
fn config_with_leaf(
    dir: &Path,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> std::path::PathBuf {
    use crossgate::certs::{LeafSpec, Pki};
    let pki = Pki::new().unwrap();
    let leaf = pki
        .leaf_with(LeafSpec {
            not_before,
            not_after,
            ..LeafSpec::identity(GATEWAY)
        })
        .unwrap();
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
fn check_warns_when_less_than_a_tenth_of_the_life_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let config = config_with_leaf(dir.path(), now - 23 * hour, now + hour);
    let out = check(&config);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(warning.contains("10 %"), "{warning}");
    assert!(
        warning.contains(date_after(&stdout, "not_after")),
        "{warning}"
    );
}

#[test]
fn check_refuses_an_expired_leaf_naming_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let config = config_with_leaf(dir.path(), now - 25 * hour, now - hour);
    let out = check(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    let line = line_naming(&stderr, "expired at", &dir.path().join("tls.crt"));
    date_after(line, "expired at");
    assert_eq!(
        stderr.lines().count(),
        1,
        "the date problem said twice:\n{stderr}"
    );
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
}

#[test]
fn check_refuses_a_leaf_not_yet_valid_naming_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let config = config_with_leaf(dir.path(), now + hour, now + 25 * hour);
    let out = check(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    let line = line_naming(&stderr, "not valid before", &dir.path().join("tls.crt"));
    date_after(line, "not valid before");
    assert_eq!(
        stderr.lines().count(),
        1,
        "the date problem said twice:\n{stderr}"
    );
}
