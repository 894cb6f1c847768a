//! tailscope's way in: OTLP receivers and file import.
//!
//! [`Collector`] runs the OTLP/gRPC ([`GrpcReceiver`], tonic) and OTLP/HTTP
//! ([`http::router`], axum) receivers. Both unpack gzip, decode and normalise each
//! request off the async worker threads ([`decode::to_batch`] in tokio's blocking
//! pool, one per core at a time), turn requests into [`tailscope_model::Batch`]es in
//! [`otlp`] (the only module that maps proto types to model types; protobuf traces go
//! straight from the wire bytes, the rest through `opentelemetry-proto`), promote
//! semantic conventions with [`tailscope_model::semconv`] (the one normalisation,
//! shared with the generator), and hand batches to a [`Sink`] that acknowledges only
//! after commit. With a [`BearerToken`] both receivers refuse requests without it
//! (401 / UNAUTHENTICATED, counted; [`auth`] compares in constant time), and with
//! [`TlsFiles`] both serve TLS (rustls, ring). [`decode::read_file`]
//! imports OTLP files (JSON, JSON lines, protobuf). [`gpu`] samples local NVIDIA GPUs
//! (NVML) into the same sink ([`gpu::spawn_sampler`]).

pub mod auth;
pub mod client;
pub mod decode;
mod error;
pub mod fuzz;
pub mod gpu;
pub mod grpc;
pub mod http;
pub mod otlp;
mod pipeline;
mod server;
mod tls;

pub use auth::{BearerToken, TokenError};
pub use decode::{read_file, Chunk, ImportError, Signal, MAX_DECODED_BYTES};
pub use grpc::GrpcReceiver;
pub use pipeline::{Ack, Busy, IngestStats, Pipeline, SignalKind, Sink, StatsSnapshot, WriteError};
pub use server::{Collector, CollectorConfig, ServeError};
pub use tls::TlsFiles;

/// Protobuf encodings of model batches, for load generators and sample files.
pub mod encode {
    use prost::Message;
    use tailscope_model::Batch;

    /// The spans of `batch` as an `ExportTraceServiceRequest` in protobuf.
    pub fn traces_protobuf(batch: &Batch) -> Vec<u8> {
        crate::otlp::traces_from_model(batch).encode_to_vec()
    }

    /// The spans of `batch` as OTLP/JSON.
    pub fn traces_json(batch: &Batch) -> String {
        serde_json::to_string(&crate::otlp::traces_from_model(batch)).unwrap_or_default()
    }

    /// The metric points of `batch` as an `ExportMetricsServiceRequest` in protobuf.
    pub fn metrics_protobuf(batch: &Batch) -> Vec<u8> {
        crate::otlp::metrics_from_model(batch).encode_to_vec()
    }

    /// The metric points of `batch` as OTLP/JSON.
    pub fn metrics_json(batch: &Batch) -> String {
        serde_json::to_string(&crate::otlp::metrics_from_model(batch)).unwrap_or_default()
    }
}
