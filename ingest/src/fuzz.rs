//! A stable fuzzing harness for the decoders (no nightly, no extra crates): a
//! structured generator of OTLP requests (random resources, scopes, spans, events,
//! links, attributes of every value type, ids of right and wrong lengths, the GenAI
//! keys the normalisation reads), byte mutations of their encodings, and per decoder a
//! target that must never panic and, where two decoders read the same format, must
//! agree with the other:
//!
//! - [`Target::Wire`]: the direct protobuf decoder and the public path (direct, then
//!   prost) against prost alone, on the same bytes: the same inputs accepted, the same
//!   batch; whatever the direct decoder accepts, prost gives the same batch for.
//! - [`Target::Json`]: the direct OTLP/JSON decoder and the public path against
//!   opentelemetry-proto's serde, likewise.
//! - [`Target::Prost`]: metrics and logs requests (protobuf and JSON) through the
//!   prost/serde messages and their normalisation.
//! - [`Target::File`]: file import ([`crate::decode::read_file`]): JSON lines, one
//!   protobuf message, gzip of either.
//!
//! [`run`] counts inputs, accepted and declined ones, disagreements and panics; the
//! `fuzz-bench` binary (tests crate) runs millions, a test runs a short pass in CI.

use crate::otlp::{
    logs_to_model, metrics_to_model, traces_from_json, traces_from_protobuf, traces_into_model,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Wire,
    Json,
    Prost,
    File,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Wire, Target::Json, Target::Prost, Target::File];

    pub fn name(self) -> &'static str {
        match self {
            Target::Wire => "wire",
            Target::Json => "json",
            Target::Prost => "prost",
            Target::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// What a run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub inputs: u64,
    /// Inputs the decoder under test accepted (for the differential targets: the
    /// public path), and those it refused.
    pub accepted: u64,
    pub declined: u64,
    /// Inputs where two decoders of one format disagreed (the first few described).
    pub disagreements: u64,
    pub panics: u64,
    pub examples: Vec<String>,
}

