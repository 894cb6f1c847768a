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

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tailscope_store::{RecordBatch, Store, StoreError, Writer};

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

#[derive(clap::Parser, Debug)]
#[command(name = "tailscope", no_binary_name = true)]
enum Forwarded {
    Compare(crate::compare::CompareArgs),
    Diff(crate::diff::DiffArgs),
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

/// The running process that holds `db`, if one does.
pub fn held(db: &Path) -> Option<Client> {
    Client::find(db)
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

/// How long a live read waits for the ingest log's backlog to load.
const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The work the live service does, shared by its handlers.
struct Shared {
    /// Reader connections are cloned from this one.
    store: Mutex<Store>,
    writer: Arc<Writer>,
    token: String,
    db: PathBuf,
}

impl Shared {
    /// A reader connection that sees every batch acknowledged before the call: the
    /// ingest log's backlog is loaded first (at most a minute; then it reads what is
    /// loaded and says so on the service's stderr).
    fn reader(&self) -> Result<Store> {
        if !self.writer.wait_loaded(LOAD_WAIT) {
            let (frames, bytes) = self.writer.log_backlog().unwrap_or_default();
            eprintln!(
                "live read: {frames} acknowledged batch(es) ({bytes} bytes) are not loaded yet; this read does not see them"
            );
        }
        let s = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(s.reader()?)
    }
}

/// The published service: stops and removes `<store>.live` when dropped.
pub struct Published {
    pub info: LiveInfo,
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Only our own file: a newer process may have replaced it.
        let ours = std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice::<LiveInfo>(&b).ok())
            .is_some_and(|i| i == self.info);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn token() -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let words: [u32; 4] = rng.random();
    words.iter().fold(String::with_capacity(32), |mut s, w| {
        use std::fmt::Write;
        let _ = write!(s, "{w:08x}");
        s
    })
}

/// Writes `text` to `path` atomically (a temporary file renamed over it), readable by
/// the owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Starts the live service for `db` on a loopback port (on the current tokio
/// runtime) and publishes `<db>.live`.
pub async fn publish(db: &Path, store: Store, writer: Arc<Writer>) -> Result<Published> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the live-access port on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let info = LiveInfo {
        pid: std::process::id(),
        url: format!("http://{addr}"),
        token: token(),
        store: db.display().to_string(),
    };
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        writer,
        token: info.token.clone(),
        db: db.to_path_buf(),
    });
    let app = Router::new()
        .route("/query", post(query))
        .route("/analyze", post(analyze))
        .route("/export", post(export))
        .route("/import", post(import))
        .route("/cli", post(cli))
        .with_state(shared);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("live access stopped: {e}");
        }
    });
    let path = info_path(db);
    write_private(&path, &serde_json::to_string_pretty(&info)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Published {
        info,
        path,
        stop: Some(stop_tx),
    })
}

fn authorised(s: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| tailscope_ingest::auth::constant_time_eq(t.as_bytes(), s.token.as_bytes()))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Runs `work` on a blocking thread; its error answers 500 with the error chain.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))),
        Err(e) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's worker failed: {e}"),
        )),
    }
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

