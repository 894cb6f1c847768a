//! TLS for both receivers, with rustls and its `ring` provider: the PEM files are read
//! once ([`load`]); tonic terminates TLS for the gRPC receiver itself, and
//! [`TlsListener`] does it for the HTTP receiver (handshakes run on their own tasks, so
//! a slow client does not hold up the others).

use crate::error::ServeError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A certificate chain (the server's certificate first) and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files read and checked.
pub(crate) struct Loaded {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// For the HTTP receiver (HTTP/1.1 over TLS).
    pub http: Arc<rustls::ServerConfig>,
}

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> ServeError {
    ServeError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads the certificate chain and key, and checks that they make a server config.
pub(crate) fn load(files: &TlsFiles) -> Result<Loaded, ServeError> {
    // tonic's server config takes the process's provider: make it ring, whatever
    // else the build enabled
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert_pem = std::fs::read(&files.cert).map_err(|e| tls_error(&files.cert, e))?;
    let key_pem = std::fs::read(&files.key).map_err(|e| tls_error(&files.key, e))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&files.cert, format!("not a PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(tls_error(
            &files.cert,
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| tls_error(&files.key, format!("it holds no PEM private key ({e})")))?;
    let mut http = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(&files.cert, e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls_error(&files.key, format!("it does not fit the certificate ({e})")))?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        cert_pem,
        key_pem,
        http: Arc::new(http),
    })
}

/// Accepts TCP connections and hands over those whose TLS handshake succeeded.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on the current runtime.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // out of file descriptors and the like: wait, as axum does
                        tracing::debug!("accepting an OTLP/HTTP connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // the accepting task ended: nothing more will come
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
