//! End-to-end tests over the real `tailscope` binary: real OTLP clients (the
//! OpenTelemetry Python SDK and the Rust `opentelemetry-otlp` exporter) export to a
//! running `tailscope serve`, and what arrived is checked through `tailscope query`.
//! Also: the crate dependency DAG of design.md, and a saturated real writer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod clickhouse;
mod live;
mod real_telemetry;
mod remote;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `tailscope` binary cargo built beside this test (the app's own tests make
/// cargo build it for `cargo test --workspace`).
fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let b = dir.join("tailscope");
    assert!(
        b.exists(),
        "{} missing: run `cargo test --workspace` (or `cargo build -p tailscope`) first",
        b.display()
    );
    b
}

struct Server {
    child: Child,
    grpc: String,
    http: String,
}

impl Server {
    fn start(db: &Path) -> Result<Server> {
        let mut child = Command::new(bin())
            .args(["--db"])
            .arg(db)
            .args([
                "serve",
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--status-every",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting tailscope serve")?;
        let out = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(out).lines();
        let first = lines.next().context("serve printed nothing")??;
        // "tailscope collector listening: OTLP/gRPC 127.0.0.1:1 · OTLP/HTTP 127.0.0.1:2 · store ..."
        let addr_after = |tag: &str| -> Result<String> {
            let rest = first
                .split(tag)
                .nth(1)
                .with_context(|| format!("no {tag} in {first:?}"))?;
            Ok(rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned())
        };
        let grpc = addr_after("OTLP/gRPC ")?;
        let http = addr_after("OTLP/HTTP ")?;
        std::thread::Builder::new()
            .name("serve-stdout".into())
            .spawn(move || for _ in lines {})?;
        Ok(Server { child, grpc, http })
    }

    /// SIGINT, then wait: serve drains its queue and commits before exiting.
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status()?;
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("serve exited with {status}");
                }
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(30) {
                self.child.kill()?;
                bail!("serve did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn query(db: &Path, sql: &str) -> Result<Vec<Value>> {
    let out = Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(["query", "--format", "json", sql])
        .output()?;
    if !out.status.success() {
        bail!("query failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn one(db: &Path, sql: &str) -> Result<Value> {
    let rows = query(db, sql)?;
    let row = rows.first().with_context(|| format!("no rows for {sql}"))?;
    Ok(row
        .as_object()
        .and_then(|o| o.values().next().cloned())
        .unwrap_or(Value::Null))
}

/// The workspace's metadata, resolved for the platform this test was built for only:
/// other platforms' crates (accesskit_macos, windows-sys, ...) are never downloaded by
/// a Linux build, and `--offline` must not need them.
fn cargo_metadata(no_deps: bool) -> Result<Value> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["metadata", "--format-version", "1", "--offline"]);
    cmd.args(["--filter-platform", env!("TAILSCOPE_BUILD_TARGET")]);
    if no_deps {
        cmd.arg("--no-deps");
    }
    let out = cmd.current_dir(repo()).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every package `root` reaches over normal (non-dev, non-build) dependencies in the
/// resolved graph, each with the chain of package names that leads to it.
fn normal_closure(meta: &Value, root: &str) -> Result<Vec<(String, Vec<String>)>> {
    use std::collections::{HashMap, VecDeque};
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default(),
                p["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .context("resolve.nodes")?
        .iter()
        .map(|n| (n["id"].as_str().unwrap_or_default(), n))
        .collect();
    let members = meta["workspace_members"]
        .as_array()
        .context("workspace_members")?;
    let start = members
        .iter()
        .filter_map(Value::as_str)
        .find(|id| names.get(id) == Some(&root))
        .with_context(|| format!("{root} is not a workspace member"))?;
    let mut chain: HashMap<&str, Vec<String>> = HashMap::from([(start, vec![root.to_owned()])]);
    let mut queue = VecDeque::from([start]);
    let mut out = Vec::new();
    while let Some(id) = queue.pop_front() {
        let deps = nodes
            .get(id)
            .and_then(|n| n["deps"].as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for d in deps {
            let normal = d["dep_kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()));
            let dep = d["pkg"].as_str().unwrap_or_default();
            if !normal || chain.contains_key(dep) {
                continue;
            }
            let mut c = chain[id].clone();
            c.push(names.get(dep).copied().unwrap_or(dep).to_owned());
            out.push((c.last().cloned().unwrap_or_default(), c.clone()));
            chain.insert(dep, c);
            queue.push_back(dep);
        }
    }
    Ok(out)
}

#[test]
fn dependency_edges_follow_design_dag() -> Result<()> {
    let meta = cargo_metadata(true)?;
    let allowed: &[(&str, &[&str])] = &[
        ("tailscope-model", &[]),
        ("tailscope-ingest", &["tailscope-model"]),
        ("tailscope-store", &["tailscope-model"]),
        ("tailscope-analysis-core", &["tailscope-model"]),
        (
            "tailscope-analysis",
            &[
                "tailscope-model",
                "tailscope-store",
                "tailscope-analysis-core",
            ],
        ),
        ("tailscope-engine", &["tailscope-model"]),
        (
            "tailscope-ui",
            &["tailscope-model", "tailscope-analysis-core"],
        ),
        ("tailscope-samples", &["tailscope-model"]),
    ];
    // checked over the resolved graph: no path at all, direct or transitive
    let forbidden_external: &[(&str, &[&str])] = &[
        (
            "tailscope-ui",
            &[
                "tokio",
                "tonic",
                "duckdb",
                "polars",
                "candle-core",
                "candle-nn",
            ],
        ),
        ("tailscope-model", &["tokio", "duckdb", "egui", "eframe"]),
        ("tailscope-analysis-core", &["duckdb", "polars", "tokio"]),
    ];
    let mut seen = 0;
    let mut violations = Vec::new();
    for pkg in meta["packages"].as_array().context("packages")? {
        let name = pkg["name"].as_str().unwrap_or_default();
        let deps: Vec<(&str, bool)> = pkg["dependencies"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|d| (d["name"].as_str().unwrap_or_default(), d["kind"].is_null()))
                    .collect()
            })
            .unwrap_or_default();
        for (dep, normal) in &deps {
            if (dep.starts_with("egui") || *dep == "eframe")
                // the GUI crate, the binary, and the cross-crate tests (gui-bench) may
                && !matches!(name, "tailscope-ui" | "tailscope" | "tailscope-tests")
            {
                violations.push(format!("{name} -> {dep}: no backend crate depends on egui"));
            }
            if !normal {
                continue;
            }
            if let Some((_, ok)) = allowed.iter().find(|(p, _)| *p == name) {
                if dep.starts_with("tailscope") && !ok.contains(dep) {
                    violations.push(format!("{name} -> {dep} is not in design.md's DAG"));
                }
            }
        }
        if allowed.iter().any(|(p, _)| *p == name) {
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        allowed.len(),
        "every design.md crate is in the workspace"
    );
    let resolved = cargo_metadata(false)?;
    for (name, bad) in forbidden_external {
        for (dep, chain) in normal_closure(&resolved, name)? {
            if bad.contains(&dep.as_str()) {
                violations.push(format!(
                    "{} is forbidden ({name} must not depend on {dep}, even transitively)",
                    chain.join(" -> ")
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
    Ok(())
}

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

#[test]
fn python_sdk_exports_arrive_intact() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("py.duckdb");
    let server = Server::start(&db)?;
    let mut sent = Vec::new();
    for (proto, endpoint) in [
        ("grpc", format!("http://{}", server.grpc)),
        ("http/protobuf", format!("http://{}", server.http)),
        ("http/json", format!("http://{}", server.http)),
    ] {
        let run_id = proto.replace('/', "-");
        let out = Command::new(python())
            .arg(repo().join("tests/python/export.py"))
            .args([proto, &endpoint, &run_id])
            .output()?;
        assert!(
            out.status.success(),
            "{proto}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        sent.push((run_id, v));
    }
    server.stop()?;

    for (run_id, v) in &sent {
        let service = format!("py-agent-{run_id}");
        let spans = v["spans"].as_array().context("spans")?;
        let n = one(
            &db,
            &format!("SELECT count(*) FROM spans WHERE service_name = '{service}'"),
        )?;
        assert_eq!(n, spans.len(), "{run_id}: span count");
        for s in spans {
            let (t, id) = (
                s["trace_id"].as_str().unwrap_or(""),
                s["span_id"].as_str().unwrap_or(""),
            );
            let rows = query(
                &db,
                &format!("SELECT * FROM spans WHERE trace_id = '{t}' AND span_id = '{id}'"),
            )?;
            assert_eq!(rows.len(), 1, "{run_id}: span {id} stored once");
            let row = &rows[0];
            if let Some(tokens) = s.get("input_tokens") {
                assert_eq!(&row["input_tokens"], tokens, "{run_id}");
                assert_eq!(row["op_class"], "llm");
                assert_eq!(row["model"], "llama-3");
                assert_eq!(row["provider"], "vllm");
                assert_eq!(row["conversation_id"], format!("conv-{run_id}"));
                assert_eq!(row["time_to_first_chunk_ns"], 125_000_000);
                assert_eq!(row["stream"], true);
                assert_eq!(row["event_count"], 1);
                // every attribute the SDK set arrived, with its type
                let attrs = query(
                    &db,
                    &format!("SELECT key, value_type, value FROM span_attributes WHERE span_id = '{id}' ORDER BY key"),
                )?;
                assert_eq!(
                    Value::from(attrs.len()),
                    s["attr_count"],
                    "{run_id}: {attrs:?}"
                );
                let get = |k: &str| {
                    attrs
                        .iter()
                        .find(|a| a["key"] == k)
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                assert_eq!(get("gen_ai.request.temperature")["value_type"], "double");
                assert_eq!(get("gen_ai.request.temperature")["value"], "0.5");
                assert_eq!(get("gen_ai.usage.output_tokens")["value_type"], "int");
                assert_eq!(get("gen_ai.request.stream")["value"], "true");
                assert_eq!(get("tags")["value"], r#"["a","b"]"#);
                assert_eq!(get("run.id")["value"], run_id.as_str());
            } else {
                assert_eq!(row["op_class"], "agent");
                assert_eq!(row["parent_span_id"], Value::Null);
            }
        }
        let err = query(
            &db,
            &format!("SELECT status_code, status_message, error_type FROM spans WHERE service_name = '{service}' AND status_code = 'error'"),
        )?;
        assert_eq!(err.len(), 1, "{run_id}");
        assert_eq!(err[0]["error_type"], "429");
        assert_eq!(err[0]["status_message"], "rate limited");
        let res = one(
            &db,
            &format!("SELECT count(*) FROM resource_attributes ra JOIN resources r USING (resource_id) WHERE r.service_name = '{service}' AND key = 'deployment.environment' AND value = 'test'"),
        )?;
        assert_eq!(res, 1, "{run_id}: resource attributes");
        let events = one(
            &db,
            &format!("SELECT count(*) FROM events e JOIN spans s USING (trace_id, span_id) WHERE s.service_name = '{service}' AND e.name = 'gen_ai.chunk' AND e.attributes LIKE '%\"tokens\":4%'"),
        )?;
        assert_eq!(events, 3, "{run_id}: events");
        let hist = query(
            &db,
            &format!("SELECT kind, count, sum, list_sum(bucket_counts) AS buckets, unit FROM metric_points WHERE service_name = '{service}' AND name = 'gen_ai.client.operation.duration' ORDER BY time_ns DESC"),
        )?;
        // force_flush and shutdown may each export the cumulative point: take the last.
        assert!(!hist.is_empty(), "{run_id}: histogram arrived");
        assert_eq!(hist[0]["kind"], "histogram");
        assert_eq!(hist[0]["count"], v["histogram_count"]);
        assert_eq!(hist[0]["sum"], v["histogram_sum"]);
        assert_eq!(hist[0]["unit"], "s");
    }
    Ok(())
}

mod rust_otlp {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    /// Emits one agent trace (root + 3 LLM calls) and 3 histogram records; returns the trace id.
    fn emit(tp: &SdkTracerProvider, mp: &SdkMeterProvider, run: &str) -> String {
        let tracer = tp.tracer("tailscope.rust-test");
        let hist = mp
            .meter("tailscope.rust-test")
            .f64_histogram("gen_ai.client.operation.duration")
            .with_unit("s")
            .build();
        let mut trace_id = String::new();
        tracer.in_span("invoke_agent planner", |cx| {
            trace_id = cx.span().span_context().trace_id().to_string();
            for turn in 0..3i64 {
                let mut s = tracer
                    .span_builder("chat llama-3")
                    .with_kind(opentelemetry::trace::SpanKind::Client)
                    .with_attributes(vec![
                        KeyValue::new("gen_ai.operation.name", "chat"),
                        KeyValue::new("gen_ai.request.model", "llama-3"),
                        KeyValue::new("gen_ai.system", "vllm"),
                        KeyValue::new("gen_ai.usage.prompt_tokens", 1000 + 100 * turn),
                        KeyValue::new("gen_ai.usage.completion_tokens", 50),
                        KeyValue::new("gen_ai.conversation.id", format!("conv-{run}")),
                        KeyValue::new("run.id", run.to_owned()),
                    ])
                    .start_with_context(&tracer, &cx);
                s.add_event("gen_ai.chunk", vec![KeyValue::new("tokens", 4)]);
                if turn == 2 {
                    s.set_status(Status::error("boom"));
                }
                s.end();
                hist.record(
                    0.5 + turn as f64,
                    &[KeyValue::new("gen_ai.request.model", "llama-3")],
                );
            }
        });
        trace_id
    }

    fn resource(run: &str) -> Resource {
        Resource::builder()
            .with_service_name(format!("rust-agent-{run}"))
            .build()
    }

    fn check(db: &Path, run: &str, trace_id: &str) -> Result<()> {
        let service = format!("rust-agent-{run}");
        let rows = query(db, &format!("SELECT op_class, input_tokens, provider, conversation_id, status_code FROM spans WHERE trace_id = '{trace_id}' AND service_name = '{service}' ORDER BY input_tokens NULLS FIRST"))?;
        assert_eq!(rows.len(), 4, "{run}: {rows:?}");
        assert_eq!(rows[0]["op_class"], "other");
        for (i, r) in rows[1..].iter().enumerate() {
            assert_eq!(r["op_class"], "llm", "{run}");
            assert_eq!(r["input_tokens"], 1000 + 100 * i as i64, "{run}");
            assert_eq!(
                r["provider"], "vllm",
                "{run}: deprecated gen_ai.system alias"
            );
            assert_eq!(r["conversation_id"], format!("conv-{run}"));
        }
        assert_eq!(rows[3]["status_code"], "error");
        let attrs = one(
            db,
            &format!("SELECT count(*) FROM span_attributes WHERE trace_id = '{trace_id}'"),
        )?;
        assert_eq!(attrs, 21, "{run}: 7 attributes on each of 3 spans");
        let hist = query(db, &format!("SELECT count, sum FROM metric_points WHERE service_name = '{service}' AND name = 'gen_ai.client.operation.duration'"))?;
        assert!(!hist.is_empty(), "{run}: histogram arrived");
        assert_eq!(
            hist.last().map(|h| h["count"].clone()),
            Some(Value::from(3)),
            "{run}"
        );
        Ok(())
    }

    #[test]
    fn rust_exporter_grpc_and_http() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("rust.duckdb");
        let server = Server::start(&db)?;
        let mut runs = Vec::new();

        // gRPC (tonic) needs a Tokio runtime around the exporter.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let grpc = format!("http://{}", server.grpc);
        let trace_id = rt.block_on(async {
            let tp = SdkTracerProvider::builder()
                .with_resource(resource("grpc"))
                .with_simple_exporter(
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(grpc.clone())
                        .build()?,
                )
                .build();
            let mp = SdkMeterProvider::builder()
                .with_resource(resource("grpc"))
                .with_periodic_exporter(
                    opentelemetry_otlp::MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(grpc.clone())
                        .build()?,
                )
                .build();
            let id = emit(&tp, &mp, "grpc");
            let tp2 = tp.clone();
            let mp2 = mp.clone();
            tokio::task::spawn_blocking(move || {
                tp2.force_flush()?;
                mp2.force_flush()?;
                tp2.shutdown()?;
                mp2.shutdown()?;
                anyhow::Ok(())
            })
            .await??;
            anyhow::Ok(id)
        })?;
        runs.push(("grpc", trace_id));

        // HTTP with the blocking reqwest client, outside any runtime.
        for (run, protocol) in [
            ("http-proto", Protocol::HttpBinary),
            ("http-json", Protocol::HttpJson),
        ] {
            let base = format!("http://{}", server.http);
            let tp = SdkTracerProvider::builder()
                .with_resource(resource(run))
                .with_simple_exporter(
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(protocol)
                        .with_endpoint(format!("{base}/v1/traces"))
                        .build()?,
                )
                .build();
            let mp = SdkMeterProvider::builder()
                .with_resource(resource(run))
                .with_periodic_exporter(
                    opentelemetry_otlp::MetricExporter::builder()
                        .with_http()
                        .with_protocol(protocol)
                        .with_endpoint(format!("{base}/v1/metrics"))
                        .build()?,
                )
                .build();
            let id = emit(&tp, &mp, run);
            tp.force_flush()?;
            mp.force_flush()?;
            tp.shutdown()?;
            mp.shutdown()?;
            runs.push((run, id));
        }
        server.stop()?;
        for (run, id) in runs {
            check(&db, run, &id)?;
        }
        Ok(())
    }
}

/// Analysis against the generator's ground truth, through the real path: each workload is
/// written as OTLP protobuf (whole traces in length-prefixed messages, as `tailscope
/// generate --format protobuf` writes it), read back with ingest's `read_file` (the OTLP
/// decode and the one semconv normalisation the collector runs) into a store, and analysed
/// there. Three workloads: the default one (planted causes), a clean one (nothing planted,
/// nothing queued or evicted) and a noisy one (large natural variance, causes planted at
/// the usual rate). Each prints its confusion matrix (planted cause x primary cause) and the
/// precision of every finding kind:
/// `cargo test -p tailscope-tests --test e2e ground_truth -- --nocapture`.
mod ground_truth {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::fmt::Write as _;
    use std::sync::OnceLock;
    use tailscope_analysis::{
        analyze_spans, analyze_store, Finding, Metrics, Options, Report, TraceResult,
    };
    use tailscope_ingest::{encode, read_file, Signal};
    use tailscope_model::{Batch, Cause, Span, TraceId};
    use tailscope_samples::{generate, GroundTruth, Workload, WorkloadConfig};
    use tailscope_store::{Store, WriterConfig};

    /// The design.md causes the generator plants as latency causes: the rows of the
    /// confusion matrix (besides `none`). Its finding plants (sequential_waterfall, ...) are
    /// judged by findings, not by the primary cause.
    const CAUSES: [&str; 6] = [
        "kv_eviction",
        "pool_wait",
        "preprocessing",
        "queue",
        "tool_cold_start",
        "retry",
    ];

    /// Finding kind -> the planted cause it names.
    const FINDING_PLANT: [(&str, &str); 10] = [
        ("kv_eviction", "kv_eviction"),
        ("queueing", "queue"),
        ("pool_exhaustion", "pool_wait"),
        ("preprocessing_bottleneck", "preprocessing"),
        ("tool_cold_start", "tool_cold_start"),
        ("retry_amplification", "retry"),
        ("sequential_waterfall", "sequential_waterfall"),
        ("fanout_straggler", "fanout_straggler"),
        ("n_plus_one", "n_plus_one"),
        ("stream_stutter", "stream_stutter"),
    ];

    fn plant_of(kind: &str) -> Option<&'static str> {
        FINDING_PLANT
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| *p)
    }

    /// Length-prefixed messages (4-byte big-endian length), as `tailscope generate` frames them.
    fn frame(out: &mut Vec<u8>, msg: &[u8]) {
        out.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
        out.extend_from_slice(msg);
    }

    /// Writes `w` as OTLP protobuf files, reads them back with ingest's `read_file` and
    /// stores what it decodes, as `tailscope import` does.
    fn ingest_through_otlp(w: &Workload) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let traces_path = dir.path().join("traces.pb");
        let metrics_path = dir.path().join("metrics.pb");
        let mut by_trace: BTreeMap<TraceId, Vec<Span>> = BTreeMap::new();
        for s in &w.batch.spans {
            by_trace.entry(s.trace_id).or_default().push(s.clone());
        }
        let mut bytes = Vec::new();
        let mut chunk: Vec<Span> = Vec::new();
        let encode_chunk = |spans: Vec<Span>, bytes: &mut Vec<u8>| {
            let batch = Batch {
                resources: w.batch.resources.clone(),
                spans,
                ..Batch::default()
            };
            frame(bytes, &encode::traces_protobuf(&batch));
        };
        for spans in by_trace.into_values() {
            if !chunk.is_empty() && chunk.len() + spans.len() > 2048 {
                encode_chunk(std::mem::take(&mut chunk), &mut bytes);
            }
            chunk.extend(spans);
        }
        if !chunk.is_empty() {
            encode_chunk(chunk, &mut bytes);
        }
        std::fs::write(&traces_path, &bytes).unwrap();
        let mut bytes = Vec::new();
        frame(
            &mut bytes,
            &encode::metrics_protobuf(&Batch {
                resources: w.batch.resources.clone(),
                metrics: w.batch.metrics.clone(),
                ..Batch::default()
            }),
        );
        std::fs::write(&metrics_path, &bytes).unwrap();

        let store = Store::open_in_memory().unwrap();
        let writer = store.writer(WriterConfig::default()).unwrap();
        let (mut spans, mut points, mut rejected) = (0, 0, Vec::new());
        for (path, signal) in [
            (&traces_path, Signal::Traces),
            (&metrics_path, Signal::Metrics),
        ] {
            read_file(path, Some(signal), |c| {
                rejected.extend(c.rejections.messages);
                spans += c.batch.spans.len();
                points += c.batch.metrics.len();
                if !c.batch.is_empty() {
                    writer.write(c.batch).unwrap();
                }
            })
            .unwrap();
        }
        writer.close().unwrap();
        assert!(rejected.is_empty(), "ingest rejected: {rejected:?}");
        assert_eq!(spans, w.batch.spans.len(), "every span decoded");
        assert_eq!(points, w.batch.metrics.len(), "every metric point decoded");
        store
    }

    /// A workload, stored through OTLP, and its analysis.
    struct Run {
        name: &'static str,
        w: Workload,
        report: Report,
    }

    fn run(name: &'static str, cfg: &WorkloadConfig) -> Run {
        let w = generate(cfg);
        let store = ingest_through_otlp(&w);
        let report = analyze_store(&store, Options::default()).unwrap();
        // by_cause sums to the critical path, which covers the root
        for t in &report.traces {
            assert_eq!(
                tailscope_analysis::total(&t.by_cause_ns),
                t.duration_ns,
                "{name}: {}",
                t.trace_id
            );
        }
        // trace and span ids survive the round trip, so the truth can be matched
        let by_trace: HashMap<&str, &TraceResult> = report
            .traces
            .iter()
            .map(|t| (t.trace_id.as_str(), t))
            .collect();
        for truth in &w.truth {
            let t = by_trace
                .get(truth.trace_id.to_hex().as_str())
                .unwrap_or_else(|| panic!("{name}: truth trace {} analysed", truth.trace_id));
            assert!(
                t.spans.iter().any(|s| s.span_id == truth.span_id),
                "{name}: truth span {} in trace {}",
                truth.span_id,
                truth.trace_id
            );
        }
        Run { name, w, report }
    }

    /// The default workload with seed 11, shared by the tests that read it.
    fn default_run() -> &'static Run {
        static RUN: OnceLock<Run> = OnceLock::new();
        RUN.get_or_init(|| {
            run(
                "default",
                &WorkloadConfig {
                    seed: 11,
                    ..WorkloadConfig::default()
                },
            )
        })
    }

    fn ms(ns: i64) -> String {
        format!("{:.0}ms", ns as f64 / 1e6)
    }

    /// What one run scored, with the printed tables.
    struct Scores {
        /// Turns planted with one of [`CAUSES`], and those whose primary cause is it.
        planted: usize,
        planted_hits: usize,
        /// Turns without truth, and those with a finding of a planted kind that is not
        /// about a real (incidental) slow-down of the trace.
        unplanted: usize,
        unplanted_flagged: usize,
        text: String,
    }

    fn pct(n: usize, d: usize) -> String {
        if d == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}%", 100.0 * n as f64 / d as f64)
        }
    }

    fn score(run: &Run) -> Scores {
        let Run { name, w, report } = run;
        let mut out = String::new();
        // Turn traces: the generator's truth covers turns only; async jobs and the batch
        // tenant's requests are not rows (their findings still count in precision).
        let turns: HashSet<String> = w
            .batch
            .spans
            .iter()
            .filter(|s| s.parent_span_id.is_none() && s.attr("app.turn.index").is_some())
            .map(|s| s.trace_id.to_hex())
            .collect();
        let truth: HashMap<String, &GroundTruth> =
            w.truth.iter().map(|t| (t.trace_id.to_hex(), t)).collect();
        let mut incidental: HashMap<String, HashSet<&str>> = HashMap::new();
        for t in &w.incidental {
            incidental
                .entry(t.trace_id.to_hex())
                .or_default()
                .insert(t.cause.as_str());
        }
        let real = |id: &str, cause: &str| {
            truth.get(id).is_some_and(|t| t.cause == cause)
                || incidental.get(id).is_some_and(|c| c.contains(cause))
        };
        let row_of = |id: &str| match truth.get(id) {
            Some(t) => t.cause.as_str(),
            None if incidental.contains_key(id) => "incidental",
            None => "none",
        };
        let mut findings_on: HashMap<&str, Vec<&Finding>> = HashMap::new();
        for f in &report.findings {
            findings_on.entry(f.trace_id.as_str()).or_default().push(f);
        }
        let primary = |t: &TraceResult| t.primary_cause.map_or("null", Cause::as_str);
        let results: HashMap<&str, &TraceResult> = report
            .traces
            .iter()
            .map(|t| (t.trace_id.as_str(), t))
            .collect();

        // Confusion matrix: planted cause (rows) x primary cause (columns).
        let mut matrix: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        // per primary cause: (turns, of them right by the truth, right counting incidental)
        let mut column: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
        for t in report.traces.iter().filter(|t| turns.contains(&t.trace_id)) {
            let (row, p) = (row_of(&t.trace_id), primary(t));
            *matrix.entry(row).or_default().entry(p).or_default() += 1;
            let c = column.entry(p).or_default();
            c.0 += 1;
            c.1 += usize::from(row == p);
            c.2 += usize::from(real(&t.trace_id, p));
        }
        let mut cols: Vec<&str> = Cause::ALL
            .iter()
            .map(|c| c.as_str())
            .filter(|c| column.contains_key(c) || CAUSES.contains(c))
            .collect();
        cols.push("null");
        let rows: Vec<&str> = CAUSES
            .iter()
            .copied()
            .chain(["incidental", "none"])
            .collect();
        let finding_rows: Vec<&str> = matrix
            .keys()
            .copied()
            .filter(|r| !rows.contains(r))
            .collect();
        let _ = writeln!(
            out,
            "\n===== {name} workload: {} traces ({} turns), {} planted, {} incidental, {} findings =====",
            report.traces.len(),
            turns.len(),
            w.truth.len(),
            w.incidental.len(),
            report.findings.len()
        );
        let _ = writeln!(
            out,
            "confusion matrix: rows = planted cause of the turn (incidental: nothing planted, \
             but a simulated queueing or re-prefill below the truth threshold; none: nothing \
             at all), columns = primary_cause"
        );
        let mut header = format!("{:>22}", "planted \\ primary");
        for c in &cols {
            let _ = write!(header, " {:>8}", c.chars().take(8).collect::<String>());
        }
        let _ = writeln!(out, "{header} {:>6} {:>7}", "total", "recall");
        let print_row = |out: &mut String, r: &str| {
            let cells = matrix.get(r).cloned().unwrap_or_default();
            let total: usize = cells.values().sum();
            let mut line = format!("{r:>22}");
            for c in &cols {
                let _ = write!(line, " {:>8}", cells.get(c).copied().unwrap_or(0));
            }
            let hit = if CAUSES.contains(&r) { r } else { "null" };
            let recall = pct(cells.get(hit).copied().unwrap_or(0), total);
            let _ = writeln!(out, "{line} {total:>6} {recall:>7}");
        };
        for r in &rows {
            print_row(&mut out, r);
        }
        if !finding_rows.is_empty() {
            let _ = writeln!(out, "{:>22}", "(finding plants)");
            for r in &finding_rows {
                print_row(&mut out, r);
            }
        }
        for (label, strict) in [("precision", false), ("strict precision", true)] {
            let mut line = format!("{label:>22}");
            for c in &cols {
                let cell = match column.get(c) {
                    Some(&(n, by_truth, real)) if CAUSES.contains(c) => {
                        pct(if strict { by_truth } else { real }, n)
                    }
                    _ => "-".to_owned(),
                };
                let _ = write!(line, " {cell:>8}");
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "(recall: share of the row's turns whose primary cause is the planted cause, for \
             the other rows the share with a null primary cause; precision: share of the column's turns where that cause is real: \
             planted, or an incidental slow-down of the trace; strict: planted only)"
        );
        let (planted, planted_hits) = CAUSES.iter().fold((0, 0), |(n, h), c| {
            let cells = matrix.get(c);
            (
                n + cells.map_or(0, |m| m.values().sum::<usize>()),
                h + cells.and_then(|m| m.get(c)).copied().unwrap_or(0),
            )
        });
        let _ = writeln!(
            out,
            "primary cause = planted: {planted_hits}/{planted} = {:.1}%",
            100.0 * planted_hits as f64 / planted.max(1) as f64
        );

        // Findings: precision and recall per kind.
        let _ = writeln!(
            out,
            "\nfindings: matched = on a trace planted with the cause the kind names; incidental = \
             on a trace where that cause happened below the truth threshold;\n\
             precision = (matched + incidental) / all, strict = matched / all; \
             recall = planted traces with a finding of the kind / planted traces"
        );
        let _ = writeln!(
            out,
            "{:>26} {:>16} {:>5} {:>7} {:>10} {:>8} {:>9} {:>6} {:>7}",
            "kind",
            "names plant",
            "all",
            "matched",
            "incidental",
            "not turn",
            "precision",
            "strict",
            "recall"
        );
        let mut kinds: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in &report.findings {
            kinds.entry(f.kind.as_str()).or_default().push(f);
        }
        for (kind, fs) in &kinds {
            let plant = plant_of(kind);
            let by_truth = |f: &&&Finding| plant.is_some_and(|p| row_of(&f.trace_id) == p);
            let matched = fs.iter().filter(by_truth).count();
            let real_count = fs
                .iter()
                .filter(|f| plant.is_some_and(|p| real(&f.trace_id, p)))
                .count();
            let not_turn = fs.iter().filter(|f| !turns.contains(&f.trace_id)).count();
            let recall = plant.map_or("-".to_owned(), |p| {
                let planted: Vec<String> = w
                    .truth
                    .iter()
                    .filter(|t| t.cause == p)
                    .map(|t| t.trace_id.to_hex())
                    .collect();
                let found = planted
                    .iter()
                    .filter(|id| fs.iter().any(|f| f.trace_id == **id))
                    .count();
                if planted.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{found}/{}", planted.len())
                }
            });
            let (precision, strict) = if plant.is_some() {
                (pct(real_count, fs.len()), pct(matched, fs.len()))
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            let _ = writeln!(
                out,
                "{kind:>26} {:>16} {:>5} {matched:>7} {:>10} {not_turn:>8} {precision:>9} {strict:>6} {recall:>7}",
                plant.unwrap_or("(not planted)"),
                fs.len(),
                real_count - matched,
            );
        }

        // Turns with nothing planted that still get a finding of a planted kind.
        let mut unplanted: Vec<&str> = turns
            .iter()
            .filter(|id| !truth.contains_key(id.as_str()))
            .map(String::as_str)
            .collect();
        unplanted.sort_unstable();
        let mut flagged_by: BTreeMap<&str, usize> = BTreeMap::new();
        let mut flagged: Vec<Vec<&Finding>> = Vec::new();
        let mut about_incidental = 0;
        for id in &unplanted {
            let of_planted_kind = findings_on.get(id).map_or(Vec::new(), |v| {
                v.iter()
                    .copied()
                    .filter(|f| plant_of(&f.kind).is_some())
                    .collect()
            });
            let false_alarms: Vec<&Finding> = of_planted_kind
                .iter()
                .copied()
                .filter(|f| plant_of(&f.kind).is_some_and(|p| !real(id, p)))
                .collect();
            if false_alarms.is_empty() {
                about_incidental += usize::from(!of_planted_kind.is_empty());
            } else {
                for f in &false_alarms {
                    *flagged_by.entry(f.kind.as_str()).or_default() += 1;
                }
                flagged.push(false_alarms);
            }
        }
        let _ = writeln!(
            out,
            "\nturns with nothing planted that get a finding of a planted kind: {}/{} = {:.2}% {flagged_by:?}\n\
             (not counted: {about_incidental} more whose findings are all about a real incidental slow-down)",
            flagged.len(),
            unplanted.len(),
            100.0 * flagged.len() as f64 / unplanted.len().max(1) as f64
        );

        // A few concrete misses, for diagnosis.
        let describe = |t: &TraceResult| -> String {
            let mut by: Vec<(&Cause, &i64)> = t.by_cause_ns.iter().collect();
            by.sort_by_key(|(_, ns)| -**ns);
            let causes: Vec<String> = by
                .iter()
                .take(4)
                .map(|(c, ns)| format!("{}={}", c.as_str(), ms(**ns)))
                .collect();
            let kinds: Vec<&str> = findings_on
                .get(t.trace_id.as_str())
                .map(|v| v.iter().map(|f| f.kind.as_str()).collect())
                .unwrap_or_default();
            format!(
                "{} [{}] {} by_cause {{{}}} findings {kinds:?}",
                t.trace_id,
                t.root,
                ms(t.duration_ns),
                causes.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "\nexamples (planted -> primary: trace [root] duration, largest causes, findings):"
        );
        for r in CAUSES {
            let misses = w.truth.iter().filter(|t| t.cause == r).filter_map(|t| {
                let res = results.get(t.trace_id.to_hex().as_str())?;
                (primary(res) != r).then_some((t, *res))
            });
            for (t, res) in misses.take(3) {
                let _ = writeln!(
                    out,
                    "  {r} ({} on {}) -> {}: {}",
                    ms(t.extra_ns),
                    t.span_id,
                    primary(res),
                    describe(res)
                );
            }
        }
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &unplanted {
            let Some(res) = results.get(id) else { continue };
            let p = primary(res);
            if p != "null" && !real(id, p) {
                let n = shown.entry(p).or_default();
                *n += 1;
                if *n <= 2 {
                    let _ = writeln!(out, "  {} -> {p}: {}", row_of(id), describe(res));
                }
            }
        }
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for f in flagged.iter().flatten() {
            let n = shown.entry(f.kind.as_str()).or_default();
            *n += 1;
            if *n <= 3 {
                let _ = writeln!(
                    out,
                    "  {}, finding {} on {} ({}): {}",
                    row_of(&f.trace_id),
                    f.kind,
                    f.trace_id,
                    ms(f.estimated_cost_ns),
                    f.summary
                );
            }
        }
        Scores {
            planted,
            planted_hits,
            unplanted: unplanted.len(),
            unplanted_flagged: flagged.len(),
            text: out,
        }
    }

    /// Each planted slow-down is named: a latency cause gets at least 60% of its injected
    /// time on the critical path, a finding plant gets a finding of its kind.
    #[test]
    fn planted_causes_are_found() {
        let Run { w, report, .. } = default_run();
        let by_trace: BTreeMap<&str, &TraceResult> = report
            .traces
            .iter()
            .map(|t| (t.trace_id.as_str(), t))
            .collect();
        // async jobs started by a span of another trace are tied to that caller
        let linked: Vec<_> = report
            .traces
            .iter()
            .filter_map(|t| t.caller.as_ref())
            .collect();
        assert!(!linked.is_empty(), "the workload has linked async traces");
        for (caller_trace, caller_span) in linked {
            let caller = by_trace
                .get(caller_trace.as_str())
                .expect("caller trace analysed");
            assert!(
                caller
                    .spans
                    .iter()
                    .any(|s| s.span_id.to_hex() == *caller_span),
                "caller span exists"
            );
        }
        let mut hits: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for truth in &w.truth {
            let id = truth.trace_id.to_hex();
            let cause = truth.cause.as_str();
            let found = if CAUSES.contains(&cause) {
                // a design.md cause: the injected time is attributed to it on the critical path
                by_trace
                    .get(id.as_str())
                    .and_then(|t| t.by_cause_ns.iter().find(|(c, _)| c.as_str() == cause))
                    .is_some_and(|(_, ns)| *ns * 10 >= truth.extra_ns * 6)
            } else {
                report
                    .findings
                    .iter()
                    .any(|f| f.trace_id == id && f.kind == cause)
            };
            let e = hits.entry(cause).or_default();
            e.1 += 1;
            if found {
                e.0 += 1;
            }
        }
        let table: Vec<String> = hits
            .iter()
            .map(|(c, (h, n))| format!("  {c}: {h}/{n}"))
            .collect();
        println!(
            "default workload, planted slow-downs named (recall):\n{}",
            table.join("\n")
        );
        for (c, (h, n)) in &hits {
            assert!(*n > 0);
            assert!(
                *h * 10 >= *n * 7,
                "{c}: only {h} of {n} planted traces named\n{}",
                table.join("\n")
            );
        }
    }

    /// Seeds the analysis thresholds were tuned on (the spread floor of 3.5%, "present
    /// in at least 25% of a group", the straggler z >= 3 were chosen on seed 11) and
    /// seeds held out from tuning: a bar must hold on both.
    const TUNED_SEEDS: &[u64] = &[11];
    const HELD_OUT_SEEDS: &[u64] = &[23, 37];

    /// The issue's bar on our generator: the primary cause is the planted cause for at
    /// least 90% of the traces planted with a latency cause, on the tuning seed and on
    /// the held-out seeds.
    #[test]
    fn primary_cause_is_the_planted_cause() {
        let mut failures = Vec::new();
        for &seed in TUNED_SEEDS.iter().chain(HELD_OUT_SEEDS) {
            let s = if seed == 11 {
                score(default_run())
            } else {
                // a run's name lives as long as the shared runs do
                let name: &'static str = Box::leak(format!("default seed {seed}").into_boxed_str());
                score(&run(
                    name,
                    &WorkloadConfig {
                        seed,
                        ..WorkloadConfig::default()
                    },
                ))
            };
            println!("{}", s.text);
            let kind = if TUNED_SEEDS.contains(&seed) {
                "tuned"
            } else {
                "held out"
            };
            println!(
                "seed {seed} ({kind}): primary = planted {}/{}",
                s.planted_hits, s.planted
            );
            if s.planted_hits * 10 < s.planted * 9 {
                failures.push(format!(
                    "seed {seed} ({kind}): primary cause = planted for only {}/{} planted traces (want >= 90%)",
                    s.planted_hits, s.planted
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// On a workload with nothing planted (and nothing queued or evicted), fewer than 2% of
    /// the turns get a finding of a kind the generator plants.
    #[test]
    fn clean_turns_get_no_findings_of_planted_kinds() {
        let run = run("clean", &WorkloadConfig::clean(11, 160));
        assert!(
            run.w.truth.is_empty() && run.w.incidental.is_empty(),
            "the clean workload plants nothing and nothing queues or is evicted"
        );
        let s = score(&run);
        println!("{}", s.text);
        assert!(s.unplanted > 500, "{} clean turns", s.unplanted);
        assert!(
            s.unplanted_flagged * 50 < s.unplanted,
            "{}/{} clean turns get a finding of a planted kind (want < 2%)",
            s.unplanted_flagged,
            s.unplanted
        );
    }

    /// The same tables under large natural variance, scored: the primary cause is the
    /// planted one for at least 90% of planted turns, and fewer than 2% of the turns
    /// with nothing planted get a finding of a planted kind (precision), on the tuning
    /// seed and a held-out one.
    #[test]
    fn noisy_workload_scores() {
        let mut failures = Vec::new();
        for &seed in &[TUNED_SEEDS[0], HELD_OUT_SEEDS[0]] {
            let name: &'static str = Box::leak(format!("noisy seed {seed}").into_boxed_str());
            let run = run(name, &WorkloadConfig::noisy(seed, 160));
            let s = score(&run);
            println!("{}", s.text);
            assert!(s.planted > 0 && s.unplanted > 0);
            if s.planted_hits * 10 < s.planted * 9 {
                failures.push(format!(
                    "noisy seed {seed}: primary = planted {}/{} (want >= 90%)",
                    s.planted_hits, s.planted
                ));
            }
            if s.unplanted_flagged * 50 >= s.unplanted {
                failures.push(format!(
                    "noisy seed {seed}: {}/{} clean turns flagged (want < 2%)",
                    s.unplanted_flagged, s.unplanted
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Re-running is idempotent, and a run after new traces arrive (recomputing only
    /// those and their conversations) equals a full analysis of everything.
    #[test]
    fn incremental_analysis_equals_full_analysis() {
        use tailscope_analysis::analyze_and_store;
        let w = generate(&WorkloadConfig::small(5, 30));
        let mut first = w.batch.clone();
        let mut second = tailscope_model::Batch::default();
        let cut = w.batch.spans.iter().map(|s| s.start_ns).min().unwrap() + 20_000_000_000;
        let (a, b): (Vec<_>, Vec<_>) = w.batch.spans.iter().cloned().partition(|s| {
            // whole traces by the trace's first span start
            let t0 = w
                .batch
                .spans
                .iter()
                .filter(|x| x.trace_id == s.trace_id)
                .map(|x| x.start_ns)
                .min()
                .unwrap();
            t0 < cut
        });
        first.spans = a;
        second.spans = b;
        second.resources = w.batch.resources.clone();
        assert!(!first.spans.is_empty() && !second.spans.is_empty());

        let inc = Store::open_in_memory().unwrap();
        let writer = inc.writer(WriterConfig::default()).unwrap();
        writer.write(first).unwrap();
        let (r1, s1) = analyze_and_store(&inc, Options::default()).unwrap();
        assert_eq!(s1.reused, 0);
        let (r1b, s1b) = analyze_and_store(&inc, Options::default()).unwrap();
        assert_eq!(
            (s1b.recomputed, s1b.reused),
            (0, r1.traces.len()),
            "nothing new: nothing recomputed"
        );
        assert_eq!(r1.to_json(), r1b.to_json(), "re-running is idempotent");
        writer.write(second).unwrap();
        writer.close().unwrap();
        let (r2, s2) = analyze_and_store(&inc, Options::default()).unwrap();
        assert!(s2.reused > 0 && s2.recomputed > 0, "{s2:?}");

        let full = Store::open_in_memory().unwrap();
        let writer = full.writer(WriterConfig::default()).unwrap();
        writer.write(w.batch.clone()).unwrap();
        writer.close().unwrap();
        let (r3, _) = analyze_and_store(&full, Options::default()).unwrap();
        assert_eq!(r2.to_json(), r3.to_json(), "incremental equals full");
        // the streamed JSON report is the same document, byte for byte, whatever the
        // page size (pages that split the findings and the traces several times)
        let whole = serde_json::to_string(&r3.to_json()).unwrap();
        for page in [1, 7, tailscope_analysis::json::PAGE] {
            let mut out = Vec::new();
            let st = tailscope_analysis::json::write_report_json(
                &full,
                Options::default(),
                page,
                &mut out,
            )
            .unwrap();
            assert_eq!(
                (st.traces, st.findings, st.bytes),
                (r3.traces.len(), r3.findings.len(), whole.len() as u64)
            );
            assert!(String::from_utf8(out).unwrap() == whole, "page {page}");
        }
        assert!(!r3.by_operation.is_empty());
        // the tables over the stored rows and the in-memory cohorts agree
        let rust = analyze_spans(
            full.load_spans(tailscope_store::Traces::All).unwrap(),
            &Metrics::load(&full, i64::MIN / 2, i64::MAX / 2).unwrap(),
            Options::default(),
        )
        .unwrap();
        let stored = r3.tables.as_ref().expect("tables over the stored rows");
        assert_eq!(stored.tail_traces, rust.tail.tail_traces);
        assert_eq!(stored.median_traces, rust.tail.median_traces);
        assert_eq!(
            stored.gap_by_cause_ns.keys().collect::<Vec<_>>(),
            rust.tail.gap_by_cause_ns.keys().collect::<Vec<_>>()
        );
        for (c, v) in &rust.tail.gap_by_cause_ns {
            assert!(
                (stored.gap_by_cause_ns[c] - v).abs() <= 1,
                "{c}: stored {} vs in memory {v}",
                stored.gap_by_cause_ns[c]
            );
        }
        assert!(!stored.by_route.is_empty());
        let grouped: usize = stored.by_route.iter().map(|g| g.traces).sum();
        assert_eq!(grouped, stored.tail_traces, "every tail trace in one route");
        assert_eq!(
            r2.by_operation, r3.by_operation,
            "per-operation attribution too"
        );
        let rows = inc
            .query_arrow("SELECT count(*) FROM trace_analysis")
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);

        // Small chunks (many worker hand-offs, components never split) give the same
        // answers, and progress rises to every chunk.
        let chunked = Store::open_in_memory().unwrap();
        let writer = chunked.writer(WriterConfig::default()).unwrap();
        writer.write(w.batch.clone()).unwrap();
        writer.close().unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let stats = tailscope_analysis::update::update_with(&chunked, 300, &|p| {
            seen.lock().unwrap().push(p);
        })
        .unwrap();
        assert!(stats.chunks > 3, "{stats:?}");
        let seen = seen.into_inner().unwrap();
        assert!(
            seen.windows(2).all(|w| w[0].chunks_done < w[1].chunks_done),
            "{seen:?}"
        );
        let last = seen.last().expect("progress reported");
        assert_eq!(
            (last.chunks_done, last.traces_done),
            (stats.chunks, stats.recomputed)
        );
        let r4 = tailscope_analysis::load_report(&chunked, Options::default(), true).unwrap();
        assert_eq!(r4.to_json(), r3.to_json(), "chunked equals one chunk");
        // and nothing new after that: the watermark ends the run early
        let again = tailscope_analysis::update(&chunked, &|_| {}).unwrap();
        assert_eq!((again.recomputed, again.chunks), (0, 0), "{again:?}");
        assert_eq!(again.reused, r3.traces.len());
    }
}

/// The ingest log's fuzz target, short (the CI share of `fuzz-bench --target
/// ingestlog`): damaged files stop at the checksum, re-framed mutated payloads fail
/// to decode or decode, and nothing panics.
#[test]
fn fuzz_short_pass_ingest_log_frames() {
    let dir = tempfile::tempdir().unwrap();
    let r = tailscope_tests::fuzz_log::run(3_000, 29, &dir.path().join("log"));
    eprintln!("{r:?}");
    assert_eq!((r.panics, r.disagreements), (0, 0), "{:#?}", r.examples);
    assert!(r.accepted > 100 && r.declined > 100, "{r:?}");
}

/// A generated workload stored in memory and analysed.
fn analysed(w: &tailscope_samples::Workload) -> tailscope_store::Store {
    let store = tailscope_store::Store::open_in_memory().unwrap();
    let writer = store
        .writer(tailscope_store::WriterConfig::default())
        .unwrap();
    writer.write(w.batch.clone()).unwrap();
    writer.close().unwrap();
    tailscope_analysis::update(&store, &|_| {}).unwrap();
    store
}

/// `whatif` against reality (issue 27 item 4), three kinds of change: a workload is generated, stored and
/// analysed; `whatif` predicts a tool made 50% faster; the same workload is generated
/// again from the same seed with that tool really 50% faster and the server's timing of
/// every LLM call held to the first run's (so the change does not feed back into the
/// queue). The second run's measured p50 and p99 lie inside the predicted 95% intervals,
/// each at most 10% of its value wide. A control, a prediction for a change that was not
/// made (another tool faster), must fail the same check.
mod whatif_against_reality {
    use super::analysed;
    use std::sync::Arc;
    use tailscope_analysis::whatif::{whatif, Change, Moved, Target, TargetKind};
    use tailscope_analysis::Options;
    use tailscope_samples::{default_span_secs, generate, PlantedCause, Workload, WorkloadConfig};
    use tailscope_store::Store;

    /// Whether `measured` lies in the predicted interval, and the interval is at most
    /// 10% of the predicted value wide.
    fn holds(m: &Moved, measured: f64) -> bool {
        let (lo, hi) = m.after_ci_ns;
        lo <= measured && measured <= hi && (hi - lo) <= 0.10 * m.after_ns
    }

    /// Whether the measured change (from the first run's value) lies in the predicted
    /// change's paired interval: the sharper check, as the same traces are re-walked.
    fn change_holds(m: &Moved, measured: f64) -> bool {
        let (lo, hi) = m.change_ci_ns;
        let d = measured - m.before_ns;
        lo <= d && d <= hi
    }

    /// One kind of change: predicted on the first run's store for `tool` and for the
    /// `control` tool, applied for real (to `tool`) by `apply`, then checked.
    #[allow(clippy::too_many_arguments)]
    fn case(
        label: &str,
        (tool, control): (&str, &str),
        first: &Workload,
        store: &Store,
        base: &WorkloadConfig,
        change: Change,
        apply: &dyn Fn(&mut WorkloadConfig),
    ) {
        let predict = |tool: &str| {
            let target = Target {
                kind: TargetKind::Tool,
                name: tool.to_owned(),
            };
            whatif(store, &target, change, Options::default()).unwrap()
        };
        let (changed, control) = (predict(tool), predict(control));
        let mut cfg = WorkloadConfig {
            held_timings: Some(Arc::new(first.timings.clone())),
            ..base.clone()
        };
        apply(&mut cfg);
        let second = generate(&cfg);
        let mut measured = analysed(&second).trace_durations().unwrap();
        measured.sort_unstable();
        let q = |p: f64| tailscope_model::stats::percentile(&measured, p).unwrap() as f64;
        let (p50, p99) = (q(50.0), q(99.0));
        let (s, c) = (&changed.summary, &control.summary);
        let ms = |x: f64| x / 1e6;
        println!(
            "{label}: before p50 {:.0} ms, p99 {:.0} ms; predicted p50 {:.0} [{:.0}, {:.0}] (change [{:.0}, {:.0}]), p99 {:.0} [{:.0}, {:.0}] (change [{:.0}, {:.0}]); measured p50 {:.0}, p99 {:.0}; control change p50 [{:.0}, {:.0}], p99 [{:.0}, {:.0}]; {} of {} traces touched",
            ms(s.p50.before_ns), ms(s.p.before_ns),
            ms(s.p50.after_ns), ms(s.p50.after_ci_ns.0), ms(s.p50.after_ci_ns.1),
            ms(s.p50.change_ci_ns.0), ms(s.p50.change_ci_ns.1),
            ms(s.p.after_ns), ms(s.p.after_ci_ns.0), ms(s.p.after_ci_ns.1),
            ms(s.p.change_ci_ns.0), ms(s.p.change_ci_ns.1),
            ms(p50), ms(p99),
            ms(c.p50.change_ci_ns.0), ms(c.p50.change_ci_ns.1), ms(c.p.change_ci_ns.0), ms(c.p.change_ci_ns.1),
            s.touched_traces, s.traces
        );
        assert_eq!(measured.len(), s.traces, "{label}: the same traces");
        assert!(
            s.p50.after_ns < s.p50.before_ns,
            "{label}: the change moves the median"
        );
        assert!(holds(&s.p50, p50), "{label} p50: {p50} against {:?}", s.p50);
        assert!(holds(&s.p, p99), "{label} p99: {p99} against {:?}", s.p);
        assert!(
            change_holds(&s.p50, p50),
            "{label} p50 change: {p50} against {:?}",
            s.p50
        );
        assert!(
            change_holds(&s.p, p99),
            "{label} p99 change: {p99} against {:?}",
            s.p
        );
        // the control predicted a change that was not made: it fails the check
        assert!(
            !(holds(&c.p50, p50) && holds(&c.p, p99)),
            "{label}: the control must fail: p50 {p50} against {:?}, p99 {p99} against {:?}",
            c.p50,
            c.p
        );
        assert!(
            !(change_holds(&c.p50, p50) && change_holds(&c.p, p99)),
            "{label}: the control's predicted change must miss: p50 {p50} against {:?}, p99 {p99} against {:?}",
            c.p50,
            c.p
        );
    }

    #[test]
    fn predictions_hold_on_a_regenerated_run_and_a_control_fails() {
        let conversations = 600;
        let base = WorkloadConfig {
            seed: 2_707,
            conversations,
            span_secs: default_span_secs(conversations),
            cause_rate: 0.0,
            causes: Vec::new(),
            ..WorkloadConfig::default()
        };
        let first = generate(&base);
        assert!(!first.timings.is_empty());
        let store = analysed(&first);
        let tools = ("web_search", "get_customer");
        case(
            "tool 50% faster",
            tools,
            &first,
            &store,
            &base,
            Change::SpeedUp(0.5),
            &|c| c.tool_speedup = Some(("web_search".to_owned(), 0.5)),
        );
        case(
            "tool cached (60% hits at 20 ms)",
            tools,
            &first,
            &store,
            &base,
            Change::Cache {
                hit_rate: 0.6,
                hit_ns: 20_000_000,
            },
            &|c| c.tool_cache = Some(("web_search".to_owned(), 0.6, 20_000_000)),
        );
    }

    /// The third kind of change, "in parallel": every turn runs its tools one after
    /// another (the `sequential_waterfall` plant), and `fetch_url` is made to run beside
    /// the tool before it. Where it is the first tool after the model call it stays
    /// (it consumed that call's answer), in the prediction and in the second run alike.
    #[test]
    fn a_parallel_prediction_holds_on_a_regenerated_run_and_a_control_fails() {
        let conversations = 400;
        let base = WorkloadConfig {
            seed: 2_708,
            conversations,
            span_secs: default_span_secs(conversations),
            cause_rate: 1.0,
            magnitude: 0.5,
            causes: vec![PlantedCause::SequentialWaterfall],
            ..WorkloadConfig::default()
        };
        let first = generate(&base);
        let store = analysed(&first);
        case(
            "tool in parallel with the one before it",
            ("fetch_url", "get_customer"),
            &first,
            &store,
            &base,
            Change::Parallel,
            &|c| c.tool_parallel = Some("fetch_url".to_owned()),
        );
    }
}

/// The semantic-cache finding on generated workloads (issue 27 item 3): a Redis
/// semantic cache in front of every turn, as redis-py's instrumentation writes it, with
/// slow lookups planted; found with precision and recall of at least 90% on seeds the
/// rule was not written against (it was written against the recorded fixture), and
/// never found on the default workload, which has Redis (a task queue) and Postgres
/// reads but no cache.
mod semantic_cache_generated {
    use super::analysed;
    use tailscope_samples::{default_span_secs, generate, PlantedCause, Workload, WorkloadConfig};

    fn findings(w: &Workload) -> Vec<(serde_json::Value, tailscope_store::FindingRow)> {
        analysed(w)
            .finding_rows()
            .unwrap()
            .into_iter()
            .filter(|f| f.kind == "semantic_cache")
            .map(|f| (serde_json::from_str(&f.evidence).unwrap(), f))
            .collect()
    }

    #[test]
    fn slow_lookups_are_found_on_untuned_seeds_and_no_cache_is_invented() {
        for seed in [11, 12] {
            let conversations = 120;
            let w = generate(&WorkloadConfig {
                seed,
                conversations,
                span_secs: default_span_secs(conversations),
                semantic_cache: Some(0.35),
                causes: vec![PlantedCause::SlowCacheLookup],
                cause_rate: 0.08,
                ..WorkloadConfig::default()
            });
            let found = findings(&w);
            let planted: std::collections::HashSet<String> = w
                .truth
                .iter()
                .filter(|t| t.cause == "slow_cache_lookup")
                .map(|t| t.trace_id.to_hex())
                .collect();
            let slow: std::collections::HashSet<String> = found
                .iter()
                .filter(|(e, _)| e["finding"] == "slow_lookup")
                .map(|(_, f)| f.trace_id.clone())
                .collect();
            let tp = slow.intersection(&planted).count();
            let precision = tp as f64 / slow.len().max(1) as f64;
            let recall = tp as f64 / planted.len().max(1) as f64;
            // one cache place per endpoint (each app's request route)
            let site: Vec<_> = found
                .iter()
                .filter(|(e, _)| e["finding"] == "cache")
                .collect();
            assert_eq!(site.len(), 3, "seed {seed}: the three endpoints' caches");
            let n = |k: &str| {
                site.iter()
                    .map(|(e, _)| e[k].as_u64().unwrap())
                    .sum::<u64>()
            };
            let rate = n("hits") as f64 / (n("hits") + n("misses")) as f64;
            println!(
                "seed {seed}: {} planted slow lookups, {} found, precision {precision:.2}, recall {recall:.2}; hit rate {rate:.3} (drawn at 0.35); {}",
                planted.len(),
                slow.len(),
                site[0].1.summary
            );
            assert!(planted.len() >= 10, "seed {seed}: enough planted");
            assert!(precision >= 0.9 && recall >= 0.9, "seed {seed}");
            assert!((rate - 0.35).abs() < 0.05, "seed {seed}: hit rate {rate}");
        }
        let plain = generate(&WorkloadConfig {
            seed: 13,
            conversations: 60,
            span_secs: default_span_secs(60),
            ..WorkloadConfig::default()
        });
        assert!(
            findings(&plain).is_empty(),
            "no cache in the default workload"
        );
    }

    fn cache_findings(store: &tailscope_store::Store) -> Vec<(String, String, String, i64)> {
        let mut v: Vec<_> = store
            .finding_rows()
            .unwrap()
            .into_iter()
            .filter(|f| f.kind == "semantic_cache")
            .map(|f| (f.trace_id, f.span_id, f.summary, f.estimated_cost_ns))
            .collect();
        v.sort();
        v
    }

    /// The semantic-cache findings of a store analysed in two runs (half the traces,
    /// then the rest) equal those of one full run; a later run whose new traces read no
    /// cache (it skips the store-wide recompute, issue 25) leaves them as they were.
    #[test]
    fn incremental_runs_keep_the_cache_findings_of_a_full_run() {
        let w = generate(&WorkloadConfig {
            seed: 15,
            conversations: 60,
            span_secs: default_span_secs(60),
            semantic_cache: Some(0.35),
            causes: vec![PlantedCause::SlowCacheLookup],
            cause_rate: 0.1,
            ..WorkloadConfig::default()
        });
        let full = cache_findings(&analysed(&w));
        assert!(!full.is_empty(), "the cache is found");
        let mut first: std::collections::HashMap<_, i64> = std::collections::HashMap::new();
        for s in &w.batch.spans {
            let e = first.entry(s.trace_id).or_insert(s.start_ns);
            *e = (*e).min(s.start_ns);
        }
        let mut starts: Vec<i64> = first.values().copied().collect();
        starts.sort_unstable();
        let mid = starts[starts.len() / 2];
        let (early, late): (Vec<_>, Vec<_>) = w
            .batch
            .spans
            .iter()
            .cloned()
            .partition(|s| first[&s.trace_id] < mid);
        let store = tailscope_store::Store::open_in_memory().unwrap();
        let write = |batch: tailscope_model::Batch| {
            let writer = store
                .writer(tailscope_store::WriterConfig::default())
                .unwrap();
            writer.write(batch).unwrap();
            writer.close().unwrap();
            tailscope_analysis::update(&store, &|_| {}).unwrap()
        };
        let part = |spans, metrics| tailscope_model::Batch {
            resources: w.batch.resources.clone(),
            spans,
            metrics,
            logs: Vec::new(),
        };
        write(part(early, w.batch.metrics.clone()));
        let second = write(part(late, Vec::new()));
        assert!(
            second.recomputed > 0 && second.reused > 0,
            "an incremental run"
        );
        assert_eq!(cache_findings(&store), full, "two runs = one full run");
        // new traces with no cache reads: the findings stay
        let other = generate(&WorkloadConfig::small(16, 4));
        let plain = tailscope_model::Batch {
            spans: other
                .batch
                .spans
                .into_iter()
                .filter(|s| s.promoted.db_system.is_none())
                .collect(),
            ..other.batch
        };
        let third = write(plain);
        assert!(third.recomputed > 0);
        assert_eq!(cache_findings(&store), full, "traces without cache reads");
    }
}

/// The write-amplification finding on generated workloads (issue 27 item 3): a tool
/// server that writes to three or four stores one after another (Postgres INSERT,
/// Redis SET, Elasticsearch index, object-store PUT, as their instrumentations write
/// them), planted; found with precision and recall of at least 90% on two seeds, with
/// the parallel saving within 15% of the planted one; none on the default workload.
mod write_amplification_generated {
    use super::analysed;
    use tailscope_samples::{default_span_secs, generate, PlantedCause, WorkloadConfig};

    #[test]
    fn writes_to_several_stores_are_found_with_what_parallel_saves() {
        for seed in [21, 22] {
            let conversations = 120;
            let w = generate(&WorkloadConfig {
                seed,
                conversations,
                span_secs: default_span_secs(conversations),
                causes: vec![PlantedCause::WriteAmplification],
                cause_rate: 0.1,
                ..WorkloadConfig::default()
            });
            let planted: std::collections::HashMap<String, i64> = w
                .truth
                .iter()
                .filter(|t| t.cause == "write_amplification")
                .map(|t| (t.trace_id.to_hex(), t.extra_ns))
                .collect();
            let found: Vec<_> = analysed(&w)
                .finding_rows()
                .unwrap()
                .into_iter()
                .filter(|f| f.kind == "write_amplification")
                .collect();
            let tp: Vec<_> = found
                .iter()
                .filter(|f| planted.contains_key(&f.trace_id))
                .collect();
            let precision = tp.len() as f64 / found.len().max(1) as f64;
            let recall = tp.len() as f64 / planted.len().max(1) as f64;
            let cost_ok = tp
                .iter()
                .filter(|f| {
                    let want = planted[&f.trace_id] as f64;
                    (f.estimated_cost_ns as f64 - want).abs() <= 0.15 * want
                })
                .count();
            println!(
                "seed {seed}: {} planted, {} found, precision {precision:.2}, recall {recall:.2}, parallel saving within 15% on {cost_ok} of {}; e.g. {}",
                planted.len(),
                found.len(),
                tp.len(),
                found.first().map_or("", |f| f.summary.as_str())
            );
            assert!(planted.len() >= 10, "seed {seed}: enough planted");
            assert!(precision >= 0.9 && recall >= 0.9, "seed {seed}");
            assert!(cost_ok * 10 >= tp.len() * 9, "seed {seed}: savings");
        }
        let plain = generate(&WorkloadConfig {
            seed: 23,
            conversations: 60,
            span_secs: default_span_secs(60),
            ..WorkloadConfig::default()
        });
        let none = analysed(&plain)
            .finding_rows()
            .unwrap()
            .into_iter()
            .filter(|f| f.kind == "write_amplification")
            .count();
        assert_eq!(none, 0, "no write amplification in the default workload");
    }
}

/// Store files written by earlier builds, committed gzipped with what DuckDB read
/// from them before anything migrated them (`expected.json`, see each folder's
/// README): this build migrates them (issue 25 item 6) and reads the same rows back.
/// - `store-v8`: spans written by commit 7f41125 (schema v8), not analysed.
/// - `store-v9`: written and analysed by commit 083f855 (schema v9: sections and span
///   rows as text), read back through the views over the compact tables, with the run
///   log kept (nothing to recompute) and the report read with its sections.
mod store_of_an_earlier_build {
    use std::io::Read;
    use tailscope_store::Store;

    fn rows(store: &Store, sql: &str) -> serde_json::Value {
        let batches = store.query_arrow(sql).unwrap();
        let mut out = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let mut row = Vec::new();
                for c in b.columns() {
                    let v =
                        tailscope_store::arrow::util::display::array_value_to_string(c, r).unwrap();
                    row.push(serde_json::Value::String(v));
                }
                out.push(serde_json::Value::Array(row));
            }
        }
        serde_json::Value::Array(out)
    }

    /// The fixture in `tests/fixtures/<name>` opened (so migrated) by this build, after
    /// its expected queries were checked; with the expectations and the folder it lives in.
    fn migrated(name: &str) -> (Store, serde_json::Value, tempfile::TempDir) {
        let dir = super::repo().join("tests/fixtures").join(name);
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("old.duckdb");
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join("store.duckdb.gz")).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        std::fs::write(&db, bytes).unwrap();
        let store = Store::open(&db).unwrap();
        assert_eq!(
            rows(&store, "SELECT max(version) FROM schema_version"),
            serde_json::json!([["10"]])
        );
        let queries = expected["queries"].as_object().unwrap();
        assert!(queries.len() >= 4);
        for (sql, want) in queries {
            assert_eq!(&rows(&store, sql), want, "{name}: {sql}");
        }
        (store, expected, tmp)
    }

    #[test]
    fn a_v8_store_is_migrated_and_analysed() {
        let (store, expected, _tmp) = migrated("store-v8");
        let traces = expected["traces"].as_u64().unwrap() as usize;
        let run = tailscope_analysis::update(&store, &|_| {}).unwrap();
        assert_eq!((run.recomputed, run.reused), (traces, 0));
        let report =
            tailscope_analysis::load_report(&store, tailscope_analysis::Options::default(), true)
                .unwrap();
        assert_eq!(report.traces.len(), traces);
        assert!(report.traces.iter().all(|t| !t.sections.is_empty()));
    }

    #[test]
    fn a_v9_store_is_migrated_and_reads_back_the_same() {
        let (store, expected, _tmp) = migrated("store-v9");
        // the run log is kept: nothing new to analyse, every trace reused
        let run = tailscope_analysis::update(&store, &|_| {}).unwrap();
        assert_eq!(run.recomputed, 0);
        let traces = expected["traces"].as_u64().unwrap() as usize;
        assert_eq!(run.reused, traces);
        let report =
            tailscope_analysis::load_report(&store, tailscope_analysis::Options::default(), true)
                .unwrap();
        assert_eq!(report.traces.len(), traces);
        let sections: usize = report.traces.iter().map(|t| t.sections.len()).sum();
        assert_eq!(sections as u64, expected["sections"].as_u64().unwrap());
    }
}