impl Report {
    fn note(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// A small, fast, seeded generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

const KEYS: &[&str] = &[
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.conversation.id",
    "gen_ai.operation.name",
    "gen_ai.system",
    "gen_ai.tool.name",
    "llm.model_name",
    "llm.token_count.prompt",
    "server.address",
    "db.system.name",
    "http.request.method",
    "service.name",
    "tenant.id",
    "x",
    "",
];

const WORDS: &[&str] = &[
    "chat",
    "gpt-4o",
    "llama-3",
    "execute_tool",
    "\u{e9}t\u{e9}",
    "",
    "a\"b",
    "1e3",
    "\\",
];

fn any_value(rng: &mut Rng, depth: usize) -> AnyValue {
    use any_value::Value;
    let value = match rng.below(if depth > 1 { 6 } else { 8 }) {
        0 => Value::StringValue(WORDS[rng.below(WORDS.len())].to_owned()),
        1 => Value::IntValue(match rng.below(4) {
            0 => 0,
            1 => -1,
            2 => i64::MAX,
            _ => rng.below(100_000) as i64,
        }),
        2 => Value::DoubleValue(match rng.below(4) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            _ => rng.below(10_000) as f64 / 7.0,
        }),
        3 => Value::BoolValue(rng.chance(2)),
        4 => {
            let n = rng.below(8);
            Value::BytesValue(rng.bytes(n))
        }
        5 => return AnyValue { value: None },
        6 => Value::ArrayValue(ArrayValue {
            values: (0..rng.below(3))
                .map(|_| any_value(rng, depth + 1))
                .collect(),
        }),
        _ => Value::KvlistValue(KeyValueList {
            values: attributes(rng, depth + 1, 3),
        }),
    };
    AnyValue { value: Some(value) }
}

fn attributes(rng: &mut Rng, depth: usize, max: usize) -> Vec<KeyValue> {
    (0..rng.below(max + 1))
        .map(|_| KeyValue {
            key: KEYS[rng.below(KEYS.len())].to_owned(),
            value: (!rng.chance(10)).then(|| any_value(rng, depth)),
            ..KeyValue::default()
        })
        .collect()
}

fn id(rng: &mut Rng, len: usize) -> Vec<u8> {
    match rng.below(12) {
        0 => Vec::new(),
        1 => rng.bytes(len / 2),
        2 => vec![0; len],
        _ => rng.bytes(len),
    }
}

fn span(rng: &mut Rng, trace: &[u8]) -> Span {
    let start = 1_700_000_000_000_000_000u64 + rng.below(1 << 30) as u64;
    let end = if rng.chance(10) {
        start.saturating_sub(1)
    } else {
        start + rng.below(1 << 32) as u64
    };
    Span {
        trace_id: if rng.chance(8) {
            id(rng, 16)
        } else {
            trace.to_vec()
        },
        span_id: id(rng, 8),
        trace_state: if rng.chance(4) {
            "k=v".into()
        } else {
            String::new()
        },
        parent_span_id: if rng.chance(3) {
            Vec::new()
        } else {
            id(rng, 8)
        },
        flags: rng.below(1024) as u32,
        name: WORDS[rng.below(WORDS.len())].to_owned(),
        kind: rng.below(8) as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attributes(rng, 0, 6),
        dropped_attributes_count: rng.below(3) as u32,
        events: (0..rng.below(3))
            .map(|_| span::Event {
                time_unix_nano: start + rng.below(1000) as u64,
                name: WORDS[rng.below(WORDS.len())].to_owned(),
                attributes: attributes(rng, 0, 3),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: (0..rng.below(2))
            .map(|_| span::Link {
                trace_id: id(rng, 16),
                span_id: id(rng, 8),
                trace_state: String::new(),
                attributes: attributes(rng, 0, 2),
                dropped_attributes_count: 0,
                flags: 0,
            })
            .collect(),
        dropped_links_count: 0,
        status: (!rng.chance(3)).then(|| Status {
            message: WORDS[rng.below(WORDS.len())].to_owned(),
            code: rng.below(4) as i32,
        }),
    }
}

fn resource(rng: &mut Rng) -> Option<Resource> {
    (!rng.chance(8)).then(|| Resource {
        attributes: attributes(rng, 0, 4),
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    })
}

fn scope(rng: &mut Rng) -> Option<InstrumentationScope> {
    (!rng.chance(4)).then(|| InstrumentationScope {
        name: WORDS[rng.below(WORDS.len())].to_owned(),
        version: "1.0".into(),
        attributes: attributes(rng, 0, 2),
        dropped_attributes_count: 0,
    })
}

/// A random traces request.
pub fn traces_request(rng: &mut Rng) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: (0..=rng.below(2))
            .map(|_| {
                let trace = rng.bytes(16);
                ResourceSpans {
                    resource: resource(rng),
                    scope_spans: (0..=rng.below(2))
                        .map(|_| ScopeSpans {
                            scope: scope(rng),
                            spans: (0..rng.below(5)).map(|_| span(rng, &trace)).collect(),
                            schema_url: String::new(),
                        })
                        .collect(),
                    schema_url: String::new(),
                }
            })
            .collect(),
    }
}

fn number_point(rng: &mut Rng) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes(rng, 0, 3),
        start_time_unix_nano: 0,
        time_unix_nano: 1_700_000_000_000_000_000 + rng.below(1 << 30) as u64,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(if rng.chance(2) {
            number_data_point::Value::AsDouble(rng.below(1000) as f64 / 3.0)
        } else {
            number_data_point::Value::AsInt(rng.below(1000) as i64)
        }),
    }
}

