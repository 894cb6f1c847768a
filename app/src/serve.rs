//! `tailscope serve`: the headless collector.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope::sink::WriterSink;
use tailscope_ingest::gpu::{spawn_sampler, SamplerConfig};
use tailscope_ingest::{BearerToken, Collector, CollectorConfig, IngestStats, Pipeline, TlsFiles};
use tailscope_store::clickhouse::ClickHouseUrl;
use tailscope_store::{ExporterTable, Store, Writer, WriterConfig};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// OTLP/gRPC listen address.
    #[arg(long, default_value_t = crate::default_grpc())]
    grpc: SocketAddr,
    /// OTLP/HTTP listen address.
    #[arg(long, default_value_t = crate::default_http())]
    http: SocketAddr,
    /// Allow listening on non-loopback addresses (accepts telemetry from other machines);
    /// needs a bearer token (--token-file or TAILSCOPE_TOKEN).
    #[arg(long)]
    allow_remote: bool,
    /// File holding the bearer token every client must send (`authorization: Bearer
    /// <token>`); otherwise the TAILSCOPE_TOKEN environment variable. Enforced whenever given.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Serve both receivers over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between status lines (0: none).
    #[arg(long, default_value_t = 10)]
    status_every: u64,
    /// Items queued for the store before clients are told to retry.
    #[arg(long, default_value_t = WriterConfig::default().max_pending_items)]
    max_pending: usize,
    /// Do not sample local NVIDIA GPUs (NVML).
    #[arg(long)]
    no_gpu: bool,
    /// Also publish the store as immutable Parquet segments in this folder (the layout
    /// other engines read in place; `tailscope analyze --db DIR` reads it back).
    #[arg(long, value_name = "DIR")]
    segments: Option<std::path::PathBuf>,
    /// Seconds between segment publications.
    #[arg(long, default_value_t = 10)]
    segments_every: u64,
    /// Also send every span to ClickHouse in the OpenTelemetry Collector ClickHouse
    /// exporter's schema (tables created when missing), in inserts of at least 5,000
    /// rows (fewer only after --to-flush seconds without enough, and at shutdown):
    /// clickhouse://[user[:password]@]HOST[:8123]/DATABASE[?secure=true[&ca=PEM]]. Spans are acknowledged
    /// once in the local store; ClickHouse gets them after, resuming where it left off.
    #[arg(long, value_name = "URL", value_parser = tailscope::source::parse)]
    to: Option<ClickHouseUrl>,
    /// Seconds a batch smaller than 5,000 spans waits before it goes to ClickHouse.
    #[arg(long, default_value_t = 5)]
    to_flush: u64,
    /// Seconds between GPU samples.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    gpu_interval: f64,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0.01 and 3600"
        )),
    }
}

/// The environment variable that holds the bearer token when no --token-file is given.
pub const TOKEN_ENV: &str = "TAILSCOPE_TOKEN";

/// The token clients must send: from --token-file, else TAILSCOPE_TOKEN (unset or empty:
/// none). `--allow-remote` without one is a usage error.
fn token(args: &ServeArgs) -> Result<Option<BearerToken>> {
    let token = if let Some(path) = &args.token_file {
        Some(BearerToken::from_file(path)?)
    } else {
        match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.trim().is_empty() => {
                Some(BearerToken::new(&t, &format!("in {TOKEN_ENV}"))?)
            }
            _ => None,
        }
    };
    if args.allow_remote && token.is_none() {
        return Err(crate::UsageError(format!(
            "--allow-remote needs a bearer token for clients to send: pass --token-file PATH or set {TOKEN_ENV}"
        ))
        .into());
    }
    Ok(token)
}

