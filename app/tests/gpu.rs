//! GPU telemetry end to end: a recorded sampler through the real writer sink into a
//! store and back as canonical series; `serve` on a machine without a driver says so
//! once and keeps serving.

#![allow(clippy::float_cmp)] // converted values are exact here; that is what is checked

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailscope::sink::WriterSink;
use tailscope_ingest::gpu::{
    spawn_sampler_with, GpuProcess, GpuSample, NvmlSource, RecordedSource, SamplerConfig,
};
use tailscope_model::gpu_metrics as gm;
use tailscope_store::{AlignOptions, Store, WriterConfig};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_800_000_000 * S;

#[test]
fn recorded_samples_are_stored_and_read_back_as_canonical_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gpu.duckdb")).unwrap();
    let writer = Arc::new(store.writer(WriterConfig::default()).unwrap());
    let ticks = (0..5).map(|k| {
        Ok(vec![GpuSample {
            time_ns: T0 + k * S,
            index: 0,
            uuid: "GPU-12345678-aaaa-bbbb-cccc-dddddddddddd".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            utilization_pct: Some(10.0 * k as f64),
            memory_used_bytes: Some((k as u64 + 1) << 30),
            memory_total_bytes: Some(80 << 30),
            sm_clock_mhz: Some(1980),
            power_mw: Some(100_000 + 1000 * k as u32),
            temperature_c: Some(50),
            processes: vec![GpuProcess {
                pid: 77,
                used_memory_bytes: Some(1 << 30),
            }],
        }])
    });
    let h = spawn_sampler_with(
        Box::new(RecordedSource::new(ticks)),
        Arc::new(WriterSink(Arc::clone(&writer))),
        SamplerConfig {
            interval: Duration::ZERO,
            host: "gpu-box".into(),
            announce: false,
        },
        "recorded".into(),
    )
    .unwrap();
    let stats = h.join();
    assert_eq!(stats.samples, 5);
    assert_eq!(stats.points_committed, 35, "{stats:?}");
    // acknowledged once in the ingest log; readable once loaded
    assert!(writer.wait_loaded(Duration::from_secs(60)));
    assert_eq!(store.counts().unwrap().metric_points, 35);

    let a = store
        .align_window(
            T0,
            T0 + 4 * S,
            &[],
            &AlignOptions {
                step_ns: S,
                ..AlignOptions::default()
            },
        )
        .unwrap();
    let util = a.by_name(gm::GPU_UTILIZATION).next().unwrap();
    assert_eq!(util.source, "nvml.utilization.gpu");
    assert_eq!(util.host.as_deref(), Some("gpu-box"));
    assert_eq!(
        util.gpu.as_deref(),
        Some("GPU-12345678-aaaa-bbbb-cccc-dddddddddddd")
    );
    assert_eq!(util.gpu_index.as_deref(), Some("0"));
    assert_eq!(
        util.points,
        vec![
            (T0, 0.0),
            (T0 + S, 0.1),
            (T0 + 2 * S, 0.2),
            (T0 + 3 * S, 0.3),
            (T0 + 4 * S, 0.4)
        ]
    );
    let power = a.by_name(gm::GPU_POWER).next().unwrap();
    assert_eq!(power.unit, "W");
    assert_eq!(power.points[2], (T0 + 2 * S, 102.0));
    let proc_mem = a.by_name(gm::GPU_PROCESS_MEMORY_USED).next().unwrap();
    assert!(
        proc_mem.attributes.contains("\"process.pid\":77"),
        "{}",
        proc_mem.attributes
    );
    drop(a);
    Arc::try_unwrap(writer).ok().unwrap().close().unwrap();
}

#[test]
fn serve_without_a_driver_says_so_once_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailscope"))
        .arg("--db")
        .arg(dir.path().join("x.duckdb"))
        .args([
            "serve",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--gpu-interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(64);
    let outs: [(Box<dyn std::io::Read + Send>, &str); 2] =
        [(Box::new(stdout), "out"), (Box::new(stderr), "err")];
    for (out, name) in outs {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("serve-{name}"))
            .spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
    }
    drop(tx);
    let mut lines = Vec::new();
    let mut http = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Collect output until the collector is up, then for a few sampler intervals more.
    let mut up_at: Option<Instant> = None;
    while Instant::now() < deadline && up_at.is_none_or(|t| t.elapsed() < Duration::from_secs(2)) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = l.split("OTLP/HTTP ").nth(1) {
                http = rest.split_whitespace().next().map(str::to_owned);
                up_at = Some(Instant::now());
            }
            lines.push(l);
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    let reachable = http
        .as_deref()
        .is_some_and(|a| std::net::TcpStream::connect(a).is_ok());
    child.kill().unwrap();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(still_running, "serve exited:\n{text}");
    assert!(reachable, "the OTLP/HTTP port did not answer:\n{text}");
    if NvmlSource::open().is_err() {
        let no_gpu: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("no NVIDIA GPU found"))
            .collect();
        assert_eq!(no_gpu.len(), 1, "{text}");
        assert!(
            no_gpu[0].starts_with("no NVIDIA GPU found (NVML: "),
            "{text}"
        );
        assert!(no_gpu[0].ends_with("); GPU sampling off"), "{text}");
    } else {
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("GPU sampling: "))
                .count(),
            1,
            "{text}"
        );
    }
}
