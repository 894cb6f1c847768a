//! A store while `tailscope serve` holds it: `query`, `analyze`, `import` and `export`
//! from a second process go through the running one; requests sent again store
//! nothing new; kill -9 mid-ingest and a restart lose no acknowledged span.

use super::{bin, one, query, Server};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tailscope_model::Batch;

/// The workload's spans as OTLP/HTTP protobuf requests of about `per` spans, with the
/// (trace, span) keys each carries.
fn requests(seed: u64, conversations: usize, per: usize) -> Vec<(Vec<u8>, Vec<String>)> {
    let w = tailscope_samples::generate(&tailscope_samples::WorkloadConfig::small(
        seed,
        conversations,
    ));
    w.batch
        .spans
        .chunks(per)
        .map(|spans| {
            let b = Batch {
                spans: spans.to_vec(),
                resources: w.batch.resources.clone(),
                ..Batch::default()
            };
            let keys = spans
                .iter()
                .map(|s| format!("{}/{}", s.trace_id, s.span_id))
                .collect();
            (tailscope_ingest::encode::traces_protobuf(&b), keys)
        })
        .collect()
}

/// POSTs one protobuf request; the HTTP status.
fn post(agent: &ureq::Agent, http: &str, body: &[u8]) -> Result<u16> {
    let r = agent
        .post(&format!("http://{http}/v1/traces"))
        .header("Content-Type", "application/x-protobuf")
        .send(body)?;
    Ok(r.status().as_u16())
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

fn tailscope(db: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .output()?)
}

fn n(db: &Path, sql: &str) -> Result<i64> {
    one(db, sql)?
        .as_i64()
        .with_context(|| format!("not a number: {sql}"))
}

#[test]
fn a_live_store_is_readable_and_exactly_once_across_kill_9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("live.duckdb");
    let reqs = requests(41, 12, 64);
    anyhow::ensure!(reqs.len() > 12, "too few requests: {}", reqs.len());
    let unique: HashSet<&String> = reqs.iter().flat_map(|r| &r.1).collect();
    let agent = new_agent();

    let server = Server::start(&db)?;
    let first = reqs.len() / 3;
    for (body, _) in &reqs[..first] {
        anyhow::ensure!(post(&agent, &server.http, body)? == 200);
    }
    let sent: usize = reqs[..first].iter().map(|r| r.1.len()).sum();

    // a second process reads the live store through the running one
    let stored = n(&db, "SELECT count(*) AS n FROM spans")?;
    assert_eq!(stored, i64::try_from(sent)?, "query on the live store");
    let o = tailscope(&db, &["analyze", "--format", "json"])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("held by a running tailscope process"),
        "says where the work ran"
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert!(!report["traces"].as_array().context("traces")?.is_empty());
    // a stock Python notebook reads the live store: one POST, an Arrow IPC stream
    let script = r#"
import json, sys, urllib.request
import pyarrow.ipc as ipc
info = json.load(open(sys.argv[1]))
req = urllib.request.Request(info["url"] + "/query",
    data=b"SELECT count(*) AS n FROM spans",
    headers={"Authorization": "Bearer " + info["token"]})
