//! `tailscope export`: Parquet tables, README and a notebook that, executed headless in
//! the set-up's venv, reproduces `tailscope analyze --format json` exactly; filters and
//! a non-empty output folder.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::tailscope as run;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

fn py(args: &[&str]) -> String {
    let o = Command::new(python())
        .args(args)
        .output()
        .expect("run python");
    ok(&o)
}

/// Executes the notebook headless with nbclient, writing the executed copy beside it.
const EXECUTE: &str = r#"
import sys, nbformat
from nbclient import NotebookClient
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
nbformat.validate(nb)
NotebookClient(nb, timeout=600, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, out)
"#;

/// Rows and distinct trace ids (and the time range) of every Parquet file in a folder.
const SUMMARISE: &str = r#"
import json, sys, pathlib
import polars as pl
out = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.parquet")):
    df = pl.read_parquet(f)
    e = {"rows": df.height, "columns": df.columns}
    if "trace_id" in df.columns:
        e["trace_ids"] = sorted(set(df["trace_id"].to_list()))
    for c in ("start_ns", "time_ns"):
        if c in df.columns and df.height:
            e[c] = [df[c].min(), df[c].max()]
    out[f.stem] = e
print(json.dumps(out))
"#;

fn summarise(dir: &Path) -> Value {
    serde_json::from_str(&py(&["-c", SUMMARISE, dir.to_str().unwrap()])).unwrap()
}

fn demo(db: &Path, conversations: &str) {
    ok(&run(
        db,
        &["demo", "--headless", "--conversations", conversations],
    ));
}

fn count(db: &Path, sql: &str) -> u64 {
    let v: Value =
        serde_json::from_str(&ok(&run(db, &["query", "--format", "json", sql]))).unwrap();
    v[0]["n"].as_u64().unwrap()
}

