//! OTLP/HTTP receiver: POST /v1/traces, /v1/metrics, /v1/logs with protobuf or JSON
//! bodies, optionally gzip; the answer comes in the request's content type.

use crate::decode::{
    content_decode, off_runtime, to_batch, DecodeError, Encoding, MAX_DECODED_BYTES,
};
use crate::pipeline::{Pipeline, Refusal, SignalKind};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use std::sync::atomic::Ordering;
use tailscope_model::Rejections;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn encoding_of(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

fn body_response<T: Message + serde::Serialize>(
    status: StatusCode,
    enc: Encoding,
    msg: &T,
) -> Response {
    let (ct, body) = match enc {
        Encoding::Protobuf => (PROTOBUF, msg.encode_to_vec()),
        Encoding::Json => (JSON, serde_json::to_vec(msg).unwrap_or_default()),
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(ct))],
        body,
    )
        .into_response()
}

fn error_response(status: StatusCode, grpc_code: i32, enc: Encoding, message: String) -> Response {
    body_response(
        status,
        enc,
        &RpcStatus {
            code: grpc_code,
            message,
        },
    )
}

/// 503 with `Retry-After`.
fn unavailable(enc: Encoding, retry_after: std::time::Duration, message: String) -> Response {
    let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, 14, enc, message);
    if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn decode_error_response(p: &Pipeline, enc: Encoding, e: &DecodeError) -> Response {
    match e {
        DecodeError::TooLarge { .. } => {
            p.stats.too_large_requests.fetch_add(1, Ordering::Relaxed);
            error_response(StatusCode::PAYLOAD_TOO_LARGE, 8, enc, e.to_string())
        }
        DecodeError::UnsupportedEncoding(_) => {
            p.stats.malformed_requests.fetch_add(1, Ordering::Relaxed);
            error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, enc, e.to_string())
        }
        _ => {
            p.stats.malformed_requests.fetch_add(1, Ordering::Relaxed);
            error_response(StatusCode::BAD_REQUEST, 3, enc, e.to_string())
        }
    }
}

async fn handle<R>(
    p: &Pipeline,
    signal: SignalKind,
    headers: &HeaderMap,
    body: Bytes,
    respond: impl FnOnce(Rejections) -> R,
) -> Response
where
    R: Message + serde::Serialize,
{
    p.stats.requests.fetch_add(1, Ordering::Relaxed);
    let Some(enc) = encoding_of(headers) else {
        p.stats.malformed_requests.fetch_add(1, Ordering::Relaxed);
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
            Encoding::Json,
            format!(
                "unsupported Content-Type {got:?}: use application/x-protobuf or application/json"
            ),
        );
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // gunzip, decode and normalise off the async worker threads
    let decoded = off_runtime(move || {
        let decoded = content_decode(&body, content_encoding.as_deref())?;
        to_batch(signal, &decoded, enc)
    })
    .await;
    let (batch, rejections) = match decoded {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return decode_error_response(p, enc, &e),
        Err(e) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                13,
                enc,
                format!("decoding the request failed: {e}"),
            )
        }
    };
    match p.store(signal, batch, rejections).await {
        Ok(rej) => body_response(StatusCode::OK, enc, &respond(rej)),
        Err(Refusal::Busy(b)) => unavailable(
            enc,
            b.retry_after,
            format!(
                "tailscope's store writer is saturated; retry in {} s",
                b.retry_after.as_secs().max(1)
            ),
        ),
        Err(Refusal::Unavailable(why)) => unavailable(
            enc,
            crate::pipeline::UNAVAILABLE_RETRY,
            format!("tailscope cannot store the request now: {why}"),
        ),
        Err(Refusal::WriteFailed(e)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            13,
            enc,
            format!("storing the request failed: {e}"),
        ),
    }
}

async fn traces(State(p): State<Pipeline>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&p, SignalKind::Traces, &headers, body, |rej| {
        ExportTraceServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rej.count as i64,
                error_message: rej.summary(),
            }),
        }
    })
    .await
}

async fn metrics(State(p): State<Pipeline>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&p, SignalKind::Metrics, &headers, body, |rej| {
        ExportMetricsServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rej.count as i64,
                error_message: rej.summary(),
            }),
        }
    })
    .await
}

async fn logs(State(p): State<Pipeline>, headers: HeaderMap, body: Bytes) -> Response {
    handle(&p, SignalKind::Logs, &headers, body, |rej| {
        ExportLogsServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rej.count as i64,
                error_message: rej.summary(),
            }),
        }
    })
    .await
}

/// Refuses a request without the pipeline's token (when it has one) with 401, before
/// its body is read; the answer is a `google.rpc.Status` (UNAUTHENTICATED) in the
/// request's content type.
async fn authorise(State(p): State<Pipeline>, request: Request, next: Next) -> Response {
    if p.authorised(request.headers()) {
        return next.run(request).await;
    }
    let enc = encoding_of(request.headers()).unwrap_or(Encoding::Json);
    let mut r = error_response(
        StatusCode::UNAUTHORIZED,
        16,
        enc,
        crate::auth::REFUSED.to_owned(),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The OTLP/HTTP routes over one pipeline (every path behind its token, if it has one).
pub fn router(p: Pipeline) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::max(MAX_DECODED_BYTES))
        .layer(middleware::from_fn_with_state(p.clone(), authorise))
        .with_state(p)
}
