//! Store integration tests: schema matches the writer, rows round-trip, acks follow
//! commits, saturation is bounded, read-only queries refuse writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod series;

use std::sync::mpsc;
use tailscope_model::{
    AttrValue, Attribute, Batch, Event, Exemplar, Link, LogRecord, MetricKind, MetricPoint,
    Promoted, Resource, Span, SpanId, SpanKind, StatusCode, Temporality, TraceId,
};
use tailscope_store::arrow::array::{Array, Int64Array, StringArray};
use tailscope_store::{Store, StoreError, WriterConfig};

fn resource() -> Resource {
    Resource::new(vec![
        Attribute::new("service.name", AttrValue::Str("agent-api".into())),
        Attribute::new("host.name", AttrValue::Str("h1".into())),
    ])
}

fn span(trace: u8, n: u8, res: &Resource) -> Span {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([n.max(1); 8]),
        parent_span_id: (n > 1).then_some(SpanId([1; 8])),
        trace_state: String::new(),
        flags: 1,
        name: format!("chat gpt-4o #{n}"),
        kind: SpanKind::Client,
        start_ns: 1_700_000_000_000_000_000 + i64::from(n) * 1000,
        end_ns: 1_700_000_000_000_000_000 + i64::from(n) * 1000 + 5_000_000,
        status: StatusCode::Ok,
        status_message: String::new(),
        resource_id: res.id,
        service_name: res.service_name.clone(),
        scope_name: "test".into(),
        scope_version: "1".into(),
        attributes: vec![
            Attribute::new("gen_ai.request.model", AttrValue::Str("gpt-4o".into())),
            Attribute::new("gen_ai.usage.input_tokens", AttrValue::Int(1200)),
            Attribute::new("temperature", AttrValue::Double(0.5)),
            Attribute::new("gen_ai.request.stream", AttrValue::Bool(true)),
            Attribute::new("tags", AttrValue::Json("[\"a\",\"b\"]".into())),
        ],
        events: vec![Event {
            time_ns: 1_700_000_000_000_000_500,
            name: "gen_ai.chunk".into(),
            attributes: vec![Attribute::new("tokens", AttrValue::Int(3))],
        }],
        links: vec![Link {
            trace_id: TraceId([9; 16]),
            span_id: SpanId([9; 8]),
            trace_state: String::new(),
            attributes: vec![],
        }],
        promoted: Promoted {
            model: Some("gpt-4o".into()),
            input_tokens: Some(1200),
            ..Promoted::default()
        },
    }
}

fn histogram(res: &Resource) -> MetricPoint {
    MetricPoint {
        resource_id: res.id,
        service_name: res.service_name.clone(),
        scope_name: String::new(),
        name: "db.client.connection.wait_time".into(),
        description: String::new(),
        unit: "s".into(),
        kind: MetricKind::Histogram,
        temporality: Temporality::Cumulative,
        monotonic: false,
        start_ns: 1,
        time_ns: 2,
        attributes: vec![],
        value: None,
        count: Some(6),
        sum: Some(1.5),
        min: Some(0.1),
        max: Some(0.9),
        bucket_counts: vec![1, 2, 3],
        explicit_bounds: vec![0.1, 0.5],
        quantiles: vec![],
        exemplars: vec![Exemplar {
            time_ns: 2,
            value: 0.9,
            trace_id: Some(TraceId([7; 16])),
            span_id: Some(SpanId([7; 8])),
            attributes: vec![],
        }],
    }
}

fn batch(trace: u8, spans: u8) -> Batch {
    let res = resource();
    Batch {
        spans: (1..=spans).map(|n| span(trace, n, &res)).collect(),
        // a point of its own per trace: an equal point is stored once (exactly-once)
        metrics: vec![MetricPoint {
            time_ns: 1 + i64::from(trace),
            ..histogram(&res)
        }],
        logs: vec![LogRecord {
            resource_id: res.id,
            service_name: res.service_name.clone(),
            scope_name: String::new(),
            time_ns: 5,
            observed_ns: 6,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: "hello".into(),
            trace_id: Some(TraceId([trace; 16])),
            span_id: None,
            event_name: String::new(),
            attributes: vec![],
        }],
        resources: vec![res],
    }
}

fn scalar_i64(store: &Store, sql: &str) -> i64 {
    let rb = store.query_arrow(sql).unwrap();
    rb[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("BIGINT column")
        .value(0)
}

#[test]
fn migrated_schema_matches_writer_columns() {
    let store = Store::open_in_memory().unwrap();
    let actual: std::collections::BTreeSet<_> =
        store.describe_columns().unwrap().into_iter().collect();
    for col in Store::expected_columns() {
        assert!(actual.contains(&col), "schema lacks {col:?}");
    }
    // and the same order: the appender writes by position
    let actual = store.describe_columns().unwrap();
    for table in [
        "spans",
        "resource_attributes",
        "metric_points",
        "logs",
        "events",
        "links",
    ] {
        let a: Vec<_> = actual.iter().filter(|c| c.0 == table).collect();
        let e: Vec<_> = Store::expected_columns()
            .into_iter()
            .filter(|c| c.0 == table)
            .collect();
        assert_eq!(a.len(), e.len(), "{table}");
        for (x, y) in a.iter().zip(&e) {
            assert_eq!(*x, y);
        }
    }
    assert_eq!(
        store.schema_version().unwrap(),
        tailscope_store::SCHEMA_VERSION
    );
}

#[test]
fn rows_round_trip_through_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/t.duckdb");
    {
        let store = Store::open(&path).unwrap();
        let writer = store.writer(WriterConfig::default()).unwrap();
        let c = writer.write(batch(1, 3)).unwrap();
        assert_eq!(c.spans, 3);
        writer.write(batch(2, 2)).unwrap();
        writer.close().unwrap();
    }
    // reopen (migrations are idempotent) and read back
    let store = Store::open(&path).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.spans, 5);
    assert_eq!(counts.traces, 2);
    assert_eq!(counts.span_attributes, 25);
    assert_eq!(counts.events, 5);
    assert_eq!(counts.links, 5);
    assert_eq!(counts.resources, 1, "resource deduplicated across batches");
    assert_eq!(counts.metric_points, 2);
    assert_eq!(counts.logs, 2);
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT int_value FROM span_attributes WHERE key='gen_ai.usage.input_tokens' LIMIT 1"
        ),
        1200
    );
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT CAST(sum(list_sum(bucket_counts)) AS BIGINT) FROM metric_points"
        ),
        12
    );
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM metric_points WHERE exemplars LIKE '%0707070707070707%'"
        ),
        2
    );
    let rb = store
        .query_arrow(
            "SELECT trace_id, parent_span_id, model FROM spans ORDER BY trace_id, span_id LIMIT 2",
        )
        .unwrap();
    let ids = rb[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ids.value(0), "01010101010101010101010101010101");
    let parents = rb[0]
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert!(parents.is_null(0));
    assert_eq!(parents.value(1), "0101010101010101");
}