pub fn run(db: &Path, args: &ServeArgs) -> Result<()> {
    let token = token(args)?;
    let tls = args
        .tls_cert
        .clone()
        .zip(args.tls_key.clone())
        .map(|(cert, key)| TlsFiles { cert, key });
    let store = Store::open(db).with_context(|| format!("opening store {}", db.display()))?;
    // the store's one writer: the collector, the GPU sampler and imports sent here by
    // `tailscope import` all go through it
    let writer = store.shared_writer(WriterConfig {
        max_pending_items: args.max_pending,
        ..WriterConfig::default()
    })?;
    let reader = store.reader()?;
    let publisher = args
        .segments
        .as_ref()
        .map(|dir| Publisher::start(&store, dir, args.segments_every))
        .transpose()?;
    let forwarder = args
        .to
        .as_ref()
        .map(|url| Forwarder::start(&store, db, url, args.to_flush))
        .transpose()?;
    let stats = Arc::new(IngestStats::default());
    let pipeline = Pipeline::new(
        Arc::new(WriterSink(Arc::clone(&writer))),
        Arc::clone(&stats),
    );
    let cfg = CollectorConfig {
        grpc: Some(args.grpc),
        http: Some(args.http),
        allow_remote: args.allow_remote,
        token: token.clone(),
        tls: tls.clone(),
    };
    for a in [args.grpc, args.http] {
        if !a.ip().is_loopback() && args.allow_remote && tls.is_none() {
            eprintln!("warning: listening on {a} without TLS: the token and the telemetry cross the network in clear text (--tls-cert / --tls-key)");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tailscope-io")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let collector = Collector::start(&cfg, pipeline).await?;
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        println!(
            "tailscope collector listening: OTLP/gRPC {} · OTLP/HTTP {} · store {}",
            show(collector.grpc_addr),
            show(collector.http_addr),
            db.display()
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let headers = if token.is_some() {
            " OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>"
        } else {
            ""
        };
        println!(
            "point your SDK at it: OTEL_EXPORTER_OTLP_ENDPOINT={scheme}://{}{headers}",
            show(collector.http_addr)
        );
        let live = tailscope::live::service::publish(db, reader, Arc::clone(&writer)).await?;
        println!(
            "live access: `tailscope query|analyze|export|import --db {}` work while this runs (service {}, described in {})",
            db.display(),
            live.info.url,
            tailscope::live::protocol::info_path(db).display()
        );
        // The sampler prints its one line (GPUs found, or why sampling is off) itself.
        let sampler = (!args.no_gpu).then(|| {
            spawn_sampler(
                Arc::new(WriterSink(Arc::clone(&writer))),
                SamplerConfig {
                    interval: Duration::from_secs_f64(args.gpu_interval),
                    ..SamplerConfig::default()
                },
            )
        });
        let status = status_loop(Arc::clone(&stats), Arc::clone(&writer), args.status_every);
        tokio::select! {
            () = shutdown_signal() => {}
            () = status => {}
        }
        eprintln!("shutting down: finishing in-flight requests and committing queued rows");
        drop(live);
        collector.shutdown().await;
        if let Some(s) = sampler {
            let g = tokio::task::spawn_blocking(move || s.stop()).await?;
            if g.samples > 0 {
                eprintln!(
                    "GPU sampler: {} samples, {} points stored, {} dropped while the store was busy",
                    g.samples, g.points_committed, g.dropped_busy
                );
            }
        }
        anyhow::Ok(())
    })?;
    // dropping the runtime ends the live service's tasks, which hold the writer too
    drop(rt);
    let writer =
        Arc::try_unwrap(writer).map_err(|_| anyhow::anyhow!("writer still in use at shutdown"))?;
    if let Some((frames, bytes)) = writer.log_backlog().filter(|b| b.0 > 0) {
        eprintln!(
            "loading the ingest log's last {frames} acknowledged batch(es) ({:.1} MiB) into the store",
            bytes as f64 / f64::from(1 << 20)
        );
    }
    let wstats = std::sync::Arc::clone(writer.stats());
    writer.close()?;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let dups = load(&wstats.duplicate_spans);
    let (dup_points, dup_logs) = (
        load(&wstats.duplicate_metric_points),
        load(&wstats.duplicate_logs),
    );
    if let Some(p) = publisher {
        p.stop(&store)?;
    }
    if let Some(f) = forwarder {
        f.stop()?;
    }
    if dups + dup_points + dup_logs > 0 {
        println!(
            "{dups} spans, {dup_points} metric points and {dup_logs} logs received again were not stored twice (exactly-once)"
        );
    }
    let s = stats.snapshot();
    println!(
        "stored {} spans, {} metric points, {} logs; rejected {} spans, {} points, {} logs; {} malformed, {} too large, {} busy, {} unauthenticated requests",
        s.spans_accepted, s.metric_points_accepted, s.logs_accepted, s.spans_rejected,
        s.metric_points_rejected, s.logs_rejected, s.malformed_requests, s.too_large_requests, s.busy_requests,
        s.unauthenticated_requests
    );
    Ok(())
}

/// Publishes the store's new rows as Parquet segments every few seconds, on its own
/// connection and thread, and once more at shutdown.
struct Publisher {
    dir: std::path::PathBuf,
    stop: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Publisher {
    fn start(store: &Store, dir: &Path, every: u64) -> Result<Publisher> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the segments folder {}", dir.display()))?;
        let reader = store.reader()?;
        let (stop, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let d = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("tailscope-segments".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_secs(every.max(1)))
                {
                    if let Err(e) = reader.publish_segments(&d) {
                        tracing::warn!("publishing segments to {}: {e}", d.display());
                    }
                }
            })
            .context("starting the segments thread")?;
        eprintln!(
            "publishing Parquet segments to {} every {every} s",
            dir.display()
        );
        Ok(Publisher {
            dir: dir.to_path_buf(),
            stop,
            thread,
        })
    }

    /// Stops the thread and publishes what the last commits added.
    fn stop(self, store: &Store) -> Result<()> {
        let _ = self.stop.send(());
        let _ = self.thread.join();
        let p = store
            .publish_segments(&self.dir)
            .with_context(|| format!("publishing segments to {}", self.dir.display()))?;
        if p.files > 0 {
            println!(
                "published {} rows in {} segment files to {}",
                p.rows,
                p.files,
                self.dir.display()
            );
        }
        Ok(())
    }
}

