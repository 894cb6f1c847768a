//! GUI tests: egui_kittest drives the real views over a generated store answered by the
//! real worker thread (store, analysis), and `tailscope gui --screenshot` renders every
//! view in a real window under Xvfb.

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tailscope::gui::analysis::Hook;
use tailscope::gui::worker::Worker;
use tailscope_ingest::otlp;
use tailscope_model::Batch;
use tailscope_samples::{generate, WorkloadConfig};
use tailscope_store::{Store, WriterConfig};
use tailscope_ui::protocol::ANALYSIS_JOB;
use tailscope_ui::{App, Link, Request, Response, TraceQuery, View};

/// A store with a small generated workload, ingested through OTLP normalisation and
/// analysed, as `tailscope demo` does.
fn generated_store(dir: &Path, conversations: usize) -> PathBuf {
    let db = ingested_store(dir, conversations);
    let store = Store::open(&db).unwrap();
    tailscope_analysis::analyze_and_store(&store, tailscope_analysis::Options::default()).unwrap();
    db
}

/// A real window needs Xvfb and xvfb-run, which `scripts/setup` installs; a test that
/// needs them fails with that reason rather than passing without a window.
fn require_xvfb() {
    let ok = std::process::Command::new("sh")
        .args(["-c", "command -v Xvfb && command -v xvfb-run"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "Xvfb and xvfb-run are not installed: run scripts/setup (it installs the Debian package xvfb)"
    );
}

/// A store with a small generated workload, ingested through OTLP normalisation, not
/// analysed.
fn ingested_store(dir: &Path, conversations: usize) -> PathBuf {
    let db = dir.join("gui.duckdb");
    let w = generate(&WorkloadConfig::small(11, conversations));
    let store = Store::open(&db).unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    let Batch {
        resources,
        spans,
        metrics,
        ..
    } = w.batch;
    let (m, _) = otlp::metrics_to_model(&otlp::metrics_from_model(&Batch {
        resources: resources.clone(),
        metrics,
        ..Batch::default()
    }));
    let (t, _) = otlp::traces_to_model(&otlp::traces_from_model(&Batch {
        resources,
        spans,
        ..Batch::default()
    }));
    writer.submit_waiting(m).recv().unwrap().unwrap();
    writer.submit_waiting(t).recv().unwrap().unwrap();
    writer.close().unwrap();
    db
}

fn harness(db: &Path) -> Harness<'static, App> {
    harness_and_worker(db).0
}

/// The harness and its worker thread, which ends (closing the store) once the harness
/// is dropped.
fn harness_and_worker(db: &Path) -> (Harness<'static, App>, std::thread::JoinHandle<()>) {
    let store = Store::open(db).unwrap();
    let (ui_link, worker_link) = tailscope_ui::link(64);
    let w = Worker::new(
        store,
        db.display().to_string(),
        worker_link,
        Arc::new(|| {}),
    );
    let worker = std::thread::Builder::new()
        .name("test-worker".into())
        .spawn(move || w.run())
        .unwrap();
    let app = App::new(ui_link, db.display().to_string());
    let h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_state(|ctx, app: &mut App| app.ui(ctx), app);
    (h, worker)
}

