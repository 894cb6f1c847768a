//! OTLP/gRPC receiver: TraceService, MetricsService and LogsService `Export` on tonic.

use crate::decode::MAX_DECODED_BYTES;
use crate::otlp::{logs_to_model, metrics_to_model, traces_to_model};
use crate::pipeline::{Pipeline, Refusal, SignalKind};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::sync::atomic::Ordering;
use tailscope_model::{Batch, Rejections};
use tonic::codec::CompressionEncoding;
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

impl Pipeline {
    async fn grpc<T: Message>(
        &self,
        signal: SignalKind,
        req: &T,
        convert: impl FnOnce(&T) -> (Batch, Rejections),
    ) -> Result<Rejections, Status> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // tonic limits the wire size; a gzip body can still expand past the limit.
        if req.encoded_len() > MAX_DECODED_BYTES {
            self.stats
                .too_large_requests
                .fetch_add(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "request is larger than {MAX_DECODED_BYTES} bytes once decoded"
            )));
        }
        let (batch, rejections) = convert(req);
        self.store(signal, batch, rejections)
            .await
            .map_err(refusal_status)
    }
}

/// The gRPC services over one pipeline.
#[derive(Clone)]
pub struct GrpcReceiver(pub Pipeline);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let req = request.into_inner();
        let rej = self
            .0
            .grpc(SignalKind::Traces, &req, traces_to_model)
            .await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: rej.count as i64,
                error_message: rej.summary(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let req = request.into_inner();
        let rej = self
            .0
            .grpc(SignalKind::Metrics, &req, metrics_to_model)
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rej.count as i64,
                error_message: rej.summary(),
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let req = request.into_inner();
        let rej = self.0.grpc(SignalKind::Logs, &req, logs_to_model).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (rej.count > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rej.count as i64,
                error_message: rej.summary(),
            }),
        }))
    }
}

impl GrpcReceiver {
    /// The three tonic services with gzip accepted and the 64 MiB limit.
    pub fn services(
        &self,
    ) -> (
        TraceServiceServer<GrpcReceiver>,
        MetricsServiceServer<GrpcReceiver>,
        LogsServiceServer<GrpcReceiver>,
    ) {
        (
            TraceServiceServer::new(self.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_DECODED_BYTES),
            MetricsServiceServer::new(self.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_DECODED_BYTES),
            LogsServiceServer::new(self.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_DECODED_BYTES),
        )
    }
}