/// A random metrics request (gauges, sums, histograms with right and wrong bucket
/// counts).
pub fn metrics_request(rng: &mut Rng) -> ExportMetricsServiceRequest {
    let metric = |rng: &mut Rng| {
        let data = match rng.below(3) {
            0 => metric::Data::Gauge(Gauge {
                data_points: (0..rng.below(4)).map(|_| number_point(rng)).collect(),
            }),
            1 => metric::Data::Sum(Sum {
                data_points: (0..rng.below(4)).map(|_| number_point(rng)).collect(),
                aggregation_temporality: rng.below(3) as i32,
                is_monotonic: rng.chance(2),
            }),
            _ => metric::Data::Histogram(Histogram {
                data_points: (0..rng.below(3))
                    .map(|_| {
                        let bounds = rng.below(4);
                        HistogramDataPoint {
                            attributes: attributes(rng, 0, 2),
                            time_unix_nano: 1_700_000_000_000_000_000,
                            count: rng.below(100) as u64,
                            sum: Some(1.5),
                            bucket_counts: (0..bounds + usize::from(!rng.chance(5)))
                                .map(|_| rng.below(10) as u64)
                                .collect(),
                            explicit_bounds: (0..bounds).map(|b| b as f64).collect(),
                            ..HistogramDataPoint::default()
                        }
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
        };
        Metric {
            name: ["vllm:num_requests_waiting", "gpu.utilization", "", "x"][rng.below(4)]
                .to_owned(),
            description: String::new(),
            unit: "1".into(),
            metadata: Vec::new(),
            data: Some(data),
        }
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(rng),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(rng),
                metrics: (0..=rng.below(3)).map(|_| metric(rng)).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A random logs request.
pub fn logs_request(rng: &mut Rng) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(rng),
            scope_logs: vec![ScopeLogs {
                scope: scope(rng),
                log_records: (0..rng.below(4))
                    .map(|_| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + rng.below(1000) as u64,
                        severity_number: rng.below(30) as i32,
                        body: Some(any_value(rng, 0)),
                        attributes: attributes(rng, 0, 3),
                        trace_id: id(rng, 16),
                        span_id: id(rng, 8),
                        ..LogRecord::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Flips, cuts, inserts, deletes or splices bytes, 0 to 5 times.
pub fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..rng.below(6) {
        if b.is_empty() {
            let n = rng.below(16);
            b.extend(rng.bytes(n));
            continue;
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] = rng.next_u64() as u8,
            1 => b.truncate(at),
            2 => b.insert(at, rng.next_u64() as u8),
            3 => {
                b.remove(at);
            }
            4 => {
                // duplicate a stretch (repeated fields, nested lengths)
                let end = (at + 1 + rng.below(32)).min(b.len());
                let copy = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, copy);
            }
            _ => b[at] = [b'"', b'{', b'}', b',', b':', 0x80, 0xff, b'0'][rng.below(8)],
        }
    }
}

/// One input of `target` from `rng`: a generated request's encoding, mostly mutated,
/// sometimes random bytes.
/// A generated request in the encoding `target` reads (protobuf or JSON; traces, or
/// for the targets that read them, metrics and logs too).
fn generated(rng: &mut Rng, target: Target) -> Vec<u8> {
    match target {
        Target::Wire => traces_request(rng).encode_to_vec(),
        Target::Json => serde_json::to_vec(&traces_request(rng)).unwrap_or_default(),
        Target::Prost | Target::File => match rng.below(6) {
            0 => traces_request(rng).encode_to_vec(),
            1 => serde_json::to_vec(&traces_request(rng)).unwrap_or_default(),
            2 => metrics_request(rng).encode_to_vec(),
            3 => serde_json::to_vec(&metrics_request(rng)).unwrap_or_default(),
            4 => logs_request(rng).encode_to_vec(),
            _ => serde_json::to_vec(&logs_request(rng)).unwrap_or_default(),
        },
    }
}

fn input(rng: &mut Rng, target: Target) -> Vec<u8> {
    if rng.chance(20) {
        let n = rng.below(400);
        return rng.bytes(n);
    }
    let mut b = generated(rng, target);
    if !rng.chance(4) {
        mutate(rng, &mut b);
    }
    b
}

/// One libFuzzer input for `target` (the `fuzz/` crate's cargo-fuzz targets): an even
/// first byte feeds the rest to the decoders as it is (coverage-guided bytes); an odd
/// one seeds this module's structured generator with the next 8 bytes and then
/// overwrites the encoded request at (position, value) pairs from the bytes after
/// them, so libFuzzer also explores well-formed OTLP. Returns the bytes decoded and
/// whether a file input is gzipped.
pub fn libfuzzer_input(target: Target, data: &[u8]) -> (Vec<u8>, bool) {
    let Some((&mode, rest)) = data.split_first() else {
        return (Vec::new(), false);
    };
    let gz = target == Target::File && mode & 2 == 2;
    if mode & 1 == 0 {
        return (rest.to_vec(), gz);
    }
    let (seed, edits) = rest.split_at(rest.len().min(8));
    let mut s = [0u8; 8];
    s[..seed.len()].copy_from_slice(seed);
    let mut rng = Rng::new(u64::from_le_bytes(s));
    let mut b = generated(&mut rng, target);
    if !b.is_empty() {
        for e in edits.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([e[0], e[1]])) % b.len();
            b[at] = e[2];
        }
    }
    (b, gz)
}

/// A scratch file of this process under the temp dir (`tag` names the target), for the
/// cargo-fuzz targets that read files.
pub fn scratch_file(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tailscope-fuzz-{tag}-{}", std::process::id()))
}

/// Checks one input of `target` (see [`run`]): `Ok(accepted)`, or how two decoders of
/// one format disagreed. A panic is the caller's to catch (libFuzzer reports it).
pub fn check(target: Target, b: &[u8], gz: bool, scratch: Option<&Path>) -> Result<bool, String> {
    match target {
        Target::Wire => wire(b),
        Target::Json => json(b),
        Target::Prost => prost_messages(b),
        Target::File => file(b, gz, scratch),
    }
}

/// Runs `inputs` inputs of `target` from `seed`; file inputs are written to
/// `scratch` (a file path; needed for [`Target::File`]).
pub fn run(target: Target, inputs: u64, seed: u64, scratch: Option<&Path>) -> Report {
    let mut rng = Rng::new(seed ^ target as u64);
    let mut r = Report::default();
    for i in 0..inputs {
        let b = input(&mut rng, target);
        let gz = target == Target::File && rng.chance(5);
        r.inputs += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| check(target, &b, gz, scratch)));
        match outcome {
            Err(_) => {
                r.panics += 1;
                r.note(format!("input {i} panicked: {b:?}"));
            }
            Ok(Ok(true)) => r.accepted += 1,
            Ok(Ok(false)) => r.declined += 1,
            Ok(Err(why)) => {
                r.disagreements += 1;
                r.note(format!("input {i}: {why}: {b:?}"));
            }
        }
    }
    r
}

/// `Ok(accepted)`, or the disagreement.
type Outcome = Result<bool, String>;

/// The same decoded batch (compared as printed: a NaN attribute equals itself).
fn same<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn wire(b: &[u8]) -> Outcome {
    let prost = ExportTraceServiceRequest::decode(b).map(traces_into_model);
    if let Some(direct) = crate::otlp::traces_from_protobuf_direct(b) {
        match &prost {
            Ok(p) if same(p, &direct) => {}
            _ => {
                return Err(
                    "the direct protobuf decoder accepted what prost reads otherwise".into(),
                )
            }
        }
    }
    let public = traces_from_protobuf(b);
    match (&public, &prost) {
        (Ok(a), Ok(p)) if same(a, p) => Ok(true),
        (Err(_), Err(_)) => Ok(false),
        _ => Err("the public protobuf path and prost disagree".into()),
    }
}

fn json(b: &[u8]) -> Outcome {
    let serde = serde_json::from_slice::<ExportTraceServiceRequest>(b).map(traces_into_model);
    if let Some(direct) = crate::otlp::traces_from_json_direct(b) {
        match &serde {
            Ok(s) if same(s, &direct) => {}
            _ => return Err("the direct JSON decoder accepted what serde reads otherwise".into()),
        }
    }
    let public = traces_from_json(b);
    match (&public, &serde) {
        (Ok(a), Ok(s)) if same(a, s) => Ok(true),
        (Err(_), Err(_)) => Ok(false),
        _ => Err("the public JSON path and serde disagree".into()),
    }
}

#[allow(clippy::unnecessary_wraps)] // one signature for every target
fn prost_messages(b: &[u8]) -> Outcome {
    use crate::decode::{decode, Encoding};
    let mut any = false;
    for enc in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(m) = decode::<ExportMetricsServiceRequest>(b, enc) {
            let (batch, rej) = metrics_to_model(&m);
            any |= !batch.metrics.is_empty() || rej.count > 0;
        }
        if let Ok(l) = decode::<ExportLogsServiceRequest>(b, enc) {
            let (batch, rej) = logs_to_model(&l);
            any |= !batch.logs.is_empty() || rej.count > 0;
        }
    }
    Ok(any)
}

fn file(b: &[u8], gz: bool, scratch: Option<&Path>) -> Outcome {
    let Some(path) = scratch else {
        return Err("the file target needs a scratch path".into());
    };
    let bytes = if gz {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).map_err(|e| e.to_string())?;
        e.finish().map_err(|e| e.to_string())?
    } else {
        b.to_vec()
    };
    std::fs::write(path, bytes).map_err(|e| format!("writing the scratch file: {e}"))?;
    let mut items = 0usize;
    let read = crate::decode::read_file(path, None, |chunk| {
        items += chunk.batch.spans.len() + chunk.batch.metrics.len() + chunk.batch.logs.len();
    });
    Ok(read.is_ok() && items > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An odd first byte with no edits gives a generated request that decodes; an
    /// even one passes the bytes through.
    #[test]
    fn libfuzzer_inputs_are_raw_or_generated() {
        let (raw, _) = libfuzzer_input(Target::Wire, &[0, 1, 2, 3]);
        assert_eq!(raw, vec![1, 2, 3]);
        for seed in 0u8..20 {
            let (b, _) = libfuzzer_input(Target::Wire, &[1, seed, 7, 0, 0, 0, 0, 0, 0]);
            assert_eq!(
                check(Target::Wire, &b, false, None),
                Ok(true),
                "seed {seed}"
            );
            let (j, _) = libfuzzer_input(Target::Json, &[1, seed]);
            assert_eq!(
                check(Target::Json, &j, false, None),
                Ok(true),
                "seed {seed}"
            );
        }
        let (_, gz) = libfuzzer_input(Target::File, &[3]);
        assert!(gz);
    }

    #[test]
    fn generated_requests_decode_unmutated() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let t = traces_request(&mut rng);
            assert_eq!(wire(&t.encode_to_vec()), Ok(true));
            assert_eq!(json(&serde_json::to_vec(&t).unwrap()), Ok(true));
        }
    }
}
