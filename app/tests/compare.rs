//! `compare` and `diff` through the binary on generated stores with planted changes:
//! a slow inference replica (one host slow in most of its traces) ranks first in
//! `compare`; a decode slow-down of one model after time T is `diff`'s headline; two
//! periods generated alike report no significant change. `compare --by-tenant` shows a
//! noisy neighbour. No timings are asserted (the bench measures speed).

use super::{stderr, stdout, tailscope};
use serde_json::Value;
use std::path::Path;
use tailscope_model::{AttrValue, Attribute, Batch};
use tailscope_samples::{generate, replica_address, ServerConfig, Workload, WorkloadConfig};
use tailscope_store::Store;

pub(super) const START_NS: i64 = 1_772_442_000 * 1_000_000_000;
pub(super) const QWEN: &str = "Qwen/Qwen2.5-7B-Instruct";

/// `conversations` conversations starting over 60 s from `start_ns` on a server with
/// `decode` seconds per token (and the default model unless `model`), with planted
/// causes and other tenants' bursts (`small`) or without (`clean`).
pub(super) fn workload(
    seed: u64,
    conversations: usize,
    start_ns: i64,
    model: Option<&str>,
    decode: f64,
) -> Workload {
    workload_from(
        WorkloadConfig::small(seed, conversations),
        start_ns,
        model,
        decode,
    )
}

pub(super) fn workload_from(
    mut cfg: WorkloadConfig,
    start_ns: i64,
    model: Option<&str>,
    decode: f64,
) -> Workload {
    cfg.start_ns = start_ns;
    cfg.span_secs = 60.0;
    cfg.server = ServerConfig {
        decode_secs_per_token: decode,
        model: model.map_or(cfg.server.model.clone(), str::to_owned),
        ..cfg.server
    };
    generate(&cfg)
}

pub(super) fn end_ns(w: &[Workload]) -> i64 {
    w.iter()
        .flat_map(|w| w.batch.spans.iter().map(|s| s.end_ns))
        .max()
        .unwrap()
}

pub(super) fn store(db: &Path, workloads: Vec<Workload>) {
    let store = Store::open(db).unwrap();
    let batches: Vec<Batch> = workloads.into_iter().map(|w| w.batch).collect();
    store.append_direct(&batches).unwrap();
}

