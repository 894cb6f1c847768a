//! Bytes -> OTLP requests: protobuf or JSON, optionally gzip, with the 64 MiB
//! decoded-size limit; and OTLP files (JSON, JSON lines as the Collector's file
//! exporter writes them, protobuf, length-prefixed protobuf), turned into model batches.

use crate::otlp::{
    logs_to_model, metrics_to_model, traces_from_json, traces_from_protobuf, traces_into_model,
};
use crate::pipeline::SignalKind;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tailscope_model::{Batch, Rejections};
use tokio::sync::Semaphore;

/// Largest decoded request accepted (OTLP receivers commonly use the same).
pub const MAX_DECODED_BYTES: usize = 64 << 20;

/// Body encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// Why a body could not be decoded. Each message says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request is larger than {limit} bytes once decoded")]
    TooLarge { limit: usize },
    #[error("body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("unsupported Content-Encoding {0:?}: use gzip or none")]
    UnsupportedEncoding(String),
    #[error("malformed protobuf {what}: {detail}")]
    Protobuf { what: &'static str, detail: String },
    #[error("malformed JSON {what}: {detail}")]
    Json { what: &'static str, detail: String },
}

/// Gunzips with a hard limit on the output size.
pub fn gunzip_limited(bytes: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    let mut dec = flate2::read::GzDecoder::new(bytes).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(DecodeError::Gzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// Applies `Content-Encoding` (none or gzip) and the size limit.
pub fn content_decode<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    match content_encoding.map(str::trim) {
        None | Some("" | "identity") => {
            if body.len() > MAX_DECODED_BYTES {
                return Err(DecodeError::TooLarge {
                    limit: MAX_DECODED_BYTES,
                });
            }
            Ok(std::borrow::Cow::Borrowed(body))
        }
        Some(e) if e.eq_ignore_ascii_case("gzip") => Ok(std::borrow::Cow::Owned(gunzip_limited(
            body,
            MAX_DECODED_BYTES,
        )?)),
        Some(other) => Err(DecodeError::UnsupportedEncoding(other.to_owned())),
    }
}

/// A message type that can come as OTLP protobuf or OTLP JSON.
pub trait OtlpMessage: prost::Message + Default + serde::de::DeserializeOwned {
    const WHAT: &'static str;
}

impl OtlpMessage for ExportTraceServiceRequest {
    const WHAT: &'static str = "ExportTraceServiceRequest";
}
impl OtlpMessage for ExportMetricsServiceRequest {
    const WHAT: &'static str = "ExportMetricsServiceRequest";
}
impl OtlpMessage for ExportLogsServiceRequest {
    const WHAT: &'static str = "ExportLogsServiceRequest";
}

/// Decodes an already content-decoded body.
pub fn decode<T: OtlpMessage>(body: &[u8], enc: Encoding) -> Result<T, DecodeError> {
    match enc {
        Encoding::Protobuf => T::decode(body).map_err(|e| DecodeError::Protobuf {
            what: T::WHAT,
            detail: e.to_string(),
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| DecodeError::Json {
            what: T::WHAT,
            detail: e.to_string(),
        }),
    }
}

/// Decodes a content-decoded request body of one signal and turns it into a model
/// batch and its rejections: what both receivers do per request. Traces go straight
/// from the bytes to model spans ([`traces_from_protobuf`], [`traces_from_json`]);
/// metrics and logs through the `opentelemetry-proto` messages.
pub fn to_batch(
    signal: SignalKind,
    body: &[u8],
    enc: Encoding,
) -> Result<(Batch, Rejections), DecodeError> {
    match (signal, enc) {
        (SignalKind::Traces, Encoding::Protobuf) => {
            traces_from_protobuf(body).map_err(|e| DecodeError::Protobuf {
                what: ExportTraceServiceRequest::WHAT,
                detail: e.to_string(),
            })
        }
        (SignalKind::Traces, Encoding::Json) => {
            traces_from_json(body).map_err(|e| DecodeError::Json {
                what: ExportTraceServiceRequest::WHAT,
                detail: e.to_string(),
            })
        }
        (SignalKind::Metrics, _) => Ok(metrics_to_model(&decode(body, enc)?)),
        (SignalKind::Logs, _) => Ok(logs_to_model(&decode(body, enc)?)),
    }
}

/// Runs `work` (unpacking, decoding, normalising: up to 64 MiB, CPU-bound) on tokio's
/// blocking pool instead of an async worker thread, at most one at a time per core:
/// more would not decode faster, and each holds a decoded request in memory while
/// the rest wait as compressed bodies.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Arc::new(Semaphore::new(cores))
    });
    // never closed; were it, the work would run unthrottled
    let permit = Arc::clone(permits).acquire_owned().await.ok();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
}

