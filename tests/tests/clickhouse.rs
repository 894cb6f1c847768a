//! tailscope against ClickHouse's own engine (chDB, behind the small HTTP front of
//! `tests/clickhouse/front.py`), in the OpenTelemetry Collector ClickHouse exporter's
//! schema created with the exporter's own DDL:
//! - the recorded fixtures, loaded with the exporter's field mapping
//!   (`tests/clickhouse/mapping.py`), give through `--source clickhouse://` the answers
//!   the local store gives for the same files (analyze, compare, diff, whatif);
//! - `export --to clickhouse://` writes the rows the exporter's mapping gives, row for
//!   row.
//!
//! chDB lives in its own venv outside the clone (`scripts/setup` makes it); without it
//! these tests fail with the reason, they never pass silently.

use super::{bin, repo};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The recorded stacks whose files hold spans only (the metrics recording is left
/// out: the source reads the span table).
const FIXTURES: [&str; 9] = [
    "langchain",
    "litellm",
    "llama-index",
    "openinference",
    "openlit",
    "openllmetry",
    "otel-genai",
    "pydantic-ai",
    "vllm-stack",
];

fn fixture_paths() -> Vec<PathBuf> {
    FIXTURES
        .iter()
        .map(|f| repo().join(format!("tests/realtel/fixtures/{f}.jsonl")))
        .collect()
}

fn chdb_python() -> Result<PathBuf> {
    let venv = std::env::var_os("TAILSCOPE_CHDB_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/tailscope/chdb-venv")
        },
        PathBuf::from,
    );
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import chdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!(
            "chDB is not installed in {} (the ClickHouse tests need it): run scripts/setup",
            venv.display()
        );
    }
    Ok(py)
}

/// ClickHouse's engine behind its HTTP front; stops when dropped.
struct Front {
    child: Child,
    host_port: String,
}

impl Front {
    fn start() -> Result<Front> {
        Front::start_with(&[])
    }

    /// The front with these extra arguments (`--tls-cert`, `--tls-key`).
    fn start_with(extra: &[&str]) -> Result<Front> {
        let mut child = Command::new(chdb_python()?)
            .arg(repo().join("tests/clickhouse/front.py"))
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the chDB front")?;
        let out = child.stdout.take().context("front stdout")?;
        let mut lines = BufReader::new(out).lines();
        let first = lines.next().context("the front printed nothing")??;
        let host_port = first
            .strip_prefix("listening on http://")
            .or_else(|| first.strip_prefix("listening on https://"))
            .map(|s| s.trim_end_matches('/').to_owned())
            .with_context(|| format!("unexpected first line from the front: {first:?}"))?;
        std::thread::Builder::new()
            .name("front-stdout".into())
            .spawn(move || for _ in lines {})?;
        Ok(Front { child, host_port })
    }

    fn http(&self) -> String {
        format!("http://{}/", self.host_port)
    }

    fn source(&self, db: &str) -> String {
        format!("clickhouse://{}/{db}", self.host_port)
    }

