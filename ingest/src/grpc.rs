//! OTLP/gRPC receiver: TraceService, MetricsService and LogsService `Export` on tonic.
//!
//! tonic's generated services unpack gzip and decode the message in the codec, on the
//! async worker thread that polls the request. These services instead take the
//! message bytes as they arrived ([`ExportCodec`]; a gzip-packed message is handed
//! over still packed, see [`Unpacked`]) and unpack, decode and normalise them in the
//! blocking pool ([`off_runtime`]). What clients see is what tonic's services
//! answered: the same paths, compression (gzip both ways), 64 MiB limit, status codes
//! and messages.

use crate::decode::{
    gunzip_limited, off_runtime, to_batch, DecodeError, Encoding, MAX_DECODED_BYTES,
};
use crate::pipeline::{Pipeline, Refusal, SignalKind};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
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
use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tailscope_model::{Batch, Rejections};
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

fn refusal_status(r: Refusal) -> Status {
    match r {
        Refusal::Busy(b) => Status::with_error_details(
            Code::Unavailable,
            format!(
                "tailscope's store writer is saturated; retry in {} s",
                b.retry_after.as_secs().max(1)
            ),
            ErrorDetails::with_retry_info(Some(b.retry_after)),
        ),
        Refusal::Unavailable(why) => Status::with_error_details(
            Code::Unavailable,
            format!("tailscope cannot store the request now: {why}"),
            ErrorDetails::with_retry_info(Some(crate::pipeline::UNAVAILABLE_RETRY)),
        ),
        Refusal::WriteFailed(e) => Status::internal(format!("storing the request failed: {e}")),
    }
}

/// The answer to a message that could not be unpacked or decoded, worded as tonic's
/// codec and decompression worded it (and counted).
fn decode_status(p: &Pipeline, e: DecodeError) -> Status {
    let s = &p.stats;
    match e {
        DecodeError::TooLarge { limit } => {
            s.too_large_requests.fetch_add(1, Ordering::Relaxed);
            Status::resource_exhausted(format!(
                "Error decompressing: size limit, of {limit} bytes, exceeded while decompressing message"
            ))
        }
        DecodeError::Gzip(err) => {
            s.malformed_requests.fetch_add(1, Ordering::Relaxed);
            Status::internal(format!("Error decompressing: {err}, while sending request"))
        }
        // prost's own message ("failed to decode Protobuf message: ...")
        DecodeError::Protobuf { detail, .. } => {
            s.malformed_requests.fetch_add(1, Ordering::Relaxed);
            Status::invalid_argument(detail)
        }
        other => {
            s.malformed_requests.fetch_add(1, Ordering::Relaxed);
            Status::invalid_argument(other.to_string())
        }
    }
}

/// Unpacks (when the client packed it), decodes and normalises one message.
fn decode_message(
    signal: SignalKind,
    message: &Bytes,
    packed: bool,
) -> Result<(Batch, Rejections), DecodeError> {
    if packed {
        let raw = gunzip_limited(message, MAX_DECODED_BYTES)?;
        to_batch(signal, &raw, Encoding::Protobuf)
    } else {
        to_batch(signal, message, Encoding::Protobuf)
    }
}

/// One OTLP export service: its gRPC name and path, signal and answer.
pub trait Export: Send + Sync + 'static {
    const NAME: &'static str;
    const PATH: &'static str;
    const SIGNAL: SignalKind;
    type Response: Message + Default + Send + 'static;
    /// The answer once stored, with `partial_success` when items were rejected.
    fn respond(rejections: &Rejections) -> Self::Response;
}

/// `opentelemetry.proto.collector.trace.v1.TraceService`.
pub struct Traces;
/// `opentelemetry.proto.collector.metrics.v1.MetricsService`.
pub struct Metrics;
/// `opentelemetry.proto.collector.logs.v1.LogsService`.
pub struct Logs;

impl Export for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const SIGNAL: SignalKind = SignalKind::Traces;
    type Response = ExportTraceServiceResponse;
    fn respond(rej: &Rejections) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rej.count as i64,
                error_message: rej.summary(),
            }),
        }
    }
}

impl Export for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const SIGNAL: SignalKind = SignalKind::Metrics;
    type Response = ExportMetricsServiceResponse;
    fn respond(rej: &Rejections) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rej.count as i64,
                error_message: rej.summary(),
            }),
        }
    }
}

impl Export for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const SIGNAL: SignalKind = SignalKind::Logs;
    type Response = ExportLogsServiceResponse;
    fn respond(rej: &Rejections) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rej.count as i64,
                error_message: rej.summary(),
            }),
        }
    }
}