#[test]
fn notebook_reproduces_the_analyze_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.duckdb");
    let out = dir.path().join("export");
    demo(&db, "20");
    let printed = ok(&run(&db, &["export", "--out", out.to_str().unwrap()]));
    assert!(printed.contains("exported"), "{printed}");

    // every table is written, complete, and described in the README
    let summary = summarise(&out);
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for (table, sql) in [
        ("spans", "SELECT count(*) AS n FROM spans"),
        (
            "span_attributes",
            "SELECT count(*) AS n FROM span_attributes",
        ),
        ("events", "SELECT count(*) AS n FROM events"),
        ("links", "SELECT count(*) AS n FROM links"),
        (
            "critical_path_sections",
            "SELECT count(*) AS n FROM critical_path_sections",
        ),
        ("span_analysis", "SELECT count(*) AS n FROM span_analysis"),
        ("trace_analysis", "SELECT count(*) AS n FROM trace_analysis"),
        ("findings", "SELECT count(*) AS n FROM findings"),
        ("metric_points", "SELECT count(*) AS n FROM metric_points"),
        ("resources", "SELECT count(*) AS n FROM resources"),
    ] {
        assert_eq!(
            summary[table]["rows"].as_u64(),
            Some(count(&db, sql)),
            "{table}"
        );
        assert!(readme.contains(&format!("## {table}.parquet")), "{table}");
        for col in summary[table]["columns"].as_array().unwrap() {
            let col = col.as_str().unwrap();
            assert!(readme.contains(&format!("| `{col}` |")), "{table}.{col}");
        }
    }
    assert!(summary["spans"]["rows"].as_u64().unwrap() > 100);
    assert!(summary["findings"]["rows"].as_u64().unwrap() > 0);
    let cols = summary["trace_analysis"]["columns"].as_array().unwrap();
    for c in [
        "primary_cause",
        "kv_eviction_ns",
        "decode_ns",
        "pool_wait_ns",
    ] {
        assert!(cols.iter().any(|x| x == c), "{c}");
    }

    // the notebook runs top to bottom and computes the report's tail numbers
    let executed = dir.path().join("executed.ipynb");
    py(&[
        "-c",
        EXECUTE,
        out.join("analysis.ipynb").to_str().unwrap(),
        executed.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let nb: Value = serde_json::from_slice(&std::fs::read(&executed).unwrap()).unwrap();
    let images = nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["outputs"].as_array().cloned().unwrap_or_default())
        .filter(|o| o["data"]["image/png"].is_string())
        .count();
    assert!(images >= 4, "plots rendered: {images}");
    let got: Value =
        serde_json::from_slice(&std::fs::read(out.join("notebook_results.json")).unwrap()).unwrap();
    let report: Value =
        serde_json::from_str(&ok(&run(&db, &["analyze", "--format", "json"]))).unwrap();
    let want = &report["tail"];
    for k in ["p50_ns", "p_ns", "tail_traces"] {
        assert_eq!(got[k], want[k], "{k}");
    }
    assert_eq!(got["percentile"], want["percentile"]);
    assert_eq!(got["gap_by_cause_ns"], want["gap_by_cause_ns"]);
    assert!(!want["gap_by_cause_ns"].as_object().unwrap().is_empty());

    // the compare cell lists what `tailscope compare` lists, most telling first
    let cli: Value =
        serde_json::from_str(&ok(&run(&db, &["compare", "--format", "json"]))).unwrap();
    let (nb_top, cli_top) = (&got["compare"][0], &cli["attributes"][0]);
    assert!(cli_top.is_object(), "{cli}");
    for k in ["key", "value", "tail_traces", "excess_ns"] {
        assert_eq!(
            nb_top[k], cli_top[k],
            "compare {k}: notebook {nb_top} vs CLI {cli_top}"
        );
    }
    // the whatif cell shows `tailscope whatif --rank`'s ranking, from the exported table
    let cli: Value =
        serde_json::from_str(&ok(&run(&db, &["whatif", "--rank", "--format", "json"]))).unwrap();
    let (nb_rank, cli_rank) = (
        got["whatif_ranking"].as_array().unwrap(),
        cli["ranking"].as_array().unwrap(),
    );
    assert!(!cli_rank.is_empty());
    assert_eq!(nb_rank.len(), cli_rank.len());
    for (n, c) in nb_rank.iter().zip(cli_rank) {
        assert_eq!(
            (&n["name"], &n["p_change_ns"]),
            (&c["name"], &c["p_change_ns"])
        );
    }
    assert!(readme.contains("## whatif_ranking.parquet"));
    // the diff cell's periods and per-route p50 / p99 are `tailscope diff`'s
    let d = &got["diff"];
    let (b, a) = (&d["before"], &d["after"]);
    let cli: Value = serde_json::from_str(&ok(&run(
        &db,
        &[
            "diff",
            "--before",
            &format!("{}..{}", b[0], b[1]),
            "--after",
            &format!("{}..{}", a[0], a[1]),
            "--format",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(d["before_traces"], cli["before"]["traces"]);
    assert_eq!(d["after_traces"], cli["after"]["traces"]);
    let mut matched = 0;
    for r in d["routes"].as_array().unwrap() {
        let what = r["what"].as_str().unwrap();
        let (svc, op) = what.split_once(' ').unwrap_or(("", what));
        let Some(c) = cli["changes"].as_array().unwrap().iter().find(|c| {
            c["scope"] == "route"
                && c["service"] == svc
                && c["operation"] == op
                && c["metric"] == r["metric"]
        }) else {
            continue;
        };
        assert_eq!(c["before"].as_f64(), r["before"].as_f64(), "{what} {r}");
        assert_eq!(c["after"].as_f64(), r["after"].as_f64(), "{what} {r}");
        matched += 1;
    }
    assert!(matched >= 2, "routes compared with the CLI: {matched}");
}

#[test]
fn filters_export_only_the_chosen_traces_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.duckdb");
    demo(&db, "8");
    let report: Value =
        serde_json::from_str(&ok(&run(&db, &["analyze", "--format", "json"]))).unwrap();
    let traces = report["traces"].as_array().unwrap();
    let ids: Vec<&str> = traces
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert!(ids.len() > 4);

    // two traces by id (upper case is accepted)
    let by_id = dir.path().join("by_id");
    let upper = ids[3].to_uppercase();
    ok(&run(
        &db,
        &[
            "export",
            "--out",
            by_id.to_str().unwrap(),
            "--trace",
            ids[1],
            "--trace",
            &upper,
        ],
    ));
    let s = summarise(&by_id);
    let want = vec![ids[1], ids[3]];
    for table in [
        "spans",
        "span_attributes",
        "critical_path_sections",
        "span_analysis",
        "trace_analysis",
    ] {
        let got: Vec<&str> = s[table]["trace_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut want = want.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{table}");
    }
    for t in s["findings"]["trace_ids"].as_array().unwrap() {
        assert!(want.contains(&t.as_str().unwrap()));
    }

    // a window: traces whose root starts in [since, until), metric points in it
    let mut starts: Vec<i64> = ids
        .iter()
        .map(|id| {
            let sql = format!("SELECT start_ns AS n FROM trace_analysis WHERE trace_id = '{id}'");
            i64::try_from(count(&db, &sql)).unwrap()
        })
        .collect();
    starts.sort_unstable();
    let (since, until) = (starts[1], starts[starts.len() - 2]);
    let win = dir.path().join("win");
    ok(&run(
        &db,
        &[
            "export",
            "--out",
            win.to_str().unwrap(),
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
        ],
    ));
    let s = summarise(&win);
    let expected = starts.iter().filter(|&&t| t >= since && t < until).count();
    assert_eq!(s["trace_analysis"]["rows"].as_u64(), Some(expected as u64));
    let range = &s["trace_analysis"]["start_ns"];
    assert!(range[0].as_i64().unwrap() >= since && range[1].as_i64().unwrap() < until);
    if let Some(r) = s["metric_points"]["time_ns"].as_array() {
        assert!(r[0].as_i64().unwrap() >= since && r[1].as_i64().unwrap() < until);
    }
    assert!(
        s["metric_points"]["rows"].as_u64().unwrap()
            < count(&db, "SELECT count(*) AS n FROM metric_points")
    );
    let readme = std::fs::read_to_string(win.join("README.md")).unwrap();
    assert!(readme.contains(&format!("[{since}, {until})")), "{readme}");
}

#[test]
fn refuses_a_non_empty_folder_and_bad_filters() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.duckdb");
    demo(&db, "3");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = run(&db, &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not empty") && err.contains(out.to_str().unwrap()),
        "{err}"
    );
    assert!(!out.join("spans.parquet").exists());

    ok(&run(
        &db,
        &["export", "--out", out.to_str().unwrap(), "--force"],
    ));
    assert!(out.join("spans.parquet").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );

    let fresh = dir.path().join("fresh");
    for (args, says) in [
        (vec!["--trace", "nothex"], "nothex"),
        (
            vec!["--trace", "0123456789abcdef0123456789abcdef"],
            "not in the store",
        ),
        (vec!["--since", "2200-01-01T00:00:00Z"], "no trace starts"),
    ] {
        let mut a = vec!["export", "--out", fresh.to_str().unwrap()];
        a.extend(args);
        let o = run(&db, &a);
        assert_eq!(o.status.code(), Some(1), "{a:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{a:?}: {err}");
    }
    let o = run(
        &db,
        &[
            "export",
            "--out",
            fresh.to_str().unwrap(),
            "--since",
            "soon",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "a bad time is a usage error");
}
