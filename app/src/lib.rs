//! The parts of the `tailscope` binary other tools reuse: the ingest [`sink::WriterSink`]
//! over the store writer (used by `serve`, `gui` and the ingest benchmark).

pub mod sink;
