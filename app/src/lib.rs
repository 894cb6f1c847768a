//! The parts of the `tailscope` binary other tools reuse: the ingest [`sink::WriterSink`]
//! over the store writer (used by `serve`, `gui` and the ingest benchmark), and
//! [`replay_input`], which turns a stored conversation into replay input, and
//! [`as_recorded`], which sizes a replay configuration like the recorded server; [`gui`], the
//! desktop window and its store worker; the commands that can run in the process that
//! holds a store ([`analyze`], [`compare`], [`diff`], [`export`], [`import`], [`query`]) and [`live`], through
//! which they reach it.

pub mod analyze;
pub mod as_recorded;
pub mod compare;
pub mod diff;
pub mod export;
pub mod gui;
pub mod import;
pub mod live;
pub mod query;
pub mod replay_input;
pub mod sink;
pub mod source;
pub mod whatif;