/// Steps frames until every request is answered.
fn settle(h: &mut Harness<'static, App>) {
    for _ in 0..1500 {
        h.step();
        if h.state().pending() == 0 {
            h.run_steps(3);
            if h.state().pending() == 0 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the worker did not answer: {:?}", h.state().errors());
}

#[test]
fn gui_overview_slowest_trace_tree_and_finding() {
    let dir = tempfile::tempdir().unwrap();
    let db = generated_store(dir.path(), 10);
    let tail = {
        let store = Store::open(&db).unwrap();
        let (report, _) =
            tailscope_analysis::analyze_and_store(&store, tailscope_analysis::Options::default())
                .unwrap();
        report.tail
    };
    let mut h = harness(&db);
    settle(&mut h);
    let o = h.state().overview().cloned().expect("overview loaded");
    assert!(o.traces > 0 && o.spans > o.traces, "{o:?}");
    assert!(o.p50_ns <= o.p90_ns && o.p90_ns <= o.p99_ns);
    // one percentile definition: the overview's p50/p99 are analyze's
    assert_eq!(o.p50_ns as i64, tail.p50_ns, "p50: overview vs analyze");
    assert_eq!(o.p99_ns as i64, tail.p_ns, "p99: overview vs analyze");
    assert!(!o.cohorts.is_empty());
    assert_eq!(o.histogram.iter().map(|b| b.2).sum::<u64>(), o.traces);
    h.get_by_label("Why is the tail slow?");
    h.get_by_label("Top findings");
    assert!(h.state().errors().is_empty(), "{:?}", h.state().errors());

    // Select the slowest trace.
    h.get_by_label("Open the slowest trace").click();
    settle(&mut h);
    assert_eq!(h.state().view(), View::Trace);
    let d = h.state().trace_detail().cloned().expect("trace loaded");
    assert_eq!(Some(&d.trace_id), o.slowest_trace.as_ref());
    assert!(!d.sections.is_empty(), "the critical path is shown");
    let crit: i64 = d.sections.iter().map(|s| s.end_ns - s.start_ns).sum();
    assert_eq!(crit, d.by_cause_ns.iter().map(|c| c.1).sum::<i64>());

    // Collapse and expand the latency tree.
    let all = d.spans.len();
    h.get_by_label("Collapse all").click();
    h.run_steps(2);
    let folded = h.state().visible_rows();
    assert!(folded <= all);
    if d.spans.iter().any(|s| s.depth >= 2) {
        assert!(folded < all, "collapsing hides nested spans");
    }
    h.get_by_label("Expand all").click();
    h.run_steps(2);
    assert_eq!(h.state().visible_rows(), all);

    // Click a nested span's row in the latency tree: the span panel shows it.
    let nested = d
        .spans
        .iter()
        .take(5)
        .filter(|s| s.depth >= 1 && s.input.name != d.root)
        .max_by_key(|s| s.depth)
        .expect("the slowest trace has child spans");
    let name = nested.input.name.clone();
    h.get_all_by_label(&name).next().unwrap().click();
    h.run_steps(3);
    let sel = h.state().selected_span().expect("a span is selected");
    assert_eq!(sel.input.name, name);
    h.get_by_label(&format!("Attributes ({})", sel.input.attributes.len()));

    // Follow the top finding to its span.
    let f = o
        .findings
        .first()
        .cloned()
        .expect("the workload has findings");
    h.get_by_label("Overview").click();
    h.run_steps(2);
    h.get_by_label("Open span #1").click();
    settle(&mut h);
    assert_eq!(h.state().view(), View::Trace);
    assert_eq!(h.state().trace_detail().unwrap().trace_id, f.trace_id);
    let sel = h
        .state()
        .selected_span()
        .expect("the finding's span is selected");
    assert_eq!(sel.input.span_id, f.span_id);
    let heading = sel.input.name.clone();
    assert!(h.get_all_by_label(&heading).count() >= 1);
}

#[test]
fn gui_traces_table_conversation_metrics_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let db = generated_store(dir.path(), 10);
    let mut h = harness(&db);
    settle(&mut h);
    let o = h.state().overview().cloned().unwrap();

    // The traces table: every trace, slowest first, then sorted by start.
    h.get_by_label("Traces").click();
    settle(&mut h);
    assert_eq!(h.state().traces_total(), Some(o.traces as usize));
    let first = h.state().trace_row(0).cloned().expect("first page loaded");
    assert_eq!(Some(&first.trace_id), o.slowest_trace.as_ref());
    assert!(first.percentile >= 99.0);
    h.get_by_label("start").click();
    settle(&mut h);
    let n = (o.traces as usize).min(20);
    let starts: Vec<i64> = (0..n)
        .map(|i| h.state().trace_row(i).unwrap().start_ns)
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "sorted by start, latest first"
    );

    // Open a trace with a conversation, then its conversation, then a turn.
    let conv_trace = (0..n)
        .filter_map(|i| h.state().trace_row(i).cloned())
        .find(|r| r.conversation_id.is_some())
        .expect("generated traces carry conversation ids");
    h.get_by_label(&conv_trace.trace_id[..8]).click();
    settle(&mut h);
    assert_eq!(
        h.state().trace_detail().unwrap().trace_id,
        conv_trace.trace_id
    );
    h.get_by_label("Open conversation").click();
    settle(&mut h);
    assert_eq!(h.state().view(), View::Conversation);
    let c = h.state().conversation().cloned().unwrap();
    assert_eq!(
        Some(&c.conversation_id),
        conv_trace.conversation_id.as_ref()
    );
    assert!(!c.turns.is_empty());
    assert!(c.turns.windows(2).all(|w| w[0].start_ns <= w[1].start_ns));
    h.get_by_label(&format!("Conversation {}", c.conversation_id));
    h.get_by_label("Open turn 1").click();
    settle(&mut h);
    assert_eq!(
        h.state().trace_detail().unwrap().trace_id,
        c.turns[0].trace_id
    );

    // Metrics on the trace's time axis.
    h.get_by_label("Metrics").click();
    settle(&mut h);
    let m = h.state().metrics().cloned().expect("metrics window loaded");
    let d = h.state().trace_detail().unwrap();
    assert!(m.from_ns <= d.start_ns && m.to_ns >= d.end_ns);
    if o.metric_points > 0 {
        assert!(
            !m.series.is_empty(),
            "the workload's server metrics are shown"
        );
        // Canonical names from both sources of the workload: DCGM and vLLM.
        let names: Vec<&str> = m.series.iter().map(|s| s.canonical.as_str()).collect();
        for want in ["gpu.utilization", "inference.kv_cache.usage"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(m.series.iter().any(|s| s.origin == "dcgm"));
        assert!(m.series.iter().any(|s| s.origin == "vllm"));
        let (a, b) = m.band.expect("the trace's extent is shaded");
        assert_eq!((a, b), (d.start_ns, d.end_ns));
        assert!(m
            .series
            .iter()
            .all(|s| s.points.iter().all(|p| p[0] >= 0.0)));
        h.get_by_label("gpu.utilization  (ratio 0–1)");
    }

    // The SQL console.
    h.get_by_label("SQL").click();
    h.run_steps(2);
    h.get_by_label("Run (Ctrl+Enter)").click();
    settle(&mut h);
    let r = h.state().sql_result().cloned().expect("a result");
    assert_eq!(r.columns, ["root", "traces", "p99_ms"]);
    assert!(!r.rows.is_empty());
    let root = r.rows[0][0].clone();
    assert!(h.get_all_by_label(&root).count() >= 1);

    // A query that writes is refused, in one sentence.
    h.state_mut().run_sql("DELETE FROM spans");
    settle(&mut h);
    assert!(
        h.state().errors().iter().any(|e| e.contains("read-only")),
        "{:?}",
        h.state().errors()
    );
}

#[test]
fn gui_empty_store_says_where_to_send_traces() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.duckdb");
    let mut h = harness(&db);
    settle(&mut h);
    h.get_by_label("No traces yet");
    assert!(h
        .query_all_by_label_contains("OTEL_EXPORTER_OTLP_ENDPOINT")
        .next()
        .is_some());
}

/// Decodes a PNG and counts its distinct colours.
fn distinct_colours(path: &Path) -> (u32, u32, usize) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px).step_by(7) {
        colours.insert(p.to_vec());
    }
    (info.width, info.height, colours.len())
}

