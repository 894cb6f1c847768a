//! The overview's "what do I fix first" panel: the operations on the tail's critical
//! paths ranked by how much a 50% speed-up of each alone would move the p99
//! (`tailscope whatif --rank`), asked for with a button (it re-walks every trace).

use crate::palette::dur;
use crate::App;
use egui_extras::{Column, TableBuilder};

/// Rows shown.
const SHOWN: usize = 8;

/// A signed duration: "−1.2 s", "+0 ms".
fn signed(ns: i64) -> String {
    if ns < 0 {
        format!("−{}", dur(-ns))
    } else {
        format!("+{}", dur(ns))
    }
}

pub(crate) fn panel(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("What would move the p99 most");
    ui.weak("Each operation with the most critical-path time in the tail, made 50% faster alone, every trace re-walked over its tree (`tailscope whatif --rank`). An operation off the tail's critical paths moves nothing, however much faster it gets.");
    let asked = app.fix_first.requested;
    let label = if app.fix_first().is_some() {
        "Rank again"
    } else {
        "Rank operations"
    };
    if ui.add_enabled(!asked, egui::Button::new(label)).clicked() {
        app.rank_fixes();
    }
    if asked {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("re-walking every trace…");
        });
    }
    let Some(rows) = app.fix_first() else {
        return;
    };
    if rows.is_empty() {
        ui.label("No analysed traces to rank.");
        return;
    }
    let rows: Vec<_> = rows.iter().take(SHOWN).cloned().collect();
    ui.push_id("fix_first", |ui| {
        TableBuilder::new(ui)
            .striped(true)
            .vscroll(false)
            .column(Column::initial(420.0).resizable(true).clip(true))
            .column(Column::exact(110.0))
            .column(Column::remainder())
            .header(20.0, |mut h| {
                for name in ["operation (50% faster)", "p99 change", "95% interval"] {
                    h.col(|ui| {
                        ui.strong(name);
                    });
                }
            })
            .body(|mut body| {
                for r in &rows {
                    body.row(20.0, |mut row| {
                        row.col(|ui| {
                            ui.monospace(&r.operation);
                        });
                        row.col(|ui| {
                            ui.label(signed(r.p_change_ns));
                        });
                        row.col(|ui| {
                            ui.label(format!("{} to {}", signed(r.ci_ns.0), signed(r.ci_ns.1)));
                        });
                    });
                }
            });
    });
}
