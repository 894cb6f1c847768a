//! What both receivers share: the [`Sink`] the batches go to (the store writer, wired
//! by the app), the counters, and the step from a normalised request to an answer.

use crate::auth::BearerToken;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tailscope_model::{Batch, Rejections};
use tokio::sync::oneshot;

/// The sink is full; the client should retry after the given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub retry_after: Duration,
}

/// Why a submitted batch was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The store cannot take writes for now (its disk is full): nothing of the batch
    /// was stored and the client may retry later (503 / UNAVAILABLE).
    Unavailable(String),
    /// Storing failed, or the writer has stopped (500 / INTERNAL).
    Failed(String),
}

/// Resolves once the batch is committed (`Ok`) or failed to commit.
pub type Ack = oneshot::Receiver<Result<(), WriteError>>;

/// Where normalised batches go. Implemented by the app over the store writer.
pub trait Sink: Send + Sync + 'static {
    /// Queues a batch without blocking, or says the sink is busy.
    fn submit(&self, batch: Batch) -> Result<Ack, Busy>;
}

/// Counters of the collector, shown by `serve` and the GUI.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub requests: AtomicU64,
    pub malformed_requests: AtomicU64,
    pub too_large_requests: AtomicU64,
    pub busy_requests: AtomicU64,
    /// Requests refused for a missing or wrong bearer token (401 / UNAUTHENTICATED).
    pub unauthenticated_requests: AtomicU64,
    pub failed_writes: AtomicU64,
    pub spans_accepted: AtomicU64,
    pub spans_rejected: AtomicU64,
    pub metric_points_accepted: AtomicU64,
    pub metric_points_rejected: AtomicU64,
    pub logs_accepted: AtomicU64,
    pub logs_rejected: AtomicU64,
}

/// A plain copy of [`IngestStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub malformed_requests: u64,
    pub too_large_requests: u64,
    pub busy_requests: u64,
    pub unauthenticated_requests: u64,
    pub failed_writes: u64,
    pub spans_accepted: u64,
    pub spans_rejected: u64,
    pub metric_points_accepted: u64,
    pub metric_points_rejected: u64,
    pub logs_accepted: u64,
    pub logs_rejected: u64,
}

impl IngestStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: l(&self.requests),
            malformed_requests: l(&self.malformed_requests),
            too_large_requests: l(&self.too_large_requests),
            busy_requests: l(&self.busy_requests),
            unauthenticated_requests: l(&self.unauthenticated_requests),
            failed_writes: l(&self.failed_writes),
            spans_accepted: l(&self.spans_accepted),
            spans_rejected: l(&self.spans_rejected),
            metric_points_accepted: l(&self.metric_points_accepted),
            metric_points_rejected: l(&self.metric_points_rejected),
            logs_accepted: l(&self.logs_accepted),
            logs_rejected: l(&self.logs_rejected),
        }
    }
}

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Traces,
    Metrics,
    Logs,
}

/// Why a request got no success answer after decoding.
#[derive(Debug)]
pub(crate) enum Refusal {
    Busy(Busy),
    /// The store cannot take writes for now; the reason is for the client.
    Unavailable(String),
    WriteFailed(String),
}

/// How long a client is asked to wait when the store cannot take writes.
pub(crate) const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Shared by the gRPC and HTTP receivers.
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) stats: Arc<IngestStats>,
    /// When set, every request must carry it (`authorization: Bearer <token>`).
    pub(crate) token: Option<BearerToken>,
}

impl Pipeline {
    pub fn new(sink: Arc<dyn Sink>, stats: Arc<IngestStats>) -> Self {
        Self {
            sink,
            stats,
            token: None,
        }
    }

    /// Requires `token` (when given) on every request of both receivers.
    #[must_use]
    pub fn require_token(mut self, token: Option<BearerToken>) -> Self {
        self.token = token;
        self
    }

    /// Whether a request with these headers may be served; a refusal is counted (as a
    /// request, and as unauthenticated).
    pub(crate) fn authorised(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let value = headers
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        if token.accepts(value) {
            return true;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .unauthenticated_requests
            .fetch_add(1, Ordering::Relaxed);
        false
    }

    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// Submits the accepted part of a request and waits for its commit. On success
    /// returns the rejections for `partial_success`.
    pub(crate) async fn store(
        &self,
        signal: SignalKind,
        batch: Batch,
        rejections: Rejections,
    ) -> Result<Rejections, Refusal> {
        let s = &self.stats;
        let (accepted, rejected) = match signal {
            SignalKind::Traces => (&s.spans_accepted, &s.spans_rejected),
            SignalKind::Metrics => (&s.metric_points_accepted, &s.metric_points_rejected),
            SignalKind::Logs => (&s.logs_accepted, &s.logs_rejected),
        };
        let n = (batch.spans.len() + batch.metrics.len() + batch.logs.len()) as u64;
        if n > 0 {
            let ack = self.sink.submit(batch).map_err(|b| {
                s.busy_requests.fetch_add(1, Ordering::Relaxed);
                Refusal::Busy(b)
            })?;
            match ack.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    s.failed_writes.fetch_add(1, Ordering::Relaxed);
                    return Err(match e {
                        WriteError::Unavailable(why) => Refusal::Unavailable(why),
                        WriteError::Failed(why) => Refusal::WriteFailed(why),
                    });
                }
                Err(_) => {
                    s.failed_writes.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::WriteFailed("the store writer stopped".into()));
                }
            }
        }
        accepted.fetch_add(n, Ordering::Relaxed);
        rejected.fetch_add(rejections.count, Ordering::Relaxed);
        Ok(rejections)
    }
}
