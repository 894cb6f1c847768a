//! Ingest integration tests: the OTLP spec's JSON examples, item validation with
//! partial success, both receivers' answers to bad input, and random/mutated bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod gpu;
mod remote;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tailscope_ingest::decode::{decode, Encoding};
use tailscope_ingest::otlp::{logs_to_model, metrics_to_model, traces_to_model};
use tailscope_ingest::{
    read_file, Ack, Busy, Collector, CollectorConfig, IngestStats, Pipeline, Signal, Sink,
};
use tailscope_model::{AttrValue, Batch, MetricKind, OpClass};
use tokio::sync::oneshot;
use tonic_types::StatusExt;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/otlp-examples")
        .join(name)
}

#[test]
fn spec_examples_decode() {
    let trace = std::fs::read(example("trace.json")).unwrap();
    let req = decode::<ExportTraceServiceRequest>(&trace, Encoding::Json).unwrap();
    let (b, rej) = traces_to_model(&req);
    assert_eq!(rej.count, 0, "{}", rej.summary());
    let s = &b.spans[0];
    assert_eq!(s.trace_id.to_hex(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.span_id.to_hex(), "eee19b7ec3c1b174");
    assert_eq!(
        s.parent_span_id.map(|p| p.to_hex()).as_deref(),
        Some("eee19b7ec3c1b173")
    );
    assert_eq!(s.duration_ns(), 1_000_000_000);
    assert_eq!(s.kind, tailscope_model::SpanKind::Server);
    assert_eq!(s.service_name, "my.service");
    assert_eq!(
        (s.scope_name.as_str(), s.scope_version.as_str()),
        ("my.library", "1.0.0")
    );
    assert_eq!(
        s.attr("my.span.attr"),
        Some(&AttrValue::Str("some value".into()))
    );
    assert_eq!(
        s.attr("otel.scope.my.scope.attribute"),
        Some(&AttrValue::Str("some scope attribute".into()))
    );

    let metrics = std::fs::read(example("metrics.json")).unwrap();
    let (b, rej) = metrics_to_model(&decode(&metrics, Encoding::Json).unwrap());
    assert_eq!(rej.count, 0, "{}", rej.summary());
    let kinds: Vec<_> = b
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("my.counter", MetricKind::Sum),
            ("my.gauge", MetricKind::Gauge),
            ("my.histogram", MetricKind::Histogram)
        ]
    );
    assert_eq!(b.metrics[0].value, Some(5.0));
    assert_eq!(b.metrics[2].bucket_counts, [1, 1, 1]);
    assert_eq!(b.metrics[2].explicit_bounds, [1.0]);

    let logs = std::fs::read(example("logs.json")).unwrap();
    let (b, rej) = logs_to_model(&decode(&logs, Encoding::Json).unwrap());
    assert_eq!(rej.count, 0, "{}", rej.summary());
    let l = &b.logs[0];
    assert_eq!(l.body, "Example log record");
    assert_eq!(l.attributes.len(), 6);
    assert!(matches!(&l.attributes[4].value, AttrValue::Json(j) if j == r#"["many","values"]"#));

    // the same files through the file importer, which detects the signal from JSON
    for (name, spans, points, logs) in [
        ("trace.json", 1, 0, 0),
        ("metrics.json", 0, 3, 0),
        ("logs.json", 0, 0, 1),
    ] {
        let mut total = Batch::default();
        read_file(&example(name), None, |mut c| total.append(&mut c.batch)).unwrap();
        assert_eq!(
            (total.spans.len(), total.metrics.len(), total.logs.len()),
            (spans, points, logs),
            "{name}"
        );
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    }
}

fn good_span(n: u8) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![n; 8],
        name: format!("chat {n}"),
        kind: 3,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.request.model", "m"),
        ],
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![kv("service.name", "svc")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// Invalid spans of every kind; each is rejected with a reason and the good ones kept.
fn mixed_request() -> ExportTraceServiceRequest {
    let mut bad_len = good_span(2);
    bad_len.trace_id = vec![1, 2, 3];
    let mut missing = good_span(3);
    missing.trace_id.clear();
    let mut backwards = good_span(4);
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
    let mut kind = good_span(5);
    kind.kind = 42;
    let mut parent = good_span(6);
    parent.parent_span_id = vec![1; 5];
    request(vec![
        good_span(1),
        bad_len,
        missing,
        backwards,
        kind,
        parent,
        good_span(8),
    ])
}

#[test]
fn invalid_items_are_rejected_with_reasons() {
    let (b, rej) = traces_to_model(&mixed_request());
    assert_eq!(b.spans.len(), 2);
    assert_eq!(rej.count, 5);
    let all = rej.messages.join("\n");
    for needle in [
        "trace_id has 3 bytes, want 16",
        "missing trace_id",
        "is before start_time_unix_nano",
        "unknown span kind 42",
        "parent_span_id has 5 bytes, want 8",
    ] {
        assert!(all.contains(needle), "no {needle:?} in\n{all}");
    }
    assert_eq!(b.spans[0].promoted.op_class, OpClass::Llm);
}

/// A sink that keeps batches in memory and can be switched to busy: it stands in for
/// the store, which this crate may not depend on (the store path is tested end to end
/// in tests/).
#[derive(Default)]
struct MemorySink {
    batches: Mutex<Vec<Batch>>,
    busy: AtomicBool,
}

impl Sink for MemorySink {
    fn submit(&self, batch: Batch) -> Result<Ack, Busy> {
        if self.busy.load(Ordering::Relaxed) {
            return Err(Busy {
                retry_after: Duration::from_secs(2),
            });
        }
        self.batches.lock().unwrap().push(batch);
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(()));
        Ok(rx)
    }
}