/// Which signal a file holds when its content cannot tell (protobuf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    /// Guesses from a file name ("...metrics..." / "...logs..."), else traces.
    pub fn from_file_name(path: &Path) -> Signal {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.contains("metric") {
            Signal::Metrics
        } else if name.contains("log") {
            Signal::Logs
        } else {
            Signal::Traces
        }
    }
}

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Decode { path: PathBuf, source: DecodeError },
    #[error("{path}, line {line}: {detail}")]
    Line {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("{path}: neither OTLP JSON (an object with resourceSpans, resourceMetrics or resourceLogs) nor OTLP protobuf")]
    Unrecognised { path: PathBuf },
}

/// One chunk of an imported file: what it held and what was rejected.
#[derive(Debug, Default)]
pub struct Chunk {
    pub batch: Batch,
    pub rejections: Rejections,
    /// Bytes of the file consumed so far (for progress).
    pub bytes_read: u64,
}

/// A JSON line that holds only traces (what the Collector's file exporter writes),
/// through the direct OTLP/JSON decoder; `None` leaves the line to the general path
/// (other signals, or a shape the direct decoder declines).
/// A whole OTLP/JSON document (one line, a pretty-printed document, or one of a
/// gzip file's documents) through the direct trace decoder, when it is a traces
/// request alone (its first key `resourceSpans`, no metrics or logs in it); `None`:
/// another kind of document, or one the direct decoder declines.
fn traces_doc(doc: &str) -> Option<(Batch, Rejections)> {
    let start = doc.trim_start().strip_prefix('{')?.trim_start();
    let traces_only = start.starts_with("\"resourceSpans\"")
        && ![
            "resourceMetrics",
            "resource_metrics",
            "resourceLogs",
            "resource_logs",
        ]
        .iter()
        .any(|k| doc.contains(k));
    let out = if traces_only {
        crate::otlp::traces_from_json_direct(doc.as_bytes())
    } else {
        None
    };
    #[cfg(test)]
    if out.is_some() {
        DIRECT_DOCUMENTS.with(|n| n.set(n.get() + 1));
    }
    out
}