#[test]
fn gui_screenshot_renders_every_view_in_a_real_window() {
    require_xvfb();
    let dir = tempfile::tempdir().unwrap();
    let db = generated_store(dir.path(), 8);
    let shots = dir.path().join("shots");
    let out = std::process::Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1600x1000x24"])
        .arg(env!("CARGO_BIN_EXE_tailscope"))
        .arg("--db")
        .arg(&db)
        .args(["gui", "--screenshot"])
        .arg(&shots)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for v in View::ALL {
        let p = shots.join(format!("{}.png", v.slug()));
        assert!(p.is_file(), "{} missing", p.display());
        let (w, h, colours) = distinct_colours(&p);
        assert!(w >= 800 && h >= 500, "{}: {w}x{h}", p.display());
        assert!(
            colours > 8,
            "{} looks blank ({colours} colours)",
            p.display()
        );
    }
}

/// The Replay view over a store that `tailscope replay --scenario seed` wrote: the focus
/// conversation's turns under A and B, and its blocks evicted under A only.
#[test]
fn gui_replay_view_shows_a_vs_b_and_the_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("replay.duckdb");
    // Before any replay: the empty state names the command.
    {
        let (mut h, worker) = harness_and_worker(&db);
        settle(&mut h);
        h.get_by_label("Replay").click();
        settle(&mut h);
        assert!(h
            .query_all_by_label_contains("No replays yet — run `tailscope replay --scenario seed")
            .next()
            .is_some());
        // the store is closed before `tailscope replay` opens it
        drop(h);
        worker.join().unwrap();
    }
    let o = super::tailscope(&db, &["replay", "--scenario", "seed", "--repeats", "1"]);
    assert!(o.status.success(), "{}", super::stderr(&o));
    let mut h = harness(&db);
    settle(&mut h);
    h.get_by_label("Replay").click();
    settle(&mut h);
    settle(&mut h);
    let r = h
        .state()
        .replay()
        .cloned()
        .expect("the latest replay opens");
    assert_eq!(r.focus, "support-chat");
    assert_eq!(
        r.sides.iter().map(|s| s.side.as_str()).collect::<Vec<_>>(),
        ["A", "B"]
    );
    let focus = |side: &str| -> Vec<_> {
        r.turns
            .iter()
            .filter(|t| t.side == side && t.session_id == r.focus)
            .cloned()
            .collect()
    };
    let (a, b) = (focus("A"), focus("B"));
    assert!(a.len() >= 2 && a.len() == b.len(), "{a:?} {b:?}");
    // Turn 1: A re-prefills (no prefix hits), B reuses the cached prefix.
    let (a1, b1) = (
        a.iter().find(|t| t.turn == 1).unwrap(),
        b.iter().find(|t| t.turn == 1).unwrap(),
    );
    assert_eq!(a1.prefix_hit_tokens, 0);
    assert!(b1.prefix_hit_tokens > 0);
    assert!(a1.prefill_tokens > b1.prefill_tokens);
    let evicted = |side: &str| {
        r.evictions
            .iter()
            .filter(|e| e.side == side && e.owner_session == r.focus)
            .count()
    };
    assert!(evicted("A") > 0, "A evicts the focus conversation's blocks");
    assert_eq!(evicted("B"), 0, "B keeps them");
    // The table rows and the eviction count are on screen.
    for turn in &a {
        h.get_by_label(&format!("turn {}", turn.turn));
    }
    h.get_by_label(&format!(
        "evictions of the focus conversation's blocks: A {} · B 0",
        evicted("A")
    ));
    h.get_by_label("TTFT CDF, all turns");
}

/// Holds each analysis run at its start until the test lets it through, and counts runs.
#[derive(Default)]
struct Gate {
    runs: AtomicUsize,
    /// How many runs may pass.
    allowed: Mutex<usize>,
    moved: Condvar,
}

impl Gate {
    fn hook(self: &Arc<Self>) -> Hook {
        let g = Arc::clone(self);
        Arc::new(move || {
            let run = g.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let mut allowed = g.allowed.lock().unwrap();
            while *allowed < run {
                allowed = g.moved.wait(allowed).unwrap();
            }
        })
    }