async fn query(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&s, &headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong or missing live-access token",
        );
    }
    let Ok(sql) = String::from_utf8(body.to_vec()) else {
        return refuse(StatusCode::BAD_REQUEST, "the SQL is not UTF-8");
    };
    let shared = Arc::clone(&s);
    let ran = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, (StatusCode, String)> {
        let store = shared
            .reader()
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        let batches = store.query_read_only(&sql).map_err(|e| {
            // the statement is at fault (refused, or not valid SQL)
            (StatusCode::BAD_REQUEST, e.to_string())
        })?;
        to_ipc(&batches).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
    })
    .await;
    match ran {
        Ok(Ok(bytes)) => (
            [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
            bytes,
        )
            .into_response(),
        Ok(Err((status, e))) => refuse(status, e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Runs a command's `work` for an authorised caller on a blocking thread and answers
/// its [`Reply`] (what it prints, and its error).
async fn command(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    work: impl FnOnce(&Shared) -> Result<Reply> + Send + 'static,
) -> Response {
    if !authorised(s, headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong or missing live-access token",
        );
    }
    let shared = Arc::clone(s);
    match blocking(move || work(&shared)).await {
        Ok(reply) => Json(reply).into_response(),
        Err(r) => r,
    }
}

async fn analyze(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(req): Json<AnalyzeRequest>,
) -> Response {
    command(&s, &headers, move |shared| {
        let store = shared.reader()?;
        let r = crate::analyze::report_quietly(&store, req.percentile, req.json)?;
        let stdout = if req.json {
            format!("{}\n", serde_json::to_string(&r.to_json())?)
        } else {
            r.to_text()
        };
        Ok(Reply {
            stdout,
            error: None,
        })
    })
    .await
}

async fn export(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(req): Json<ExportRequest>,
) -> Response {
    command(&s, &headers, move |shared| {
        let store = shared.reader()?;
        let opts = tailscope_analysis::export::ExportOptions {
            window: req.window,
            trace_ids: req.trace_ids,
            force: req.force,
        };
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let summary =
            tailscope_analysis::export::export(&store, &req.out, &opts, &mut |_| {}, &cancel)
                .with_context(|| format!("exporting to {}", req.out.display()))?;
        Ok(Reply {
            stdout: crate::export::summary_text(&summary),
            error: None,
        })
    })
    .await
}

async fn import(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(req): Json<ImportRequest>,
) -> Response {
    let signal = match req.signal.as_deref().map(crate::import::parse_signal) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    command(&s, &headers, move |shared| {
        let bar = indicatif::ProgressBar::hidden();
        let summary = crate::import::import_with(&shared.writer, &req.files, signal, &bar)?;
        let (stdout, error) = crate::import::finish_text(&summary, &shared.db, req.files.len());
        Ok(Reply { stdout, error })
    })
    .await
}

async fn cli(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(req): Json<CliRequest>,
) -> Response {
    use clap::Parser;
    let argv = std::iter::once(req.command.clone()).chain(req.args.iter().cloned());
    let parsed = match Forwarded::try_parse_from(argv) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    command(&s, &headers, move |shared| {
        let store = shared.reader()?;
        tailscope_analysis::update(&store, &|_| {}).context("analysing the store")?;
        let stdout = match &parsed {
            Forwarded::Compare(a) => crate::compare::output(&store, a)?,
            Forwarded::Diff(a) => crate::diff::output(&store, None, (&shared.db, &shared.db), a)?,
        };
        Ok(Reply {
            stdout,
            error: None,
        })
    })
    .await
}

/// A client of the live service of the process that holds `db`.
pub struct Client {
    pub info: LiveInfo,
    agent: ureq::Agent,
}

impl Client {
    /// The running process that holds `db`, from `<db>.live`; `None` when there is no
    /// such file or its process no longer answers.
    pub fn find(db: &Path) -> Option<Client> {
        let text = std::fs::read(info_path(db)).ok()?;
        let info: LiveInfo = serde_json::from_slice(&text).ok()?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let c = Client { info, agent };
        // a file left by a process that died: nobody listens there
        let addr = c.info.url.strip_prefix("http://")?.parse().ok()?;
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).ok()?;
        Some(c)
    }

    fn post(&self, route: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{route}", self.info.url);
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.info.token))
            .header("Content-Type", content_type)
            .send(body)
            .with_context(|| {
                format!(
                    "asking the running tailscope process (pid {}) at {url}",
                    self.info.pid
                )
            })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .context("reading the running process's answer")?;
        Ok((status, bytes))
    }

    /// Runs read-only SQL in the running process.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let (status, bytes) = self.post("/query", "text/plain", sql.as_bytes())?;
        if status != 200 {
            anyhow::bail!("{}", String::from_utf8_lossy(&bytes).trim());
        }
        from_ipc(&bytes)
    }

    /// Runs a command in the running process; prints what it printed, fails with its
    /// error.
    pub fn run<T: Serialize>(&self, route: &str, req: &T) -> Result<()> {
        let (status, bytes) = self.post(route, "application/json", &serde_json::to_vec(req)?)?;
        if status != 200 {
            anyhow::bail!("{}", String::from_utf8_lossy(&bytes).trim());
        }
        let reply: Reply =
            serde_json::from_slice(&bytes).context("the running process's answer is not JSON")?;
        print!("{}", reply.stdout);
        match reply.error {
            Some(e) => anyhow::bail!("{e}"),
            None => Ok(()),
        }
    }

    /// The line said on stderr when work goes to the running process.
    pub fn announce(&self, what: &str) {
        eprintln!(
            "the store is held by a running tailscope process (pid {}); {what} through it",
            self.info.pid
        );
    }
}

/// Opening `db` failed with `e`: the running process to talk to instead, or the error
/// as one sentence naming the store.
pub fn held_by_other(db: &Path, e: StoreError) -> Result<Client> {
    if is_held(&e) {
        if let Some(c) = Client::find(db) {
            return Ok(c);
        }
        anyhow::bail!(
            "cannot open {}: it is held by another tailscope process that offers no live access (an older version, or it is still starting); stop it or retry",
            db.display()
        );
    }
    Err(anyhow::Error::new(e).context(format!("opening store {}", db.display())))
}
