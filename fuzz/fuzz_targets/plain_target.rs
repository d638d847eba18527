//! libFuzzer's entry for `checks/plain_target.rs`: what it checks is documented there.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::plain_target::check(data));
