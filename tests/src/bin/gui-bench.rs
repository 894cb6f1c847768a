//! GUI benchmark. Prints:
//!
//! - waterfall and flame-graph frame times (median, p99) of a 100,000-span trace,
//!   rendered headless (egui `Context::run` + tessellation), zoomed out and zoomed in;
//! - over a store of about `SPANS_M` million spans, through the GUI worker (the UI's
//!   real request path): the first overview before any analysis, the time until the
//!   background analysis has landed and the overview is loaded, the first traces page
//!   (builds the per-trace list), traces page fetches (median, p99) at random offsets
//!   and with a SQL WHERE filter;
//! - (a) the time from opening the analysed store to its first overview (from the
//!   stored results, not waiting for the analysis);
//! - (b) traces page fetches (median, p99) while a writer thread appends spans into the
//!   same store at `RATE` spans/s for `SECONDS` (the worker polls the store as with the
//!   collector on), and how many analyses landed meanwhile;
//! - (c) how long after the last span was committed it showed up analysed
//!   (`StoreChanged`).
//!
//! `cargo run --release -p tailscope-tests --bin gui-bench [-- FRAMES [SPANS_M [SECONDS [RATE]]]]`
//! (defaults 200 frames, 1.0 M spans, 10 s at 20,000 spans/s)

#![allow(clippy::many_single_char_names)] // short timing locals: t, w, h, r

use clap::Parser;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope::gui::worker::Worker;
use tailscope_ingest::IngestStats;
use tailscope_model::{Batch, Cause};
use tailscope_samples::{generate, WorkloadConfig};
use tailscope_store::{Store, Writer, WriterConfig};
use tailscope_ui::protocol::{SpanInput, ANALYSIS_JOB};
use tailscope_ui::timeline::{self, Mode, TimelineState};
use tailscope_ui::{Request, Response, SortColumn, TraceDetail, TraceQuery};

/// A trace of `n` spans: a root, agent steps of 100 spans each (llm, tool, db calls,
/// some with children), sequential, with a critical path through every step.
fn big_trace(n: usize) -> TraceDetail {
    let steps = n / 100;
    let step_ns = 2_000_000i64;
    let mut spans = Vec::with_capacity(n);
    spans.push(SpanInput {
        span_id: "root".into(),
        name: "agent.run".into(),
        service: "agent".into(),
        end_ns: steps as i64 * step_ns,
        ..SpanInput::default()
    });
    let mut sections = Vec::new();
    let causes = [
        Cause::Decode,
        Cause::Tool,
        Cause::Db,
        Cause::Retrieval,
        Cause::Queue,
    ];
    for s in 0..steps {
        let t0 = s as i64 * step_ns;
        let step = format!("s{s}");
        spans.push(SpanInput {
            span_id: step.clone(),
            parent_span_id: Some("root".into()),
            name: format!("step {s}"),
            service: "agent".into(),
            start_ns: t0,
            end_ns: t0 + step_ns - 1000,
            ..SpanInput::default()
        });
        for k in 0..49 {
            let a = t0 + k * 40_000;
            let id = format!("s{s}c{k}");
            spans.push(SpanInput {
                span_id: id.clone(),
                parent_span_id: Some(step.clone()),
                name: format!("chat gpt-4o {k}"),
                service: "llm".into(),
                start_ns: a,
                end_ns: a + 39_000,
                ..SpanInput::default()
            });
            spans.push(SpanInput {
                span_id: format!("{id}g"),
                parent_span_id: Some(id.clone()),
                name: "http POST".into(),
                service: "llm".into(),
                start_ns: a + 1000,
                end_ns: a + 38_000,
                ..SpanInput::default()
            });
            sections.push((id, a, a + 39_000, causes[k as usize % causes.len()]));
        }
    }
    while spans.len() < n {
        let k = spans.len();
        spans.push(SpanInput {
            span_id: format!("x{k}"),
            parent_span_id: Some("root".into()),
            name: "background".into(),
            start_ns: 0,
            end_ns: 1000,
            ..SpanInput::default()
        });
    }
    spans.truncate(n);
    TraceDetail::build("bench".into(), spans, &sections)
}

/// The nearest-rank p50 and p99 of frame times (NaN for none).
fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| tailscope_model::stats::percentile(&v, p).unwrap_or(f64::NAN);
    (at(50.0), at(99.0))
}

