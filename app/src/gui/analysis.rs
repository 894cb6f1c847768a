//! The GUI's background analysis: a named thread with its own store connection that
//! runs the incremental analysis ([`update`]) when the worker asks, so the
//! worker keeps answering the UI from the stored results while it runs.
//!
//! One run at a time; triggers coalesce: any number of triggers during a run cause
//! exactly one follow-up run. [`Trigger::SpansArrived`] (the worker saw the span count
//! change) also waits until [`SPANS_GAP`] has passed since the previous run finished;
//! [`Trigger::Now`] (start, Open, Re-run analysis, a finished import) does not. A run
//! reports `Progress { job: "analysis" }` (indeterminate until the first chunk is written, then chunks written of all), then `StoreChanged` when new
//! results landed, or an `Error`, then the progress `done`. The worker owns the
//! [`Analysis`] handle; retiring it (store switch, UI gone) stops the thread after its
//! current run, which sends nothing more. Closing it waits for an idle thread but not
//! for a run in progress, so a window closes without waiting for the analysis.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tailscope_analysis::{update, Progress};
use tailscope_store::Store;
use tailscope_ui::protocol::{JobProgress, ANALYSIS_JOB};
use tailscope_ui::Response;

use super::query::span_count;
use super::wake::Wake;

/// The least time between the end of one run and the start of the next while spans
/// keep arriving.
pub const SPANS_GAP: Duration = Duration::from_secs(2);

/// Called on the analysis thread as each run starts, after its first progress report
/// (tests count runs and hold one open with it).
pub type Hook = Arc<dyn Fn() + Send + Sync>;

/// Why the worker asks for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Analyse as soon as the running run (if any) has finished.
    Now,
    /// New spans are in the store: analyse, at most once per [`SPANS_GAP`].
    SpansArrived,
}

#[derive(Default)]
struct State {
    pending: Option<Trigger>,
    stop: bool,
    /// A run is in progress.
    running: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Set when a run's results land; the worker rebuilds what it derived from them.
    landed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.lock().stop
    }
}