#[test]
fn saturated_writer_refuses_and_later_accepts() {
    let store = Store::open_in_memory().unwrap();
    let writer = store
        .writer(WriterConfig {
            max_pending_items: 10,
            max_group_items: 10,
            ..WriterConfig::default()
        })
        .unwrap();
    // Fill beyond the bound without waiting: some submissions must be refused,
    // every accepted one must be acknowledged, and nothing accepted is lost.
    let (tx, rx) = mpsc::sync_channel(1000);
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for i in 0..200u8 {
        let tx = tx.clone();
        match writer.try_submit(
            batch(i.max(1), 4),
            Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            }),
        ) {
            Ok(()) => accepted += 1,
            Err(s) => {
                assert_eq!(s.batch.spans.len(), 4, "refused batch is handed back");
                refused += 1;
            }
        }
    }
    drop(tx);
    assert!(refused > 0, "bound of 10 items never refused");
    let acked = rx.iter().filter(|ok| *ok).count() as u64;
    assert_eq!(acked, accepted);
    assert_eq!(store.counts().unwrap().spans, accepted * 4);
    assert_eq!(
        writer
            .stats()
            .saturated
            .load(std::sync::atomic::Ordering::Relaxed),
        refused
    );
}

#[test]
fn read_only_store_refuses_writes_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.duckdb");
    match Store::open_read_only(&path) {
        Err(StoreError::Missing(p)) => assert_eq!(p, path),
        Err(e) => panic!("want Missing, got {e}"),
        Ok(_) => panic!("opened a missing file"),
    }
    {
        let store = Store::open(&path).unwrap();
        store
            .writer(WriterConfig::default())
            .unwrap()
            .write(batch(3, 2))
            .unwrap();
    }
    let ro = Store::open_read_only(&path).unwrap();
    let rb = ro.query_read_only("SELECT count(*) FROM spans").unwrap();
    assert_eq!(rb[0].num_rows(), 1);
    for sql in [
        "DELETE FROM spans",
        "CREATE TABLE x(a int)",
        "select 1; drop table spans",
    ] {
        let e = ro.query_read_only(sql).unwrap_err();
        assert!(e.to_string().contains("read-only"), "{sql}: {e}");
    }
    assert_eq!(ro.counts().unwrap().spans, 2);
}

/// Prints append throughput by table shape (run with --release --ignored --nocapture).
#[test]
#[ignore = "timing probe"]
fn append_probe() {
    let res = resource();
    let mk = |n: usize, attrs: usize| -> Batch {
        let mut spans = Vec::new();
        for i in 0..n {
            let mut s = span((i % 200) as u8 + 1, (i % 250) as u8 + 1, &res);
            s.span_id = SpanId((i as u64 + 1).to_be_bytes());
            s.events.clear();
            s.links.clear();
            s.attributes = (0..attrs)
                .map(|k| {
                    Attribute::new(
                        format!("attr.{k}"),
                        AttrValue::Str(format!("value {i} {k}")),
                    )
                })
                .collect();
            spans.push(s);
        }
        Batch {
            resources: vec![res.clone()],
            spans,
            ..Batch::default()
        }
    };
    for (label, attrs) in [("spans only", 0), ("20 attrs", 20)] {
        for file in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = if file {
                Store::open(&dir.path().join("p.duckdb")).unwrap()
            } else {
                Store::open_in_memory().unwrap()
            };
            let per: usize = std::env::var("PROBE_PER")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            let batches: Vec<Batch> = (0..20_000 / per).map(|_| mk(per, attrs)).collect();
            let t = std::time::Instant::now();
            store.append_direct(&batches).unwrap();
            let dt = t.elapsed().as_secs_f64();
            println!("{label:12} file={file}: {:.0} spans/s", 20_000.0 / dt);
        }
    }
}

