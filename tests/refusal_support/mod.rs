//! Shared by the tests of what the binary refuses and how it says so (`check_refusals.rs`,
//! `error_texts.rs`): the dev PKI, runs that must end on their own, and the checks every
//! refusal passes: exit 64, `error: ` lines, and none of Rust's `Debug` shapes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The shapes of Rust's `Debug` output that no operator should read.
pub const DEBUG_SHAPES: &[&str] = &[
    "DnsName(",
    "UnknownIssuer",
    "KeyMismatch",
    "Os {",
    "Some(",
    "kind:",
    "(UNIX)",
];

/// `crossgate certs --out DIR`; DIR/crossgate.toml.
pub fn dev_pki(dir: &Path) -> PathBuf {
    let out = crossgate(&["certs", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "certs: {}", text(&out.stderr));
    dir.join("crossgate.toml")
}

/// Runs the binary with `args`; it must end within 10 s.
pub fn crossgate(args: &[&str]) -> Output {
    exits_within(Command::new(env!("CARGO_BIN_EXE_crossgate")).args(args))
}

/// Runs `cmd` to its end, which must come within 10 s: a command that went on running (a
/// gateway that started instead of refusing) is killed and the test fails.
pub fn exits_within(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 10 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit 64, only `error: ` lines on stderr, none with a `Debug` shape; those lines.
pub fn refused(out: &Output) -> Vec<String> {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    assert_no_debug(&stderr);
    let errors: Vec<String> = stderr.lines().map(str::to_string).collect();
    assert!(!errors.is_empty(), "exit 64 without a word");
    for e in &errors {
        assert!(e.starts_with("error: "), "not an error line: {e}");
    }
    errors
}

pub fn assert_no_debug(out: &str) {
    for shape in DEBUG_SHAPES {
        assert!(!out.contains(shape), "{shape} in:\n{out}");
    }
}

/// The one line naming every one of `words`.
pub fn naming<'a>(lines: &'a [String], words: &[&str]) -> &'a str {
    lines
        .iter()
        .find(|e| words.iter().all(|k| e.contains(k)))
        .unwrap_or_else(|| panic!("no line names {words:?}:\n{}", lines.join("\n")))
}