    fn allow(&self, runs: usize) {
        *self.allowed.lock().unwrap() = runs;
        self.moved.notify_all();
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

/// The worker over `db` on its own thread, its analysis runs held at `gate`.
fn gated_worker(db: &Path, gate: &Arc<Gate>) -> (Link, std::thread::JoinHandle<()>) {
    let store = Store::open(db).unwrap();
    let (link, worker_link) = tailscope_ui::link(64);
    let w = Worker::new(
        store,
        db.display().to_string(),
        worker_link,
        Arc::new(|| {}),
    )
    .with_analysis_hook(gate.hook());
    let t = std::thread::Builder::new()
        .name("test-worker".into())
        .spawn(move || w.run())
        .unwrap();
    (link, t)
}

/// The worker's next response. A failure guard, not a measure: a worker that says
/// nothing for two minutes is blocked.
fn next(link: &Link) -> Response {
    link.responses
        .recv_timeout(Duration::from_secs(120))
        .expect("the worker said nothing for two minutes: it is blocked")
}

/// Whether an analysis progress report starts (false) or ends (true) a run; per-chunk
/// reports in between carry a fraction and are not either.
fn analysis_progress(r: &Response) -> Option<bool> {
    match r {
        Response::Progress(p) if p.job == ANALYSIS_JOB && (p.done || p.fraction.is_none()) => {
            Some(p.done)
        }
        _ => None,
    }
}

/// Waits for the start (`done` false) or the end of an analysis run.
fn wait_analysis(link: &Link, done: bool) {
    loop {
        let r = next(link);
        if let Response::Error(e) = &r {
            panic!("{e}");
        }
        if analysis_progress(&r) == Some(done) {
            return;
        }
    }
}

fn first_page() -> Request {
    Request::Traces(TraceQuery {
        limit: tailscope_ui::PAGE,
        descending: true,
        ..TraceQuery::default()
    })
}

/// The analysis runs beside the worker: while a run is held open, the overview (from
/// the stored results: spans but no traces yet) and a traces page are answered; the
/// results land after. A worker that analyses on its own thread answers nothing until
/// the run ends, which never happens while it is held.
#[test]
fn gui_worker_answers_while_the_analysis_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = ingested_store(dir.path(), 6);
    let gate = Arc::new(Gate::default());
    let (link, worker) = gated_worker(&db, &gate);
    // The start-up run begins and is held.
    wait_analysis(&link, false);
    link.requests.send(Request::Overview).unwrap();
    link.requests.send(first_page()).unwrap();
    let (mut overview, mut page) = (None, None);
    while overview.is_none() || page.is_none() {
        match next(&link) {
            Response::Overview(o) => overview = Some(o),
            Response::Traces(p) => page = Some(p),
            other => panic!("expected the answers before the analysis ends, got {other:?}"),
        }
    }
    let o = overview.unwrap();
    assert!(o.spans > 0, "{o:?}");
    assert_eq!(o.traces, 0, "nothing analysed yet: the overview says so");
    assert_eq!(page.unwrap().total, 0);
    // Let the run finish: the results land, then the progress ends.
    gate.allow(1);
    let mut landed = false;
    loop {
        let r = next(&link);
        match (&r, analysis_progress(&r)) {
            (Response::StoreChanged, _) => landed = true,
            (_, Some(true)) => break,
            (Response::Error(e), _) => panic!("{e}"),
            _ => {}
        }
    }
    assert!(landed, "the results land before the analysis progress ends");
    link.requests.send(Request::Overview).unwrap();
    link.requests.send(first_page()).unwrap();
    let Response::Overview(o) = next(&link) else {
        panic!("expected the overview")
    };
    assert!(o.traces > 0, "{o:?}");
    let Response::Traces(p) = next(&link) else {
        panic!("expected a traces page")
    };
    assert_eq!(
        p.total as u64, o.traces,
        "the trace list follows the new results"
    );
    drop(link);
    worker.join().unwrap();
    assert_eq!(gate.runs(), 1);
}

/// Ten "analyse now" requests during a held run are answered at once (with the stored
/// overview) and cause exactly one follow-up run. A worker that queues a run per
/// trigger starts a third as soon as the second ends, before the hang-up reaches it
/// (the analysis unit test checks the coalescing itself without this race).
#[test]
fn gui_worker_coalesces_analysis_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let db = ingested_store(dir.path(), 4);
    let gate = Arc::new(Gate::default());
    let (link, worker) = gated_worker(&db, &gate);
    wait_analysis(&link, false);
    for _ in 0..10 {
        link.requests.send(Request::Analyze).unwrap();
    }
    for _ in 0..10 {
        match next(&link) {
            Response::Overview(_) => {}
            other => panic!("expected the stored overview during the run, got {other:?}"),
        }
    }
    // The held run and its one follow-up pass.
    gate.allow(2);
    wait_analysis(&link, true);
    wait_analysis(&link, false);
    wait_analysis(&link, true);
    // A round trip to the worker, so that a third run, were one pending, has started.
    link.requests.send(Request::Overview).unwrap();
    while !matches!(next(&link), Response::Overview(_)) {}
    // The UI hangs up: the worker and its analysis thread end.
    drop(link);
    gate.allow(usize::MAX);
    worker.join().unwrap();
    assert_eq!(gate.runs(), 2, "runs for one start-up and ten requests");
}

/// Opening another store while a run is held answers with the new store's stored
/// overview at once; the old store's run finishes and both threads end with the worker.
#[test]
fn gui_worker_opens_another_store_while_the_analysis_runs() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db_a = ingested_store(a.path(), 4);
    let db_b = generated_store(b.path(), 4);
    let gate = Arc::new(Gate::default());
    let (link, worker) = gated_worker(&db_a, &gate);
    wait_analysis(&link, false);
    link.requests
        .send(Request::Open { db: db_b.clone() })
        .unwrap();
    let o = loop {
        let r = next(&link);
        match r {
            Response::Overview(o) => break o,
            // the switch, and the new store's run starting
            Response::StoreChanged => {}
            r if analysis_progress(&r) == Some(false) => {}
            other => panic!("expected the new store's overview, got {other:?}"),
        }
    };
    assert_eq!(o.store, db_b.display().to_string());
    assert!(o.traces > 0, "the new store's stored results: {o:?}");
    // The new store's start-up run begins (held too); let both through.
    gate.allow(usize::MAX);
    wait_analysis(&link, true);
    drop(link);
    worker.join().unwrap();
    assert_eq!(gate.runs(), 2, "one run per store");
}