fn render(detail: &TraceDetail, mode: Mode, zoom_in: bool, frames: usize) -> (f64, f64, usize) {
    let ctx = egui::Context::default();
    let rows: Vec<usize> = (0..detail.spans.len()).collect();
    let mut st = TimelineState::fit(detail);
    st.mode = mode;
    if zoom_in {
        let mid = f64::midpoint(st.start, st.end);
        let w = (st.end - st.start) / 1000.0;
        st.start = mid - w / 2.0;
        st.end = mid + w / 2.0;
        st.top = 500.0;
    }
    let mut times = Vec::with_capacity(frames);
    let mut drawn = 0;
    for f in 0..frames + 10 {
        // Pan a little each frame so nothing is served from last frame's layout.
        let dx = (st.end - st.start) * 0.001 * if f % 2 == 0 { 1.0 } else { -1.0 };
        st.pan(dx);
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1600.0, 1000.0),
            )),
            ..egui::RawInput::default()
        };
        let t = Instant::now();
        let out = ctx.run(input, |ctx| {
            egui::CentralPanel::default().show(ctx, |ui| {
                drawn = timeline::show(ui, detail, &rows, &mut st, Some(3), &[]).drawn;
            });
        });
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        std::hint::black_box(prims);
        if f >= 10 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (m, p) = percentiles(times);
    (m, p, drawn)
}

const SORTS: [SortColumn; 4] = [
    SortColumn::Duration,
    SortColumn::Start,
    SortColumn::Ttft,
    SortColumn::Spans,
];

fn page(offset: usize, sort: SortColumn, where_sql: &str, generation: u64) -> Request {
    Request::Traces(TraceQuery {
        offset,
        limit: tailscope_ui::PAGE,
        sort,
        descending: true,
        text: String::new(),
        where_sql: where_sql.to_owned(),
        has_value: None,
        generation,
    })
}

/// The GUI worker over `store` on its own thread; with `stats` it polls the store for
/// new spans every second, as with the collector on.
fn start_worker(
    store: Store,
    db: &std::path::Path,
    stats: Option<Arc<IngestStats>>,
) -> anyhow::Result<(tailscope_ui::Link, std::thread::JoinHandle<()>)> {
    let (link, wl) = tailscope_ui::link(64);
    let mut worker = Worker::new(store, db.display().to_string(), wl, Arc::new(|| {}));
    if let Some(s) = stats {
        worker = worker.with_collector(s, "-".into(), "-".into(), None);
    }
    let h = std::thread::Builder::new()
        .name("bench-worker".into())
        .spawn(move || worker.run())?;
    Ok((link, h))
}

/// When the analysis thread's runs started (and over how many spans), ended and
/// landed, as the UI sees them.
#[derive(Default)]
struct Log {
    started: Vec<(Instant, u64)>,
    ended: Vec<Instant>,
    landed: Vec<Instant>,
}

impl Log {
    /// Notes an unprompted response; returns the others.
    fn note(&mut self, r: Response) -> Option<Response> {
        let now = Instant::now();
        match r {
            Response::Progress(p) if p.job == ANALYSIS_JOB => {
                if p.done {
                    self.ended.push(now);
                } else {
                    // "analysing N spans"
                    let spans = p
                        .message
                        .split_whitespace()
                        .find_map(|w| w.parse().ok())
                        .unwrap_or(0);
                    self.started.push((now, spans));
                }
            }
            Response::StoreChanged => self.landed.push(now),
            Response::Error(e) => panic!("the worker failed: {e}"),
            Response::Collector(_) | Response::Progress(_) => {}
            other => return Some(other),
        }
        None
    }

    fn recv(&mut self, link: &tailscope_ui::Link) -> anyhow::Result<Option<Response>> {
        let r = link
            .responses
            .recv()
            .map_err(|_| anyhow::anyhow!("the worker stopped"))?;
        Ok(self.note(r))
    }

    /// Sends a request and times its answer.
    fn ask(&mut self, link: &tailscope_ui::Link, r: Request) -> (Response, Duration) {
        let t = Instant::now();
        link.requests.send(r).expect("worker alive");
        loop {
            if let Some(r) = self.recv(link).expect("worker alive") {
                return (r, t.elapsed());
            }
        }
    }

    /// Waits for results landing after `since`.
    fn wait_landed(&mut self, link: &tailscope_ui::Link, since: Instant) -> anyhow::Result<()> {
        while !self.landed.iter().any(|&t| t >= since) {
            self.recv(link)?;
        }
        Ok(())
    }

    /// Waits until a run over at least `spans` spans has ended; returns when its
    /// results landed (`StoreChanged` comes before the run's end).
    fn wait_covering(&mut self, link: &tailscope_ui::Link, spans: u64) -> anyhow::Result<Instant> {
        loop {
            if let Some(&(s, _)) = self.started.iter().find(|(_, n)| *n >= spans) {
                if self.ended.iter().any(|&e| e >= s) {
                    let landed = self.landed.iter().rev().find(|&&l| l >= s);
                    return landed.copied().ok_or_else(|| {
                        anyhow::anyhow!("the run over the new spans found nothing new")
                    });
                }
            }
            self.recv(link)?;
        }
    }
}

