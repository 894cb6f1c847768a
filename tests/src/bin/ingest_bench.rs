//! `ingest-bench`: sustained OTLP/gRPC and OTLP/HTTP ingest into the DuckDB store,
//! against the bare DuckDB appender and DuckDB's Parquet writer as ceilings.
//!
//! What is measured, in one process and one run:
//!
//! 1. **Load.** `tailscope_samples::load_spans` makes `--spans` realistic agent spans
//!    (about 20 attributes each, grouped by trace; generated 65,536 at a time so the
//!    generator's own memory does not dominate peak RSS). They are split into batches of
//!    `--batch` spans and each batch is encoded **once, up front** into a protobuf
//!    `ExportTraceServiceRequest` (`tailscope_ingest::otlp::traces_from_model`), so the
//!    load generator's own encoding is not counted against the server. The client
//!    sends these bytes as they are (a pass-through tonic codec), so retries cost no
//!    re-encoding either.
//! 2. **gRPC ingest.** The real pipeline runs in-process on a multi-thread tokio
//!    runtime: `Store::open` → `Store::writer` → a `Sink` over the writer (the app's
//!    `WriterSink`) → `Pipeline` → `Collector` with gRPC on `127.0.0.1:0`. A loopback
//!    tonic client keeps `--concurrency` exports in flight over one HTTP/2 connection;
//!    an export is acknowledged only after its transaction committed. Each export's
//!    latency is measured; a `UNAVAILABLE` answer (writer saturated) is retried after a
//!    short backoff, counted, and the wait counts in that export's latency. The rate is
//!    spans acknowledged / time from the first send to the last acknowledgement.
//! 3. **No loss.** The collector is shut down, the writer closed, the store reopened and
//!    its spans counted: stored must equal sent (exit code 1 otherwise). Then the same
//!    requests go over OTLP/HTTP (protobuf, 8 in flight, blocking clients on their own
//!    threads, 503 retried) into a third fresh store: rate, p50/p99, lost.
//! 4. **Where the time goes.** The same requests are decoded and normalised on one
//!    thread (`decode::to_batch`, what both receivers run per request in the blocking
//!    pool), timed per request with each batch dropped outside the timing, as the
//!    receiver hands it on: the rate per thread is the median of three passes (best
//!    shown too), and one pass through prost's messages is shown for comparison. The
//!    first 200 requests, re-encoded as OTLP/JSON, go through the JSON decoder the
//!    same way, beside one pass through opentelemetry-proto's serde.
//! 5. **Ceiling.** Those normalised batches (the very rows the collector stored) are
//!    written to a second fresh store by `Store::append_direct`: DuckDB's appender on the
//!    calling thread, one transaction per batch, no network, no queue. The gRPC rate is
//!    reported as a share of this rate. The writer groups queued requests into one
//!    transaction (see the `writer:` line), so where commits dominate it can exceed
//!    this "ceiling". Then DuckDB's Parquet writer (zstd, one thread) writes the bare
//!    store's spans out: the rate of the `serve --segments` layout.
//!
//! Where the loader's time goes: its thread's CPU seconds (`CLOCK_THREAD_CPUTIME_ID`,
//! DuckDB's own worker threads aside) reading and decoding log frames, building the Arrow
//! columns, in DuckDB's appender and in COMMIT, each also per stored span, with the
//! number of transactions (the loader holds one open across frames).
//!
//! Peak RSS is read from `VmHWM` in `/proc/self/status`; it is reset (via
//! `/proc/self/clear_refs`) after the load is generated, so "during ingest" is the peak
//! of the gRPC phase, which still includes the pre-encoded load held in memory.
//!
//! Targets (issue): at least 100,000 spans/s stored and at least 50% of the bare rate.
//!
//! Run it with
//!
//! ```text
//! cargo run --release -p tailscope-tests --bin ingest-bench -- --spans 500000
//! ```
//!
//! Options: `--spans N` (500000), `--batch N` (512), `--concurrency N` (4 exports in
//! flight), `--seed N` (1), `--db PATH` (the gRPC store; kept, with the bare store next
//! to it as `PATH.bare.duckdb`; by default both are temp files, removed at the end),
//! `--sql STMT` (repeatable: SQL run on both stores before writing, for experiments
//! such as `--sql "SET checkpoint_threshold = '1GB'"`), `--only grpc` (stop after the
//! gRPC phase: quick A/Bs of the receive path), `--only decode` (step 4 alone),
//! `--rate N` (the gRPC clients pace their sends at N spans/s: a sustained load
//! rather than a burst; the bench samples the ingest log's backlog every 250 ms and
//! says whether the loader kept up: loaded at 90% of the rate sent or more, over a
//! run that should last well over the loader's 10 s transactions).

use anyhow::{ensure, Context, Result};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::bytes::BufMut;
use prost::Message;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tailscope::sink::WriterSink;
use tailscope_ingest::decode::{to_batch, Encoding};
use tailscope_ingest::otlp::{traces_from_model, traces_into_model};
use tailscope_ingest::{
    Collector, CollectorConfig, IngestStats, Pipeline, SignalKind, StatsSnapshot,
};
use tailscope_model::Batch;
use tailscope_store::{Store, WriterConfig};
use tailscope_tests::mem::{mib, proc_status_kib, reset_peak_rss};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const TARGET_SPANS_PER_S: f64 = 100_000.0;
/// Issue 14: sustained over gRPC and HTTP.
const TARGET_14_SPANS_PER_S: f64 = 250_000.0;