/// Sends the store's new spans to ClickHouse from its own connection and thread: the
/// rows after the last one sent (a cursor file beside the store, per target), in
/// inserts of [`ROWS_PER_INSERT`] rows and at least [`MIN_INSERT`] unless `flush`
/// seconds passed; a failed insert is retried on the next round (the spans are safe
/// in the store). A range that went out before a crash kept the cursor from moving is
/// recognised by its first span and not sent twice.
struct Forwarder {
    stop: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<Result<Forwarded>>,
}

/// Spans may wait for more before an insert smaller than this goes out.
const MIN_INSERT: i64 = 5_000;

#[derive(Default)]
struct Forwarded {
    spans: u64,
    inserts: u64,
    failures: u64,
}

impl Forwarder {
    fn start(store: &Store, db: &Path, url: &ClickHouseUrl, flush: u64) -> Result<Forwarder> {
        let table = ExporterTable::open(url)
            .with_context(|| format!("opening the exporter's tables at {}", url.shown()))?;
        let cursor = Cursor::new(db, url);
        let reader = store.reader()?;
        let (stop, rx) = std::sync::mpsc::sync_channel::<()>(1);
        eprintln!(
            "sending spans to {} ({}{}), from row {}",
            url.shown(),
            url.traces_table,
            if table.created {
                ", tables created"
            } else {
                ""
            },
            cursor.after + 1
        );
        let thread = std::thread::Builder::new()
            .name("tailscope-clickhouse".into())
            .spawn(move || {
                let mut state = Forwarding {
                    table,
                    cursor,
                    last_sent: Instant::now(),
                    checked: false,
                    done: Forwarded::default(),
                };
                loop {
                    let stopping = !matches!(
                        rx.recv_timeout(Duration::from_secs(1)),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    );
                    if let Err(e) = state.round(&reader, flush, stopping) {
                        state.done.failures += 1;
                        if stopping {
                            return Err(e);
                        }
                        tracing::warn!("sending spans to ClickHouse (retrying): {e:#}");
                    }
                    if stopping {
                        return Ok(state.done);
                    }
                }
            })
            .context("starting the ClickHouse thread")?;
        Ok(Forwarder { stop, thread })
    }

