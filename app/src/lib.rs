//! The parts of the `tailscope` binary other tools reuse: the ingest [`sink::WriterSink`]
//! over the store writer (used by `serve`, `gui` and the ingest benchmark), and
//! [`replay_input`], which turns a stored conversation into replay input; [`gui`], the
//! desktop window and its store worker.

pub mod gui;
pub mod replay_input;
pub mod sink;
