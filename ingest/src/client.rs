//! A small OTLP/gRPC client over model batches, for the live load generator
//! (`tailscope generate --endpoint`) and tools that replay data into a collector.

use crate::otlp::{metrics_from_model, traces_from_model};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailscope_model::Batch;
use tonic::transport::Channel;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("export refused: {0}")]
    Status(#[from] tonic::Status),
}

/// What the collector said about one export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    pub rejected: i64,
    pub message: String,
}

/// OTLP/gRPC exporter of model batches. Cheap to clone (one HTTP/2 channel).
#[derive(Clone)]
pub struct OtlpClient {
    traces: TraceServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
}

impl OtlpClient {
    /// Connects to `http://host:port`.
    pub async fn connect(endpoint: &str) -> Result<Self, ClientError> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|source| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Self {
            traces: TraceServiceClient::new(channel.clone())
                .max_encoding_message_size(crate::MAX_DECODED_BYTES),
            metrics: MetricsServiceClient::new(channel)
                .max_encoding_message_size(crate::MAX_DECODED_BYTES),
        })
    }

    /// Exports the spans of `batch` (with its resources) in one request.
    pub async fn export_traces(&mut self, batch: &Batch) -> Result<ExportOutcome, ClientError> {
        let r = self
            .traces
            .export(traces_from_model(batch))
            .await?
            .into_inner();
        Ok(r.partial_success
            .map_or_else(ExportOutcome::default, |p| ExportOutcome {
                rejected: p.rejected_spans,
                message: p.error_message,
            }))
    }

    /// Exports the metric points of `batch` (with its resources) in one request.
    pub async fn export_metrics(&mut self, batch: &Batch) -> Result<ExportOutcome, ClientError> {
        let r = self
            .metrics
            .export(metrics_from_model(batch))
            .await?
            .into_inner();
        Ok(r.partial_success
            .map_or_else(ExportOutcome::default, |p| ExportOutcome {
                rejected: p.rejected_data_points,
                message: p.error_message,
            }))
    }
}
