//! Binding and running both receivers, loopback-only unless allowed otherwise, behind
//! a bearer token ([`CollectorConfig::token`]) and TLS ([`CollectorConfig::tls`]) when
//! configured.

use crate::auth::BearerToken;
pub use crate::error::ServeError;
use crate::grpc::GrpcReceiver;
use crate::http::router;
use crate::pipeline::Pipeline;
use crate::tls::{TlsFiles, TlsListener};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// HTTP/2 flow-control windows of the gRPC receiver: per stream (one request) and per
/// connection (all requests in flight on it).
const GRPC_STREAM_WINDOW: u32 = 4 << 20;
const GRPC_CONNECTION_WINDOW: u32 = 32 << 20;

/// Where the collector listens.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// Required to bind anything but a loopback address.
    pub allow_remote: bool,
    /// Every request must carry it (`authorization: Bearer <token>`), else 401 /
    /// UNAUTHENTICATED. The app requires one with `allow_remote`.
    pub token: Option<BearerToken>,
    /// Serve both receivers over TLS.
    pub tls: Option<TlsFiles>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            grpc: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            allow_remote: false,
            token: None,
            tls: None,
        }
    }
}

/// A running collector. Dropping it does not stop it; call [`Collector::shutdown`].
pub struct Collector {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

enum HttpListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

async fn bind(addr: SocketAddr, allow_remote: bool) -> Result<TcpListener, ServeError> {
    if !allow_remote && !addr.ip().is_loopback() {
        return Err(ServeError::RemoteNotAllowed(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

impl Collector {
    /// Binds both listeners (so port errors surface here) and starts serving.
    pub async fn start(cfg: &CollectorConfig, pipeline: Pipeline) -> Result<Self, ServeError> {
        let tls = cfg.tls.as_ref().map(crate::tls::load).transpose()?;
        let mut grpc_server = tonic::transport::Server::builder();
        if let (Some(t), Some(files)) = (&tls, &cfg.tls) {
            let identity = tonic::transport::Identity::from_pem(&t.cert_pem, &t.key_pem);
            grpc_server = grpc_server
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| ServeError::Tls {
                    path: files.cert.clone(),
                    reason: format!("{e:#}"),
                })?;
        }
        let pipeline = match &cfg.token {
            Some(t) => pipeline.require_token(Some(t.clone())),
            None => pipeline,
        };
        let grpc_listener = match cfg.grpc {
            Some(a) => Some(bind(a, cfg.allow_remote).await?),
            None => None,
        };
        let http_listener = match cfg.http {
            Some(a) => Some(bind(a, cfg.allow_remote).await?),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut grpc_addr = None;
        let mut http_addr = None;

        if let Some(l) = grpc_listener {
            grpc_addr = l.local_addr().ok();
            let (t, m, lg) = GrpcReceiver(pipeline.clone()).services();
            let mut rx = stop_rx.clone();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
            tasks.push(tokio::spawn(async move {
                // OTLP requests are large (a batch of spans is hundreds of KiB):
                // HTTP/2's default 64 KiB windows would make each client wait for
                // window updates several times per request.
                let served = grpc_server
                    .initial_stream_window_size(Some(GRPC_STREAM_WINDOW))
                    .initial_connection_window_size(Some(GRPC_CONNECTION_WINDOW))
                    .layer(tower::util::MapResponseLayer::new(grpc_status_codes))
                    .add_service(t)
                    .add_service(m)
                    .add_service(lg)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!("gRPC receiver stopped: {e}");
                }
            }));
        }
        if let Some(l) = http_listener {
            http_addr = l.local_addr().ok();
            let app = router(pipeline);
            let mut rx = stop_rx;
            let stopped = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let listener = match &tls {
                Some(t) => {
                    HttpListener::Tls(TlsListener::new(l, std::sync::Arc::clone(&t.http)).map_err(
                        |source| ServeError::Bind {
                            addr: cfg.http.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                            source,
                        },
                    )?)
                }
                None => HttpListener::Plain(l),
            };
            tasks.push(tokio::spawn(async move {
                let served = match listener {
                    HttpListener::Tls(l) => {
                        axum::serve(l, app).with_graceful_shutdown(stopped).await
                    }
                    HttpListener::Plain(l) => {
                        axum::serve(l, app).with_graceful_shutdown(stopped).await
                    }
                };
                if let Err(e) = served {
                    tracing::error!("HTTP receiver stopped: {e}");
                }
            }));
        }
        Ok(Self {
            grpc_addr,
            http_addr,
            stop,
            tasks,
        })
    }

    /// Stops accepting, lets in-flight requests finish, and waits for both servers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// tonic answers an over-limit message with OUT_OF_RANGE and a malformed one with
/// INTERNAL; OTLP asks for RESOURCE_EXHAUSTED and INVALID_ARGUMENT. The status of
/// such an early error (before our handler runs) is in the response headers.
fn grpc_status_codes<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers();
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("")
        .replace("%20", " ");
    let code = match h.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some("11") if message.contains("too large") => Some("8"),
        Some("13") if message.contains("failed to decode") => Some("3"),
        _ => None,
    };
    if let Some(code) = code {
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static(code));
    }
    resp
}
