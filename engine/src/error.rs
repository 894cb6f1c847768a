//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong loading a configuration or weights, or running a replay.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configuration file could not be read.
    #[error("cannot read engine config {path}: {source}")]
    ConfigIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration is not valid TOML or has a bad field.
    #[error("invalid engine config {origin}: {message}")]
    Config { origin: String, message: String },
    /// Model weights could not be loaded.
    #[error("cannot load model weights from {path}: {message}")]
    Weights { path: PathBuf, message: String },
    /// The requested device is not available in this build or on this machine.
    #[error(
        "device {0:?} is not available (build with the `cuda` feature and run on an NVIDIA GPU)"
    )]
    Device(String),
    /// A CUDA build on a machine whose GPU or driver cannot be used.
    #[error("device {device:?} is not available: {why}")]
    NoGpu { device: String, why: String },
    /// A Mooncake trace line could not be parsed.
    #[error("invalid Mooncake trace at line {line}: {message}")]
    Mooncake { line: usize, message: String },
    /// The workload cannot be replayed (empty, unknown focus, a request that never fits).
    #[error("invalid replay workload: {0}")]
    Workload(String),
    /// The caller cancelled the replay.
    #[error("the replay was cancelled")]
    Cancelled,
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}
