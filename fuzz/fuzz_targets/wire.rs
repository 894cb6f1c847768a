//! The wire decoder under libFuzzer: never a panic, and no disagreement with its
//! reference decoder (`tailscope_ingest::fuzz::check`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailscope_ingest::fuzz::{check, libfuzzer_input, Target};

fuzz_target!(|data: &[u8]| {
    let (bytes, gz) = libfuzzer_input(Target::Wire, data);
    if let Err(why) = check(Target::Wire, &bytes, gz, None) {
        panic!("{why}");
    }
});
