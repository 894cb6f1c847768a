//! A recorded sample sequence, replayed one reading per tick (tests, demos).

use super::{GpuError, GpuSample, GpuSource};
use std::collections::VecDeque;

/// Replays readings in order; each entry is one tick (all GPUs, or an error), then
/// [`GpuError::Finished`].
pub struct RecordedSource {
    ticks: VecDeque<Result<Vec<GpuSample>, GpuError>>,
}

impl RecordedSource {
    pub fn new(ticks: impl IntoIterator<Item = Result<Vec<GpuSample>, GpuError>>) -> Self {
        Self {
            ticks: ticks.into_iter().collect(),
        }
    }
}

impl GpuSource for RecordedSource {
    fn sample(&mut self) -> Result<Vec<GpuSample>, GpuError> {
        self.ticks.pop_front().unwrap_or(Err(GpuError::Finished))
    }
}
