//! The ingest [`Sink`] over the store's single [`Writer`]: a batch is acknowledged to
//! the OTLP client only after its transaction committed. A full disk is answered as
//! "unavailable, retry" (503); a writer that has stopped as a failure with its reason
//! (500), never as an endless "busy".

use std::sync::Arc;
use tailscope_ingest::{Ack, Busy, Sink, WriteError};
use tailscope_model::Batch;
use tailscope_store::{Saturated, StoreError, Writer};
use tokio::sync::oneshot;

pub struct WriterSink(pub Arc<Writer>);

fn write_error(e: &StoreError) -> WriteError {
    if e.is_disk_full() {
        WriteError::Unavailable(e.to_string())
    } else {
        WriteError::Failed(e.to_string())
    }
}

impl Sink for WriterSink {
    fn submit(&self, batch: Batch) -> Result<Ack, Busy> {
        let (tx, rx) = oneshot::channel();
        let done = Box::new(move |r: Result<tailscope_store::Committed, StoreError>| {
            // The request may have been cancelled by its client; nothing to tell then.
            let _ = tx.send(r.map(|_| ()).map_err(|e| write_error(&e)));
        });
        match self.0.try_submit(batch, done) {
            Ok(()) => Ok(rx),
            Err(Saturated {
                stopped: Some(why), ..
            }) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err(WriteError::Failed(why.into())));
                Ok(rx)
            }
            Err(s) => Err(Busy {
                retry_after: s.retry_after,
            }),
        }
    }
}