/// Issue 25: spans/s loaded into the tables under a sustained collector load (clients
/// in the same process), and its stretch.
const TARGET_25_LOADED: f64 = 100_000.0;
const TARGET_25_STRETCH: f64 = 150_000.0;
const TARGET_SHARE_OF_BARE: f64 = 0.5;
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const MAX_MESSAGE_BYTES: usize = 64 << 20;
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// Passes of the one-thread decode + normalise measurement.
const DECODE_PASSES: usize = 3;
/// Requests re-encoded as OTLP/JSON for the JSON decode measurement (about 100k spans
/// at the default batch; JSON is about twice the protobuf's size).
const JSON_REQUESTS: usize = 200;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ingest-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------

/// Sustained OTLP/gRPC and OTLP/HTTP ingest into the DuckDB store, against the bare
/// DuckDB appender and DuckDB's Parquet writer as ceilings.
#[derive(Parser)]
#[command(name = "ingest-bench")]
struct Cli {
    /// Spans of load to generate (`_` separators allowed: 300_000).
    #[arg(long, value_name = "N", default_value_t = 500_000, value_parser = at_least_one)]
    spans: u64,
    /// Spans per export request.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = at_least_one)]
    batch: u64,
    /// Exports in flight.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = at_least_one)]
    concurrency: u64,
    /// The load generator's seed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = whole_number)]
    seed: u64,
    /// The store (and `PATH.bare.duckdb`); temporary files when absent.
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Extra SQL run on both stores before writing (experiments, e.g. DuckDB
    /// settings); repeatable.
    #[arg(long, value_name = "STMT")]
    sql: Vec<String>,
    /// `grpc`: stop after the gRPC phase (quick A/Bs of the receive path); `decode`:
    /// only decode and normalise on one thread.
    #[arg(long, value_enum, value_name = "PHASE")]
    only: Vec<Only>,
    /// The gRPC clients pace their sends at this many spans/s (a sustained load
    /// instead of a burst); the bench reports whether the loader kept up.
    #[arg(long, value_name = "SPANS_PER_S", value_parser = whole_number)]
    rate: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    Grpc,
    Decode,
}

/// A whole number, `_` separators allowed.
fn whole_number(s: &str) -> Result<u64, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}

fn at_least_one(s: &str) -> Result<u64, String> {
    match whole_number(s)? {
        0 => Err("must be at least 1".to_owned()),
        n => Ok(n),
    }
}

struct Args {
    spans: usize,
    batch: usize,
    concurrency: usize,
    seed: u64,
    db: Option<PathBuf>,
    /// Extra SQL run on both stores before writing (experiments, e.g. DuckDB settings).
    sql: Vec<String>,
    /// `--only grpc`: stop after the gRPC phase (quick A/Bs of the receive path);
    /// `--only decode`: only decode and normalise on one thread.
    grpc_only: bool,
    decode_only: bool,
    /// `--rate N`: the gRPC clients pace their sends at N spans/s (a sustained load
    /// instead of a burst); the bench reports whether the loader kept up.
    rate: Option<f64>,
}

fn parse_args() -> Result<Args> {
    let c = Cli::parse();
    Ok(Args {
        spans: usize::try_from(c.spans)?,
        batch: usize::try_from(c.batch)?,
        concurrency: usize::try_from(c.concurrency)?,
        seed: c.seed,
        db: c.db,
        sql: c.sql,
        grpc_only: c.only.contains(&Only::Grpc),
        decode_only: c.only.contains(&Only::Decode),
        rate: c.rate.map(|r| r as f64),
    })
}

// ---------------------------------------------------------------------------------
// The sink over the store writer (the same adapter as the app's `WriterSink`)
// ---------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------
// A pass-through codec: sends pre-encoded `ExportTraceServiceRequest` bytes
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Arc<[u8]>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for PreEncoded {
    type Item = Arc<[u8]>;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable export response: {e}")))
    }
}

// ---------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------

