//! libFuzzer's entry for `checks/header_framing.rs`: what it checks is documented there.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::header_framing::check(data));