fn json(db: &Path, args: &[&str]) -> Value {
    let o = tailscope(db, args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A quarter of the traffic goes to a second vLLM replica that decodes five times
/// slower: its address (or its host) explains the tail, ahead of routes and models.
#[test]
fn compare_ranks_the_slow_replica_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("skew.duckdb");
    let healthy = workload(101, 45, START_NS, None, 0.008);
    let slow = workload(102, 15, START_NS, None, 0.04).on_replica(1);
    store(&db, vec![healthy, slow]);
    let v = json(&db, &["compare", "--format", "json", "--percentile", "95"]);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["attributes", "baseline_traces", "percentile", "tail_traces"]
    );
    assert_eq!(v["percentile"], 95.0);
    let attrs = v["attributes"].as_array().unwrap();
    let first = &attrs[0];
    let named = |a: &Value| {
        format!(
            "{}={}",
            a["key"].as_str().unwrap(),
            a["value"].as_str().unwrap()
        )
    };
    let mut marks = vec![named(first)];
    marks.extend(
        first["same_traces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned()),
    );
    let replica = format!("server.address={}", replica_address(1));
    assert!(
        marks
            .iter()
            .any(|m| m == &replica || m == "host.name=gpu-node-08"),
        "first is {marks:?}; all: {attrs:#?}"
    );
    assert!(first["tail_share"].as_f64().unwrap() > 0.5, "{first}");
    assert!(first["lift"].as_f64().unwrap() > 2.0, "{first}");
    for k in ["tail_share", "baseline_share", "lift", "score"] {
        assert!(first[k].is_f64(), "{k}");
    }
    assert!(first["tail_traces"].as_u64().unwrap() > 0 && first["excess_ns"].as_i64().unwrap() > 0);
    // most telling first, and no ids among the values
    let scores: Vec<f64> = attrs.iter().map(|a| a["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for a in attrs {
        let k = a["key"].as_str().unwrap();
        assert!(
            ![
                "gen_ai.conversation.id",
                "gen_ai.response.id",
                "gen_ai.tool.call.id",
                "mcp.session.id"
            ]
            .contains(&k),
            "an id: {a}"
        );
        assert!(!k.contains("latency") && !k.contains("time"), "a time: {a}");
    }
    let text = stdout(&tailscope(&db, &["compare", "--percentile", "95"]));
    assert!(
        text.contains("What the slow traces share") && text.contains("explains"),
        "{text}"
    );

    // per tenant: no tenant key in the generated data, so services; the batch tenant
    // sends the most tokens
    let t = json(&db, &["compare", "--by-tenant", "--format", "json"]);
    assert_eq!(t["key"], "service.name");
    let rows = t["tenants"].as_array().unwrap();
    assert!(rows.len() >= 3, "{t}");
    let shares: f64 = rows
        .iter()
        .map(|r| r["traffic_share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);
    for k in [
        "traces",
        "tail_traces",
        "p50_ns",
        "p99_ns",
        "input_tokens",
        "output_tokens",
    ] {
        assert!(rows[0][k].is_number(), "{k}");
    }
    let o = tailscope(&db, &["compare", "--tenant-key", "tenant.id"]);
    assert_eq!(o.status.code(), Some(2), "--tenant-key needs --by-tenant");
}

/// One tenant runs the research agent (long prompts, many calls), eleven others share
/// the rest: `--by-tenant` puts it first by tokens, with more than its share of the tail.
#[test]
fn compare_by_tenant_shows_the_noisy_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tenants.duckdb");
    let mut w = workload(31, 40, START_NS, None, 0.008);
    let mut roots: Vec<_> = w
        .batch
        .spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .map(|s| (s.trace_id, s.name.clone()))
        .collect();
    roots.sort();
    let tenant_of: std::collections::HashMap<_, String> = roots
        .iter()
        .enumerate()
        .map(|(i, (t, name))| {
            let tenant = if name.contains("research") {
                "acme-research".to_owned()
            } else {
                format!("tenant-{:02}", i % 11)
            };
            (*t, tenant)
        })
        .collect();
    for s in &mut w.batch.spans {
        if s.parent_span_id.is_none() {
            if let Some(t) = tenant_of.get(&s.trace_id) {
                s.attributes
                    .push(Attribute::new("tenant.id", AttrValue::Str(t.clone())));
            }
        }
    }
    store(&db, vec![w]);
    let v = json(
        &db,
        &[
            "compare",
            "--by-tenant",
            "--format",
            "json",
            "--percentile",
            "90",
        ],
    );
    assert_eq!(v["key"], "tenant.id");
    let rows = v["tenants"].as_array().unwrap();
    let first = &rows[0];
    assert_eq!(first["tenant"], "acme-research", "{v:#}");
    assert!(first["token_share"].as_f64().unwrap() > 0.3, "{first}");
    assert!(first["lift"].as_f64().unwrap() > 1.5, "{first}");
    let text = stdout(&tailscope(&db, &["compare", "--by-tenant"]));
    assert!(
        text.contains("acme-research") && text.contains("Per tenant (tenant.id)"),
        "{text}"
    );
}

/// Three periods of two models on two replicas: A and B generated alike, C with
/// Three periods into a store at `db`: A and B alike (other seeds), then C with Llama
/// decoding 30% slower per token; returns the starts of B and C.
pub(super) fn drift_store(db: &Path) -> (i64, i64) {
    let period = |seed: u64, start: i64, llama_decode: f64| {
        vec![
            workload_from(WorkloadConfig::clean(seed, 40), start, None, llama_decode),
            workload_from(
                WorkloadConfig::clean(seed + 1, 40),
                start,
                Some(QWEN),
                0.008,
            )
            .on_replica(1),
        ]
    };
    let a = period(201, START_NS, 0.008);
    let t1 = end_ns(&a) + 1_000_000_000;
    let b = period(203, t1, 0.008);
    let t2 = end_ns(&b) + 1_000_000_000;
    let c = period(205, t2, 0.0104);
    let mut all = a;
    all.extend(b);
    all.extend(c);
    store(db, all);
    (t1, t2)
}

/// Llama decoding 30% slower per token. No planted incidents: the bursts that plant
/// queueing and evictions are other tenants' requests sized in time, which differ from
/// one period to the next (a real change, not a quiet period).
#[test]
fn diff_names_a_decode_drift_and_reports_no_change_for_a_quiet_period() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drift.duckdb");
    let (t1, t2) = drift_store(&db);
    let (t1s, t2s) = (t1.to_string(), t2.to_string());

    // nothing changed between A and B
    let quiet = json(
        &db,
        &[
            "diff",
            "--before",
            &format!("..{t1s}"),
            "--after",
            &format!("{t1s}..{t2s}"),
            "--format",
            "json",
        ],
    );
    let sig: Vec<&Value> = quiet["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["significant"] == true)
        .collect();
    assert!(sig.is_empty(), "a quiet period reports changes: {sig:#?}");
    let h = quiet["headline"].as_str().unwrap();
    assert!(h.starts_with("No significant change"), "{h}");
    assert!(quiet["before"]["traces"].as_u64().unwrap() > 100);
    assert_eq!(quiet["after"]["from_ns"].as_i64(), Some(t1));

    // Llama decodes 30% slower from t2 on
    let d = json(
        &db,
        &[
            "diff",
            "--before",
            &format!("..{t2s}"),
            "--after",
            &format!("{t2s}.."),
            "--format",
            "json",
        ],
    );
    let h = d["headline"].as_str().unwrap();
    assert!(
        h.contains("Llama-3.1-8B-Instruct") && h.contains("decode"),
        "{h}"
    );
    assert!(!h.contains("Qwen"), "{h}");
    let changes = d["changes"].as_array().unwrap();
    let decode = |model: &str| {
        changes
            .iter()
            .find(|c| {
                c["metric"] == "decode_ns_per_token"
                    && c["model"].as_str().is_some_and(|m| m.contains(model))
            })
            .unwrap()
    };
    let llama = decode("Llama");
    assert_eq!(llama["significant"], true, "{llama}");
    assert_eq!(llama["scope"], "llm");
    let ch = llama["change"].as_f64().unwrap();
    assert!((0.15..0.5).contains(&ch), "{llama}");
    assert!(llama["ci_low"].as_f64().unwrap() > 0.0 && llama["ci_high"].as_f64().unwrap() >= ch);
    assert_eq!(decode("Qwen")["significant"], false, "{}", decode("Qwen"));
    // significant first
    let first_quiet = changes
        .iter()
        .position(|c| c["significant"] == false)
        .unwrap_or(changes.len());
    assert!(changes[first_quiet..]
        .iter()
        .all(|c| c["significant"] == false));
    for k in [
        "scope",
        "service",
        "operation",
        "model",
        "server",
        "metric",
        "before",
        "after",
        "change",
        "ci_low",
        "ci_high",
        "significant",
    ] {
        assert!(changes[0].get(k).is_some(), "{k}");
    }
    let text = stdout(&tailscope(
        &db,
        &[
            "diff",
            "--before",
            &format!("..{t2s}"),
            "--after",
            &format!("{t2s}.."),
        ],
    ));
    assert!(
        text.contains(h) && text.contains("decode_ns_per_token"),
        "{text}"
    );

    // usage: a period is needed unless a store is named; a bad time says what it read
    let o = tailscope(&db, &["diff", "--after", "1.."]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = tailscope(&db, &["diff", "--before", "yesterday..", "--after", ".."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("yesterday"), "{}", stderr(&o));
    // two stores: the same store on both sides changes nothing
    let same = json(
        &db,
        &[
            "diff",
            "--before-db",
            db.to_str().unwrap(),
            "--after-db",
            db.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(same["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["significant"] == false));
    let o = tailscope(
        &dir.path().join("none.duckdb"),
        &["diff", "--before", "..", "--after", ".."],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("none.duckdb"), "{}", stderr(&o));
}