    /// Loads files with the exporter's field mapping (as the Collector would).
    fn load(&self, db: &str, files: &[PathBuf]) -> Result<()> {
        let out = Command::new("python3")
            .arg(repo().join("tests/clickhouse/load.py"))
            .arg(self.http())
            .arg(db)
            .args(files)
            .output()?;
        if !out.status.success() {
            bail!("load.py failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tailscope; its stdout, failing with its stderr.
fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(bin()).args(args).output()?;
    if !out.status.success() {
        bail!(
            "tailscope {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text:.300}"))
}

#[test]
fn clickhouse_source_gives_the_local_stores_answers() -> Result<()> {
    let front = Front::start()?;
    front.load("otel", &fixture_paths())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("local.duckdb");
    let db = db.to_str().context("path")?;
    let mut import = vec!["--db", db, "import"];
    let files = fixture_paths();
    import.extend(files.iter().map(|p| p.to_str().unwrap_or_default()));
    run(&import)?;
    let src = front.source("otel");

    // the same spans arrived both ways
    let count = "SELECT count(*) AS n, count(DISTINCT trace_id) AS t FROM spans";
    let local = json(&run(&["--db", db, "query", count, "--format", "json"])?)?;
    let remote = json(&run(&[
        "--source", &src, "query", count, "--format", "json",
    ])?)?;
    assert_eq!(local, remote, "span and trace counts");
    assert!(local[0]["n"].as_i64().unwrap_or(0) > 1000, "{local}");

    let (a, b) = span_starts(db)?;
    let mid = a + (b - a) / 2;
    let before = format!("{a}..{mid}");
    let after = format!("{mid}..{}", b + 1);
    let commands: [Vec<&str>; 11] = [
        vec!["analyze", "--format", "json"],
        vec!["compare", "--format", "json"],
        // per tenant: the default key (none here: the root's service), a span
        // attribute with several values in a trace (the smallest names it) and a
        // resource attribute, each found and joined in ClickHouse
        vec!["compare", "--by-tenant", "--format", "json"],
        vec![
            "compare",
            "--by-tenant",
            "--tenant-key",
            "gen_ai.operation.name",
            "--format",
            "json",
        ],
        vec![
            "compare",
            "--by-tenant",
            "--tenant-key",
            "telemetry.sdk.language",
            "--format",
            "json",
        ],
        vec![
            "diff", "--before", &before, "--after", &after, "--format", "json",
        ],
        vec!["whatif", "--rank", "--format", "json"],
        // an operation, a tool, a cause and a model: only the traces with a span that
        // may be it (with a section of the cause) are pulled, the others keep their
        // stored durations
        vec![
            "whatif",
            "--target",
            "op:initialize",
            "--speedup",
            "0.5",
            "--format",
            "json",
        ],
        vec![
            "whatif",
            "--target",
            "tool:get_weather",
            "--duration",
            "10ms",
            "--format",
            "json",
        ],
        vec![
            "whatif",
            "--target",
            "cause:tool_cold_start",
            "--speedup",
            "0.8",
            "--format",
            "json",
        ],
        vec![
            "whatif",
            "--target",
            "model:llama-3.1-8b-instruct",
            "--speedup",
            "0.3",
            "--format",
            "json",
        ],
    ];
    for cmd in &commands {
        let (l, r) = both(db, &src, cmd);
        let (lo, ro) = (json(&run(&l)?)?, json(&run(&r)?)?);
        assert_eq!(
            lo,
            ro,
            "`{}` differs between the local store and the ClickHouse source",
            cmd.join(" ")
        );
    }
    // the MCP `initialize` spans (and the cold starts they are) are in a quarter of
    // one stack's traces: whatif pulls those traces' spans only (with no lateness
    // allowed: the recordings span minutes, all within the default 300 s of the newest
    // span, so all would be pulled again)
    let strict = format!("{src}?late_secs=0");
    let all = local[0]["n"].as_u64().unwrap_or(0);
    for target in ["op:initialize", "cause:tool_cold_start"] {
        let out = Command::new(bin())
            .args(["--source", &strict, "whatif", "--target", target])
            .args(["--speedup", "0.5", "--format", "json"])
            .output()?;
        assert!(out.status.success(), "{target}");
        let said = String::from_utf8_lossy(&out.stderr);
        let pulled = number_after(&said, "spans").context("pulled spans")?;
        let touched = json(&String::from_utf8_lossy(&out.stdout))?["affected_traces"]
            .as_u64()
            .unwrap_or(0);
        assert!(touched > 0, "{target}: {said}");
        assert!(
            pulled > 0 && pulled * 5 < all,
            "{target}: pulled {pulled} of {all}: {said}"
        );
    }
    let listed = run(&["--source", &src, "replay", "--list"])?;
    assert_eq!(
        listed,
        run(&["--db", db, "replay", "--list"])?,
        "replay --list"
    );
    assert!(listed.lines().count() > 1, "{listed}");
    // the report is not empty: the comparison compares something
    let report = json(&run(&["--source", &src, "analyze", "--format", "json"])?)?;
    assert!(
        report["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "no findings in {report:.500}"
    );
    Ok(())
}

#[test]
fn a_bad_source_is_a_clear_error() -> Result<()> {
    let front = Front::start()?;
    let out = Command::new(bin())
        .args(["--source", &front.source("nothing_here"), "analyze"])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no table otel_traces"), "{err}");
    let out = Command::new(bin())
        .args(["--source", "http://localhost/x", "analyze"])
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed address is a usage error"
    );
    Ok(())
}

/// `dump.py`'s canonical rows of a database.
fn dump(front: &Front, db: &str) -> Result<Vec<String>> {
    let out = Command::new("python3")
        .arg(repo().join("tests/clickhouse/dump.py"))
        .arg(front.http())
        .arg(db)
        .output()?;
    if !out.status.success() {
        bail!("dump.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn export_to_clickhouse_writes_the_exporters_rows() -> Result<()> {
    let front = Front::start()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("local.duckdb");
    let db = db.to_str().context("path")?;
    let files = fixture_paths();
    let mut import = vec!["--db", db, "import"];
    import.extend(files.iter().map(|p| p.to_str().unwrap_or_default()));
    run(&import)?;
    let said = run(&["--db", db, "export", "--to", &front.source("mine")])?;
    assert!(said.contains("created the exporter's tables"), "{said}");
    // the reference: the exporter's mapping of the same files
    let out = Command::new("python3")
        .arg(repo().join("tests/clickhouse/mapping.py"))
        .args(&files)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    let got = dump(&front, "mine")?;
    assert_eq!(got.len(), want.len(), "rows");
    let mut differ = 0;
    for (g, w) in got.iter().zip(&want) {
        if g != w {
            if differ < 3 {
                eprintln!("ours:     {g}\nexporter: {w}");
            }
            differ += 1;
        }
    }
    assert_eq!(
        differ,
        0,
        "{differ} of {} rows differ from the exporter's mapping",
        want.len()
    );
    // a second copy would store every span twice: refused
    let again = Command::new(bin())
        .args(["--db", db, "export", "--to", &front.source("mine")])
        .output()?;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(dump(&front, "mine")?.len(), want.len());
    Ok(())
}

#[test]
fn serve_to_clickhouse_sends_the_exporters_rows() -> Result<()> {
    let front = Front::start()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("served.duckdb");
    let mut serve = Command::new(bin())
        .arg("--db")
        .arg(&db)
        .args([
            "serve",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--status-every",
            "0",
            "--no-gpu",
            "--to-flush",
            "60",
            "--to",
            &front.source("served"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = serve.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().context("serve printed nothing")??;
    assert!(first.contains("listening"), "{first}");
    let rest = std::thread::Builder::new()
        .name("serve-stdout".into())
        .spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>())?;
    // the fixtures go in through the running collector (its live service)
    let files = fixture_paths();
    let mut import = vec![
        "--db".to_owned(),
        db.display().to_string(),
        "import".to_owned(),
    ];
    import.extend(files.iter().map(|p| p.display().to_string()));
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    run(&import)?;
    // fewer than 5,000 spans and a 60 s flush: nothing is sent before shutdown
    std::thread::sleep(std::time::Duration::from_secs(2));
    let early = dump(&front, "served")?;
    assert!(
        early.is_empty(),
        "{} rows sent before a full batch",
        early.len()
    );
    let pid = serve.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let status = serve.wait()?;
    assert!(status.success(), "serve exited with {status}");
    let said = rest.join().map_err(|_| anyhow::anyhow!("stdout thread"))?;
    assert!(
        said.iter()
            .any(|l| l.contains("sent 2984 spans to ClickHouse in 1 inserts")),
        "{said:?}"
    );
    let out = Command::new("python3")
        .arg(repo().join("tests/clickhouse/mapping.py"))
        .args(&files)
        .output()?;
    let want: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    let got = dump(&front, "served")?;
    assert_eq!(got.len(), want.len(), "rows");
    let differ = got.iter().zip(&want).filter(|(g, w)| g != w).count();
    assert_eq!(
        differ, 0,
        "{differ} rows differ from the exporter's mapping"
    );
    Ok(())
}

/// Runs tailscope; (stdout, stderr), failing with its stderr.
fn run_both(args: &[&str]) -> Result<(String, String)> {
    let out = Command::new(bin()).args(args).output()?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("tailscope {} failed: {err}", args.join(" "));
    }
    Ok((String::from_utf8(out.stdout)?, err))
}

/// `[first, last]` span start of the local store `db`.
fn span_starts(db: &str) -> Result<(i64, i64)> {
    let range = json(&run(&[
        "--db",
        db,
        "query",
        "SELECT min(start_ns) AS a, max(start_ns) AS b FROM spans",
        "--format",
        "json",
    ])?)?;
    Ok((
        range[0]["a"].as_i64().context("a")?,
        range[0]["b"].as_i64().context("b")?,
    ))
}

/// The spans of the second "pulled N spans" a run printed (the first is the changed
/// traces, the second what the command reads beyond them).
fn second_pull(said: &str) -> Option<usize> {
    said.split("pulled ")
        .nth(2)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
}

/// The same command over the local store `db` and over the source `src`.
fn both<'a>(db: &'a str, src: &'a str, cmd: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut l = vec!["--db", db];
    l.extend_from_slice(cmd);
    let mut r = vec!["--source", src];
    r.extend_from_slice(cmd);
    (l, r)
}

/// The number just before the first `what` in `said` (`123 bytes received`).
fn number_after(said: &str, what: &str) -> Option<u64> {
    let (head, _) = said.split_once(what)?;
    head.trim_end()
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `SELECT ... FORMAT TabSeparated` through the front.
fn scalar(front: &Front, sql: &str) -> Result<String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut resp = agent.post(&front.http()).send(sql.as_bytes())?;
    let text = resp.body_mut().read_to_string()?;
    Ok(text.trim().to_owned())
}

#[test]
fn shared_results_make_the_next_run_incremental() -> Result<()> {
    let front = Front::start()?;
    let files = fixture_paths();
    let (first, last) = files.split_at(files.len() - 1);
    let src = format!("{}?late_secs=0", front.source("otel"));
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("local.duckdb");
    let db = db.to_str().context("path")?;
    let import = |paths: &[PathBuf]| -> Result<()> {
        let mut args = vec!["--db", db, "import"];
        args.extend(paths.iter().map(|p| p.to_str().unwrap_or_default()));
        run(&args).map(drop)
    };
    let report = ["analyze", "--format", "json"];
    let local = |()| -> Result<Value> {
        let mut args = vec!["--db", db];
        args.extend(report);
        json(&run(&args)?)
    };
    let remote = |()| -> Result<(Value, String)> {
        let mut args = vec!["--source", src.as_str()];
        args.extend(report);
        let (out, err) = run_both(&args)?;
        Ok((json(&out)?, err))
    };
    // one desktop analyses what is there
    front.load("otel", first)?;
    import(first)?;
    let (r1, said) = remote(())?;
    assert_eq!(r1, local(())?, "first run");
    let spans_before: usize = scalar(&front, "SELECT count() FROM otel.otel_traces")?.parse()?;
    assert!(
        said.contains(&format!("pulled {spans_before} spans")),
        "{said}"
    );
    let first_pull_bytes = number_after(&said, "bytes of RowBinary")
        .with_context(|| format!("no byte count in {said}"))?;
    // another one (another process and in-memory store) finds nothing new to pull
    let (r2, said) = remote(())?;
    assert_eq!(r2, r1, "a run with nothing new");
    assert!(said.contains("pulled 0 spans"), "{said}");
    // new traces arrive: only they are pulled, and the answers are the local store's
    // after the same two steps
    front.load("otel", last)?;
    import(last)?;
    let (r3, said) = remote(())?;
    let spans_after: usize = scalar(&front, "SELECT count() FROM otel.otel_traces")?.parse()?;
    let new = spans_after - spans_before;
    assert!(
        said.contains(&format!("pulled {new} spans")),
        "only the {new} new spans: {said}"
    );
    assert_eq!(r3, local(())?, "incremental run");
    // the text report too: its cohorts' critical time per operation is summed in
    // ClickHouse; no span of the traces analysed before comes over, and what does is
    // less than the first run's pull of every span
    let (text, said) = run_both(&["--source", &src, "analyze"])?;
    assert_eq!(text, run(&["--db", db, "analyze"])?, "text report");
    assert_eq!(second_pull(&said), None, "{said}");
    let sum_bytes = number_after(&said, "bytes received)")
        .with_context(|| format!("no count of the summed times in {said}"))?;
    assert!(
        sum_bytes > 0 && sum_bytes < first_pull_bytes,
        "{sum_bytes} bytes of sums against {first_pull_bytes} of every span: {said}"
    );
    // compare counts its cohorts' values in ClickHouse: no span comes over
    let cmp = ["compare", "--format", "json"];
    let (l, r) = both(db, &src, &cmp);
    let (compared, said) = run_both(&r)?;
    assert_eq!(
        json(&compared)?,
        json(&run(&l)?)?,
        "compare over shared results"
    );
    assert_eq!(second_pull(&said), None, "{said}");
    // per tenant: the earlier traces' tokens come from the shared results
    let tenants = ["compare", "--by-tenant", "--format", "json"];
    let (l, r) = both(db, &src, &tenants);
    let (by_tenant, said_tenants) = run_both(&r)?;
    let local_tenants = json(&run(&l)?)?;
    assert_eq!(
        json(&by_tenant)?,
        local_tenants,
        "per tenant over shared results"
    );
    assert_eq!(second_pull(&said_tenants), None, "{said_tenants}");
    let tokens: i64 = local_tenants["tenants"].as_array().map_or(0, |t| {
        t.iter().filter_map(|x| x["input_tokens"].as_i64()).sum()
    });
    assert!(tokens > 0, "no tokens counted: {local_tenants}");
    let value_bytes = number_after(&said, "bytes received)")
        .with_context(|| format!("no count of the cohorts' values in {said}"))?;
    assert!(
        value_bytes > 0 && value_bytes < first_pull_bytes,
        "{value_bytes} bytes of values against {first_pull_bytes} of every span: {said}"
    );
    // diff reads its two periods (here the first half of the range, split in two) in
    // ClickHouse: the traces' shared results, the spans' durations per operation and
    // the shared LLM calls; no span comes over, and what does is less than the first
    // run's pull of every span
    let (first, last) = span_starts(db)?;
    let (q1, q2) = (first + (last - first) / 4, first + (last - first) / 2);
    let (before, after) = (format!("{first}..{q1}"), format!("{q1}..{q2}"));
    let periods = [
        "diff", "--before", &before, "--after", &after, "--format", "json",
    ];
    let (l, r) = both(db, &src, &periods);
    let (diffed, said) = run_both(&r)?;
    let local_diff = json(&run(&l)?)?;
    assert_eq!(json(&diffed)?, local_diff, "diff over shared results");
    assert!(
        local_diff["changes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["scope"] == "llm")),
        "the periods' LLM calls are compared: {local_diff}"
    );
    assert_eq!(second_pull(&said), None, "{said}");
    let period_bytes = number_after(&said, "bytes received)")
        .with_context(|| format!("no count of the periods' rows in {said}"))?;
    assert!(
        period_bytes > 0 && period_bytes < first_pull_bytes,
        "{period_bytes} bytes of the periods' rows against {first_pull_bytes} of every span: {said}"
    );
    // a command that reads spans gets those of the traces analysed before too, and
    // re-analyses none of them
    let rank = ["whatif", "--rank", "--format", "json"];
    let (l, r) = both(db, &src, &rank);
    let (ranked, said) = run_both(&r)?;
    assert_eq!(
        json(&ranked)?,
        json(&run(&l)?)?,
        "whatif --rank over shared results"
    );
    assert!(
        said.contains(&format!("pulled {spans_after} spans")),
        "{said}"
    );
    // one row per trace in the shared results
    let rows: usize = scalar(
        &front,
        "SELECT count() FROM otel.tailscope_trace_analysis FINAL",
    )?
    .parse()?;
    let traces: usize =
        scalar(&front, "SELECT uniqExact(TraceId) FROM otel.otel_traces")?.parse()?;
    assert_eq!(rows, traces, "result rows per trace");
    let dups: usize = scalar(
        &front,
        "SELECT count() FROM (SELECT trace_id FROM otel.tailscope_trace_analysis FINAL GROUP BY trace_id HAVING count() > 1)",
    )?
    .parse()?;
    assert_eq!(dups, 0);
    // each run's kept trace ids (the changed traces, found once) are dropped with it
    let kept: usize = scalar(
        &front,
        "SELECT count() FROM system.tables WHERE database = 'otel' AND startsWith(name, 'tailscope_pull_')",
    )?
    .parse()?;
    assert_eq!(kept, 0, "kept trace-id tables left behind");
    Ok(())
}

/// The inference server's metrics, loaded with the exporter's metric mapping
/// (`tests/clickhouse/metrics_mapping.py`), are evidence through `--source` too: the
/// recorded vLLM gauges and counters corroborate the same findings as in the local
/// store. The exporter keeps a sum's times in whole seconds, so a counter's window
/// can come out less sharp: a finding may turn ambiguous there, and never more
/// confident but in one way (one finding here): a prefix-cache miss during a measured
/// wait, which makes the wait queue-or-eviction locally, is averaged away.
#[test]
fn clickhouse_metrics_are_evidence_as_in_the_local_store() -> Result<()> {
    let front = Front::start()?;
    let file = repo().join("tests/realtel/fixtures/otel-genai-metrics.jsonl");
    front.load("m", std::slice::from_ref(&file))?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("m.duckdb");
    let db = db.to_str().context("path")?;
    run(&["--db", db, "import", file.to_str().context("path")?])?;
    let local = json(&run(&["--db", db, "analyze", "--format", "json"])?)?;
    let (out, said) = run_both(&[
        "--source",
        &front.source("m"),
        "analyze",
        "--format",
        "json",
    ])?;
    assert!(said.contains("and 438 metric points"), "{said}");
    let remote = json(&out)?;
    let key = |f: &Value| {
        (
            f["kind"].to_string(),
            f["trace_id"].to_string(),
            f["span_id"].to_string(),
        )
    };
    let findings =
        |v: &Value| -> Vec<Value> { v["findings"].as_array().cloned().unwrap_or_default() };
    let (l, r) = (findings(&local), findings(&remote));
    let mut lk: Vec<_> = l.iter().map(key).collect();
    let mut rk: Vec<_> = r.iter().map(key).collect();
    lk.sort();
    rk.sort();
    assert_eq!(lk, rk, "the same findings");
    let corroborated = |v: &[Value]| {
        v.iter()
            .filter(|f| f["evidence"]["corroborated_by_metrics"] == true)
            .count()
    };
    assert!(corroborated(&l) > 0);
    assert_eq!(
        corroborated(&r),
        corroborated(&l),
        "metrics corroborate as locally"
    );
    let mut sharper_locally = 0;
    for f in &r {
        let here = l.iter().find(|x| key(x) == key(f)).context("finding")?;
        let (was, now) = (
            here["evidence_level"].as_str(),
            f["evidence_level"].as_str(),
        );
        // One exception, the other way: a queue wait that the local counters show
        // overlapping a prefix-cache miss is queue-or-eviction locally; through the
        // exporter (sum times in whole seconds) the miss averages into the hits of
        // its second, and the waiting gauge alone says queue.
        let miss_averaged_away = here["kind"] == "queueing"
            && was == Some("ambiguous")
            && now == Some("measured")
            && here["evidence"]["corroborated_by_metrics"] == true
            && here["alternatives"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "kv_eviction"));
        sharper_locally += usize::from(miss_averaged_away);
        assert!(
            was == now || now == Some("ambiguous") || miss_averaged_away,
            "{was:?} -> {now:?}: {f}"
        );
    }
    assert!(
        sharper_locally <= 1,
        "{sharper_locally} queue waits measured only remotely"
    );
    Ok(())
}

/// A ClickHouse server behind TLS (`?secure=true`, trusting a private CA with
/// `&ca=`): `export --to` writes through it and `--source` reads the local store's
/// answers back; without the CA, or without `secure`, the error says why.
#[test]
fn clickhouse_over_tls_with_a_private_ca() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let [ca, cert, key] = super::remote::certificates(dir.path())?;
    let (ca, cert, key) = (
        ca.to_str().context("path")?,
        cert.to_str().context("path")?,
        key.to_str().context("path")?,
    );
    let front = Front::start_with(&["--tls-cert", cert, "--tls-key", key])?;
    let db = dir.path().join("local.duckdb");
    let db = db.to_str().context("path")?;
    let file = repo().join("tests/realtel/fixtures/openinference.jsonl");
    run(&["--db", db, "import", file.to_str().context("path")?])?;
    let secure = format!("clickhouse://{}/tls?secure=true&ca={ca}", front.host_port);
    let said = run(&["--db", db, "export", "--to", &secure])?;
    assert!(said.contains("created the exporter's tables"), "{said}");
    let local = json(&run(&["--db", db, "analyze", "--format", "json"])?)?;
    let remote = json(&run(&["--source", &secure, "analyze", "--format", "json"])?)?;
    assert_eq!(
        remote["traces"].as_array().map(Vec::len),
        local["traces"].as_array().map(Vec::len)
    );
    assert!(remote["traces"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(remote["tail"], local["tail"]);
    // the Mozilla roots do not know the private CA; plain HTTP to a TLS port fails
    for (url, says) in [
        (
            format!("clickhouse://{}/tls?secure=true", front.host_port),
            "certificate",
        ),
        (
            format!("clickhouse://{}/tls", front.host_port),
            "cannot reach",
        ),
        (
            format!("clickhouse://{}/tls?secure=true&ca={key}", front.host_port),
            "no pem certificate",
        ),
    ] {
        let out = Command::new(bin())
            .args(["--source", &url, "analyze"])
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}");
        assert!(err.to_lowercase().contains(says), "{url}: {err}");
    }
    Ok(())
}

/// The desktop app over a ClickHouse source: a real window under Xvfb renders every
/// view from the pulled traces (no collector in that window).
#[test]
fn the_gui_opens_on_a_clickhouse_source() -> Result<()> {
    let xvfb = Command::new("sh")
        .args(["-c", "command -v Xvfb && command -v xvfb-run"])
        .output()?;
    if !xvfb.status.success() {
        bail!("Xvfb and xvfb-run are not installed: run scripts/setup");
    }
    let front = Front::start()?;
    front.load("otel", &fixture_paths()[..2])?;
    let dir = tempfile::tempdir()?;
    let shots = dir.path().join("shots");
    let out = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1600x1000x24"])
        .arg(bin())
        .args(["--source", &front.source("otel"), "gui", "--screenshot"])
        .arg(&shots)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .output()?;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pngs = std::fs::read_dir(&shots)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .count();
    assert!(pngs >= 5, "{pngs} views captured");
    Ok(())
}