/// Steps frames until the job is over (its done progress arrived).
fn settle_job(h: &mut Harness<'static, App>) {
    for _ in 0..6000 {
        h.step();
        if h.state().job().is_none() && h.state().pending() == 0 {
            h.run_steps(3);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the job did not finish: {:?}", h.state().errors());
}

/// A slow replica (`server.address` of replica 1) in most of the tail: the overview's
/// "what the slow traces share" panel lists what compare lists, and a click on a value
/// shows exactly the traces that have it.
#[test]
fn gui_shared_values_panel_filters_the_traces_table() {
    use super::compare::{store, workload, START_NS};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("skew.duckdb");
    let healthy = workload(101, 45, START_NS, None, 0.008);
    let slow = workload(102, 15, START_NS, None, 0.04).on_replica(1);
    store(&db, vec![healthy, slow]);
    let comparison = {
        let s = Store::open(&db).unwrap();
        tailscope_analysis::update(&s, &|_| {}).unwrap();
        tailscope_analysis::compare::compare(
            &s,
            &tailscope_analysis::compare::CompareOptions::default(),
        )
        .unwrap()
    };
    let mut h = harness(&db);
    settle(&mut h);
    let o = h.state().overview().cloned().expect("overview loaded");
    let shared = o.shared.clone().expect("the shared-values panel is filled");
    assert_eq!(shared.tail_traces as usize, comparison.tail_traces);
    let first = shared.values.first().expect("a value stands out");
    let top = &comparison.attributes[0];
    assert_eq!((&first.key, &first.value), (&top.key, &top.value));
    assert_eq!(first.excess_ns, top.excess_ns);
    h.get_by_label("What the slow traces share");
    let label = format!("{} = {}", first.key, first.value);
    h.get_by_label(&label).click();
    settle(&mut h);
    assert_eq!(h.state().view(), View::Traces);
    assert_eq!(
        h.state().value_filter(),
        Some(&(first.key.clone(), first.value.clone()))
    );
    h.get_by_label(&format!("only traces with {label}"));
    let filtered = h.state().traces_total().expect("filtered page");
    // every tail trace that has the value is listed, and not every trace has it
    assert!(
        filtered >= first.tail_traces as usize,
        "{filtered} < {first:?}"
    );
    assert!(filtered < o.traces as usize, "{filtered} of {}", o.traces);
    // the filter is compare's definition: the slowest traces with the value are the tail's
    let tail_with: usize = (0..filtered.min(tailscope_ui::PAGE))
        .filter_map(|i| h.state().trace_row(i))
        .filter(|r| r.duration_ns >= comparison.tail_from_ns)
        .count();
    assert_eq!(tail_with, first.tail_traces as usize);
    h.get_by_label("✕ Clear value filter").click();
    settle(&mut h);
    assert_eq!(h.state().value_filter(), None);
    assert_eq!(h.state().traces_total(), Some(o.traces as usize));
    assert!(h.state().errors().is_empty(), "{:?}", h.state().errors());
}

/// The overview's "what would move the p99 most" panel: a click ranks the operations,
/// the worker answers what `whatif --rank` gives, and the top operation is shown.
#[test]
fn gui_fix_first_panel_ranks_what_moves_the_tail() {
    use super::compare::{store, workload, START_NS};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fix.duckdb");
    let healthy = workload(103, 40, START_NS, None, 0.008);
    let slow = workload(104, 10, START_NS, None, 0.04).on_replica(1);
    store(&db, vec![healthy, slow]);
    let want = {
        let s = Store::open(&db).unwrap();
        tailscope_analysis::update(&s, &|_| {}).unwrap();
        tailscope_analysis::whatif::rank(&s, tailscope_analysis::Options::default()).unwrap()
    };
    assert!(!want.is_empty());
    let mut h = harness(&db);
    settle(&mut h);
    h.get_by_label("What would move the p99 most");
    assert!(h.state().fix_first().is_none(), "ranked only when asked");
    h.get_by_label("Rank operations").click();
    settle(&mut h);
    let got = h.state().fix_first().expect("the ranking arrived").to_vec();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (&g.operation, g.p_change_ns, g.ci_ns),
            (&w.target.name, w.p_change_ns, w.p_ci_ns)
        );
    }
    h.get_by_label(&got[0].operation);
    h.get_by_label("Rank again");
    assert!(h.state().errors().is_empty(), "{:?}", h.state().errors());
}

/// The trace view's "what if": the slowest trace's span with the most critical time
/// (not the root), made 50% faster and then instant from the span panel, shortens the
/// trace by what `whatif::span_whatif` re-walks; a span off the critical path made
/// instant changes nothing, and says so.
#[test]
fn gui_trace_view_what_if_a_span_changed() {
    use tailscope_analysis::whatif::{span_whatif, Change};
    let dir = tempfile::tempdir().unwrap();
    let db = generated_store(dir.path(), 10);
    let (trace_id, on_path, off_path, faster, instant) = {
        let store = Store::open(&db).unwrap();
        let (report, _) =
            tailscope_analysis::analyze_and_store(&store, tailscope_analysis::Options::default())
                .unwrap();
        let t = report
            .traces
            .iter()
            .max_by_key(|t| t.duration_ns)
            .expect("traces")
            .clone();
        let spans = store
            .load_spans(tailscope_store::Traces::Ids(std::slice::from_ref(
                &t.trace_id,
            )))
            .unwrap();
        let parent: std::collections::HashMap<_, _> = spans
            .iter()
            .map(|s| (s.span_id, s.parent_span_id))
            .collect();
        let root = spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .unwrap()
            .span_id;
        // critical time per span (its own sections), and every span on the path: those
        // with sections and their ancestors
        let mut critical: std::collections::HashMap<_, i64> = std::collections::HashMap::new();
        let mut on_path = std::collections::HashSet::new();
        for sec in &t.sections {
            *critical.entry(sec.span_id).or_default() += sec.end_ns - sec.start_ns;
            let mut at = Some(sec.span_id);
            while let Some(id) = at.filter(|id| on_path.insert(*id)) {
                at = parent.get(&id).copied().flatten();
            }
        }
        let on = critical
            .iter()
            .filter(|(id, _)| **id != root)
            .max_by_key(|(id, ns)| (**ns, **id))
            .expect("a child span on the critical path")
            .0
            .to_hex();
        let off = spans
            .iter()
            .find(|s| !on_path.contains(&s.span_id))
            .map(|s| s.span_id.to_hex());
        let faster = span_whatif(&store, &t.trace_id, &on, Change::SpeedUp(0.5)).unwrap();
        let instant = span_whatif(&store, &t.trace_id, &on, Change::Duration(0)).unwrap();
        (t.trace_id, on, off, faster, instant)
    };
    println!("span {on_path} of {trace_id}: 50% faster {faster:?}, instant {instant:?}; off the path: {off_path:?}");
    assert!(faster.after_ns < faster.before_ns, "{faster:?}");
    assert!(
        instant.after_ns < faster.after_ns,
        "{instant:?} vs {faster:?}"
    );
    let mut h = harness(&db);
    settle(&mut h);
    h.state_mut().open_trace(&trace_id, Some(&on_path));
    settle(&mut h);
    assert_eq!(
        h.state().selected_span().map(|s| s.input.span_id.clone()),
        Some(on_path.clone())
    );
    h.get_by_label("What if this span were…");
    assert!(
        h.state().span_whatif_result().is_none(),
        "asked only on a click"
    );
    for (label, want) in [("50% faster", faster), ("instant", instant)] {
        h.get_by_label(label).click();
        settle(&mut h);
        let got = h.state().span_whatif_result().cloned().expect("answered");
        assert_eq!(
            (got.span_id.as_str(), got.before_ns, got.after_ns),
            (on_path.as_str(), want.before_ns, want.after_ns),
            "{label}"
        );
        assert!(h
            .query_all_by_label_contains(&format!("{label}: the trace"))
            .next()
            .is_some());
    }
    if let Some(off) = off_path {
        h.state_mut().open_trace(&trace_id, Some(&off));
        settle(&mut h);
        h.get_by_label("instant").click();
        settle(&mut h);
        let got = h.state().span_whatif_result().cloned().expect("answered");
        assert_eq!((got.span_id, got.after_ns), (off, got.before_ns));
        assert!(h
            .query_all_by_label_contains("no change: off the critical path")
            .next()
            .is_some());
    }
    assert!(h.state().errors().is_empty(), "{:?}", h.state().errors());
}