/// A file written at schema v1 (attributes in the long table) opens, migrates, and
/// keeps its rows queryable beside rows written now.
#[test]
fn older_schema_files_are_migrated_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.duckdb");
    {
        let old = Store::create_at_version(&path, 1).unwrap();
        assert_eq!(old.schema_version().unwrap(), 1);
        old.execute_batch(
            "INSERT INTO spans (trace_id, span_id, name, kind, start_ns, end_ns, duration_ns, status_code,
                                resource_id, service_name, op_class, event_count, link_count, ingested_ns)
             VALUES ('0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', '0b0b0b0b0b0b0b0b', 'old span', 'client', 1, 2, 1, 'ok',
                     1, 'old-svc', 'llm', 0, 0, 0);
             INSERT INTO span_attributes VALUES
               ('0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', '0b0b0b0b0b0b0b0b', 'gen_ai.request.model', 'string', 'm-old', NULL, NULL, NULL);",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        tailscope_store::SCHEMA_VERSION
    );
    store
        .writer(WriterConfig::default())
        .unwrap()
        .write(batch(4, 1))
        .unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.spans, 2);
    assert_eq!(
        counts.span_attributes,
        1 + 5,
        "old long-form rows and new JSON attributes"
    );
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM span_attributes WHERE value = 'm-old'"
        ),
        1
    );
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT int_value FROM span_attributes WHERE key = 'gen_ai.usage.input_tokens'"
        ),
        1200
    );
    let spans = store.load_spans(tailscope_store::Traces::All).unwrap();
    assert_eq!(spans.len(), 2);
}

/// The incremental analysis watermark: commit stamps rise across two writers of one
/// process; a store analysed before v6 starts from its newest `analyzed_ns`; without
/// stored results there is no watermark (the next run is a full one); a recorded run
/// sets it; clearing the results takes it away again.
#[test]
fn analysis_watermark_follows_commits_and_runs() {
    use tailscope_store::RunRow;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.duckdb");
    {
        let old = Store::create_at_version(&path, 5).unwrap();
        old.execute_batch(
            "INSERT INTO trace_analysis (trace_id, root, route, start_ns, duration_ns, orphans,
                preprocessing_ns, retrieval_ns, pool_wait_ns, db_ns, queue_ns, kv_eviction_ns, prefill_ns,
                decode_ns, tool_ns, tool_cold_start_ns, retry_ns, network_ns, uninstrumented_ns, other_ns,
                analyzed_ns)
             VALUES ('0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', 'r', 'svc r', 1, 2, 0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0, 777)",
        )
        .unwrap();
    }
    {
        let v8 = Store::create_at_version(&path, 8).unwrap();
        assert_eq!(v8.analysis_watermark().unwrap(), Some(777), "seeded by v6");
    }
    // v9 (evidence levels): results stored without them are recomputed, all of them
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.analysis_watermark().unwrap(),
        None,
        "v9 clears the run log: a full run next"
    );
    // the writer and the direct appender (the bench's ceiling) stamp from one order
    let a = store.writer(WriterConfig::default()).unwrap();
    a.write(batch(1, 2)).unwrap();
    let first = store.ingest_watermark().unwrap().unwrap();
    store.append_direct(&[batch(2, 2)]).unwrap();
    a.write(batch(3, 2)).unwrap();
    let last = store.ingest_watermark().unwrap().unwrap();
    assert!(last > first && first > 777, "{first} {last}");
    // the traces committed after `first`, whichever writer committed them
    let mut changed = store.changed_traces(first).unwrap();
    changed.sort();
    assert_eq!(changed, vec!["02".repeat(16), "03".repeat(16)]);
    let run = |w| RunRow {
        finished_ns: w,
        watermark_ns: w,
        recomputed: 1,
        reused: 0,
        seconds: 0.1,
        fits: Some("{}".into()),
        fit_calls: 3,
    };
    store.record_run(&run(last)).unwrap();
    assert_eq!(store.analysis_watermark().unwrap(), Some(last));
    assert_eq!(store.last_fits().unwrap(), Some(("{}".to_owned(), 3)));
    store.clear_analysis().unwrap();
    assert_eq!(store.analysis_watermark().unwrap(), None, "a full run next");
    // the graph: every trace with its span count and rows
    let g = store.trace_graph().unwrap();
    assert_eq!(g.traces.len(), 3);
    assert!(g
        .traces
        .iter()
        .all(|t| t.spans == 2 && t.span_rows.0 <= t.span_rows.1));
}

#[test]
fn a_resent_batch_stores_nothing_new_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("once.duckdb");
    {
        let store = Store::open(&path).unwrap();
        let writer = store.writer(WriterConfig::default()).unwrap();
        let c = writer.write(batch(1, 3)).unwrap();
        assert_eq!((c.spans, c.duplicate_spans), (3, 0));
        // the same request again (an SDK's retry): nothing new, acknowledged
        let again = writer.write(batch(1, 3)).unwrap();
        assert_eq!((again.spans, again.duplicate_spans), (0, 3));
        assert_eq!(
            (again.metric_points, again.duplicate_metric_points),
            (0, 1),
            "metric points are keyed by content"
        );
        assert_eq!((again.logs, again.duplicate_logs), (0, 1));
        // a batch that repeats spans within itself, and overlaps what is stored
        let mut mixed = batch(2, 2);
        let repeat = mixed.spans[0].clone();
        mixed.spans.push(repeat);
        mixed.spans.extend(batch(1, 3).spans.into_iter().take(1));
        let c = writer.write(mixed).unwrap();
        assert_eq!((c.spans, c.duplicate_spans), (2, 2));
        assert_eq!(
            writer
                .stats()
                .duplicate_spans
                .load(std::sync::atomic::Ordering::Relaxed),
            5
        );
        writer.close().unwrap();
    }
    // a new writer (a restarted collector) remembers the stored spans
    let store = Store::open(&path).unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    let c = writer.write(batch(2, 2)).unwrap();
    assert_eq!((c.spans, c.duplicate_spans), (0, 2));
    // a span id reused in another trace is a different span
    let c = writer.write(batch(3, 2)).unwrap();
    assert_eq!((c.spans, c.duplicate_spans), (2, 0));
    writer.close().unwrap();
    assert_eq!(store.counts().unwrap().spans, 7);
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM (SELECT DISTINCT trace_id, span_id FROM spans)"
        ),
        7
    );
}