#[cfg(test)]
thread_local! {
    /// Documents the direct decoder took, for the tests that check the path.
    static DIRECT_DOCUMENTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Emits one whole JSON document: the direct decoder where it takes it, else through
/// serde's `Value`.
fn emit_doc(
    path: &Path,
    lineno: usize,
    doc: &str,
    bytes_read: u64,
    each: &mut impl FnMut(Chunk),
) -> Result<(), serde_json::Error> {
    if let Some((batch, rejections)) = traces_doc(doc) {
        each(Chunk {
            batch,
            rejections,
            bytes_read,
        });
        return Ok(());
    }
    let v = serde_json::from_str::<serde_json::Value>(doc)?;
    emit_json(path, lineno, &v, bytes_read, each);
    Ok(())
}

fn json_value_to_batch(v: &serde_json::Value) -> Result<(Batch, Rejections), String> {
    let obj = v.as_object().ok_or("line is not a JSON object")?;
    let mut batch = Batch::default();
    let mut rej = Rejections::default();
    let mut known = false;
    if obj.contains_key("resourceSpans") || obj.contains_key("resource_spans") {
        known = true;
        let req: ExportTraceServiceRequest =
            serde_json::from_value(v.clone()).map_err(|e| format!("traces: {e}"))?;
        let (mut b, r) = traces_into_model(req);
        batch.append(&mut b);
        rej.merge(r);
    }
    if obj.contains_key("resourceMetrics") || obj.contains_key("resource_metrics") {
        known = true;
        let req: ExportMetricsServiceRequest =
            serde_json::from_value(v.clone()).map_err(|e| format!("metrics: {e}"))?;
        let (mut b, r) = metrics_to_model(&req);
        batch.append(&mut b);
        rej.merge(r);
    }
    if obj.contains_key("resourceLogs") || obj.contains_key("resource_logs") {
        known = true;
        let req: ExportLogsServiceRequest =
            serde_json::from_value(v.clone()).map_err(|e| format!("logs: {e}"))?;
        let (mut b, r) = logs_to_model(&req);
        batch.append(&mut b);
        rej.merge(r);
    }
    if known {
        Ok((batch, rej))
    } else {
        Err("object has none of resourceSpans, resourceMetrics, resourceLogs".into())
    }
}

fn proto_to_batch(bytes: &[u8], signal: Signal) -> Result<(Batch, Rejections), DecodeError> {
    let signal = match signal {
        Signal::Traces => SignalKind::Traces,
        Signal::Metrics => SignalKind::Metrics,
        Signal::Logs => SignalKind::Logs,
    };
    to_batch(signal, bytes, Encoding::Protobuf)
}

/// Reads an OTLP file and calls `each` for every chunk (a JSON line, a whole JSON
/// document, or a protobuf message). Gzip files are unpacked first. A JSON-lines file
/// with a bad line reports it and goes on with the next line, counting it rejected.
pub fn read_file(
    path: &Path,
    signal: Option<Signal>,
    mut each: impl FnMut(Chunk),
) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader.fill_buf().map_err(io)?.to_vec();
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        reader.read_to_end(&mut raw).map_err(io)?;
        let bytes = gunzip_limited(&raw, 1 << 34).map_err(|source| ImportError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
        return read_bytes(path, &bytes, signal, each);
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'{') {
        // JSON lines: one document per line. A pretty-printed single document spans
        // lines, so lines that do not parse alone are gathered and parsed whole.
        let mut bytes_read = 0u64;
        let mut line = String::new();
        let mut lineno = 0usize;
        let mut pending = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            lineno += 1;
            bytes_read += n as u64;
            if pending.is_empty() && line.trim().is_empty() {
                continue;
            }
            if pending.is_empty() {
                if let Some((batch, rejections)) = traces_doc(&line) {
                    each(Chunk {
                        batch,
                        rejections,
                        bytes_read,
                    });
                    continue;
                }
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => {
                        emit_json(path, lineno, &v, bytes_read, &mut each);
                        continue;
                    }
                    Err(e) if e.is_eof() => {}
                    Err(e) => {
                        let mut rejections = Rejections::default();
                        rejections.reject(format!("line {lineno}: malformed JSON: {e}"));
                        each(Chunk {
                            batch: Batch::default(),
                            rejections,
                            bytes_read,
                        });
                        continue;
                    }
                }
            }
            pending.push_str(&line);
            // complete yet? (checked without building a value)
            match serde_json::from_str::<serde::de::IgnoredAny>(&pending) {
                Ok(_) => {
                    emit_doc(path, lineno, &pending, bytes_read, &mut each).map_err(|e| {
                        ImportError::Line {
                            path: path.to_path_buf(),
                            line: lineno,
                            detail: format!("malformed JSON: {e}"),
                        }
                    })?;
                    pending.clear();
                }
                Err(e) if e.is_eof() => {}
                Err(e) => {
                    return Err(ImportError::Line {
                        path: path.to_path_buf(),
                        line: lineno,
                        detail: format!("malformed JSON: {e}"),
                    })
                }
            }
        }
        if !pending.trim().is_empty() {
            return Err(ImportError::Line {
                path: path.to_path_buf(),
                line: lineno,
                detail: "JSON document ends early".into(),
            });
        }
        return Ok(());
    }
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(io)?;
    read_bytes(path, &bytes, signal, each)
}

fn emit_json(
    path: &Path,
    lineno: usize,
    v: &serde_json::Value,
    bytes_read: u64,
    each: &mut impl FnMut(Chunk),
) {
    match json_value_to_batch(v) {
        Ok((batch, rejections)) => each(Chunk {
            batch,
            rejections,
            bytes_read,
        }),
        Err(detail) => {
            let mut rejections = Rejections::default();
            rejections.reject(format!("{}, line {lineno}: {detail}", path.display()));
            each(Chunk {
                batch: Batch::default(),
                rejections,
                bytes_read,
            });
        }
    }
}

fn read_bytes(
    path: &Path,
    bytes: &[u8],
    signal: Option<Signal>,
    mut each: impl FnMut(Chunk),
) -> Result<(), ImportError> {
    let signal = signal.unwrap_or_else(|| Signal::from_file_name(path));
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'{') {
        // Decompressed JSON: parse line by line from memory.
        let text = std::str::from_utf8(bytes).map_err(|e| ImportError::Line {
            path: path.to_path_buf(),
            line: 0,
            detail: format!("not UTF-8: {e}"),
        })?;
        // document boundaries found without building values; each document then goes
        // through the direct decoder where it can
        let mut stream =
            serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
        let mut n = 0usize;
        let mut from = 0usize;
        while let Some(v) = stream.next() {
            n += 1;
            let bad = |e: serde_json::Error| ImportError::Line {
                path: path.to_path_buf(),
                line: e.line(),
                detail: format!("malformed JSON: {e}"),
            };
            v.map_err(bad)?;
            let to = stream.byte_offset();
            emit_doc(path, n, &text[from..to], to as u64, &mut each).map_err(bad)?;
            from = to;
        }
        return Ok(());
    }
    // A single protobuf message, or a stream of 4-byte big-endian length-prefixed ones.
    if let Some(chunks) = split_length_prefixed(bytes) {
        let mut read = 0u64;
        for c in chunks {
            read += c.len() as u64 + 4;
            let (batch, rejections) =
                proto_to_batch(c, signal).map_err(|source| ImportError::Decode {
                    path: path.to_path_buf(),
                    source,
                })?;
            each(Chunk {
                batch,
                rejections,
                bytes_read: read,
            });
        }
        return Ok(());
    }
    match proto_to_batch(bytes, signal) {
        Ok((batch, rejections)) if !batch.is_empty() || rejections.count > 0 => {
            each(Chunk {
                batch,
                rejections,
                bytes_read: bytes.len() as u64,
            });
            Ok(())
        }
        Ok(_) | Err(_) => Err(ImportError::Unrecognised {
            path: path.to_path_buf(),
        }),
    }
}

