//! Integration tests live in tests/; this library holds what the bench binaries share.

pub mod fuzz_log;
pub mod mem;