/// The compare-periods view: the default halves, then a quiet pair of periods (no
/// change) and a pair across a planted decode drift (the headline names the model).
#[test]
fn gui_compare_periods_names_the_drift() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drift.duckdb");
    let (t1, t2) = super::compare::drift_store(&db);
    tailscope_analysis::update(&Store::open(&db).unwrap(), &|_| {}).unwrap();
    let mut h = harness(&db);
    settle(&mut h);
    h.get_by_label("Compare periods").click();
    settle(&mut h);
    let d = h
        .state()
        .diff()
        .cloned()
        .expect("the default halves are compared");
    assert!(d.before_traces > 0 && d.after_traces > 0, "{d:?}");
    assert!(d.before_text.contains("..") && d.after_text.contains(".."));
    h.get_by_label(&d.headline);

    // quiet: A against B
    let mut h2 = h;
    h2.state_mut()
        .compare_periods(Some((format!("..{t1}"), format!("{t1}..{t2}"))));
    settle(&mut h2);
    let quiet = h2.state().diff().cloned().unwrap();
    assert!(
        quiet.headline.starts_with("No significant change"),
        "{}",
        quiet.headline
    );
    assert!(quiet.changes.iter().all(|c| !c.significant));
    assert!(h2
        .query_all_by_label_contains("No significant change (")
        .next()
        .is_some());

    // drift: before t2 against after
    h2.state_mut()
        .compare_periods(Some((format!("..{t2}"), format!("{t2}.."))));
    settle(&mut h2);
    let drift = h2.state().diff().cloned().unwrap();
    assert!(
        drift.headline.contains("Llama-3.1-8B-Instruct") && drift.headline.contains("decode"),
        "{}",
        drift.headline
    );
    let first = drift.changes.first().unwrap();
    assert!(first.significant, "{first:?}");
    assert!(drift.changes.iter().any(|c| c.significant
        && c.metric == "decode_ns_per_token"
        && c.subject.contains("Llama")));
    h2.get_by_label(&drift.headline);
    assert!(h2
        .query_all_by_label("decode_ns_per_token")
        .next()
        .is_some());
    assert!(h2.state().errors().is_empty(), "{:?}", h2.state().errors());
}

/// Replay from the window: the conversation view's Replay A/B opens the form with the
/// seed configurations; Run replays the conversation on the worker's job thread with
/// progress and the result opens in the Replay view; a second run is cancelled.
#[test]
fn gui_replay_from_the_window_runs_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let db = generated_store(dir.path(), 6);
    let mut h = harness(&db);
    settle(&mut h);
    h.get_by_label("Conversation").click();
    settle(&mut h);
    let conv = h
        .state()
        .conversations()
        .and_then(|l| l.iter().max_by_key(|c| c.evictions).cloned())
        .expect("conversations listed");
    h.state_mut().open_conversation(&conv.conversation_id);
    settle(&mut h);
    h.get_by_label("Replay A/B…").click();
    settle(&mut h);
    assert_eq!(h.state().view(), View::Replay);
    h.get_by_label("Run a replay");
    let r = h.state().replay_request().clone();
    assert_eq!(r.conversation_id, conv.conversation_id);
    assert!(
        r.a_toml.contains("cache_capacity_blocks = 160"),
        "{}",
        r.a_toml
    );
    assert!(
        r.b_toml.contains("cache_capacity_blocks = 512"),
        "{}",
        r.b_toml
    );
    h.get_by_label("Run replay").click();
    h.run_steps(2);
    let mut saw_progress = false;
    for _ in 0..6000 {
        h.step();
        if h.state().job().is_some_and(|j| j.job == "replay") {
            saw_progress = true;
        }
        if h.state().job().is_none() && h.state().pending() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_progress, "the replay reports progress");
    settle(&mut h);
    settle(&mut h);
    assert!(
        h.state()
            .errors()
            .iter()
            .any(|e| e.starts_with("replay: saved replay")),
        "{:?}",
        h.state().errors()
    );
    let rep = h.state().replay().cloned().expect("the new replay opens");
    assert_eq!(rep.focus, conv.conversation_id);
    assert_eq!(
        rep.sides
            .iter()
            .map(|s| s.side.as_str())
            .collect::<Vec<_>>(),
        ["A", "B"]
    );
    assert!(rep
        .turns
        .iter()
        .any(|t| t.session_id == conv.conversation_id));
    h.get_by_label("TTFT CDF, all turns");

    // a second run, cancelled at once
    let replays = h.state().replays().map_or(0, <[_]>::len);
    h.state_mut().open_replay_form(&conv.conversation_id);
    h.run_steps(2);
    h.get_by_label("Run replay").click();
    h.run_steps(1);
    h.state().cancel_job();
    settle_job(&mut h);
    assert!(
        h.state()
            .errors()
            .iter()
            .any(|e| e == "replay: replay cancelled"),
        "{:?}",
        h.state().errors()
    );
    h.state_mut().reload_replays();
    settle(&mut h);
    assert_eq!(
        h.state().replays().map_or(0, <[_]>::len),
        replays,
        "nothing saved"
    );
}