/// One export request, encoded once.
struct Request {
    bytes: Arc<[u8]>,
    spans: u64,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Spans generated per `load_spans` call (rounded up to whole batches), so that the
/// generator's model spans never all sit in memory at once and peak RSS shows the
/// collector rather than the load.
const GENERATE_CHUNK: usize = 65_536;

/// Generates `n` spans and encodes them as requests of at most `batch` spans each.
/// Chunk `k` uses seed `seed + k·φ` and starts after the previous chunk's last trace;
/// with `n` up to one chunk this is exactly `load_spans(seed, n, now)`.
fn make_load(seed: u64, n: usize, batch: usize) -> Result<Vec<Request>> {
    let chunk_spans = batch * GENERATE_CHUNK.div_ceil(batch);
    let mut out = Vec::with_capacity(n.div_ceil(batch));
    let mut start_ns = now_ns();
    let mut made = 0;
    let mut k: u64 = 0;
    while made < n {
        let want = chunk_spans.min(n - made);
        let all = tailscope_samples::load_spans(
            seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            want,
            start_ns,
        );
        ensure!(
            all.spans.len() == want,
            "load_spans made {} spans, asked for {want}",
            all.spans.len()
        );
        start_ns = all.spans.iter().map(|s| s.end_ns).max().unwrap_or(start_ns) + 1_000_000;
        made += want;
        k += 1;
        let resources = all.resources;
        let mut spans = all.spans.into_iter();
        loop {
            let chunk: Vec<_> = spans.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            let b = Batch {
                // Every resource, so that each request carries its spans' resource attributes.
                resources: resources.clone(),
                spans: chunk,
                ..Batch::default()
            };
            out.push(Request {
                bytes: traces_from_model(&b).encode_to_vec().into(),
                spans: b.spans.len() as u64,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// gRPC phase
// ---------------------------------------------------------------------------------

#[derive(Default)]
struct ClientTotals {
    acked_spans: AtomicU64,
    rejected_spans: AtomicU64,
    retries: AtomicU64,
    failed_exports: AtomicU64,
}

/// One export as the client saw it.
#[derive(Clone, Copy)]
struct Export {
    /// From the first send to the answer, retries included.
    latency: Duration,
    /// When the answer came, from the start of the run.
    done_at: Duration,
    /// Spans the answer acknowledged.
    acked: u64,
}

struct GrpcRun {
    logged_bytes: u64,
    /// CPU seconds of the whole process while the clients ran.
    cpu: f64,
    /// Seconds the ingest log thread spent encoding, writing, syncing, and the loader
    /// committing.
    log_times: [f64; 4],
    /// The loader thread's CPU seconds: decode frames, build columns, append, commit.
    load_cpu: [f64; 4],
    elapsed: Duration,
    /// From the first request until every acknowledged span was in the tables.
    loaded: Duration,
    exports: Vec<Export>,
    acked_spans: u64,
    rejected_spans: u64,
    retries: u64,
    failed_exports: u64,
    first_error: Option<String>,
    ingest: StatsSnapshot,
    transactions: u64,
    saturated: u64,
    shutdown: Duration,
    /// The ingest log's backlog (frames, bytes not yet loaded), sampled every 250 ms
    /// while the clients send: its largest and its last value.
    backlog_max: (u64, u64),
    backlog_last: (u64, u64),
}

/// Sends requests from the shared queue until it is empty; returns its exports and
/// the first non-retryable error.
async fn client_task(
    mut grpc: tonic::client::Grpc<Channel>,
    requests: Arc<Vec<Request>>,
    next: Arc<AtomicUsize>,
    totals: Arc<ClientTotals>,
    run_start: Instant,
    pace: Option<(f64, Arc<Vec<u64>>)>,
) -> (Vec<Export>, Option<String>) {
    let path = PathAndQuery::from_static(EXPORT_PATH);
    let mut exports = Vec::new();
    let mut first_error = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(req) = requests.get(i) else { break };
        if let Some((rate, before)) = &pace {
            // request i is due once the spans before it have had their time
            let due = run_start + Duration::from_secs_f64(before[i] as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut acked = 0;
        loop {
            let answer = match grpc.ready().await {
                Ok(()) => {
                    grpc.unary(
                        tonic::Request::new(Arc::clone(&req.bytes)),
                        path.clone(),
                        PreEncoded,
                    )
                    .await
                }
                Err(e) => Err(Status::unavailable(format!("channel not ready: {e}"))),
            };
            match answer {
                Ok(resp) => {
                    let rejected = resp
                        .into_inner()
                        .partial_success
                        .map_or(0, |p| p.rejected_spans.max(0) as u64);
                    totals.rejected_spans.fetch_add(rejected, Ordering::Relaxed);
                    acked = req.spans - rejected.min(req.spans);
                    totals.acked_spans.fetch_add(acked, Ordering::Relaxed);
                    break;
                }
                Err(s) if s.code() == Code::Unavailable => {
                    totals.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(s) => {
                    totals.failed_exports.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| format!("{:?}: {}", s.code(), s.message()));
                    break;
                }
            }
        }
        exports.push(Export {
            latency: started.elapsed(),
            done_at: run_start.elapsed(),
            acked,
        });
    }
    (exports, first_error)
}

async fn grpc_phase(
    db: &Path,
    sql: &[String],
    requests: Arc<Vec<Request>>,
    concurrency: usize,
    rate: Option<f64>,
) -> Result<GrpcRun> {
    let store = open_store(db, sql)?;
    let writer = Arc::new(store.writer(WriterConfig::default())?);
    let writer_stats = Arc::clone(writer.stats());
    let stats = Arc::new(IngestStats::default());
    let pipeline = Pipeline::new(
        Arc::new(WriterSink(Arc::clone(&writer))),
        Arc::clone(&stats),
    );
    let cfg = CollectorConfig {
        grpc: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        http: None,
        allow_remote: false,
        ..CollectorConfig::default()
    };
    let collector = Collector::start(&cfg, pipeline).await?;
    let addr = collector
        .grpc_addr
        .context("the collector reported no gRPC address")?;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;

    let next = Arc::new(AtomicUsize::new(0));
    let totals = Arc::new(ClientTotals::default());
    let pace = rate.map(|r| {
        let mut before = Vec::with_capacity(requests.len());
        let mut sum = 0;
        for q in requests.iter() {
            before.push(sum);
            sum += q.spans;
        }
        (r, Arc::new(before))
    });
    // the log's backlog, sampled while the clients send
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let writer = Arc::clone(&writer);
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let (mut max, mut last) = ((0, 0), (0, 0));
            while sampling.load(Ordering::Relaxed) {
                last = writer.log_backlog().unwrap_or_default();
                max = (max.0.max(last.0), max.1.max(last.1));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (max, last)
        })
    };
    let cpu0 = tailscope_tests::mem::cpu_seconds().unwrap_or(0.0);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let grpc = tonic::client::Grpc::new(channel.clone())
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            tokio::spawn(client_task(
                grpc,
                Arc::clone(&requests),
                Arc::clone(&next),
                Arc::clone(&totals),
                started,
                pace.clone(),
            ))
        })
        .collect();
    let mut exports = Vec::with_capacity(requests.len());
    let mut first_error = None;
    for t in tasks {
        let (x, e) = t.await.context("a client task panicked")?;
        exports.extend(x);
        if first_error.is_none() {
            first_error = e;
        }
    }
    let elapsed = started.elapsed();
    let cpu = tailscope_tests::mem::cpu_seconds().unwrap_or(0.0) - cpu0;
    sampling.store(false, Ordering::Relaxed);
    let (backlog_max, _) = sampler.await.context("the backlog sampler panicked")?;
    let backlog_last = writer.log_backlog().unwrap_or_default();
    // acknowledged means durable in the ingest log; time until the tables hold it all
    if !writer.wait_loaded(Duration::from_secs(3600)) {
        eprintln!("ingest-bench: the ingest log did not finish loading");
    }
    let loaded = started.elapsed();

    let closing = Instant::now();
    drop(channel);
    collector.shutdown().await;
    let ingest = stats.snapshot();
    // The collector's services held the other references to the writer; once they are
    // gone, closing drains the queue and joins the writer thread.
    match Arc::try_unwrap(writer) {
        Ok(w) => w.close()?,
        Err(w) => {
            eprintln!("ingest-bench: the writer is still shared after shutdown; dropping it without close");
            drop(w);
        }
    }
    drop(store);
    let shutdown = closing.elapsed();

    Ok(GrpcRun {
        logged_bytes: writer_stats.logged_bytes.load(Ordering::Relaxed),
        cpu,
        elapsed,
        loaded,
        exports,
        acked_spans: totals.acked_spans.load(Ordering::Relaxed),
        rejected_spans: totals.rejected_spans.load(Ordering::Relaxed),
        retries: totals.retries.load(Ordering::Relaxed),
        failed_exports: totals.failed_exports.load(Ordering::Relaxed),
        first_error,
        ingest,
        transactions: writer_stats.transactions.load(Ordering::Relaxed),
        saturated: writer_stats.saturated.load(Ordering::Relaxed),
        log_times: [
            &writer_stats.log_encode_ns,
            &writer_stats.log_write_ns,
            &writer_stats.log_sync_ns,
            &writer_stats.load_ns,
        ]
        .map(|a| a.load(Ordering::Relaxed) as f64 / 1e9),
        load_cpu: [
            &writer_stats.load_decode_cpu_ns,
            &writer_stats.load_build_cpu_ns,
            &writer_stats.load_append_cpu_ns,
            &writer_stats.load_commit_cpu_ns,
        ]
        .map(|a| a.load(Ordering::Relaxed) as f64 / 1e9),
        shutdown,
        backlog_max,
        backlog_last,
    })
}

// ---------------------------------------------------------------------------------
// HTTP phase
// ---------------------------------------------------------------------------------

/// Requests in flight over OTLP/HTTP (the issue's latency target is at 8).
const HTTP_IN_FLIGHT: usize = 8;

struct HttpRun {
    cpu: f64,
    elapsed: Duration,
    /// From the first request until every acknowledged span was in the tables.
    loaded: Duration,
    latencies: Vec<Duration>,
    acked_spans: u64,
    retries: u64,
    failed: u64,
    stored: u64,
}

/// The same requests over OTLP/HTTP protobuf into a fresh store at `db`:
/// `HTTP_IN_FLIGHT` blocking clients on their own threads, 503 retried after a backoff.
fn http_phase(db: &Path, sql: &[String], requests: &Arc<Vec<Request>>) -> Result<HttpRun> {
    let store = open_store(db, sql)?;
    let writer = store.shared_writer(WriterConfig::default())?;
    let stats = Arc::new(IngestStats::default());
    let pipeline = Pipeline::new(Arc::new(WriterSink(Arc::clone(&writer))), stats);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ingest-bench-http")
        .build()
        .context("starting the async runtime")?;
    let collector = rt.block_on(Collector::start(
        &CollectorConfig {
            grpc: None,
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            allow_remote: false,
            ..CollectorConfig::default()
        },
        pipeline,
    ))?;
    let url = format!(
        "http://{}/v1/traces",
        collector.http_addr.context("no HTTP address")?
    );
    let next = Arc::new(AtomicUsize::new(0));
    let totals = Arc::new(ClientTotals::default());
    let cpu0 = tailscope_tests::mem::cpu_seconds().unwrap_or(0.0);
    let started = Instant::now();
    let threads = (0..HTTP_IN_FLIGHT)
        .map(|k| {
            let (requests, next, totals, url) = (
                Arc::clone(requests),
                Arc::clone(&next),
                Arc::clone(&totals),
                url.clone(),
            );
            std::thread::Builder::new()
                .name(format!("http-client-{k}"))
                .spawn(move || -> Vec<Duration> {
                    let agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .new_agent();
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(req) = requests.get(i) else { break };
                        let t = Instant::now();
                        let mut backoff = FIRST_BACKOFF;
                        loop {
                            let status = agent
                                .post(&url)
                                .header("Content-Type", "application/x-protobuf")
                                .send(&req.bytes[..])
                                .map(|r| r.status().as_u16());
                            match status {
                                Ok(200) => {
                                    totals.acked_spans.fetch_add(req.spans, Ordering::Relaxed);
                                    break;
                                }
                                Ok(503) => {
                                    totals.retries.fetch_add(1, Ordering::Relaxed);
                                    std::thread::sleep(backoff);
                                    backoff = (backoff * 2).min(MAX_BACKOFF);
                                }
                                _ => {
                                    totals.failed_exports.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                        lat.push(t.elapsed());
                    }
                    lat
                })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut latencies = Vec::with_capacity(requests.len());
    for t in threads {
        latencies.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("an HTTP client thread panicked"))?,
        );
    }
    let elapsed = started.elapsed();
    let cpu = tailscope_tests::mem::cpu_seconds().unwrap_or(0.0) - cpu0;
    if !writer.wait_loaded(Duration::from_secs(3600)) {
        eprintln!("ingest-bench: the ingest log did not finish loading");
    }
    let loaded = started.elapsed();
    rt.block_on(collector.shutdown());
    drop(rt);
    drop(writer);
    let stored = store.counts()?.spans;
    latencies.sort_unstable();
    Ok(HttpRun {
        cpu,
        elapsed,
        loaded,
        latencies,
        acked_spans: totals.acked_spans.load(Ordering::Relaxed),
        retries: totals.retries.load(Ordering::Relaxed),
        failed: totals.failed_exports.load(Ordering::Relaxed),
        stored,
    })
}

// ---------------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------------

/// Nearest-rank quantile (`p` in 0..=1) of sorted durations
/// ([`tailscope_model::stats::quantile`]; zero for none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    tailscope_model::stats::quantile(sorted, p).unwrap_or(Duration::ZERO)
}

/// Spans acknowledged per second in each of `n` equal windows of the run: shows whether
/// the rate holds up as the store grows.
fn rate_by_window(exports: &[Export], elapsed: Duration, n: u32) -> Vec<f64> {
    let window = elapsed / n.max(1);
    let mut acked = vec![0u64; n as usize];
    for x in exports {
        let i = (x.done_at.as_secs_f64() / window.as_secs_f64().max(1e-9)) as usize;
        if let Some(a) = acked.get_mut(i.min(n as usize - 1)) {
            *a += x.acked;
        }
    }
    acked.into_iter().map(|a| rate(a, window)).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Opens a fresh store and runs the `--sql` statements on it.
fn open_store(path: &Path, sql: &[String]) -> Result<Store> {
    let store = Store::open(path).with_context(|| format!("opening {}", path.display()))?;
    for stmt in sql {
        store
            .execute_batch(stmt)
            .with_context(|| format!("--sql {stmt:?}"))?;
    }
    Ok(store)
}

/// Removes a DuckDB file and its WAL, if present.
fn remove_store(path: &Path) {
    let _ = std::fs::remove_file(path);
    let mut wal = path.as_os_str().to_owned();
    wal.push(".wal");
    let _ = std::fs::remove_file(PathBuf::from(wal));
    let _ = std::fs::remove_dir_all(tailscope_store::ingestlog::dir_of(path));
}

// ---------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------

fn run() -> Result<ExitCode> {
    let args = parse_args()?;
    let (db, bare_db, temporary) = if let Some(p) = &args.db {
        let mut bare = p.as_os_str().to_owned();
        bare.push(".bare.duckdb");
        (p.clone(), PathBuf::from(bare), false)
    } else {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        (
            dir.join(format!("tailscope-ingest-bench-{pid}.duckdb")),
            dir.join(format!("tailscope-ingest-bench-{pid}.bare.duckdb")),
            true,
        )
    };
    for p in [&db, &bare_db] {
        ensure!(
            !p.exists(),
            "{} exists; the bench needs fresh stores to count what it wrote",
            p.display()
        );
    }
    let mut http_db = db.as_os_str().to_owned();
    http_db.push(".http.duckdb");
    let http_db = PathBuf::from(http_db);
    ensure!(
        !http_db.exists(),
        "{} exists; the bench needs fresh stores to count what it wrote",
        http_db.display()
    );
    let result = bench(&args, &db, &bare_db, &http_db);
    if temporary {
        remove_store(&db);
        remove_store(&bare_db);
        remove_store(&http_db);
    } else {
        println!(
            "stores kept: {}, {} and {}",
            db.display(),
            bare_db.display(),
            http_db.display()
        );
    }
    result
}

fn bench(args: &Args, db: &Path, bare_db: &Path, http_db: &Path) -> Result<ExitCode> {
    // 1. The load, encoded once.
    let t = Instant::now();
    let requests = make_load(args.seed, args.spans, args.batch)?;
    let load_time = t.elapsed();
    let sent: u64 = requests.iter().map(|r| r.spans).sum();
    let wire_bytes: usize = requests.iter().map(|r| r.bytes.len()).sum();
    println!(
        "ingest-bench: {sent} spans in {} batches of {}, {} in flight",
        requests.len(),
        args.batch,
        args.concurrency
    );
    println!(
        "load: generated and encoded in {:.2} s, {:.1} MiB of protobuf ({} bytes/span)",
        load_time.as_secs_f64(),
        wire_bytes as f64 / 1_048_576.0,
        wire_bytes / usize::try_from(sent.max(1))?
    );
    if args.decode_only {
        decode_phase(&requests, sent)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rss_before = proc_status_kib("VmRSS");
    let hwm_reset = reset_peak_rss();

    // 2. gRPC ingest through the real collector and writer.
    let requests = Arc::new(requests);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ingest-bench-rt")
        .build()
        .context("starting the async runtime")?;
    let g = rt.block_on(grpc_phase(
        db,
        &args.sql,
        Arc::clone(&requests),
        args.concurrency,
        args.rate,
    ))?;
    drop(rt);
    let peak_ingest = proc_status_kib("VmHWM");

    // 3. No loss: a fresh count from the reopened store.
    let counts = Store::open(db)
        .and_then(|s| s.counts())
        .with_context(|| format!("counting {}", db.display()))?;
    let stored = counts.spans;
    let lost = sent.saturating_sub(stored);

    let mut latencies: Vec<Duration> = g.exports.iter().map(|x| x.latency).collect();
    latencies.sort_unstable();
    let grpc_rate = rate(stored.min(g.acked_spans), g.elapsed);
    let grpc_loaded_rate = rate(stored.min(g.acked_spans), g.loaded);
    println!(
        "grpc ingest: {grpc_rate:.0} spans/s acknowledged, durable in the ingest log ({:.2} s, {:.2} cores busy, clients included); {grpc_loaded_rate:.0} spans/s loaded into the tables (all loaded after {:.2} s)",
        g.elapsed.as_secs_f64(),
        g.cpu / g.elapsed.as_secs_f64(),
        g.loaded.as_secs_f64()
    );
    println!(
        "export latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} exports)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len()
    );
    println!(
        "rate by fifth of the run: {} spans/s",
        rate_by_window(&g.exports, g.elapsed, 5)
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mib_of = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "ingest log backlog while sending: at most {} frames ({:.1} MiB), {} frames ({:.1} MiB) at the last acknowledgement; loaded {:.2} s after it",
        g.backlog_max.0,
        mib_of(g.backlog_max.1),
        g.backlog_last.0,
        mib_of(g.backlog_last.1),
        g.loaded.saturating_sub(g.elapsed).as_secs_f64()
    );
    if let Some(r) = args.rate {
        // Kept up: the tables took the spans at (nearly) the rate they were sent. The
        // loader commits a transaction every 4 row groups (or 10 s), so what was
        // still open at the last acknowledgement is committed after it: a run should
        // last well over 10 s for the verdict to mean something.
        let share = grpc_loaded_rate / r;
        println!(
            "sustained load: {r:.0} spans/s sent for {:.1} s, loaded at {grpc_loaded_rate:.0} spans/s ({:.0}% of the rate sent): {}",
            g.elapsed.as_secs_f64(),
            share * 100.0,
            if share >= 0.9 {
                "the loader kept up"
            } else {
                "the loader fell behind"
            }
        );
    }
    println!("retries (UNAVAILABLE): {}", g.retries);
    if g.failed_exports > 0 || g.rejected_spans > 0 {
        println!(
            "failed exports: {}, spans rejected: {}{}",
            g.failed_exports,
            g.rejected_spans,
            g.first_error
                .as_deref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
    }
    println!("spans lost: {lost}");
    if stored > sent {
        println!("spans stored twice: {}", stored - sent);
    }
    println!(
        "writer: {} transactions, {:.0} spans per transaction, {} saturated submits; collector: {} requests, {} busy, {} spans accepted",
        g.transactions,
        stored as f64 / g.transactions.max(1) as f64,
        g.saturated,
        g.ingest.requests,
        g.ingest.busy_requests,
        g.ingest.spans_accepted
    );
    println!("shutdown + writer close: {:.0} ms", ms(g.shutdown));
    println!(
        "ingest log: {:.0} bytes/span; its thread: encode {:.2} s, write {:.2} s, fsync {:.2} s; loader: {:.2} s committing",
        g.logged_bytes as f64 / stored.max(1) as f64,
        g.log_times[0], g.log_times[1], g.log_times[2], g.log_times[3]
    );
    let per_span = |s: f64| s * 1e6 / stored.max(1) as f64;
    println!(
        "loader thread CPU: read + decode frames {:.2} s ({:.1} us/span), build columns {:.2} s ({:.1}), DuckDB append {:.2} s ({:.1}), commit {:.2} s ({:.1}); {} transactions",
        g.load_cpu[0], per_span(g.load_cpu[0]),
        g.load_cpu[1], per_span(g.load_cpu[1]),
        g.load_cpu[2], per_span(g.load_cpu[2]),
        g.load_cpu[3], per_span(g.load_cpu[3]),
        g.transactions
    );
    println!(
        "rows stored: {} spans, {} span attributes, {} events, {} links, {} resources",
        counts.spans, counts.span_attributes, counts.events, counts.links, counts.resources
    );

    if args.grpc_only {
        return Ok(if lost > 0 || g.failed_exports > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }

    // 3b. The same requests over OTLP/HTTP (protobuf), 8 in flight, into a fresh store.
    let h = http_phase(http_db, &args.sql, &requests)?;
    let http_rate = rate(h.stored.min(h.acked_spans), h.elapsed);
    let http_loaded_rate = rate(h.stored.min(h.acked_spans), h.loaded);
    println!(
        "http ingest: {http_rate:.0} spans/s acknowledged ({:.2} s, {HTTP_IN_FLIGHT} in flight, {:.2} cores busy), {http_loaded_rate:.0} spans/s loaded (after {:.2} s); export latency p50 {:.1} ms, p99 {:.1} ms; {} retries (503), {} failed, {} lost",
        h.elapsed.as_secs_f64(),
        h.cpu / h.elapsed.as_secs_f64(),
        h.loaded.as_secs_f64(),
        ms(percentile(&h.latencies, 0.50)),
        ms(percentile(&h.latencies, 0.99)),
        h.retries,
        h.failed,
        sent.saturating_sub(h.stored)
    );

    decode_phase(&requests, sent)?;
    // The ceiling's rows: the same requests decoded once more, kept.
    let batches = requests
        .iter()
        .map(|r| to_batch(SignalKind::Traces, &r.bytes, Encoding::Protobuf).map(|(b, _)| b))
        .collect::<Result<Vec<_>, _>>()
        .context("decoding a request")?;
    drop(requests);

    // 5. The ceiling: the same rows through the bare appender on this thread, grouped
    //    into transactions of the same size the writer commits (so neither side gains
    //    from a different commit size).
    let per_tx = (stored / g.transactions.max(1)).max(1) as usize;
    let batches = regroup(batches, per_tx);
    let bare = open_store(bare_db, &args.sql)?;
    let t = Instant::now();
    bare.append_direct(&batches)?;
    let bare_time = t.elapsed();
    let bare_counts = bare.counts()?;
    // 5b. The Parquet writer: the same stored spans written out by DuckDB's Parquet
    //     writer (zstd), one thread, the layout of `serve --segments`.
    let parquet = bare_db.with_extension("spans.parquet");
    bare.set_threads(1)?;
    let t = Instant::now();
    bare.write_spans_parquet(&parquet)?;
    let parquet_time = t.elapsed();
    let parquet_bytes = std::fs::metadata(&parquet).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&parquet);
    drop(bare);
    drop(batches);
    let bare_rate = rate(bare_counts.spans, bare_time);
    println!(
        "bare appender: {bare_rate:.0} spans/s ({:.2} s)",
        bare_time.as_secs_f64()
    );
    if bare_counts.spans != counts.spans || bare_counts.span_attributes != counts.span_attributes {
        println!(
            "note: the stores differ: gRPC {} spans / {} attributes, bare {} spans / {} attributes",
            counts.spans, counts.span_attributes, bare_counts.spans, bare_counts.span_attributes
        );
    }
    println!(
        "parquet writer (DuckDB COPY of the spans, zstd, 1 thread): {:.0} spans/s ({:.2} s, {:.1} MiB)",
        rate(bare_counts.spans, parquet_time),
        parquet_time.as_secs_f64(),
        parquet_bytes as f64 / 1_048_576.0
    );
    let share = grpc_rate / bare_rate.max(1e-9);
    println!("ratio: {:.1}% of bare appender", share * 100.0);

    println!(
        "peak RSS: {} overall; {} during gRPC ingest{} (load held in memory: {} before ingest)",
        mib(proc_status_kib("VmHWM")),
        mib(peak_ingest),
        if hwm_reset {
            ""
        } else {
            " (peak not resettable: since start)"
        },
        mib(rss_before)
    );
    println!(
        "targets: >= {TARGET_SPANS_PER_S:.0} spans/s: {}, >= {:.0}% of bare: {}",
        pass(grpc_rate >= TARGET_SPANS_PER_S),
        TARGET_SHARE_OF_BARE * 100.0,
        pass(share >= TARGET_SHARE_OF_BARE)
    );
    println!(
        "issue 14 targets: >= {TARGET_14_SPANS_PER_S:.0} spans/s acknowledged over gRPC: {} ({grpc_rate:.0}), over HTTP: {} ({http_rate:.0}); loaded into the tables (sustained): gRPC {} ({grpc_loaded_rate:.0}), HTTP {} ({http_loaded_rate:.0}); HTTP p99 < 250 ms with {HTTP_IN_FLIGHT} in flight: {}",
        pass(grpc_rate >= TARGET_14_SPANS_PER_S),
        pass(http_rate >= TARGET_14_SPANS_PER_S),
        pass(grpc_loaded_rate >= TARGET_14_SPANS_PER_S),
        pass(http_loaded_rate >= TARGET_14_SPANS_PER_S),
        pass(percentile(&h.latencies, 0.99) < Duration::from_millis(250))
    );
    println!(
        "issue 25 targets ({}): loaded into the tables >= {TARGET_25_LOADED:.0} spans/s: gRPC {} ({grpc_loaded_rate:.0}), HTTP {} ({http_loaded_rate:.0}); stretch >= {TARGET_25_STRETCH:.0}: {}",
        if args.rate.is_some() {
            "paced by --rate: a sustained load"
        } else {
            "a burst: pass --rate for the sustained figure"
        },
        pass(grpc_loaded_rate >= TARGET_25_LOADED),
        pass(http_loaded_rate >= TARGET_25_LOADED),
        pass(grpc_loaded_rate.max(http_loaded_rate) >= TARGET_25_STRETCH)
    );
    Ok(
        if lost > 0 || g.failed_exports > 0 || h.failed > 0 || h.stored < sent {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Step 4: decoding and normalising on one thread, protobuf and JSON.
fn decode_phase(requests: &[Request], sent: u64) -> Result<()> {
    // 4. What the receiver does per request, on one thread: decode + normalise
    //    (`decode::to_batch`, which both receivers run in the blocking pool). Timed per
    //    request; each batch is dropped outside the timing, as the receiver hands it on
    //    to the writer, so memory is reused from request to request as in a running
    //    collector. The median and best of DECODE_PASSES passes over all requests (this
    //    machine is shared), then one pass through prost's messages for comparison.
    let mut passes = Vec::with_capacity(DECODE_PASSES);
    let mut rejected = 0;
    for _ in 0..DECODE_PASSES {
        let mut busy = Duration::ZERO;
        rejected = 0;
        for r in requests {
            let t = Instant::now();
            let (b, rej) = to_batch(SignalKind::Traces, &r.bytes, Encoding::Protobuf)
                .context("decoding a request")?;
            busy += t.elapsed();
            rejected += rej.count;
            drop(b);
        }
        passes.push(busy);
    }
    passes.sort_unstable();
    let median = percentile(&passes, 0.5);
    println!(
        "decode + normalise (one thread, per request): {:.0} spans/s (median of {DECODE_PASSES} passes, best {:.0}; {:.2} s per pass, {rejected} rejected)",
        rate(sent, median),
        rate(sent, passes[0]),
        median.as_secs_f64()
    );
    let mut busy = Duration::ZERO;
    for r in requests {
        let t = Instant::now();
        let req = ExportTraceServiceRequest::decode(&r.bytes[..]).context("decoding a request")?;
        let (b, _) = traces_into_model(req);
        busy += t.elapsed();
        drop(b);
    }
    println!(
        "  through prost's messages instead (for comparison): {:.0} spans/s",
        rate(sent, busy)
    );
    // 4b. The same for OTLP/JSON bodies (the first JSON_REQUESTS requests, re-encoded
    //     as JSON once, up front): the direct decoder that both receivers use, and
    //     opentelemetry-proto's serde path it replaces, for comparison.
    let json: Vec<(Vec<u8>, u64)> = requests
        .iter()
        .take(JSON_REQUESTS)
        .map(|r| {
            let req = ExportTraceServiceRequest::decode(&r.bytes[..])?;
            Ok((serde_json::to_vec(&req)?, r.spans))
        })
        .collect::<Result<_>>()?;
    let json_spans: u64 = json.iter().map(|j| j.1).sum();
    let json_bytes: usize = json.iter().map(|j| j.0.len()).sum();
    let mut passes = Vec::with_capacity(DECODE_PASSES);
    for _ in 0..DECODE_PASSES {
        let mut busy = Duration::ZERO;
        for (body, _) in &json {
            let t = Instant::now();
            let (b, _) = to_batch(SignalKind::Traces, body, Encoding::Json)
                .context("decoding a JSON request")?;
            busy += t.elapsed();
            drop(b);
        }
        passes.push(busy);
    }
    passes.sort_unstable();
    let mut serde_busy = Duration::ZERO;
    for (body, _) in &json {
        let t = Instant::now();
        let req: ExportTraceServiceRequest =
            serde_json::from_slice(body).context("decoding a JSON request")?;
        let (b, _) = traces_into_model(req);
        serde_busy += t.elapsed();
        drop(b);
    }
    println!(
        "decode + normalise OTLP/JSON (one thread, {json_spans} spans, {} bytes/span): {:.0} spans/s (median of {DECODE_PASSES} passes, best {:.0}); through opentelemetry-proto's serde instead: {:.0} spans/s",
        json_bytes / usize::try_from(json_spans.max(1))?,
        rate(json_spans, percentile(&passes, 0.5)),
        rate(json_spans, passes[0]),
        rate(json_spans, serde_busy)
    );
    drop(json);
    Ok(())
}

/// Merges batches into batches of about `per` spans (one transaction each).
fn regroup(batches: Vec<Batch>, per: usize) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut cur = Batch::default();
    for mut b in batches {
        cur.append(&mut b);
        if cur.spans.len() >= per {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&d, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