/// Handles one export: the message bytes off the runtime to a batch, then the store.
async fn export<E: Export>(
    p: &Pipeline,
    request: Request<Bytes>,
) -> Result<Response<E::Response>, Status> {
    p.stats.requests.fetch_add(1, Ordering::Relaxed);
    let packed = request
        .extensions()
        .get::<Unpacked>()
        .is_some_and(Unpacked::was_packed);
    let message = request.into_inner();
    let decoded = off_runtime(move || decode_message(E::SIGNAL, &message, packed))
        .await
        .map_err(|e| Status::internal(format!("decoding the request failed: {e}")))?;
    let (batch, rejections) = decoded.map_err(|e| decode_status(p, e))?;
    let rej = p
        .store(E::SIGNAL, batch, rejections)
        .await
        .map_err(refusal_status)?;
    Ok(Response::new(E::respond(&rej)))
}

/// A tonic codec that answers with `R` and hands over each request message as the
/// bytes it came in.
struct ExportCodec<R>(PhantomData<fn() -> R>);

struct ResponseEncoder<R>(PhantomData<fn() -> R>);

/// The message bytes (tonic has already checked their size against the limit).
struct RawDecoder;

impl<R: Message + Send + 'static> Codec for ExportCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ResponseEncoder<R>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl<R: Message> Encoder for ResponseEncoder<R> {
    type Item = R;
    type Error = Status;

    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the answer: {e}")))
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Set on a request whose `grpc-encoding` is gzip: tonic is told the message is not
/// packed (so that it does not unpack it on the runtime thread) and this records
/// whether it was, for the handler to unpack it off the runtime.
#[derive(Clone, Default)]
struct Unpacked(Arc<AtomicBool>);

impl Unpacked {
    fn was_packed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A request body whose first byte (the compressed flag of the gRPC message frame)
/// is cleared and recorded in `flag` when `flag` is set.
struct ClearFlag<B> {
    inner: Pin<Box<B>>,
    flag: Option<Unpacked>,
}

impl<B: Body<Data = Bytes>> Body for ClearFlag<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        let Some(flag) = &this.flag else {
            return polled;
        };
        let Poll::Ready(Some(Ok(frame))) = polled else {
            return polled;
        };
        let data = match frame.into_data() {
            Ok(data) if !data.is_empty() => data,
            Ok(empty) => return Poll::Ready(Some(Ok(Frame::data(empty)))),
            Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
        };
        let data = if data[0] == 1 {
            flag.0.store(true, Ordering::Release);
            let mut cleared = BytesMut::from(&data[..]);
            cleared[0] = 0;
            cleared.freeze()
        } else {
            data
        };
        this.flag = None;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One export service over a pipeline, in place of tonic's generated server.
pub struct ExportServer<E> {
    pipeline: Pipeline,
    _export: PhantomData<fn() -> E>,
}

impl<E> Clone for ExportServer<E> {
    fn clone(&self) -> Self {
        Self {
            pipeline: self.pipeline.clone(),
            _export: PhantomData,
        }
    }
}

impl<E: Export> NamedService for ExportServer<E> {
    const NAME: &'static str = E::NAME;
}

struct ExportCall<E>(Pipeline, PhantomData<fn() -> E>);

impl<E: Export> UnaryService<Bytes> for ExportCall<E> {
    type Response = E::Response;
    type Future = BoxFuture<Response<E::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let p = self.0.clone();
        Box::pin(async move { export::<E>(&p, request).await })
    }
}

const GRPC_ENCODING: &str = "grpc-encoding";

impl<E, B> tower::Service<http::Request<B>> for ExportServer<E>
where
    E: Export,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // before anything is read: the message of a client without the token is not
        if !self.pipeline.authorised(req.headers()) {
            return Box::pin(async {
                Ok(Status::unauthenticated(crate::auth::REFUSED).into_http())
            });
        }
        if req.uri().path() != E::PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let (mut parts, body) = req.into_parts();
        let flag = if parts
            .headers
            .get(GRPC_ENCODING)
            .is_some_and(|v| v.as_bytes() == b"gzip")
        {
            parts.headers.remove(GRPC_ENCODING);
            let flag = Unpacked::default();
            parts.extensions.insert(flag.clone());
            Some(flag)
        } else {
            None
        };
        let body = ClearFlag {
            inner: Box::pin(body),
            flag,
        };
        let req = http::Request::from_parts(parts, body);
        let mut gzip = EnabledCompressionEncodings::default();
        gzip.enable(CompressionEncoding::Gzip);
        let mut grpc = Grpc::new(ExportCodec::<E::Response>(PhantomData))
            .apply_compression_config(gzip, gzip)
            .apply_max_message_size_config(Some(MAX_DECODED_BYTES), None);
        let call = ExportCall::<E>(self.pipeline.clone(), PhantomData);
        Box::pin(async move { Ok(grpc.unary(call, req).await) })
    }
}

/// The gRPC services over one pipeline.
#[derive(Clone)]
pub struct GrpcReceiver(pub Pipeline);