fn log(res: &Resource, time_ns: i64, body: &str) -> LogRecord {
    LogRecord {
        resource_id: res.id,
        service_name: res.service_name.clone(),
        scope_name: "app".into(),
        time_ns,
        observed_ns: time_ns + 1,
        severity_number: 13,
        severity_text: "WARN".into(),
        body: body.into(),
        trace_id: Some(TraceId([4; 16])),
        span_id: Some(SpanId([5; 8])),
        event_name: String::new(),
        attributes: vec![Attribute::new("code", AttrValue::Int(7))],
    }
}

/// Points and records of every shape: a gauge with attributes, a histogram, a
/// summary, a sum without a start time; two log records.
fn signals(res: &Resource, at: i64) -> Batch {
    let mut util = gauge(res, "gpu.utilization", "1", 0.5);
    util.time_ns = at;
    util.attributes = vec![
        Attribute::new("gpu", AttrValue::Int(0)),
        Attribute::new("host", AttrValue::Str("h1".into())),
    ];
    let mut hist = histogram(res);
    hist.time_ns = at;
    let mut summary = gauge(res, "rpc.latency", "s", 0.0);
    summary.kind = MetricKind::Summary;
    summary.value = None;
    summary.time_ns = at;
    summary.count = Some(3);
    summary.quantiles = vec![(0.5, 0.1), (0.99, 0.7)];
    let mut sum = gauge(res, "tokens", "1", 12.0);
    sum.kind = MetricKind::Sum;
    sum.start_ns = 0;
    sum.time_ns = at;
    Batch {
        spans: vec![],
        metrics: vec![util, hist, summary, sum],
        logs: vec![log(res, at, "slow"), log(res, at, "slower")],
        resources: vec![res.clone()],
    }
}

fn stored(c: tailscope_store::Committed) -> (usize, usize, usize, usize) {
    (
        c.metric_points,
        c.duplicate_metric_points,
        c.logs,
        c.duplicate_logs,
    )
}

#[test]
fn resent_metric_points_and_logs_store_nothing_new_even_after_a_restart() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signals.duckdb");
    let res = resource();
    let other = Resource::new(vec![
        Attribute::new("service.name", AttrValue::Str("agent-api".into())),
        Attribute::new("host.name", AttrValue::Str("h2".into())),
    ]);
    let t = 1_700_000_000_000_000_000;
    {
        let store = Store::open(&path).unwrap();
        let writer = store.writer(WriterConfig::default()).unwrap();
        assert_eq!(
            stored(writer.write(signals(&res, t)).unwrap()),
            (4, 0, 2, 0)
        );
        // the SDK's retry: nothing new, acknowledged, counted
        assert_eq!(
            stored(writer.write(signals(&res, t)).unwrap()),
            (0, 4, 0, 2)
        );
        // acknowledged once in the ingest log, dropped when loaded
        submit_durable(&writer, signals(&res, t)).unwrap();
        assert!(writer.wait_loaded(std::time::Duration::from_secs(30)));
        // the same series at a new time, and at the same time with a new value,
        // are new points; the same body at another time is a new record
        assert_eq!(
            stored(writer.write(signals(&res, t + 1)).unwrap()),
            (4, 0, 2, 0)
        );
        let mut changed = signals(&res, t);
        for m in &mut changed.metrics {
            m.value = m.value.map(|v| v + 1.0);
            m.sum = m.sum.map(|v| v + 1.0);
            m.quantiles.iter_mut().for_each(|q| q.1 += 1.0);
        }
        changed.logs[0].severity_number = 17;
        changed.logs[1].attributes[0].value = AttrValue::Int(8);
        assert_eq!(stored(writer.write(changed).unwrap()), (4, 0, 2, 0));
        // the same content in another resource is another point
        assert_eq!(
            stored(writer.write(signals(&other, t)).unwrap()),
            (4, 0, 2, 0)
        );
        // a request that repeats a point and a record within itself
        let mut repeated = signals(&res, t + 2);
        repeated.metrics.push(repeated.metrics[0].clone());
        repeated.logs.push(repeated.logs[1].clone());
        assert_eq!(stored(writer.write(repeated).unwrap()), (4, 1, 2, 1));
        let stats = writer.stats();
        assert_eq!(stats.duplicate_metric_points.load(Relaxed), 4 + 4 + 1);
        assert_eq!(stats.duplicate_logs.load(Relaxed), 2 + 2 + 1);
        assert_eq!(stats.committed_metric_points.load(Relaxed), 5 * 4);
        writer.close().unwrap();
    }
    // a new writer (a restarted collector) remembers the stored points and records
    let store = Store::open(&path).unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    assert_eq!(
        stored(writer.write(signals(&res, t)).unwrap()),
        (0, 4, 0, 2)
    );
    assert_eq!(
        stored(writer.write(signals(&other, t)).unwrap()),
        (0, 4, 0, 2)
    );
    assert_eq!(
        stored(writer.write(signals(&res, t + 3)).unwrap()),
        (4, 0, 2, 0)
    );
    writer.close().unwrap();
    assert_eq!(store.counts().unwrap().metric_points, 6 * 4);
    assert_eq!(scalar_i64(&store, "SELECT count(*) FROM logs"), 6 * 2);
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM (SELECT DISTINCT resource_id, name, time_ns, value, sum, quantiles FROM metric_points)"
        ),
        6 * 4
    );
}

