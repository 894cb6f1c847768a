//! File import under libFuzzer (JSON lines, one protobuf message, gzip of either):
//! never a panic. Each input is written to a scratch file of this process.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use tailscope_ingest::fuzz::{check, libfuzzer_input, scratch_file, Target};

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| scratch_file("file"))
}

fuzz_target!(|data: &[u8]| {
    let (bytes, gz) = libfuzzer_input(Target::File, data);
    if let Err(why) = check(Target::File, &bytes, gz, Some(scratch())) {
        panic!("{why}");
    }
});
