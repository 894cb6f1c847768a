//! What both ends of the live service agree on: `<store>.live`, the requests and the
//! reply, Arrow IPC.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tailscope_store::{RecordBatch, StoreError};

/// What `<store>.live` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveInfo {
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub token: String,
    pub store: String,
}

/// The answer of `/analyze`, `/export` and `/import`: what the command prints, and
/// its error if it failed (after printing `stdout`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub stdout: String,
    pub error: Option<String>,
}

/// `/analyze`'s request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeRequest {
    pub percentile: f64,
    pub json: bool,
}

/// `/export`'s request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    pub out: PathBuf,
    pub window: Option<(i64, i64)>,
    pub trace_ids: Option<Vec<String>>,
    pub force: bool,
}

/// `/import`'s request: absolute paths the running process can read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    pub files: Vec<PathBuf>,
    pub signal: Option<String>,
}

/// `/cli`'s request: the arguments of `compare` or `diff`, as typed after the command
/// (without `--db`), parsed by the running process with the same clap definitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliRequest {
    pub command: String,
    pub args: Vec<String>,
}

/// This process's arguments after `command`, less `--db PATH` / `--db=PATH`.
pub fn forwarded_args(command: &str) -> CliRequest {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let after = all
        .iter()
        .position(|a| a == command)
        .map_or(&all[..0], |k| &all[k + 1..]);
    let mut args = Vec::new();
    let mut it = after.iter();
    while let Some(a) = it.next() {
        if a == "--db" {
            it.next();
        } else if !a.starts_with("--db=") {
            args.push(a.clone());
        }
    }
    CliRequest {
        command: command.to_owned(),
        args,
    }
}

/// Where the running process that holds `db` says it can be reached.
pub fn info_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".live");
    PathBuf::from(s)
}

/// Whether opening the store failed because another process holds it.
pub fn is_held(e: &StoreError) -> bool {
    let t = e.to_string();
    t.contains("Could not set lock") || t.contains("Conflicting lock")
}

/// Arrow IPC stream of `batches` (an empty stream with no columns when there are none).
pub fn to_ipc(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let schema = batches.first().map_or_else(
        || Arc::new(tailscope_store::arrow::datatypes::Schema::empty()),
        RecordBatch::schema,
    );
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(w.into_inner()?)
}

/// Record batches of an Arrow IPC stream.
pub fn from_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(r.collect::<Result<Vec<_>, _>>()?)
}