/// Points and records without a time cannot be told from new ones: all are stored.
#[test]
fn metric_points_and_logs_without_a_time_are_always_stored() {
    let store = Store::open_in_memory().unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    let res = resource();
    let mut b = signals(&res, 0);
    for l in &mut b.logs {
        l.observed_ns = 0;
    }
    assert_eq!(stored(writer.write(b.clone()).unwrap()), (4, 0, 2, 0));
    assert_eq!(stored(writer.write(b).unwrap()), (4, 0, 2, 0));
    writer.close().unwrap();
}

#[test]
fn without_a_window_every_copy_is_stored() {
    let store = Store::open_in_memory().unwrap();
    let writer = store
        .writer(WriterConfig {
            dedupe_window: 0,
            ..WriterConfig::default()
        })
        .unwrap();
    writer.write(batch(1, 2)).unwrap();
    let c = writer.write(batch(1, 2)).unwrap();
    assert_eq!((c.spans, c.duplicate_spans), (2, 0));
    assert_eq!(stored(c), (1, 0, 1, 0));
    writer.close().unwrap();
    assert_eq!(store.counts().unwrap().spans, 4);
    assert_eq!(store.counts().unwrap().metric_points, 2);
}

#[test]
fn a_window_forgets_the_oldest_spans() {
    let store = Store::open_in_memory().unwrap();
    let writer = store
        .writer(WriterConfig {
            dedupe_window: 4,
            ..WriterConfig::default()
        })
        .unwrap();
    writer.write(batch(1, 3)).unwrap();
    writer.write(batch(2, 3)).unwrap();
    // trace 1's spans left the 4-span window (only one of them remains in it)
    let c = writer.write(batch(1, 3)).unwrap();
    assert_eq!((c.spans, c.duplicate_spans), (2, 1));
    writer.close().unwrap();
}

#[test]
fn one_writer_per_store_and_a_shared_one() {
    let store = Store::open_in_memory().unwrap();
    let shared = store.shared_writer(WriterConfig::default()).unwrap();
    let again = store
        .reader()
        .unwrap()
        .shared_writer(WriterConfig::default())
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&shared, &again),
        "one writer, shared"
    );
    let second = store.writer(WriterConfig::default());
    assert!(
        matches!(second, Err(StoreError::WriterExists(_))),
        "a second writer is refused"
    );
    drop((shared, again));
    // the slot is free once the shared writer is gone
    let owned = store.writer(WriterConfig::default()).unwrap();
    assert!(store.shared_writer(WriterConfig::default()).is_err());
    owned.close().unwrap();
    assert!(store.shared_writer(WriterConfig::default()).is_ok());
}