    /// Sends what is left and stops.
    fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        let done = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the ClickHouse thread panicked"))??;
        println!(
            "sent {} spans to ClickHouse in {} inserts ({} failed attempts retried)",
            done.spans, done.inserts, done.failures
        );
        Ok(())
    }
}

struct Forwarding {
    table: ExporterTable,
    cursor: Cursor,
    last_sent: Instant,
    /// The first range after start was checked against what ClickHouse holds.
    checked: bool,
    done: Forwarded,
}

impl Forwarding {
    fn round(&mut self, reader: &Store, flush: u64, stopping: bool) -> Result<()> {
        let Some(top) = reader.last_span_row()? else {
            return Ok(());
        };
        let waiting = top - self.cursor.after;
        if waiting <= 0
            || (waiting < MIN_INSERT
                && !stopping
                && self.last_sent.elapsed() < Duration::from_secs(flush))
        {
            return Ok(());
        }
        while self.cursor.after < top {
            let upto = top.min(self.cursor.after + tailscope_store::ROWS_PER_INSERT as i64);
            let sent =
                reader.push_span_rows(&self.table, self.cursor.after, upto, !self.checked)?;
            self.checked = true;
            self.cursor.advance(upto)?;
            self.done.spans += sent;
            self.done.inserts += u64::from(sent > 0);
        }
        self.last_sent = Instant::now();
        Ok(())
    }
}

/// The last span row sent to one ClickHouse table, in `<store>.clickhouse-<hash>`.
struct Cursor {
    path: PathBuf,
    after: i64,
}

impl Cursor {
    fn new(db: &Path, url: &ClickHouseUrl) -> Cursor {
        let key = format!("{}/{}", url.shown(), url.traces_table);
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut name = db.as_os_str().to_owned();
        name.push(format!(".clickhouse-{hash:016x}"));
        let path = PathBuf::from(name);
        let after = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.lines().last()?.trim().parse().ok())
            .unwrap_or(-1);
        Cursor { path, after }
    }

    /// Records `upto` as sent (written to a temporary file, synced, renamed).
    fn advance(&mut self, upto: i64) -> Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(
                f,
                "# last span row of this store sent to ClickHouse\n{upto}"
            )?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("recording progress in {}", self.path.display()))?;
        self.after = upto;
        Ok(())
    }
}

async fn status_loop(stats: Arc<IngestStats>, writer: Arc<Writer>, every: u64) {
    if every == 0 {
        return std::future::pending().await;
    }
    let mut last = stats.snapshot();
    let mut t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(every)).await;
        let now = stats.snapshot();
        let dt = t.elapsed().as_secs_f64();
        t = Instant::now();
        let backlog = writer.log_backlog().filter(|b| b.0 > 0);
        if now != last || backlog.is_some() {
            let loading = backlog.map_or_else(String::new, |(frames, bytes)| {
                format!(
                    " · {frames} batches ({:.1} MiB) acknowledged, loading",
                    bytes as f64 / f64::from(1 << 20)
                )
            });
            eprintln!(
                "status: {:.0} spans/s · {} spans acknowledged · {} rejected · {} busy · {} unauthenticated{loading}",
                (now.spans_accepted - last.spans_accepted) as f64 / dt,
                now.spans_accepted,
                now.spans_rejected + now.metric_points_rejected + now.logs_rejected,
                now.busy_requests,
                now.unauthenticated_requests
            );
        }
        last = now;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