table = ipc.open_stream(urllib.request.urlopen(req).read()).read_all()
print(table.column("n")[0].as_py())
"#;
    let py = Command::new(super::python())
        .args(["-c", script])
        .arg(tailscope::live::info_path(&db))
        .output()?;
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), sent.to_string());
    // compare and diff run there too (their arguments parsed by the running process)
    let o = tailscope(&db, &["compare", "--format", "json", "--percentile", "90"])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(c["percentile"], 90.0);
    let o = tailscope(
        &db,
        &[
            "diff", "--before", "..", "--after", "..", "--format", "json",
        ],
    )?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert!(d["headline"].is_string(), "{d}");
    let o = tailscope(&db, &["compare", "--limit", "many"])?;
    assert_eq!(
        o.status.code(),
        Some(2),
        "a usage error is caught before forwarding"
    );
    // a statement that writes is refused there too
    let o = tailscope(&db, &["query", "DELETE FROM spans"])?;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("read-only"));

    // import through the running process's writer
    let file = dir.path().join("more.pb");
    std::fs::write(&file, &reqs[first].0)?;
    let o = tailscope(&db, &["import", file.to_str().context("path")?])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("stored {} spans", reqs[first].1.len())),
        "{out}"
    );
    // export writes where the caller asked
    let out_dir = dir.path().join("export");
    let o = tailscope(&db, &["export", "--out", out_dir.to_str().context("path")?])?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out_dir.join("spans.parquet").exists());

    // the same request again (an SDK's retry): acknowledged, stored once
    anyhow::ensure!(post(&agent, &server.http, &reqs[0].0)? == 200);
    assert_eq!(
        n(&db, "SELECT count(*) AS n FROM spans")?,
        i64::try_from(sent + reqs[first].1.len())?
    );

    // kill -9 while requests are in flight
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders = (0..4)
        .map(|t| {
            let reqs: Vec<(usize, Vec<u8>)> = reqs
                .iter()
                .enumerate()
                .skip(first + 1 + t)
                .step_by(4)
                .map(|(k, r)| (k, r.0.clone()))
                .collect();
            let (http, acked, stop) = (server.http.clone(), Arc::clone(&acked), Arc::clone(&stop));
            let name = format!("sender-{t}");
            std::thread::Builder::new().name(name).spawn(move || {
                let client = new_agent();
                for (k, body) in reqs {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if matches!(post(&client, &http, &body), Ok(200)) {
                        acked
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(k);
                    }
                }
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    while acked.lock().map_or(0, |a| a.len()) < 3 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut child = server.child;
    child.kill()?; // SIGKILL
    child.wait()?;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    // a stale <store>.live of the dead process must not stop the store from opening
    assert!(tailscope::live::info_path(&db).exists());

    let server = Server::start(&db)?;
    let present: HashSet<String> = query(&db, "SELECT trace_id || '/' || span_id AS k FROM spans")?
        .iter()
        .filter_map(|r| r["k"].as_str().map(str::to_owned))
        .collect();
    for k in acked.iter().chain([0, first].iter()) {
        for key in &reqs[*k].1 {
            if !present.contains(key) {
                bail!("acknowledged span {key} of request {k} is missing after kill -9");
            }
        }
    }
    // every client retries everything it sent: nothing is stored twice
    for (body, _) in &reqs {
        anyhow::ensure!(post(&agent, &server.http, body)? == 200);
    }
    let total = n(&db, "SELECT count(*) AS n FROM spans")?;
    let distinct = n(
        &db,
        "SELECT count(*) AS n FROM (SELECT DISTINCT trace_id, span_id FROM spans)",
    )?;
    assert_eq!(total, distinct, "no span stored twice");
    // collector, import through it, two serve processes: each resource written once
    assert_eq!(
        n(&db, "SELECT count(*) AS n FROM resources")?,
        n(
            &db,
            "SELECT count(DISTINCT resource_id) AS n FROM resources"
        )?
    );
    assert_eq!(total, i64::try_from(unique.len())?, "every span stored");
    server.stop()?;
    assert!(
        !tailscope::live::info_path(&db).exists(),
        "a clean stop removes <store>.live"
    );
    // with serve stopped, the store opens directly again
    assert_eq!(
        n(&db, "SELECT count(*) AS n FROM spans")?,
        i64::try_from(unique.len())?
    );
    Ok(())
}

/// `tailscope serve` on `db` with `extra` arguments, after the shell commands `prefix`;
/// the child and its OTLP/HTTP address.
fn spawn_serve(db: &Path, prefix: &str, extra: &[&str]) -> Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let cmd = format!(
        "{prefix} exec \"$0\" --db \"$1\" serve --grpc 127.0.0.1:0 --http 127.0.0.1:0 --status-every 0 --no-gpu \"${{@:2}}\""
    );
    let mut child = Command::new("bash")
        .args(["-c", &cmd])
        .arg(bin())
        .arg(db)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().context("serve printed nothing")??;
    let http = first
        .split("OTLP/HTTP ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .with_context(|| format!("no address in {first:?}"))?
        .to_owned();
    std::thread::Builder::new()
        .name("serve-stdout".into())
        .spawn(move || for _ in lines {})?;
    Ok((child, http))
}

/// `tailscope serve` on `db` under a file size limit of `kib` KiB (SIGXFSZ ignored, so
/// writes past it fail with EFBIG as they would on a full disk).
fn serve_limited(db: &Path, kib: u64) -> Result<(std::process::Child, String)> {
    spawn_serve(db, &format!("trap '' XFSZ; ulimit -f {kib};"), &[])
}

#[test]
fn serve_publishes_segments_that_other_engines_and_analyze_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("seg.duckdb");
    let seg = dir.path().join("segments");
    let seg_arg = seg.to_str().context("path")?;
    let (child, http) = spawn_serve(&db, "", &["--segments", seg_arg, "--segments-every", "1"])?;
    let reqs = requests(45, 6, 128);
    let agent = new_agent();
    for (body, _) in &reqs {
        anyhow::ensure!(post(&agent, &http, body)? == 200);
    }
    let total: usize = reqs.iter().map(|r| r.1.len()).sum();
    // a stock Python DuckDB reads the published segments while serve runs
    let script = r#"
import sys, time, duckdb
glob = sys.argv[1] + "/spans/*/*/*.parquet"
for _ in range(100):
    try:
        n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
    except duckdb.IOException:
        n = 0
    if n >= int(sys.argv[2]):
        break
    time.sleep(0.1)
print(n)
"#;
    let py = Command::new(super::python())
        .args(["-c", script, seg_arg, &total.to_string()])
        .output()?;
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        total.to_string()
    );
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status()?;
    let mut child = child;
    assert!(child.wait()?.success());
    // tailscope analyses the folder as it analyses the store
    let json = |db: &Path| -> Result<serde_json::Value> {
        let o = tailscope(db, &["analyze", "--format", "json"])?;
        anyhow::ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Ok(serde_json::from_slice(&o.stdout)?)
    };
    // (the folder's tables are views over its files: nothing is copied into memory)
    let (a, b) = (json(&db)?, json(&seg)?);
    assert_eq!(
        a["traces"].as_array().map(Vec::len),
        b["traces"].as_array().map(Vec::len)
    );
    assert_eq!(a["traces"], b["traces"], "the same answer trace by trace");
    assert_eq!(a["findings"], b["findings"]);
    assert_eq!(a["tail"], b["tail"]);
    assert_eq!(
        n(&seg, "SELECT count(*) AS n FROM spans")?,
        i64::try_from(total)?
    );
    Ok(())
}

#[test]
fn a_full_disk_answers_503_and_loses_nothing_acknowledged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("full.duckdb");
    let reqs = requests(43, 40, 256);
    let (mut child, http) = serve_limited(&db, 2048)?;
    let agent = new_agent();
    let mut acked = Vec::new();
    let mut refused = None;
    for (k, (body, _)) in reqs.iter().enumerate() {
        let r = agent
            .post(&format!("http://{http}/v1/traces"))
            .header("Content-Type", "application/x-protobuf")
            .send(&body[..])?;
        match r.status().as_u16() {
            200 => acked.push(k),
            503 => {
                let retry = r.headers().get("retry-after").is_some();
                let mut r = r;
                let text = String::from_utf8_lossy(&r.body_mut().read_to_vec()?).into_owned();
                refused = Some((retry, text));
                break;
            }
            other => bail!("request {k}: HTTP {other}"),
        }
    }
    let (retry, text) = refused.context("the size limit was never reached")?;
    assert!(retry, "503 carries Retry-After");
    assert!(text.contains("disk is full"), "{text}");
    assert!(!acked.is_empty(), "some requests fit before the limit");
    child.kill()?;
    child.wait()?;
    // with room again, every acknowledged span is there
    let present: HashSet<String> = query(&db, "SELECT trace_id || '/' || span_id AS k FROM spans")?
        .iter()
        .filter_map(|r| r["k"].as_str().map(str::to_owned))
        .collect();
    for k in &acked {
        for key in &reqs[*k].1 {
            assert!(present.contains(key), "acknowledged span {key} lost");
        }
    }
    Ok(())
}