#[test]
fn a_writer_that_died_says_why_instead_of_busy() {
    let store = Store::open_in_memory().unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    // a completion callback that panics kills the writer thread
    writer
        .try_submit(batch(1, 1), Box::new(|_| panic!("boom in a callback")))
        .unwrap();
    let mut stopped = None;
    for _ in 0..500 {
        stopped = writer.stopped();
        if stopped.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let why = stopped.expect("the writer reports that it stopped");
    assert!(why.contains("boom in a callback"), "{why}");
    let refused = writer
        .try_submit(batch(2, 1), Box::new(|_| {}))
        .expect_err("a dead writer takes nothing");
    assert!(refused
        .stopped
        .as_deref()
        .is_some_and(|w| w.contains("boom")));
    let err = writer.write(batch(3, 1)).expect_err("write fails at once");
    assert!(err.to_string().contains("boom"), "{err}");
}

fn gauge(res: &Resource, name: &str, unit: &str, value: f64) -> MetricPoint {
    MetricPoint {
        name: name.into(),
        unit: unit.into(),
        kind: MetricKind::Gauge,
        value: Some(value),
        count: None,
        sum: None,
        min: None,
        max: None,
        bucket_counts: vec![],
        explicit_bounds: vec![],
        exemplars: vec![],
        ..histogram(res)
    }
}

#[test]
fn canonical_metric_names_are_visible_to_sql() {
    let store = Store::open_in_memory().unwrap();
    let res = resource();
    let writer = store.writer(WriterConfig::default()).unwrap();
    writer
        .write(Batch {
            metrics: vec![
                // DCGM framebuffer in MiB (no unit on the point: the source's default)
                gauge(&res, "DCGM_FI_DEV_FB_USED", "", 2.0),
                // NVML power in mW, vLLM's old KV-cache name, an unknown metric
                gauge(&res, "nvml.power.usage", "mW", 150_000.0),
                gauge(&res, "vllm:gpu_cache_usage_perc", "", 0.25),
                gauge(&res, "my.own.metric", "", 7.0),
            ],
            resources: vec![res],
            ..Batch::default()
        })
        .unwrap();
    writer.close().unwrap();
    let rows = store
        .query_arrow(
            "SELECT canonical, unit, value FROM canonical_metric_points ORDER BY canonical",
        )
        .unwrap();
    let b = &rows[0];
    let names = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
    let units = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    let values = b
        .column(2)
        .as_any()
        .downcast_ref::<tailscope_store::arrow::array::Float64Array>()
        .unwrap();
    let got: Vec<(String, String, f64)> = (0..b.num_rows())
        .map(|r| {
            (
                names.value(r).to_owned(),
                units.value(r).to_owned(),
                values.value(r),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("gpu.memory.used".into(), "By".into(), 2.0 * 1_048_576.0),
            ("gpu.power".into(), "W".into(), 150.0),
            ("inference.kv_cache.usage".into(), "1".into(), 0.25),
        ]
    );
    // every source name of the Rust table is there
    assert_eq!(
        scalar_i64(&store, "SELECT count(*) FROM metric_names"),
        tailscope_model::gpu_metrics::SOURCES.len() as i64
    );
}

#[test]
fn a_damaged_write_ahead_log_is_cut_back_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.duckdb");
    let store = Store::open(&path).unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    writer.write(batch(1, 50)).unwrap();
    writer.write(batch(2, 50)).unwrap();
    // a crash: nothing checkpoints, the log stays (the process keeps its handles)
    std::mem::forget(writer);
    std::mem::forget(store);
    let copy = dir.path().join("copy.duckdb");
    std::fs::copy(&path, &copy).unwrap();
    let wal = dir.path().join("crash.duckdb.wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    assert!(bytes.len() > 1000, "the commits are in the log");
    // damage the last commit's bytes (the second batch)
    let n = bytes.len();
    for b in &mut bytes[n - 300..n - 200] {
        *b ^= 0x5a;
    }
    std::fs::write(dir.path().join("copy.duckdb.wal"), &bytes).unwrap();
    // a log cut short by a crash mid-commit: a torn tail, reported and counted
    let torn = dir.path().join("torn.duckdb");
    std::fs::copy(&path, &torn).unwrap();
    let whole = std::fs::read(&wal).unwrap();
    std::fs::write(
        dir.path().join("torn.duckdb.wal"),
        &whole[..whole.len() - 100],
    )
    .unwrap();
    let t = Store::open(&torn).expect("a torn tail opens");
    let r = t.recovered().expect("the torn tail is reported").clone();
    assert!(r.torn && r.set_aside.is_none(), "{r:?}");
    assert!(r.wal_bytes - r.kept_bytes >= 100, "{r}");
    assert_eq!(
        scalar_i64(
            &t,
            "SELECT count(*) FROM store_recoveries WHERE what LIKE 'torn%'"
        ),
        1
    );
    assert_eq!(
        scalar_i64(
            &t,
            &format!(
                "SELECT count(*) FROM spans WHERE trace_id = '{}'",
                "01".repeat(16)
            )
        ),
        50,
        "commits before the torn one are kept"
    );
    drop(t);
    // an intact log is not reported
    let intact = dir.path().join("intact.duckdb");
    std::fs::copy(&path, &intact).unwrap();
    std::fs::write(dir.path().join("intact.duckdb.wal"), &whole).unwrap();
    assert!(Store::open(&intact).unwrap().recovered().is_none());
    let store = Store::open(&copy).expect("a damaged log does not stop the store from opening");
    let r = store.recovered().expect("the repair is reported").clone();
    assert!(r.kept_bytes < r.wal_bytes && !r.torn);
    let aside = r.set_aside.expect("a copy is kept");
    assert!(aside.exists(), "the whole log is kept aside");
    assert_eq!(std::fs::read(&aside).unwrap(), bytes);
    assert_eq!(
        scalar_i64(&store, "SELECT count(*) FROM store_recoveries"),
        1
    );
    // the first batch (before the damage) is there
    assert_eq!(
        scalar_i64(
            &store,
            &format!(
                "SELECT count(*) FROM spans WHERE trace_id = '{}'",
                "01".repeat(16)
            )
        ),
        50
    );
}

#[test]
fn segments_publish_incrementally_and_read_back_as_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segments");
    let store = Store::open(&dir.path().join("s.duckdb")).unwrap();
    let writer = store.shared_writer(WriterConfig::default()).unwrap();
    writer.write(batch(1, 3)).unwrap();
    let first = store.publish_segments(&seg).unwrap();
    assert!(first.files >= 5, "{first:?}");
    assert_eq!(
        store.publish_segments(&seg).unwrap().files,
        0,
        "nothing new"
    );
    writer.write(batch(2, 2)).unwrap();
    let second = store.publish_segments(&seg).unwrap();
    // spans, events, links, metric points, logs: new rows; the resource is known
    assert_eq!(second.files, 5, "{second:?}");
    // spans/publisher=.../ingest_date=.../seg-*.parquet
    let publishers: Vec<_> = std::fs::read_dir(seg.join("spans"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    assert_eq!(publishers.len(), 1, "{publishers:?}");
    let spans: Vec<_> = std::fs::read_dir(&publishers[0])
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(spans.len(), 2, "{spans:?}");
    // an interrupted publication leaves only a hidden temporary file, removed later
    let day = std::fs::read_dir(&publishers[0])
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(day.join(".seg-9-9.parquet.tmp"), b"half").unwrap();
    drop(writer);
    // another engine reads the folder in place
    let other = Store::open_in_memory().unwrap();
    assert_eq!(
        scalar_i64(
            &other,
            &format!(
                "SELECT count(*) FROM read_parquet('{}/spans/*/*/*.parquet', hive_partitioning = true)",
                seg.display()
            )
        ),
        5
    );
    // tailscope rebuilds a store from it
    let back = Store::open_segments(&seg).unwrap();
    assert_eq!(back.counts().unwrap(), store.counts().unwrap());
    assert!(!day.join(".seg-9-9.parquet.tmp").exists());
    assert!(
        Store::open_segments(dir.path()).is_err(),
        "not a segments folder"
    );
}

#[test]
fn two_stores_publish_into_one_segment_tree() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segments");
    let a = Store::open(&dir.path().join("a.duckdb")).unwrap();
    let b = Store::open(&dir.path().join("b.duckdb")).unwrap();
    let (wa, wb) = (
        a.shared_writer(WriterConfig::default()).unwrap(),
        b.shared_writer(WriterConfig::default()).unwrap(),
    );
    // the same row ids in both stores: before, the second publisher skipped its rows
    // (it resumed after the first one's files) or overwrote the first one's files
    wa.write(batch(1, 3)).unwrap();
    wb.write(batch(2, 4)).unwrap();
    a.publish_segments(&seg).unwrap();
    b.publish_segments(&seg).unwrap();
    wa.write(batch(3, 2)).unwrap();
    a.publish_segments(&seg).unwrap();
    b.publish_segments(&seg).unwrap();
    drop((wa, wb));
    let back = Store::open_segments(&seg).unwrap();
    let (ca, cb, both) = (
        a.counts().unwrap(),
        b.counts().unwrap(),
        back.counts().unwrap(),
    );
    assert_eq!(both.spans, ca.spans + cb.spans, "{both:?}");
    assert_eq!(both.events, ca.events + cb.events);
    assert_eq!(both.metric_points, ca.metric_points + cb.metric_points);
    assert_eq!(
        scalar_i64(&back, "SELECT count(*) FROM resources"),
        scalar_i64(&back, "SELECT count(DISTINCT resource_id) FROM resources"),
        "a resource both stores saw is kept once"
    );
}

#[test]
fn a_segments_folder_is_read_in_place_even_from_an_older_schema() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("segments");
    let store = Store::open(&dir.path().join("a.duckdb")).unwrap();
    let writer = store.shared_writer(WriterConfig::default()).unwrap();
    writer.write(batch(1, 3)).unwrap();
    store.publish_segments(&seg).unwrap();
    writer.write(batch(2, 4)).unwrap();
    store.publish_segments(&seg).unwrap();
    drop(writer);
    // a segment an older build wrote: no resend_count column yet
    let old = seg.join("spans/publisher=old/ingest_date=2026-01-01");
    std::fs::create_dir_all(&old).unwrap();
    store
        .execute_batch(&format!(
            "COPY (SELECT * EXCLUDE (resend_count) FROM spans WHERE rowid = 0) TO '{}' (FORMAT parquet)",
            old.join("seg-000000000000-000000000000.parquet").display()
        ))
        .unwrap();
    let back = Store::open_segments(&seg).unwrap();
    // the big tables are views over the files, not copies
    for table in ["spans", "events", "links", "metric_points", "logs"] {
        assert_eq!(
            scalar_i64(
                &back,
                &format!("SELECT count(*) FROM duckdb_views() WHERE view_name = '{table}'")
            ),
            1,
            "{table} is a view"
        );
    }
    assert_eq!(scalar_i64(&back, "SELECT count(*) FROM spans"), 8);
    assert_eq!(
        scalar_i64(
            &back,
            "SELECT count(*) FROM spans WHERE resend_count IS NULL"
        ),
        1 + scalar_i64(
            &store,
            "SELECT count(*) FROM spans WHERE resend_count IS NULL"
        ),
        "the old segment's rows read the missing column as NULL"
    );
    // row ids are unique and keep each file's rows together, in file order
    assert_eq!(
        scalar_i64(&back, "SELECT count(DISTINCT rowid) FROM spans"),
        8
    );
    let ids: Vec<i64> = (0..3)
        .map(|k| {
            scalar_i64(
                &back,
                &format!("SELECT rowid FROM spans ORDER BY rowid LIMIT 1 OFFSET {k}"),
            )
        })
        .collect();
    assert_eq!(ids, vec![0, 1, 2], "the first file's rows, in order");
    // a stretch of row ids reads the rows of that stretch
    let second_file = 1_i64 << 32;
    assert_eq!(
        scalar_i64(
            &back,
            &format!(
                "SELECT count(*) FROM spans WHERE rowid BETWEEN {second_file} AND {}",
                second_file + 3
            )
        ),
        4
    );
    assert_eq!(back.counts().unwrap().spans, 8);
    // the bench's "before": the same rows copied into memory
    let copied = Store::open_segments_copied(&seg).unwrap();
    assert_eq!(copied.counts().unwrap(), back.counts().unwrap());
    assert_eq!(
        scalar_i64(
            &copied,
            "SELECT count(*) FROM duckdb_views() WHERE view_name = 'spans'"
        ),
        0
    );
}

/// Submits through the collector's path (`try_submit`) and waits for the answer.
fn submit_durable(
    writer: &tailscope_store::Writer,
    b: Batch,
) -> Result<tailscope_store::Committed, StoreError> {
    let (tx, rx) = mpsc::sync_channel(1);
    writer
        .try_submit(
            b,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .map_err(|s| StoreError::WriteFailed(format!("{:?}", s.stopped)))?;
    rx.recv().unwrap()
}

/// The ingest log's files and their bytes (taken while a writer runs, to put back
/// after it closed: a collector killed before its loader ran).
fn snapshot_log(path: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    log_files(path)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// Ingests `b` through the collector's path into a new store at `path`, waits for
/// its load and closes the writer; returns the ingest log as it was before the
/// close removed it.
fn ingest_keeping_the_log(path: &std::path::Path, b: Batch) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let store = Store::open(path).unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    submit_durable(&writer, b).unwrap();
    assert!(writer.wait_loaded(std::time::Duration::from_secs(30)));
    let log = snapshot_log(path);
    writer.close().unwrap();
    log
}

fn restore_log(files: &[(std::path::PathBuf, Vec<u8>)]) {
    for (p, b) in files {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
}

fn log_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = tailscope_store::ingestlog::dir_of(path);
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "tsl"));
    v.sort();
    v
}