/// The worker's handle on the analysis thread of one store.
pub(crate) struct Analysis {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Analysis {
    /// Starts the thread over `store` (a connection of its own); it waits for triggers.
    pub(crate) fn spawn(
        store: Store,
        responses: SyncSender<Response>,
        wake: Wake,
        hook: Option<Hook>,
    ) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let runner = Runner {
            store,
            responses,
            wake,
            hook,
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name("tailscope-analysis".into())
            .spawn(move || runner.run())
            .context("starting the analysis thread")?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a run; coalesces with a trigger already waiting (`Now` wins).
    pub(crate) fn trigger(&self, t: Trigger) {
        let mut st = self.shared.lock();
        st.pending = Some(match (st.pending, t) {
            (Some(Trigger::Now), _) | (_, Trigger::Now) => Trigger::Now,
            _ => Trigger::SpansArrived,
        });
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Whether results landed since the last call.
    pub(crate) fn take_landed(&self) -> bool {
        self.shared.landed.swap(false, Ordering::AcqRel)
    }

    /// Stops the thread after its current run; it reports nothing more.
    pub(crate) fn retire(&self) {
        self.stop();
    }

    /// Whether the thread has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread and waits for it unless a run is in progress (that one ends
    /// on its own, or with the process).
    pub(crate) fn close(mut self) {
        if !self.stop() {
            if let Some(h) = self.thread.take() {
                let _ = h.join();
            }
        }
    }

    /// Asks the thread to stop; whether a run is in progress.
    fn stop(&self) -> bool {
        let mut st = self.shared.lock();
        st.stop = true;
        let running = st.running;
        drop(st);
        self.shared.changed.notify_all();
        running
    }
}

impl Drop for Analysis {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

struct Runner {
    store: Store,
    responses: SyncSender<Response>,
    wake: Wake,
    hook: Option<Hook>,
    shared: Arc<Shared>,
}

impl Runner {
    fn run(self) {
        let mut last_end: Option<Instant> = None;
        while self.next(last_end) {
            let go_on = self.run_once();
            self.shared.lock().running = false;
            if !go_on {
                return;
            }
            last_end = Some(Instant::now());
        }
    }

    /// Waits until a run is due and marks it running; false when the thread is to
    /// stop.
    fn next(&self, last_end: Option<Instant>) -> bool {
        let mut st = self.shared.lock();
        loop {
            if st.stop {
                return false;
            }
            let wait = match st.pending {
                None => None,
                Some(Trigger::Now) => break,
                Some(Trigger::SpansArrived) => {
                    match last_end
                        .and_then(|e| (e + SPANS_GAP).checked_duration_since(Instant::now()))
                    {
                        Some(d) if !d.is_zero() => Some(d),
                        _ => break,
                    }
                }
            };
            st = match wait {
                None => self
                    .shared
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    self.shared
                        .changed
                        .wait_timeout(st, d)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        st.pending = None;
        st.running = true;
        true
    }

    /// Sends a response unless the thread was retired; false when nobody listens.
    fn send(&self, r: Response) -> bool {
        if self.shared.stopped() {
            return true;
        }
        let ok = self.responses.send(r).is_ok();
        (self.wake)();
        ok
    }

    fn progress(&self, message: String, fraction: Option<f32>, done: bool) -> bool {
        self.send(Response::Progress(JobProgress {
            job: ANALYSIS_JOB.into(),
            fraction,
            message,
            done,
        }))
    }

    /// One analysis run; false when the UI has hung up.
    fn run_once(&self) -> bool {
        let spans = match span_count(&self.store) {
            Ok(n) => n,
            Err(e) => {
                return self.send(Response::Error(format!(
                    "analysis failed: counting spans: {e:#}"
                )))
            }
        };
        if spans == 0 {
            return true;
        }
        if !self.progress(format!("analysing new spans of {spans}"), None, false) {
            return false;
        }
        if let Some(h) = &self.hook {
            h();
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            update(&self.store, &|p: Progress| {
                let _ = self.progress(
                    format!("analysed {} of {} traces", p.traces_done, p.traces),
                    Some(p.chunks_done as f32 / p.chunks.max(1) as f32),
                    false,
                );
            })
        }));
        let outcome = match result {
            Ok(Ok(stats)) => (stats.recomputed > 0).then(|| {
                self.shared.landed.store(true, Ordering::Release);
                Response::StoreChanged
            }),
            Ok(Err(e)) => Some(Response::Error(format!(
                "analysis failed: {:#}",
                anyhow::Error::new(e)
            ))),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_owned());
                Some(Response::Error(format!(
                    "analysis failed: it panicked ({why})"
                )))
            }
        };
        if outcome.is_some_and(|r| !self.send(r)) {
            return false;
        }
        self.progress(String::new(), None, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc::{sync_channel, Receiver};

    fn store_with_spans() -> Store {
        let store = Store::open_in_memory().unwrap();
        let w = tailscope_samples::generate(&tailscope_samples::WorkloadConfig::small(3, 2));
        let writer = store
            .writer(tailscope_store::WriterConfig::default())
            .unwrap();
        writer.submit_waiting(w.batch).recv().unwrap().unwrap();
        writer.close().unwrap();
        store
    }

    /// Whether the next analysis progress report that starts or ends a run ends it
    /// (per-chunk reports in between carry a fraction and are skipped).
    fn next_progress(rx: &Receiver<Response>) -> bool {
        loop {
            match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
                Response::Progress(p) if p.done || p.fraction.is_none() => return p.done,
                Response::Error(e) => panic!("{e}"),
                _ => {}
            }
        }
    }

    /// Triggers during a run leave one pending trigger, which one follow-up run takes.
    #[test]
    fn triggers_during_a_run_coalesce_into_one_follow_up() {
        let (tx, rx) = sync_channel(64);
        let (go, gate) = sync_channel::<()>(4);
        let gate = Mutex::new(gate);
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let hook: Hook = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = gate.lock().unwrap().recv();
        });
        let a = Analysis::spawn(store_with_spans(), tx, Arc::new(|| {}), Some(hook)).unwrap();
        a.trigger(Trigger::Now);
        assert!(!next_progress(&rx), "the first run starts and is held");
        for k in 0..10 {
            a.trigger(if k % 3 == 0 {
                Trigger::Now
            } else {
                Trigger::SpansArrived
            });
        }
        assert_eq!(
            a.shared.lock().pending,
            Some(Trigger::Now),
            "one run pending"
        );
        go.send(()).unwrap();
        assert!(next_progress(&rx));
        assert!(!next_progress(&rx), "the follow-up starts (held)");
        assert_eq!(
            a.shared.lock().pending,
            None,
            "the follow-up took every trigger"
        );
        go.send(()).unwrap();
        assert!(next_progress(&rx));
        assert!(a.take_landed(), "the first run's results landed");
        a.close();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