impl MemorySink {
    fn spans(&self) -> usize {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.spans.len())
            .sum()
    }
}

async fn start() -> (Collector, Arc<MemorySink>, Arc<IngestStats>) {
    let sink = Arc::new(MemorySink::default());
    let stats = Arc::new(IngestStats::default());
    let cfg = CollectorConfig {
        grpc: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
        allow_remote: false,
        ..CollectorConfig::default()
    };
    let c = Collector::start(&cfg, Pipeline::new(sink.clone(), stats.clone()))
        .await
        .unwrap();
    (c, sink, stats)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receiver_answers_in_kind() {
    let (c, sink, stats) = start().await;
    let base = format!("http://{}", c.http_addr.unwrap());
    let http = reqwest::Client::new();
    let post = |path: &str, ct: &str, enc: Option<&str>, body: Vec<u8>| {
        let mut r = http
            .post(format!("{base}{path}"))
            .header("content-type", ct)
            .body(body);
        if let Some(e) = enc {
            r = r.header("content-encoding", e);
        }
        r.send()
    };

    // protobuf, gzip: partial success in protobuf
    let r = post(
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&mixed_request().encode_to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let ps = resp.partial_success.expect("partial_success");
    assert_eq!(ps.rejected_spans, 5);
    assert!(
        ps.error_message.contains("unknown span kind 42"),
        "{}",
        ps.error_message
    );
    assert_eq!(sink.spans(), 2);

    // JSON: answer in JSON; all-good request has no partial_success
    let json = serde_json::to_vec(&request(vec![good_span(9)])).unwrap();
    let r = post("/v1/traces", "application/json", None, json)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v.get("partialSuccess")
            .is_none_or(serde_json::Value::is_null),
        "{v}"
    );
    assert_eq!(sink.spans(), 3);

    // malformed bodies: 400 with a message saying what is wrong
    let r = post(
        "/v1/traces",
        "application/json",
        None,
        b"{\"resourceSpans\": [{\"scopeSpans\": 7}]}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON ExportTraceServiceRequest"),
        "{v}"
    );
    let r = post(
        "/v1/metrics",
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0xff, 0xff],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        "/v1/logs",
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/v1/traces", "text/plain", None, b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // over 64 MiB once decoded (a small gzip body that expands): 413
    let huge = gzip(&vec![b' '; (64 << 20) + 10]);
    let r = post("/v1/traces", "application/json", Some("gzip"), huge)
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // and a raw body over the limit
    let r = post(
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0u8; (64 << 20) + 1],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 413);

    // saturated sink: 503 with Retry-After, nothing stored
    sink.busy.store(true, Ordering::Relaxed);
    let r = post(
        "/v1/traces",
        "application/x-protobuf",
        None,
        request(vec![good_span(1)]).encode_to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    sink.busy.store(false, Ordering::Relaxed);

    let s = stats.snapshot();
    assert_eq!(s.spans_accepted, 3);
    assert_eq!(s.spans_rejected, 5);
    assert_eq!(s.malformed_requests, 4);
    assert_eq!(
        s.too_large_requests, 1,
        "axum's own body limit answers the raw one"
    );
    assert_eq!(s.busy_requests, 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_status_codes() {
    let (c, sink, _stats) = start().await;
    let url = format!("http://{}", c.grpc_addr.unwrap());
    let mut client = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);

    let resp = client.export(mixed_request()).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 5);
    assert_eq!(sink.spans(), 2);

    // Over 64 MiB once decoded: gzip makes it small on the wire; RESOURCE_EXHAUSTED.
    let mut big = good_span(1);
    big.attributes.push(kv("blob", &" ".repeat((64 << 20) + 1)));
    let err = client.export(request(vec![big])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");

    // Over 64 MiB on the wire, uncompressed.
    let mut plain = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX);
    let mut big = good_span(1);
    big.attributes.push(kv("blob", &"x".repeat((64 << 20) + 1)));
    let err = plain.export(request(vec![big])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");

    // Malformed protobuf: INVALID_ARGUMENT (tonic's decoder names the field).
    let err = raw_export(&url, vec![0x0a, 0x05, 0x12, 0xff, 0xff]).await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("failed to decode"), "{err}");

    // Saturated: UNAVAILABLE with RetryInfo.
    sink.busy.store(true, Ordering::Relaxed);
    let err = client
        .export(request(vec![good_span(3)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let retry = err.get_details_retry_info().expect("RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)));
    sink.busy.store(false, Ordering::Relaxed);
    c.shutdown().await;
}

/// Sends raw bytes as an ExportTraceServiceRequest (for malformed protobuf).
async fn raw_export(url: &str, body: Vec<u8>) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary::<_, Vec<u8>, _>(tonic::Request::new(body), path, RawCodec)
        .await
        .unwrap_err()
}

#[derive(Clone, Copy)]
struct RawCodec;
struct RawEnc;
struct RawDec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

impl tonic::codec::Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

#[test]
fn remote_bind_needs_permission() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = CollectorConfig {
            grpc: Some("0.0.0.0:0".parse().unwrap()),
            http: None,
            allow_remote: false,
            ..CollectorConfig::default()
        };
        let sink = Arc::new(MemorySink::default());
        let err = Collector::start(&cfg, Pipeline::new(sink, Arc::default()))
            .await
            .err()
            .expect("must refuse");
        assert!(err.to_string().contains("--allow-remote"), "{err}");
    });
}