#[test]
fn acknowledged_batches_are_in_the_ingest_log_and_load_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.duckdb");
    let log;
    {
        let store = Store::open(&path).unwrap();
        let writer = store.writer(WriterConfig::default()).unwrap();
        let c = submit_durable(&writer, batch(1, 3)).unwrap();
        assert_eq!(
            (c.spans, c.duplicate_spans),
            (3, 0),
            "acknowledged as logged"
        );
        // the SDK's retry of the same request: acknowledged too, stored once
        submit_durable(&writer, batch(1, 3)).unwrap();
        submit_durable(&writer, batch(2, 2)).unwrap();
        assert!(writer.wait_loaded(std::time::Duration::from_secs(30)));
        assert_eq!(writer.log_backlog(), Some((0, 0)));
        assert_eq!(store.counts().unwrap().spans, 5, "visible once loaded");
        let stats = writer.stats();
        assert_eq!(
            stats
                .logged_spans
                .load(std::sync::atomic::Ordering::Relaxed),
            8
        );
        assert_eq!(
            stats
                .duplicate_spans
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        // a batch that asks to be visible is answered after its load, with duplicates
        let c = writer.write(batch(2, 2)).unwrap();
        assert_eq!((c.spans, c.duplicate_spans), (0, 2));
        log = snapshot_log(&path);
        assert!(!log.is_empty());
        writer.close().unwrap();
    }
    assert!(
        log_files(&path).is_empty(),
        "a clean close removes the loaded log"
    );
    assert!(
        !tailscope_store::ingestlog::dir_of(&path).exists(),
        "and its folder, empty"
    );
    // The collector was killed after acknowledging and before loading: simulate it by
    // putting the log back and taking the loads back (rows gone, loaded mark at 0).
    // Opening loads the log again.
    restore_log(&log);
    {
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DELETE FROM spans; DELETE FROM events; DELETE FROM links; DELETE FROM metric_points;
             DELETE FROM resources; DELETE FROM resource_attributes; UPDATE ingest_log SET loaded_seq = 0",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.counts().unwrap().spans,
        5,
        "every acknowledged span is back, each once"
    );
    assert_eq!(
        scalar_i64(&store, "SELECT count(*) FROM resources"),
        1,
        "resources once"
    );
    assert!(scalar_i64(&store, "SELECT max(loaded_seq) FROM ingest_log") >= 4);
    // opening again loads nothing twice
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.counts().unwrap().spans, 5);
}