/// Splits `[len u32 BE][message]...` when the lengths tile the buffer exactly and
/// each message starts like an OTLP request (field 1, length-delimited: byte 0x0a).
fn split_length_prefixed(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let msg = rest.get(4..4 + len)?;
        if msg.first() != Some(&0x0a) {
            return None;
        }
        out.push(msg);
        rest = &rest[4 + len..];
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip file and a pretty-printed JSON file give the batch the plain JSON-lines
    /// file gives, through the direct decoder (not serde's `Value`).
    #[test]
    fn gzip_and_pretty_json_files_take_the_direct_decoder() {
        let doc = |k: u8| {
            serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "svc"}}]},
              "scopeSpans": [{"scope": {"name": "s"}, "spans": [{
                "traceId": format!("{:032x}", u128::from(k) + 1), "spanId": format!("{:016x}", u64::from(k) + 1),
                "name": format!("op {k}"), "kind": 3,
                "startTimeUnixNano": "1000", "endTimeUnixNano": "2000",
                "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}]}]}]}]})
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut lines, mut pretty) = (String::new(), String::new());
        for k in 0..3 {
            lines.push_str(&doc(k).to_string());
            lines.push('\n');
            pretty.push_str(&serde_json::to_string_pretty(&doc(k)).unwrap());
            pretty.push('\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.as_bytes()).unwrap();
        let files = [
            ("lines.jsonl", lines.into_bytes()),
            ("pretty.json", pretty.into_bytes()),
            ("lines.jsonl.gz", gz.finish().unwrap()),
        ];
        let mut batches = Vec::new();
        for (name, bytes) in files {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let before = DIRECT_DOCUMENTS.with(std::cell::Cell::get);
            let mut batch = Batch::default();
            read_file(&p, None, |mut c| batch.append(&mut c.batch)).unwrap();
            let direct = DIRECT_DOCUMENTS.with(std::cell::Cell::get) - before;
            assert_eq!(
                direct, 3,
                "{name}: every document through the direct decoder"
            );
            assert_eq!(batch.spans.len(), 3, "{name}");
            batches.push(batch);
        }
        assert_eq!(batches[0], batches[1], "pretty-printed = JSON lines");
        assert_eq!(batches[0], batches[2], "gzip = JSON lines");
    }

    #[test]
    fn gzip_limit_is_enforced_on_output() {
        let big = vec![b'a'; 10_000];
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&big).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip_limited(&gz, 20_000).unwrap().len(), 10_000);
        assert!(matches!(
            gunzip_limited(&gz, 9_999),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            gunzip_limited(b"not gzip", 100),
            Err(DecodeError::Gzip(_))
        ));
        assert!(matches!(
            content_decode(b"x", Some("br")),
            Err(DecodeError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn decode_errors_name_the_message() {
        let e = decode::<ExportTraceServiceRequest>(b"{\"resourceSpans\": 5}", Encoding::Json)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("malformed JSON ExportTraceServiceRequest"),
            "{e}"
        );
        let e = decode::<ExportTraceServiceRequest>(&[0x0a, 0xff, 0xff], Encoding::Protobuf)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("malformed protobuf ExportTraceServiceRequest"),
            "{e}"
        );
    }

    #[test]
    fn length_prefix_split() {
        let mut buf = Vec::new();
        for m in [&[0x0a, 0x00][..], &[0x0a, 0x01, 0x00][..]] {
            buf.extend_from_slice(&(m.len() as u32).to_be_bytes());
            buf.extend_from_slice(m);
        }
        assert_eq!(split_length_prefixed(&buf).map(|v| v.len()), Some(2));
        assert_eq!(split_length_prefixed(&[0x0a, 0x00]), None);
    }
}