/// Random bytes and mutations of valid requests never panic either decoder or the
/// normalisation; what decodes is either converted or rejected.
#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let valid_pb = mixed_request().encode_to_vec();
    let valid_json = serde_json::to_vec(&mixed_request()).unwrap();
    let metrics_json = std::fs::read(example("metrics.json")).unwrap();
    let mut decoded = 0;
    for i in 0..20_000 {
        let base: &[u8] = match i % 3 {
            0 => &valid_pb,
            1 => &valid_json,
            _ => &metrics_json,
        };
        let mut b = if i % 10 == 0 {
            (0..rng.random_range(0..300))
                .map(|_| rng.random())
                .collect::<Vec<u8>>()
        } else {
            base.to_vec()
        };
        for _ in 0..rng.random_range(1..6) {
            if b.is_empty() {
                break;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..4) {
                0 => b[at] = rng.random(),
                1 => b.truncate(at),
                2 => b.insert(at, rng.random()),
                _ => {
                    b.remove(at);
                }
            }
        }
        for enc in [Encoding::Protobuf, Encoding::Json] {
            if let Ok(r) = decode::<ExportTraceServiceRequest>(&b, enc) {
                decoded += 1;
                let (batch, rej) = traces_to_model(&r);
                assert!(batch.spans.len() as u64 + rej.count <= 10_000);
            }
            if let Ok(r) = decode(&b, enc) {
                let _ = metrics_to_model(&r);
            }
            if let Ok(r) = decode(&b, enc) {
                let _ = logs_to_model(&r);
            }
        }
        let _ = tailscope_ingest::decode::gunzip_limited(&b, 1 << 20);
    }
    assert!(
        decoded > 100,
        "mutations should often still decode ({decoded})"
    );
}

