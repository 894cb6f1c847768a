//! Live access to a store that a running `serve` or GUI holds.
//!
//! DuckDB lets one process open a database file for writing, and then no other process
//! may open it, not even to read. So the process that holds the store publishes a
//! small loopback HTTP service and writes where to find it next to the store,
//! `<store>.live` (JSON: pid, url, token; readable by its owner only). `tailscope
//! query`, `analyze`, `export` and `import` that find the store held send their work
//! there: queries run on a reader connection of the running process and come back as
//! an Arrow IPC stream; analysis, export and import run in it, import through its one
//! writer (so exactly-once and resource de-duplication see every write). A notebook
//! reads live data the same way (see the README: one POST, `pyarrow.ipc.open_stream`).
//!
//! Routes (POST, `Authorization: Bearer <token>`): `/query` (body: SQL; answer: Arrow
//! IPC stream), `/analyze`, `/export`, `/import` (body: JSON; answer:
//! [`Reply`]). Errors answer 400 (the request) or 500 (the work) with one sentence.

//!
//! [`protocol`] holds what both ends agree on, [`client`] is what the commands use
//! when the store is held, and [`service`] the service, which runs the commands.

pub mod client;
pub mod protocol;
pub mod service;

pub use protocol::info_path;
