//! The live service a process that holds a store publishes: queries on its reader
//! connection, the commands run in it (import through its one writer).

use super::protocol::{
    info_path, to_ipc, AnalyzeRequest, CliRequest, ExportRequest, ImportRequest, LiveInfo, Reply,
};
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tailscope_store::{Store, Writer};

#[derive(clap::Parser, Debug)]
#[command(name = "tailscope", no_binary_name = true)]
enum Forwarded {
    Compare(crate::compare::CompareArgs),
    Diff(crate::diff::DiffArgs),
    Whatif(crate::whatif::WhatifArgs),
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
        let format = if req.json {
            crate::analyze::Format::Json
        } else {
            crate::analyze::Format::Text
        };
        let mut out = Vec::new();
        crate::analyze::write_report(&store, req.percentile, format, false, &mut out)?;
        Ok(Reply {
            stdout: String::from_utf8(out)?,
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
            Forwarded::Whatif(a) => crate::whatif::output(&store, a)?,
        };
        Ok(Reply {
            stdout,
            error: None,
        })
    })
    .await
}