#[test]
fn collector_file_exporter_jsonl_and_protobuf_import() {
    let dir = tempfile::tempdir().unwrap();
    // Collector file exporter: one OTLP/JSON document per line, traces and metrics mixed.
    let trace_line = serde_json::to_string(&request(vec![good_span(1), good_span(2)])).unwrap();
    let metrics_line: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example("metrics.json")).unwrap()).unwrap();
    let jsonl = dir.path().join("otel-export.jsonl");
    std::fs::write(
        &jsonl,
        format!("{trace_line}\n{metrics_line}\nnot json\n{trace_line}\n"),
    )
    .unwrap();
    let mut total = Batch::default();
    let mut rejected = 0;
    read_file(&jsonl, None, |mut c| {
        rejected += c.rejections.count;
        total.append(&mut c.batch);
    })
    .unwrap();
    assert_eq!(total.spans.len(), 4);
    // the trace lines (read by the direct OTLP/JSON decoder) as the prost path reads them
    let (want, _) =
        tailscope_ingest::otlp::traces_into_model(request(vec![good_span(1), good_span(2)]));
    assert_eq!(
        format!("{:?}", &total.spans[..2]),
        format!("{:?}", want.spans)
    );
    assert_eq!(total.metrics.len(), 3);
    assert_eq!(rejected, 1, "the bad line is counted and skipped");

    // protobuf, plain and length-prefixed, and gzip
    let pb = request(vec![good_span(1)]).encode_to_vec();
    let plain = dir.path().join("traces.pb");
    std::fs::write(&plain, &pb).unwrap();
    let mut prefixed = Vec::new();
    for _ in 0..3 {
        prefixed.extend_from_slice(&(pb.len() as u32).to_be_bytes());
        prefixed.extend_from_slice(&pb);
    }
    let framed = dir.path().join("traces-framed.pb");
    std::fs::write(&framed, &prefixed).unwrap();
    let gz = dir.path().join("traces.json.gz");
    std::fs::write(&gz, gzip(trace_line.as_bytes())).unwrap();
    for (p, n) in [(&plain, 1), (&framed, 3), (&gz, 2)] {
        let mut count = 0;
        read_file(p, Some(Signal::Traces), |c| count += c.batch.spans.len()).unwrap();
        assert_eq!(count, n, "{}", p.display());
    }
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, [0xffu8; 64]).unwrap();
    let err = read_file(&junk, None, |_| {}).unwrap_err();
    assert!(err.to_string().contains("junk.bin"), "{err}");
}

/// The fuzz harness's short pass (the CI share of `fuzz-bench`): each decoder's
/// target on generated and mutated requests, no panic, and where two decoders read
/// one format they accept the same inputs and give the same batch.
#[test]
fn fuzz_short_pass_every_decoder_agrees_and_never_panics() {
    use tailscope_ingest::fuzz::{run, Target};
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("input");
    for target in Target::ALL {
        let n = if target == Target::File { 2_000 } else { 6_000 };
        let t = std::time::Instant::now();
        let r = run(target, n, 29, Some(&scratch));
        eprintln!(
            "{}: {} inputs in {:.1} s, {} accepted, {} declined, {} disagreements, {} panics",
            target.name(),
            r.inputs,
            t.elapsed().as_secs_f64(),
            r.accepted,
            r.declined,
            r.disagreements,
            r.panics
        );
        assert_eq!(
            (r.panics, r.disagreements),
            (0, 0),
            "{}: {:#?}",
            target.name(),
            r.examples
        );
        assert!(
            r.accepted > n / 20 && r.declined > n / 20,
            "{}: the inputs should both decode and fail often: {r:?}",
            target.name()
        );
    }
}
