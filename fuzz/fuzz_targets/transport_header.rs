//! libFuzzer's entry for `checks/transport_header.rs`: what it checks is documented there.
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::transport_header::check(data));
