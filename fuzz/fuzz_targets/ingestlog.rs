//! The ingest log's reader under libFuzzer: a log file of any bytes is read back as
//! opening a store does; never a panic. An input that starts with 1 is instead a
//! well-framed log whose payload is the rest of the input, so libFuzzer reaches the
//! payload decoder behind a right checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use tailscope_ingest::fuzz::scratch_file;
use tailscope_store::ingestlog::{frame_file, read_back};

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| scratch_file("log"))
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((1, payload)) => frame_file(1, &[payload.to_vec()]),
        _ => data.to_vec(),
    };
    std::fs::write(scratch(), &bytes).expect("writing the scratch log");
    let _ = read_back(scratch());
});
