//! The two bounded channels between the UI and the worker, and the job's cancel flag.

use super::{Request, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

/// The UI's ends of the two bounded channels, and the cancel flag of the running job.
pub struct Link {
    pub requests: SyncSender<Request>,
    pub responses: Receiver<Response>,
    pub cancel: Arc<AtomicBool>,
}

impl Link {
    pub fn cancel_job(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The worker's ends.
pub struct WorkerLink {
    pub requests: Receiver<Request>,
    pub responses: SyncSender<Response>,
    pub cancel: Arc<AtomicBool>,
}

/// Two bounded channels (requests, responses) and a shared cancel flag.
pub fn link(capacity: usize) -> (Link, WorkerLink) {
    let (qtx, qrx) = std::sync::mpsc::sync_channel(capacity);
    let (rtx, rrx) = std::sync::mpsc::sync_channel(capacity);
    let cancel = Arc::new(AtomicBool::new(false));
    (
        Link {
            requests: qtx,
            responses: rrx,
            cancel: Arc::clone(&cancel),
        },
        WorkerLink {
            requests: qrx,
            responses: rtx,
            cancel,
        },
    )
}
