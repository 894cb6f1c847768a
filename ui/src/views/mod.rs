//! The views, one file each, and the window chrome; helpers two views share live here.

mod chrome;
mod conversation;
mod fix_first;
mod metrics;
mod overview;
pub(crate) mod periods;
mod replay;
mod replay_form;
mod shared_values;
pub(crate) mod sql;
mod trace;
mod traces;

pub(crate) use chrome::{apply_theme, dialogs, help_window, menu_bar, shortcuts, status_bar};
pub(crate) use conversation::conversation;
pub(crate) use metrics::metrics;
pub(crate) use overview::overview;
pub(crate) use replay::replay;
pub(crate) use sql::sql;
pub(crate) use trace::trace;
pub(crate) use traces::traces;

use crate::evidence;
use crate::palette;
use crate::App;
use tailscope_model::Cause;

fn empty_state(ui: &mut egui::Ui, app: &App) {
    let spans = app.overview.as_ref().map_or(0, |o| o.spans);
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() / 4.0);
        if spans > 0 {
            ui.heading(format!("{spans} spans, not analysed yet"));
            ui.add_space(8.0);
            ui.label("The analysis runs in the background; the overview fills in when it lands.");
            return;
        }
        ui.heading("No traces yet");
        ui.add_space(8.0);
        ui.label(format!(
            "Point OTEL_EXPORTER_OTLP_ENDPOINT at {} (OTLP/HTTP) or the gRPC port 4317,",
            app.endpoint_hint
        ));
        ui.label("or use File › Import OTLP files…, or run `tailscope demo` for a generated agent workload.");
    });
}

/// A table cell: the cause's swatch and name (a `?` after an ambiguous one), or `—`.
fn cause_cell(ui: &mut egui::Ui, c: Option<Cause>, e: Option<tailscope_model::Evidence>) {
    ui.horizontal(|ui| match c {
        Some(c) => {
            palette::swatch(ui, c);
            let mark = evidence::primary_mark(e);
            if !mark.is_empty() {
                ui.strong(mark).on_hover_text(evidence::HELP);
            }
        }
        None => {
            ui.weak("—");
        }
    });
}
