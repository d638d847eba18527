//! The fuzz targets' checks as plain functions of the input bytes, each documented in its file.
//! `fuzz_targets/<target>.rs` hands libFuzzer's input to `<target>::check`; the main crate's
//! `cargo test` (`tests/fuzz_known.rs`) replays `fuzz/known/` and `fuzz/seeds/` through the same
//! functions, so a finding fixed stays fixed and the checks compile against the crate as it is.
#![allow(dead_code)]

pub mod common;
pub mod config;
pub mod header_framing;
pub mod header_rewrite;
pub mod plain_target;
pub mod plan;
pub mod transport_header;

/// The check of the target named `target` (a file name in `fuzz_targets/`, a prefix of the
/// files in `known/`, a folder in `seeds/`).
pub fn by_name(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "config" => config::check,
        "header_framing" => header_framing::check,
        "header_rewrite" => header_rewrite::check,
        "plain_target" => plain_target::check,
        "plan" => plan::check,
        "transport_header" => transport_header::check,
        _ => return None,
    })
}
