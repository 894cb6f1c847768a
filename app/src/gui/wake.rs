//! How the GUI's background threads wake the window.

use std::sync::Arc;

/// Wakes the UI (egui's `request_repaint`).
pub type Wake = Arc<dyn Fn() + Send + Sync>;
