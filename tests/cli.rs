//! The `crossgate` binary: exit codes, configuration errors that name the file and every key,
//! `check` on a dev PKI and on broken identities, `run` serving `/ready` until SIGTERM.

mod support;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{GATEWAY, text};

fn crossgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

/// `crossgate certs --out DIR`: the dev PKI and its crossgate.toml.
fn dev_pki(dir: &Path) {
    let out = crossgate(&["certs", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "certs: {}", text(&out.stderr));
    for f in [
        "ca.crt",
        "gateway.crt",
        "gateway.key",
        "client.crt",
        "client.key",
        "crossgate.toml",
    ] {
        assert!(dir.join(f).is_file(), "certs did not write {f}");
    }
}

fn check(config: &Path) -> Output {
    crossgate(&["check", "--config", config.to_str().unwrap()])
}

/// Rewrites `key = "value"` in the TOML file.
fn set_key(config: &Path, key: &str, value: &str) {
    let toml = std::fs::read_to_string(config).unwrap();
    let mut found = false;
    let out: Vec<String> = toml
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                found = true;
                format!("{key} = {value:?}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "no {key} in {toml}");
    std::fs::write(config, out.join("\n") + "\n").unwrap();
}

#[test]
fn run_with_a_bad_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[server]\n\
         listen = \"not-an-address\"\n\
         handshake_timeout = \"soon\"\n\
         colour = \"blue\"\n\
         [identity]\n\
         trust_anchors = \"ca.crt\"\n\
         certificate = \"gateway.crt\"\n\
         key = \"missing.key\"\n\
         [routing.static]\n\
         \"10.0.0.1:80\" = [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let port = support::free_port();
    let admin = format!("127.0.0.1:{port}");
    let out = crossgate(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--admin",
        &admin,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    for key in [
        "server.listen",
        "server.handshake_timeout",
        "server.colour",
        "identity.key",
        "10.0.0.1:80",
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not named in:\n{stderr}"));
        assert!(
            line.contains(config.to_str().unwrap()),
            "{key}: the file is not named: {line}"
        );
    }
    // Nothing was bound before the configuration was found bad.
    std::net::TcpListener::bind(&admin).expect("admin port left free");
}

#[test]
fn check_accepts_the_dev_pki() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let out = check(&dir.path().join("crossgate.toml"));
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(GATEWAY), "stdout:\n{stdout}");
}

#[test]
fn check_refuses_a_key_that_does_not_match_the_leaf() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let config = dir.path().join("crossgate.toml");
    set_key(&config, "key", "client.key");
    let out = check(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    assert!(stderr.contains("client.key"), "stderr:\n{stderr}");
    assert!(!text(&out.stdout).contains("ok"), "{}", text(&out.stdout));
}

#[test]
fn check_refuses_anchors_of_another_pki() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    dev_pki(other.path());
    let config = dir.path().join("crossgate.toml");
    let foreign = other.path().join("ca.crt");
    set_key(&config, "trust_anchors", foreign.to_str().unwrap());
    let out = check(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    assert!(stderr.contains("gateway.crt"), "stderr:\n{stderr}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = crossgate(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let out = crossgate(&["run"]);
    assert_eq!(out.status.code(), Some(64), "run without --config");
}

/// A blocking plaintext GET; `None` while the port does not answer.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn run_serves_ready_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let listen = format!("127.0.0.1:{}", support::free_port());
    let admin = format!("127.0.0.1:{}", support::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossgate"))
        .args(["run", "--config"])
        .arg(dir.path().join("crossgate.toml"))
        .args([
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        if let Some(r) = get(&admin, "/ready") {
            break r;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("never served /ready:\n{}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");
    // The gateway port listens where --listen said.
    std::net::TcpStream::connect(&listen).expect("gateway port bound by --listen");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains(GATEWAY), "identity not logged:\n{stderr}");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "--log-format json wrote a line that is not JSON: {line}"
        );
    }
}

#[test]
fn run_with_a_key_that_does_not_match_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let config = dir.path().join("crossgate.toml");
    set_key(&config, "key", "client.key");
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
    assert!(stderr.contains("client.key"), "stderr:\n{stderr}");
    std::net::TcpListener::bind(&admin).expect("admin port left free");
}

#[test]
fn version_names_the_binary_and_its_version() {
    let out = crossgate(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        concat!("crossgate ", env!("CARGO_PKG_VERSION"), "\n")
    );
    assert_eq!(env!("CARGO_PKG_VERSION"), "0.1.0");
}

#[test]
fn bind_error_names_the_address_and_logs_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    dev_pki(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let admin = format!("127.0.0.1:{}", support::free_port());
    let config = dir.path().join("crossgate.toml");
    // Text logs into a pipe: not a terminal, so no ANSI escapes.
    let out = crossgate(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &listen,
        "--admin",
        &admin,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot bind server.listen {listen}: Address already in use"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn run_help_describes_every_flag() {
    let out = crossgate(&["run", "--help"]);
    let help = text(&out.stdout);
    assert!(out.status.success(), "{help}");
    for (flag, words) in [
        ("--config", "configuration file"),
        ("--listen", "[server] listen"),
        ("--admin", "[server] admin"),
    ] {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let described = help
            .lines()
            .skip(line)
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(described.contains(words), "{flag} not described:\n{help}");
    }
}