impl GrpcReceiver {
    /// The three services: gzip accepted and sent, the 64 MiB limit.
    pub fn services(
        &self,
    ) -> (
        ExportServer<Traces>,
        ExportServer<Metrics>,
        ExportServer<Logs>,
    ) {
        (self.service(), self.service(), self.service())
    }

    fn service<E: Export>(&self) -> ExportServer<E> {
        ExportServer {
            pipeline: self.0.clone(),
            _export: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::pipeline::{Ack, Busy, IngestStats, Sink};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1 as pt;
    use std::io::Write;
    use std::sync::Mutex;
    use tower::Service;

    #[derive(Default)]
    struct Keep(Mutex<Vec<Batch>>);

    impl Sink for Keep {
        fn submit(&self, batch: Batch) -> Result<Ack, Busy> {
            self.0.lock().unwrap().push(batch);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Ok(()));
            Ok(rx)
        }
    }

    /// A body of one chunk.
    struct Once(Option<Bytes>);

    impl Body for Once {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
        }
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn two_spans() -> Vec<u8> {
        let span = |n: u8| pt::Span {
            trace_id: vec![1; 16],
            span_id: vec![n; 8],
            name: "s".into(),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..pt::Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                scope_spans: vec![pt::ScopeSpans {
                    spans: vec![span(1), span(2)],
                    ..pt::ScopeSpans::default()
                }],
                ..pt::ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    /// Sends one message frame (`flag` is its compressed flag) and returns the
    /// status (from the headers of a trailers-only answer, else from the trailers),
    /// what the sink got and the counters.
    async fn send(
        flag: u8,
        encoding: Option<&str>,
        message: &[u8],
    ) -> (Status, usize, Arc<IngestStats>) {
        let sink = Arc::new(Keep::default());
        let stats = Arc::new(IngestStats::default());
        let receiver = GrpcReceiver(Pipeline::new(sink.clone(), stats.clone()));
        let mut frame = vec![flag];
        frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(message);
        let mut req = http::Request::builder()
            .method("POST")
            .uri(Traces::PATH)
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(e) = encoding {
            req = req.header(GRPC_ENCODING, e);
        }
        let req = req.body(Once(Some(frame.into()))).unwrap();
        let mut svc = receiver.services().0;
        let resp = svc.call(req).await.unwrap();
        let mut status = Status::from_header_map(resp.headers());
        let mut body = resp.into_body();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(trailers) = frame.unwrap().into_trailers() {
                status = status.or_else(|| Status::from_header_map(&trailers));
            }
        }
        let status = status.unwrap();
        let spans = sink.0.lock().unwrap().iter().map(|b| b.spans.len()).sum();
        (status, spans, stats)
    }

    #[tokio::test]
    async fn a_packed_message_is_unpacked_by_the_handler() {
        let (st, spans, stats) = send(1, Some("gzip"), &gzip(&two_spans())).await;
        assert_eq!((st.code(), spans), (Code::Ok, 2), "{st:?}");
        assert_eq!(stats.snapshot().requests, 1);
        // gzip announced, this message sent unpacked
        let (st, spans, _) = send(0, Some("gzip"), &two_spans()).await;
        assert_eq!((st.code(), spans), (Code::Ok, 2), "{st:?}");
        let (st, spans, _) = send(0, None, &two_spans()).await;
        assert_eq!((st.code(), spans), (Code::Ok, 2), "{st:?}");
    }

    #[tokio::test]
    async fn unpacking_and_decoding_errors_read_as_tonic_wrote_them() {
        let (st, spans, stats) = send(1, Some("gzip"), b"not gzip").await;
        assert_eq!((st.code(), spans), (Code::Internal, 0));
        assert!(
            st.message().starts_with("Error decompressing: ")
                && st.message().ends_with(", while sending request"),
            "{st:?}"
        );
        assert_eq!(stats.snapshot().malformed_requests, 1);

        let (st, _, stats) = send(1, Some("gzip"), &gzip(&vec![0; MAX_DECODED_BYTES + 1])).await;
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert_eq!(
            st.message(),
            format!("Error decompressing: size limit, of {MAX_DECODED_BYTES} bytes, exceeded while decompressing message")
        );
        assert_eq!(stats.snapshot().too_large_requests, 1);

        let (st, _, stats) = send(1, Some("gzip"), &gzip(&[0x0a, 0x05, 0x12, 0xff])).await;
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(
            st.message()
                .starts_with("failed to decode Protobuf message"),
            "{st:?}"
        );
        assert_eq!(stats.snapshot().malformed_requests, 1);

        // packed without saying how: tonic's own protocol error
        let (st, _, _) = send(1, None, &gzip(&two_spans())).await;
        assert_eq!(st.code(), Code::Internal);
        assert!(st.message().contains("compressed-flag"), "{st:?}");
        // an encoding tonic does not accept
        let (st, _, _) = send(1, Some("br"), &two_spans()).await;
        assert_eq!(st.code(), Code::Unimplemented, "{st:?}");
    }
}