/// Appends `batch`'s spans through `writer` at `rate` spans/s (a chunk every 50 ms);
/// returns the spans stored, the seconds it took, and when the last was committed.
fn append_live(writer: &Writer, batch: Batch, rate: f64) -> anyhow::Result<(usize, f64, Instant)> {
    let Batch {
        resources, spans, ..
    } = batch;
    let chunk = ((rate / 20.0) as usize).max(1);
    let mut stored = 0usize;
    let t = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    let mut it = spans.into_iter().peekable();
    let mut k = 0u32;
    while it.peek().is_some() {
        acks.push_back(writer.submit_waiting(Batch {
            resources: resources.clone(),
            spans: it.by_ref().take(chunk).collect(),
            ..Batch::default()
        }));
        // Keep at most a second of chunks in flight.
        while acks.len() > 20 {
            if let Some(a) = acks.pop_front() {
                stored += a.recv()??.spans;
            }
        }
        k += 1;
        let due = t + Duration::from_millis(50) * k;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    for a in acks {
        stored += a.recv()??.spans;
    }
    Ok((stored, t.elapsed().as_secs_f64(), Instant::now()))
}

/// GUI benchmark: frame times of a 100,000-span trace, then the GUI worker's requests
/// over a store of about SPANS_M million spans, alone and while a writer appends.
#[derive(Parser)]
#[command(name = "gui-bench")]
struct Args {
    /// Frames rendered per view.
    #[arg(default_value_t = 200)]
    frames: usize,
    /// Millions of spans in the store.
    #[arg(default_value_t = 1.0)]
    spans_m: f64,
    /// Seconds of appending while the worker pages traces.
    #[arg(default_value_t = 10.0)]
    seconds: f64,
    /// Spans per second appended meanwhile.
    #[arg(default_value_t = 20_000.0)]
    rate: f64,
}

fn main() -> anyhow::Result<()> {
    let Args {
        frames,
        spans_m: target_m,
        seconds,
        rate,
    } = Args::parse();

    let t = Instant::now();
    let detail = big_trace(100_000);
    println!(
        "built a {}-span trace in {:.0} ms",
        detail.spans.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for (mode, name) in [(Mode::Waterfall, "waterfall"), (Mode::Flame, "flame graph")] {
        for zoom_in in [false, true] {
            let (med, p99, drawn) = render(&detail, mode, zoom_in, frames);
            println!(
                "{name:<12} {:<10} frame (run + tessellate, 1600x1000): median {med:.2} ms, p99 {p99:.2} ms, {drawn} spans drawn ({frames} frames)",
                if zoom_in { "zoomed in" } else { "zoomed out" }
            );
        }
    }

    // A store with ~1M spans, through the writer, analysed, then paged by the worker.
    let dir = std::env::temp_dir().join(format!("tailscope-gui-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.duckdb");
    let probe = generate(&WorkloadConfig {
        conversations: 20,
        ..WorkloadConfig::default()
    });
    let per_conv = probe.batch.spans.len() as f64 / 20.0;
    let conversations = ((target_m * 1e6) / per_conv).ceil() as usize;
    let t = Instant::now();
    let w = generate(&WorkloadConfig {
        conversations,
        ..WorkloadConfig::default()
    });
    let n_spans = w.batch.spans.len();
    println!(
        "generated {conversations} conversations, {n_spans} spans in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let store = Store::open(&db)?;
    let writer = store.writer(WriterConfig::default())?;
    let t = Instant::now();
    let Batch {
        resources,
        spans,
        metrics,
        ..
    } = w.batch;
    let mut acks = vec![writer.submit_waiting(Batch {
        resources: resources.clone(),
        metrics,
        ..Batch::default()
    })];
    let mut it = spans.into_iter().peekable();
    while it.peek().is_some() {
        acks.push(writer.submit_waiting(Batch {
            resources: resources.clone(),
            spans: it.by_ref().take(16_384).collect(),
            ..Batch::default()
        }));
    }
    for a in acks {
        a.recv()??;
    }
    writer.close()?;
    println!(
        "stored {n_spans} spans in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The worker starts on the unanalysed store: its overview is answered from the
    // (empty) stored results while the analysis thread runs.
    let (link, h) = start_worker(store, &db, None)?;
    let mut log = Log::default();
    let t = Instant::now();
    let (r, first) = log.ask(&link, Request::Overview);
    let Response::Overview(o) = r else {
        anyhow::bail!("overview failed: {r:?}")
    };
    println!(
        "first overview before any analysis (traces {}): {:.1} ms",
        o.traces,
        first.as_secs_f64() * 1e3
    );
    log.wait_landed(&link, t)?;
    let (r, _) = log.ask(&link, Request::Overview);
    let traces = match r {
        Response::Overview(o) => o.traces,
        other => anyhow::bail!("overview failed: {other:?}"),
    };
    println!(
        "analysed {traces} traces and loaded the overview in {:.1} s (analysis thread)",
        t.elapsed().as_secs_f64()
    );
    let (_, first) = log.ask(&link, page(0, SortColumn::Duration, "", 0));
    println!(
        "first traces page (builds the per-trace list over {n_spans} spans): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    let n = traces as usize;
    for (k, sort) in SORTS.into_iter().cycle().take(40).enumerate() {
        let offset = (k * 7919 * tailscope_ui::PAGE) % n.max(1);
        let (r, d) = log.ask(&link, page(offset, sort, "", k as u64 + 1));
        assert!(matches!(r, Response::Traces(_)), "{r:?}");
        times.push(d.as_secs_f64() * 1e3);
    }
    let (m, p) = percentiles(times);
    println!("traces page fetch ({} rows, random offsets, 4 sorts, {n} traces / {n_spans} spans): median {m:.1} ms, p99 {p:.1} ms", tailscope_ui::PAGE);
    let mut times = Vec::new();
    for k in 0..10 {
        let (r, d) = log.ask(
            &link,
            page(
                0,
                SortColumn::Duration,
                "duration_ns > 1e9 AND spans > 5",
                100 + k,
            ),
        );
        assert!(matches!(r, Response::Traces(_)), "{r:?}");
        times.push(d.as_secs_f64() * 1e3);
    }
    let (m, p) = percentiles(times);
    println!("traces page with a SQL WHERE filter: median {m:.1} ms, p99 {p:.1} ms");
    drop(link);
    let _ = h.join();

    // Spans to append live, generated up front (another seed, an hour later).
    let live_spans = (rate * seconds) as usize;
    let t = Instant::now();
    let live = generate(&WorkloadConfig {
        seed: 4242,
        conversations: ((live_spans as f64) / per_conv).ceil() as usize,
        start_ns: WorkloadConfig::default().start_ns + 3_600_000_000_000,
        ..WorkloadConfig::default()
    });
    println!(
        "generated {} spans to append live in {:.1} s",
        live.batch.spans.len(),
        t.elapsed().as_secs_f64()
    );

    // (a) Opening the analysed store: the first overview comes from the stored results.
    let t = Instant::now();
    let store = Store::open(&db)?;
    let writer = store.writer(WriterConfig::default())?;
    let (link, h) = start_worker(store, &db, Some(Arc::new(IngestStats::default())))?;
    let mut log = Log::default();
    let (r, _) = log.ask(&link, Request::Overview);
    let Response::Overview(o) = r else {
        anyhow::bail!("overview failed: {r:?}")
    };
    println!(
        "opened the analysed store and got the first overview ({} traces) in {:.1} ms",
        o.traces,
        t.elapsed().as_secs_f64() * 1e3
    );

    // (b) Traces pages while a writer appends spans at `rate` into the same store.
    let appending = std::thread::Builder::new()
        .name("bench-live-writer".into())
        .spawn(move || append_live(&writer, live.batch, rate))?;
    let mut times = Vec::new();
    let mut k = 0usize;
    while !appending.is_finished() {
        let offset = (k * 7919 * tailscope_ui::PAGE) % n.max(1);
        let (r, d) = log.ask(&link, page(offset, SORTS[k % 4], "", 1000 + k as u64));
        assert!(matches!(r, Response::Traces(_)), "{r:?}");
        times.push(d.as_secs_f64() * 1e3);
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (stored, secs, stopped) = appending
        .join()
        .map_err(|_| anyhow::anyhow!("the live writer panicked"))??;
    let pages = times.len();
    let (m, p) = percentiles(times);
    println!(
        "traces page fetch while {stored} spans arrive at {:.0} spans/s ({secs:.1} s): median {m:.1} ms, p99 {p:.1} ms ({pages} pages, {} analyses landed meanwhile)",
        stored as f64 / secs,
        log.landed.len()
    );

    // (c) From the last span committed to its analysis landing.
    let landed = log.wait_covering(&link, o.spans + stored as u64)?;
    println!(
        "the last spans showed up analysed (StoreChanged) {:.1} s after they stopped arriving",
        landed.saturating_duration_since(stopped).as_secs_f64()
    );
    drop(link);
    let _ = h.join();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
