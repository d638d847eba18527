//! The fuzz targets' inputs in an ordinary `cargo test`: every file in `fuzz/known/` (the
//! findings, named `<target>-<what>`), every seed in `fuzz/seeds/<target>/`, and the captured
//! transport headers in `tests/vectors/*.hex` (as `fuzz/run.sh` seeds `transport_header` and
//! `header_framing`) go through the very checks libFuzzer runs (`fuzz/checks/`, included here),
//! with the full invariants (`CROSSGATE_FUZZ_SKIP_KNOWN` unset). A finding that comes back, or
//! a check that no longer compiles against the crate, fails here without libFuzzer or nightly.

#[path = "../fuzz/checks/mod.rs"]
mod checks;
mod support;

use std::path::{Path, PathBuf};

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
}

/// Files of `dir`, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `target`'s check on `input`; the panic, if any, names the file.
fn replay(target: &str, what: &str, input: &[u8]) {
    let check = checks::by_name(target).unwrap_or_else(|| panic!("{what}: no target {target}"));
    if let Err(panic) = std::panic::catch_unwind(|| check(input)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{what} fails the {target} target again: {message}");
    }
}

#[test]
fn known_findings_stay_fixed() {
    let known = files(&fuzz_dir("known"));
    assert!(known.len() >= 4, "fuzz/known/ lost its findings: {known:?}");
    for file in known {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // `<target>-<what>`; target names have underscores, never dashes.
        let target = name.split('-').next().unwrap();
        replay(
            target,
            &format!("fuzz/known/{name}"),
            &std::fs::read(&file).unwrap(),
        );
    }
}

#[test]
fn seeds_pass_their_targets() {
    let mut replayed = 0;
    for dir in std::fs::read_dir(fuzz_dir("seeds")).unwrap() {
        let dir = dir.unwrap().path();
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in files(&dir) {
            let what = format!(
                "fuzz/seeds/{target}/{}",
                file.file_name().unwrap().to_string_lossy()
            );
            replay(&target, &what, &std::fs::read(&file).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no seed replayed");
    // What fuzz/run.sh adds to the corpus: each captured header, whole and (header_framing's
    // first byte 0: one read per call) through the framing reader.
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for file in files(&vectors)
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "hex"))
    {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = support::vector(&name);
        replay("transport_header", &format!("tests/vectors/{name}"), &bytes);
        let framed: Vec<u8> = std::iter::once(0).chain(bytes).collect();
        replay("header_framing", &format!("tests/vectors/{name}"), &framed);
    }
}
