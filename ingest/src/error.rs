//! Why the collector could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: it is not a loopback address; pass --allow-remote to accept telemetry from other machines")]
    RemoteNotAllowed(SocketAddr),
    #[error("cannot use {path} for TLS: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
