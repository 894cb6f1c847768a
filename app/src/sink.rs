//! The ingest [`Sink`] over the store's single [`Writer`]: a batch is acknowledged to
//! the OTLP client only after its transaction committed.

use std::sync::Arc;
use tailscope_ingest::{Ack, Busy, Sink};
use tailscope_model::Batch;
use tailscope_store::Writer;
use tokio::sync::oneshot;

pub struct WriterSink(pub Arc<Writer>);

impl Sink for WriterSink {
    fn submit(&self, batch: Batch) -> Result<Ack, Busy> {
        let (tx, rx) = oneshot::channel();
        self.0
            .try_submit(
                batch,
                Box::new(move |r| {
                    // The request may have been cancelled by its client; nothing to tell then.
                    let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
                }),
            )
            .map_err(|s| Busy {
                retry_after: s.retry_after,
            })?;
        Ok(rx)
    }
}