/// A store the GUI holds, with its collector and with `--no-collector` (browsing
/// only), is readable from a second process: `tailscope query` goes through the
/// window's process via `<store>.live`, and `tailscope import` writes through the
/// window's one writer.
#[test]
fn gui_holding_a_store_answers_queries_from_another_process() {
    use std::os::unix::process::CommandExt;
    require_xvfb();
    for mode in [
        &["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"][..],
        &["--no-collector"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = generated_store(dir.path(), 4);
        let want = {
            let s = tailscope_store::Store::open(&db).unwrap();
            s.counts().unwrap().spans
        };
        let mut gui = std::process::Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x800x24"])
            .arg(env!("CARGO_BIN_EXE_tailscope"))
            .arg("--db")
            .arg(&db)
            .arg("gui")
            .args(mode)
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // its own process group: stopping it stops xvfb-run, the window and Xvfb
            .process_group(0)
            .spawn()
            .unwrap();
        let live = tailscope::live::info_path(&db);
        let t = std::time::Instant::now();
        while !live.exists() && t.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let tailscope = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_tailscope"))
                .arg("--db")
                .arg(&db)
                .args(args)
                .output()
                .unwrap()
        };
        let count = "SELECT count(*) AS n FROM spans";
        let out = tailscope(&["query", "--format", "csv", count]);
        // a file imported through the window's process, then counted there again
        let otlp = dir.path().join("more.pb");
        let more = generate(&WorkloadConfig::small(99, 1)).batch;
        let added = more.spans.len();
        let request = otlp::traces_from_model(&Batch {
            resources: more.resources,
            spans: more.spans,
            ..Batch::default()
        });
        std::fs::write(&otlp, prost::Message::encode_to_vec(&request)).unwrap();
        let import = tailscope(&["import", otlp.to_str().unwrap()]);
        let after = tailscope(&["query", "--format", "csv", count]);
        // stop the window, xvfb-run and its Xvfb (the whole process group)
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", gui.id())])
            .status();
        let _ = gui.wait();
        assert!(
            live.exists() || out.status.success(),
            "the GUI ({mode:?}) published no live access"
        );
        assert!(
            out.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("n\n{want}\n"));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("held by a running tailscope process")
        );
        assert!(
            import.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&after.stdout),
            format!("n\n{}\n", want + added as u64),
            "{mode:?}: {}",
            String::from_utf8_lossy(&after.stderr)
        );
    }
}

/// Makes the analysis' answer for the slowest trace with a primary cause ambiguous, as
/// the analysis writes one (design.md "Evidence levels"): its primary cause and that
/// cause's critical-path sections keep their cause, become `ambiguous` and name `alt`
/// as the alternative; so does the costliest finding. (The generated workload's
/// telemetry settles its causes, so its own analysis need not give an ambiguous
/// answer.) Returns (trace id, primary cause, alt).
fn make_one_ambiguous(db: &Path) -> (String, tailscope_model::Cause, tailscope_model::Cause) {
    use tailscope_model::Cause;
    let store = Store::open(db).unwrap();
    // The slowest trace the analysis gives a primary cause.
    let slowest = store
        .trace_rows()
        .unwrap()
        .into_iter()
        .filter(|r| r.primary_cause.is_some())
        .max_by(|a, b| {
            a.duration_ns
                .cmp(&b.duration_ns)
                .then_with(|| b.trace_id.cmp(&a.trace_id))
        })
        .expect("the workload has traces with a primary cause");
    let primary = slowest
        .primary_cause
        .as_deref()
        .and_then(Cause::parse)
        .expect("a known cause");
    let alt = if primary == Cause::KvEviction {
        Cause::Queue
    } else {
        Cause::KvEviction
    };
    let (id, p, a) = (&slowest.trace_id, primary.as_str(), alt.as_str());
    // the sections are stored compact (schema v10): codes and a bit set
    let (ambiguous, alts, cause) = (
        2,
        tailscope_model::CauseSet::of(&[alt]).bits(),
        primary as u8,
    );
    store
        .execute_batch(&format!(
            r#"UPDATE trace_analysis SET cause_evidence = '{{"{p}": {{"evidence": "ambiguous", "alternatives": ["{a}"]}}}}'
                 WHERE trace_id = '{id}';
               UPDATE path_sections SET evidence = {ambiguous}, alternatives = {alts}
                 WHERE trace_id = '{id}'::UUID AND cause = {cause};
               UPDATE findings SET evidence_level = 'ambiguous', alternatives = '{a}'
                 WHERE (trace_id, span_id, kind) IN (SELECT (trace_id, span_id, kind) FROM findings
                   ORDER BY estimated_cost_ns DESC, trace_id, span_id LIMIT 1);"#
        ))
        .unwrap();
    (slowest.trace_id, primary, alt)
}

