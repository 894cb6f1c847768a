//! CLI contract tests of the `tailscope` binary: exit codes, errors that name their
//! input, read-only query, import summaries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
#![allow(clippy::many_single_char_names)] // short locals for outputs and harnesses

mod gpu;

mod compare;
mod export;
mod gui;
mod remote;
mod replay;

use std::path::Path;
use std::process::{Command, Output};

fn tailscope(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tailscope"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run tailscope")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const TRACE_LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cli"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat m","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"42"}}]},{"traceId":"5b8efff7","spanId":"eee19b7ec3c1b175","name":"bad","startTimeUnixNano":1,"endTimeUnixNano":2}]}]}]}"#;

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.duckdb");
    let o = tailscope(&db, &["no-such-command"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = tailscope(&db, &["import", "/nonexistent/file.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/file.json"),
        "{}",
        stderr(&o)
    );
    let o = tailscope(&db, &["query", "select 1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no store at"), "{}", stderr(&o));
    let o = tailscope(
        &db,
        &["serve", "--grpc", "0.0.0.0:0", "--http", "127.0.0.1:0"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
}

#[test]
fn import_collector_file_then_query_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.duckdb");
    let file = dir.path().join("otel-traces.jsonl");
    std::fs::write(&file, format!("{TRACE_LINE}\n{TRACE_LINE}\n")).unwrap();
    let o = tailscope(&db, &["import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // the same span twice in one import is stored once (exactly-once)
    assert!(out.contains("stored 1 spans"), "{out}");
    assert!(out.contains("rejected 2 item(s)"), "{out}");
    assert!(out.contains("1 spans already stored were skipped"), "{out}");
    assert!(out.contains("trace_id has 4 bytes, want 16"), "{out}");

    let o = tailscope(
        &db,
        &[
            "query",
            "--format",
            "json",
            "SELECT span_id, input_tokens, op_class FROM spans",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["input_tokens"], 42);
    assert_eq!(v[0]["op_class"], "llm");

    let o = tailscope(
        &db,
        &[
            "query",
            "--format",
            "csv",
            "SELECT name, 'a,b' AS s FROM spans LIMIT 1",
        ],
    );
    assert_eq!(stdout(&o), "name,s\nchat m,\"a,b\"\n");

    for sql in [
        "DELETE FROM spans",
        "INSERT INTO spans SELECT * FROM spans",
        "select 1; drop table spans",
    ] {
        let o = tailscope(&db, &["query", sql]);
        assert_eq!(o.status.code(), Some(1), "{sql}");
        assert!(stderr(&o).contains("read-only"), "{sql}: {}", stderr(&o));
    }
    let o = tailscope(
        &db,
        &[
            "query",
            "--format",
            "json",
            "SELECT count(*) AS n FROM spans",
        ],
    );
    assert_eq!(stdout(&o).trim(), r#"[{"n":1}]"#, "nothing was deleted");
}

fn count(db: &Path, sql: &str) -> i64 {
    let o = tailscope(db, &["query", "--format", "json", sql]);
    assert!(o.status.success(), "{sql}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_i64()
        .unwrap()
}

fn generated_spans(out: &str) -> i64 {
    // "generated 12 conversations over 20 s: 1588 spans in 60 traces (...), ..."
    out.split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn demo_headless_runs_and_stores_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.duckdb");
    let o = tailscope(&db, &["demo", "--headless", "--conversations", "12"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let n = generated_spans(&out);
    assert_eq!(count(&db, "SELECT count(*) FROM spans"), n, "{out}");
    assert!(count(&db, "SELECT count(*) FROM metric_points") > 0);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("demo.truth.json")).unwrap())
            .unwrap();
    for t in truth.as_array().unwrap() {
        let sql = format!(
            "SELECT count(*) FROM spans WHERE trace_id = '{}' AND span_id = '{}'",
            t["trace_id"].as_str().unwrap(),
            t["span_id"].as_str().unwrap()
        );
        assert_eq!(count(&db, &sql), 1, "truth points at a stored span: {t}");
    }
}

/// `whatif` follows design.md's contract: a change that changes nothing predicts the
/// same latency, a 50% speed-up of every LLM call's server span lowers the tail, and the
/// ranking is largest reduction first; a bad target is a usage error.
#[test]
fn whatif_predicts_and_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    assert!(
        tailscope(&db, &["demo", "--headless", "--conversations", "15"])
            .status
            .success()
    );
    let json = |args: &[&str]| -> serde_json::Value {
        let o = tailscope(&db, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = json(&[
        "whatif",
        "--target",
        "op:llm_request",
        "--speedup",
        "0",
        "--format",
        "json",
    ]);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "affected_traces",
            "after",
            "before",
            "change",
            "new_top_tail_cause",
            "percentile",
            "target",
            "traces"
        ]
    );
    assert_eq!(
        v["target"],
        serde_json::json!({"kind": "op", "name": "llm_request"})
    );
    for k in ["p50_ns", "p90_ns", "p_ns", "mean_ns"] {
        assert_eq!(
            v["before"][k], v["after"][k],
            "{k}: a 0% speed-up changes nothing"
        );
    }
    assert!(v["affected_traces"].as_u64().unwrap() > 0);
    assert!(v["traces"].as_u64().unwrap() >= v["affected_traces"].as_u64().unwrap());
    let v = json(&[
        "whatif",
        "--target",
        "op:llm_request",
        "--speedup",
        "0.5",
        "--format",
        "json",
    ]);
    let (before, after) = (
        v["before"]["p_ns"].as_i64().unwrap(),
        v["after"]["p_ns"].as_i64().unwrap(),
    );
    assert!(after < before, "{v}");
    let ci = v["after"]["p_ci_ns"].as_array().unwrap();
    assert!(
        ci[0].as_i64().unwrap() <= after && after <= ci[1].as_i64().unwrap(),
        "{v}"
    );
    let r = json(&["whatif", "--rank", "--format", "json"]);
    let ranking = r["ranking"].as_array().unwrap();
    assert!(!ranking.is_empty());
    let changes: Vec<i64> = ranking
        .iter()
        .map(|x| x["p_change_ns"].as_i64().unwrap())
        .collect();
    assert!(changes.windows(2).all(|w| w[0] <= w[1]), "{changes:?}");
    assert!(changes[0] < 0, "the top operation moves the tail");
    let o = tailscope(&db, &["whatif", "--target", "bogus", "--speedup", "0.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("KIND:NAME"), "{}", stderr(&o));
}

/// `analyze --format json` follows design.md's contract, and re-running is idempotent.
#[test]
fn analyze_json_follows_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.duckdb");
    assert!(
        tailscope(&db, &["demo", "--headless", "--conversations", "15"])
            .status
            .success()
    );
    let o = tailscope(&db, &["analyze", "--format", "json", "--percentile", "95"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["findings", "tail", "traces"]);
    let traces = v["traces"].as_array().unwrap();
    assert!(!traces.is_empty());
    for t in traces {
        assert_eq!(t["trace_id"].as_str().unwrap().len(), 32);
        let path = t["critical_path"].as_array().unwrap();
        let mut covered = 0;
        let mut prev_end = None;
        for s in path {
            assert_eq!(s["span_id"].as_str().unwrap().len(), 16);
            assert_eq!(
                s.as_object().unwrap().len(),
                6,
                "span_id, start_ns, end_ns, cause, evidence, alternatives"
            );
            let cause = s["cause"].as_str().unwrap();
            assert!(tailscope_model::Cause::parse(cause).is_some(), "{cause}");
            let level = s["evidence"].as_str().unwrap();
            assert!(tailscope_model::Evidence::parse(level).is_some(), "{level}");
            let alts = s["alternatives"].as_array().unwrap();
            assert_eq!(alts.is_empty(), level != "ambiguous", "{s}");
            let (a, b) = (
                s["start_ns"].as_i64().unwrap(),
                s["end_ns"].as_i64().unwrap(),
            );
            assert!(b > a);
            if let Some(p) = prev_end {
                assert!(a >= p, "sections do not overlap");
            }
            prev_end = Some(b);
            covered += b - a;
        }
        let by_cause: i64 = t["by_cause_ns"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_i64().unwrap())
            .sum();
        assert_eq!(by_cause, covered, "by_cause_ns sums to the critical path");
        assert_eq!(
            covered,
            t["duration_ns"].as_i64().unwrap(),
            "the path covers the root"
        );
        assert!(t["primary_cause"].is_null() || t["primary_cause"].is_string());
        // how the primary cause is known: a level exactly when there is a cause
        assert_eq!(
            t["primary_cause"].is_null(),
            t["primary_evidence"].is_null(),
            "{t}"
        );
        assert!(t["alternatives"].is_array());
        let ambiguous: i64 = path
            .iter()
            .filter(|s| s["evidence"] == "ambiguous")
            .map(|s| s["end_ns"].as_i64().unwrap() - s["start_ns"].as_i64().unwrap())
            .sum();
        assert_eq!(t["ambiguous_ns"].as_i64(), Some(ambiguous), "ambiguous_ns");
    }
    assert_eq!(v["tail"]["percentile"], 95.0);
    for k in ["p50_ns", "p_ns", "tail_traces"] {
        assert!(v["tail"][k].as_i64().is_some(), "{k}");
    }
    for f in v["findings"].as_array().unwrap() {
        for k in ["kind", "trace_id", "span_id", "summary"] {
            assert!(f[k].is_string(), "{k}");
        }
        assert!(f["estimated_cost_ns"].as_i64().is_some());
        assert!(f["evidence"].is_object());
        let level = f["evidence_level"].as_str().unwrap();
        assert!(tailscope_model::Evidence::parse(level).is_some(), "{level}");
        assert!(f["alternatives"].is_array());
    }
    let again = tailscope(&db, &["analyze", "--format", "json", "--percentile", "95"]);
    assert_eq!(again.stdout, o.stdout, "re-running is idempotent");
    let text = tailscope(&db, &["analyze"]);
    assert!(
        stdout(&text).contains("Why the tail is slow"),
        "{}",
        stdout(&text)
    );
    // the text report reads as prose: signed differences with a minus sign, headings
    // without implementation names
    let prose = stdout(&text);
    for bad in ["+-", "(Polars)", "Polars"] {
        assert!(!prose.contains(bad), "{bad:?} in the text report:\n{prose}");
    }
    assert_eq!(
        tailscope(&db, &["analyze", "--percentile", "0"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn generated_files_import_back_in_every_format() {
    for format in ["json", "jsonl", "protobuf"] {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        let db = dir.path().join("g.duckdb");
        let o = tailscope(
            &db,
            &[
                "generate",
                "--conversations",
                "6",
                "--seed",
                "3",
                "--format",
                format,
                "--out",
                out_dir.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let n = generated_spans(&stdout(&o));
        let mut files: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with("truth.json"))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut args = vec!["import"];
        args.extend(files.iter().map(String::as_str));
        let o = tailscope(&db, &args);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("rejected 0 item(s)"),
            "{format}: {}",
            stdout(&o)
        );
        assert_eq!(count(&db, "SELECT count(*) FROM spans"), n, "{format}");
        assert!(
            count(&db, "SELECT count(*) FROM metric_points") > 0,
            "{format}"
        );
    }
}

/// The conversations start at the rate one server is sized for unless `--span-secs`
/// packs them tighter; either way the workload is the library's for that window.
#[test]
fn generate_spreads_conversations_at_the_sized_rate_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.duckdb");
    let spans_of = |span_secs: f64| {
        let cfg = tailscope_samples::WorkloadConfig {
            seed: 5,
            conversations: 480,
            span_secs,
            ..tailscope_samples::WorkloadConfig::default()
        };
        tailscope_samples::generate(&cfg).batch.spans.len() as i64
    };
    for (extra, window) in [(None, 360.0), (Some("90"), 90.0)] {
        let out = dir.path().join(format!("out-{window}"));
        let mut args = vec![
            "generate",
            "--conversations",
            "480",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(s) = extra {
            args.extend(["--span-secs", s]);
        }
        let o = tailscope(&db, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(&format!("over {window:.0} s")), "{text}");
        assert_eq!(generated_spans(&text), spans_of(window), "{text}");
    }
}

#[test]
fn committed_sample_files_import_with_their_dialects() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/data");
    let dir = tempfile::tempdir().unwrap();
    for (file, key) in [
        ("genai-current.json", "gen_ai.provider.name"),
        ("genai-deprecated.json", "gen_ai.system"),
        ("openinference.json", "openinference.span.kind"),
        ("collector-file-exporter.jsonl", "gen_ai.operation.name"),
        ("planted-causes.json", "gen_ai.operation.name"),
    ] {
        let db = dir.path().join(format!("{file}.duckdb"));
        let o = tailscope(&db, &["import", data.join(file).to_str().unwrap()]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("rejected 0 item(s)"),
            "{file}: {}",
            stdout(&o)
        );
        assert!(
            count(
                &db,
                &format!("SELECT count(*) FROM span_attributes WHERE key = '{key}'")
            ) > 0,
            "{file} speaks {key}"
        );
        assert!(
            count(
                &db,
                "SELECT count(*) FROM spans WHERE op_class = 'llm' AND input_tokens IS NOT NULL"
            ) > 0,
            "{file}: tokens promoted"
        );
    }
    let db = dir.path().join("planted-causes.json.duckdb");
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("planted-causes.truth.json")).unwrap())
            .unwrap();
    let truth = truth.as_array().unwrap();
    assert_eq!(truth.len(), 10, "one trace per planted cause");
    for t in truth {
        let sql = format!(
            "SELECT count(*) FROM spans WHERE trace_id = '{}' AND span_id = '{}'",
            t["trace_id"].as_str().unwrap(),
            t["span_id"].as_str().unwrap()
        );
        assert_eq!(count(&db, &sql), 1, "{t}");
    }
}