#[test]
fn a_writer_that_died_answers_500_with_its_reason() -> Result<()> {
    use tailscope_ingest::{Collector, CollectorConfig, IngestStats, Pipeline};
    let store = tailscope_store::Store::open_in_memory()?;
    let writer = store.shared_writer(tailscope_store::WriterConfig::default())?;
    let rt = tokio::runtime::Runtime::new()?;
    let stats = Arc::new(IngestStats::default());
    let pipeline = Pipeline::new(
        Arc::new(tailscope::sink::WriterSink(Arc::clone(&writer))),
        Arc::clone(&stats),
    );
    let collector = rt.block_on(Collector::start(
        &CollectorConfig {
            grpc: None,
            http: Some("127.0.0.1:0".parse()?),
            allow_remote: false,
            ..CollectorConfig::default()
        },
        pipeline,
    ))?;
    let http = collector.http_addr.context("http address")?;
    let reqs = requests(44, 2, 64);
    let agent = new_agent();
    assert_eq!(post(&agent, &http.to_string(), &reqs[0].0)?, 200);
    // the writer thread dies (a completion callback that panics)
    writer
        .try_submit(
            Batch::default(),
            Box::new(|_| panic!("disk controller on fire")),
        )
        .map_err(|_| anyhow::anyhow!("refused"))?;
    while writer.stopped().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..3 {
        let mut r = agent
            .post(&format!("http://{http}/v1/traces"))
            .header("Content-Type", "application/x-protobuf")
            .send(&reqs[1].0[..])?;
        assert_eq!(r.status().as_u16(), 500, "not an endless 503");
        let text = String::from_utf8_lossy(&r.body_mut().read_to_vec()?).into_owned();
        assert!(text.contains("disk controller on fire"), "{text}");
    }
    rt.block_on(collector.shutdown());
    Ok(())
}