/// A stream of acknowledged batches loads in a few transactions, each holding many
/// frames, and a batch sent again while its first copy is still in the open
/// transaction is dropped all the same.
#[test]
fn a_stream_of_batches_loads_in_few_transactions_exactly_once() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.duckdb");
    let store = Store::open(&path).unwrap();
    // one frame a group, so that every frame is a step of the loader
    let writer = store
        .writer(WriterConfig {
            max_group_items: 1,
            ..WriterConfig::default()
        })
        .unwrap();
    let sent = 40u8;
    for t in 1..=sent {
        submit_durable(&writer, batch(t, 20)).unwrap();
        if t % 10 == 0 {
            // the retry of a batch sent a few frames before
            submit_durable(&writer, batch(t - 3, 20)).unwrap();
        }
    }
    assert!(writer.wait_loaded(std::time::Duration::from_secs(60)));
    let stats = writer.stats();
    assert_eq!(store.counts().unwrap().spans, u64::from(sent) * 20);
    assert_eq!(stats.duplicate_spans.load(Relaxed), 4 * 20);
    assert_eq!(stats.committed_spans.load(Relaxed), u64::from(sent) * 20);
    let frames = u64::from(sent) + 4;
    let transactions = stats.transactions.load(Relaxed);
    assert!(
        transactions * 4 <= frames,
        "{transactions} transactions for {frames} frames: the loader commits every frame"
    );
    assert_eq!(
        scalar_i64(&store, "SELECT max(loaded_seq) FROM ingest_log"),
        i64::try_from(frames).unwrap(),
        "the loaded mark is the last frame"
    );
    assert_eq!(scalar_i64(&store, "SELECT count(*) FROM resources"), 1);
    writer.close().unwrap();
}

#[test]
fn a_read_only_open_sees_batches_left_in_the_ingest_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.duckdb");
    let log = ingest_keeping_the_log(&path, batch(7, 4));
    restore_log(&log);
    {
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute_batch("DELETE FROM spans; UPDATE ingest_log SET loaded_seq = 0")
            .unwrap();
    }
    let ro = Store::open_read_only(&path).unwrap();
    assert_eq!(ro.counts().unwrap().spans, 4);
}

#[test]
fn a_torn_ingest_log_tail_is_cut_and_counted() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.duckdb");
    let log = ingest_keeping_the_log(&path, batch(3, 2));
    // a crash in the middle of an append (never acknowledged): half a frame header
    restore_log(&log);
    let newest = log_files(&path).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    f.write_all(&[0x4c, 0x53, 0x54, 0x46, 9, 9]).unwrap();
    drop(f);
    let store = Store::open(&path).unwrap();
    let writer = store.writer(WriterConfig::default()).unwrap();
    submit_durable(&writer, batch(4, 2)).unwrap();
    writer.close().unwrap();
    assert_eq!(store.counts().unwrap().spans, 4);
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM store_recoveries WHERE what = 'ingest-log-torn'"
        ),
        1
    );
}

#[test]
fn without_an_ingest_log_an_acknowledgement_means_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nolog.duckdb");
    let store = Store::open(&path).unwrap();
    let writer = store
        .writer(WriterConfig {
            ingest_log: false,
            ..WriterConfig::default()
        })
        .unwrap();
    submit_durable(&writer, batch(5, 3)).unwrap();
    assert_eq!(store.counts().unwrap().spans, 3);
    assert_eq!(writer.log_backlog(), None);
    writer.close().unwrap();
    assert!(log_files(&path).is_empty());
}