#[test]
fn gui_trace_view_and_findings_show_evidence_levels() {
    use tailscope_model::{CauseSet, Evidence};
    use tailscope_ui::palette::cause_label;
    let dir = tempfile::tempdir().unwrap();
    let db = generated_store(dir.path(), 10);
    let (trace_id, primary, alt) = make_one_ambiguous(&db);
    let mut h = harness(&db);
    settle(&mut h);
    let o = h.state().overview().cloned().expect("overview loaded");

    // Findings: each row names its level; the ambiguous one its alternative too.
    let top = o
        .findings
        .first()
        .cloned()
        .expect("the workload has findings");
    assert_eq!(top.evidence_level, Some(Evidence::Ambiguous), "{top:?}");
    assert_eq!(top.alternatives, CauseSet::of(&[alt]));
    let or_alt = format!("or {}", cause_label(alt));
    assert!(
        h.get_all_by_label("ambiguous").count() >= 1,
        "the top finding's badge"
    );
    assert!(h.get_all_by_label(&or_alt).count() >= 1, "its alternative");
    for f in &o.findings[1..] {
        // the analysis' own levels, as it stored them
        let level = f.evidence_level.expect("every finding has a level");
        assert!(
            h.get_all_by_label(level.as_str()).count() >= 1,
            "a {} finding shows its level: {f:?}",
            level.as_str()
        );
    }

    // The traces table (slowest first) marks the ambiguous primary cause, only there.
    h.get_by_label("Traces").click();
    settle(&mut h);
    let n = (o.traces as usize).min(20);
    let page: Vec<_> = (0..n)
        .filter_map(|i| h.state().trace_row(i).cloned())
        .collect();
    let row = page
        .iter()
        .find(|r| r.trace_id == trace_id)
        .expect("the trace is among the slowest");
    assert_eq!(row.primary_evidence, Some(Evidence::Ambiguous));
    // every primary cause has the level the analysis gave it; the ambiguous ones are marked
    assert!(page
        .iter()
        .all(|r| r.primary_cause.is_some() == r.primary_evidence.is_some()));
    let marked = page
        .iter()
        .filter(|r| r.primary_evidence == Some(Evidence::Ambiguous))
        .count();
    assert_eq!(
        h.get_all_by_label("?").count(),
        marked,
        "the ambiguous marks"
    );

    // The trace view: the primary cause, its level and the alternative; the critical
    // path's ambiguous sections.
    h.get_by_label(&trace_id[..8]).click();
    settle(&mut h);
    let d = h.state().trace_detail().cloned().expect("trace loaded");
    assert_eq!(d.trace_id, trace_id);
    assert_eq!(d.primary_cause, Some(primary));
    assert_eq!(d.primary_evidence, Some(Evidence::Ambiguous));
    assert_eq!(d.alternatives, CauseSet::of(&[alt]));
    h.get_by_label("slower than usual because of");
    h.get_by_label(&format!("(ambiguous: {or_alt})"));
    let of_primary: Vec<_> = d.sections.iter().filter(|s| s.cause == primary).collect();
    assert!(!of_primary.is_empty(), "the primary cause's sections");
    assert!(
        of_primary
            .iter()
            .all(|s| s.evidence == Some(Evidence::Ambiguous)
                && s.alternatives == CauseSet::of(&[alt])),
        "{of_primary:?}"
    );
    assert!(
        d.sections.iter().all(|s| s.evidence.is_some()),
        "every section has the analysis' level"
    );
    h.get_by_label(&format!(
        "· {} of it ambiguous (hatched)",
        tailscope_ui::palette::dur(d.ambiguous_ns())
    ));

    // A span on the critical path as the ambiguous cause: the span panel says so too.
    let span_id = d
        .spans
        .iter()
        .find(|s| s.cause == Some(primary))
        .map(|s| s.input.span_id.clone())
        .expect("a span is on the critical path as the primary cause");
    h.state_mut().open_trace(&trace_id, Some(&span_id));
    settle(&mut h);
    assert_eq!(h.state().selected_span().unwrap().input.span_id, span_id);
    h.get_by_label("on the critical path as");
    assert_eq!(
        h.get_all_by_label(&format!("(ambiguous: {or_alt})"))
            .count(),
        2,
        "the header and the span panel"
    );
}

/// The replay form offers the as-recorded configuration as A: "A = as recorded" over a
/// conversation of a real recording (tests/realtel OpenInference, whose spans carry
/// cached-token counts) fills A with the derived TOML (its `[background]` bursts before
/// the recorded misses), B with twice its cache, snaps the token scale so that a
/// recorded 16-token block is one replay block, and shows what A rests on.
#[test]
fn gui_replay_form_offers_the_as_recorded_configuration_as_a() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("realtel.duckdb");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/realtel/fixtures/openinference.jsonl");
    let o = super::tailscope(&db, &["import", fixture.to_str().unwrap()]);
    assert!(o.status.success(), "{}", super::stderr(&o));
    let mut h = harness(&db);
    settle(&mut h);
    h.state_mut().set_view(View::Replay);
    h.state_mut().open_replay_form("openinference-conv-07");
    settle(&mut h);
    assert!(h.state().as_recorded_notes().is_empty());
    h.get_by_label("A = as recorded").click();
    h.run_steps(2);
    settle(&mut h);
    assert!(h.state().errors().is_empty(), "{:?}", h.state().errors());
    let r = h.state().replay_request().clone();
    assert!(
        r.a_toml.contains("[background]") && r.a_toml.contains("bursts"),
        "{}",
        r.a_toml
    );
    assert!((r.token_scale - 0.0625).abs() < 1e-9, "{}", r.token_scale);
    let a = tailscope_engine::EngineConfig::from_toml_str(&r.a_toml).unwrap();
    let b = tailscope_engine::EngineConfig::from_toml_str(&r.b_toml).unwrap();
    assert_eq!(b.cache_capacity_blocks, 2 * a.cache_capacity_blocks);
    assert_eq!(a.background.map(|bg| bg.bursts.len()), Some(2));
    assert!(h
        .state()
        .as_recorded_notes()
        .iter()
        .any(|n| n.contains("cache_capacity_blocks")));
    h.run_steps(2);
    h.get_by_label("A is as recorded");
}
