//! GUI benchmark: renders a 100,000-span trace's waterfall and flame graph headless
//! (egui `Context::run` + tessellation, zoomed out and zoomed in) and prints median and
//! p99 frame times; then fills a store with about 1M spans and times the traces-table
//! page fetch through the GUI worker (the UI's real request path).
//!
//! `cargo run --release -p tailscope-tests --bin gui-bench [-- FRAMES [SPANS_M]]`

#![allow(clippy::many_single_char_names)] // short timing locals: t, w, h, r

use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope::gui::worker::Worker;
use tailscope_model::{Batch, Cause};
use tailscope_samples::{generate, WorkloadConfig};
use tailscope_store::{Store, WriterConfig};
use tailscope_ui::protocol::SpanInput;
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

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
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

fn ask(link: &tailscope_ui::Link, r: Request) -> (Response, Duration) {
    let t = Instant::now();
    link.requests.send(r).expect("worker alive");
    loop {
        match link.responses.recv().expect("worker alive") {
            Response::Collector(_) | Response::StoreChanged | Response::Progress(_) => {}
            other => return (other, t.elapsed()),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let target_m: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1.0);

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

    let (link, wl) = tailscope_ui::link(64);
    let worker = Worker::new(store, db.display().to_string(), wl, Arc::new(|| {}));
    let t = Instant::now();
    let h = std::thread::Builder::new()
        .name("bench-worker".into())
        .spawn(move || worker.run())?;
    let (r, _) = ask(&link, Request::Overview);
    let traces = match r {
        Response::Overview(o) => o.traces,
        other => anyhow::bail!("overview failed: {other:?}"),
    };
    println!(
        "analysed {traces} traces and loaded the overview in {:.1} s (worker thread)",
        t.elapsed().as_secs_f64()
    );
    let page = |offset, sort, where_sql: &str, generation| {
        Request::Traces(TraceQuery {
            offset,
            limit: tailscope_ui::PAGE,
            sort,
            descending: true,
            text: String::new(),
            where_sql: where_sql.to_owned(),
            generation,
        })
    };
    let (_, first) = ask(&link, page(0, SortColumn::Duration, "", 0));
    println!(
        "first traces page (builds the per-trace list over {n_spans} spans): {:.1} ms",
        first.as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    let n = traces as usize;
    for (k, sort) in [
        SortColumn::Duration,
        SortColumn::Start,
        SortColumn::Ttft,
        SortColumn::Spans,
    ]
    .into_iter()
    .cycle()
    .take(40)
    .enumerate()
    {
        let offset = (k * 7919 * tailscope_ui::PAGE) % n.max(1);
        let (r, d) = ask(&link, page(offset, sort, "", k as u64 + 1));
        assert!(matches!(r, Response::Traces(_)), "{r:?}");
        times.push(d.as_secs_f64() * 1e3);
    }
    let (m, p) = percentiles(times);
    println!("traces page fetch ({} rows, random offsets, 4 sorts, {n} traces / {n_spans} spans): median {m:.1} ms, p99 {p:.1} ms", tailscope_ui::PAGE);
    let mut times = Vec::new();
    for k in 0..10 {
        let (r, d) = ask(
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
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
