//! The overview's "what the slow traces share" panel: the attribute values most
//! over-represented in the tail against the median band (`tailscope compare`). A click
//! on a value shows the traces that have it in the traces table.

use crate::palette::dur;
use crate::protocol::SharedValues;
use crate::App;
use egui::{Color32, RichText};
use egui_extras::{Column, TableBuilder};

/// Rows shown (the worker may send more).
const SHOWN: usize = 8;

pub(crate) fn panel(app: &mut App, ui: &mut egui::Ui, s: &SharedValues) {
    ui.heading("What the slow traces share");
    ui.weak(format!(
        "Attribute values over-represented in the tail (≥ p{}, {} traces) against the median band (p40–p60, {} traces), ranked by the excess time each explains beyond the values above it. Click a value to list its traces.",
        s.percentile, s.tail_traces, s.baseline_traces
    ));
    if s.values.is_empty() {
        ui.label("Nothing stands out: no attribute value is more common in the tail than in the median band.");
        return;
    }
    let mut pick: Option<(String, String)> = None;
    ui.push_id("shared_values", |ui| {
        TableBuilder::new(ui)
            .striped(true)
            .vscroll(false)
            .column(Column::initial(360.0).resizable(true).clip(true))
            .column(Column::exact(90.0))
            .column(Column::exact(90.0))
            .column(Column::exact(60.0))
            .column(Column::exact(100.0))
            .column(Column::remainder())
            .header(20.0, |mut h| {
                for name in [
                    "attribute = value",
                    "in tail",
                    "in baseline",
                    "lift",
                    "excess time",
                    "share of tail excess",
                ] {
                    h.col(|ui| {
                        ui.strong(name);
                    });
                }
            })
            .body(|mut body| {
                for v in s.values.iter().take(SHOWN) {
                    body.row(20.0, |mut row| {
                        row.col(|ui| {
                            let text = format!("{} = {}", v.key, v.value);
                            let mut r = ui.link(RichText::new(&text).monospace());
                            if !v.same.is_empty() {
                                r = r.on_hover_text(format!("same traces: {}", v.same.join(", ")));
                            }
                            if r.clicked() {
                                pick = Some((v.key.clone(), v.value.clone()));
                            }
                        });
                        row.col(|ui| {
                            ui.label(format!("{:.0}% ({})", v.tail_share * 100.0, v.tail_traces));
                        });
                        row.col(|ui| {
                            ui.label(format!("{:.1}%", v.baseline_share * 100.0));
                        });
                        row.col(|ui| {
                            ui.label(format!("×{:.1}", v.lift));
                        });
                        row.col(|ui| {
                            ui.label(dur(v.excess_ns));
                        });
                        row.col(|ui| {
                            ui.horizontal(|ui| share_bar(ui, v.score));
                        });
                    });
                }
            });
    });
    if let Some((k, v)) = pick {
        app.filter_traces_by(&k, &v);
    }
}

/// The value's share of the tail's excess as a bar and a percentage.
fn share_bar(ui: &mut egui::Ui, score: f64) {
    let w = (ui.available_width() - 50.0).max(40.0);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(w, 12.0), egui::Sense::hover());
    ui.painter()
        .rect_filled(rect, 2.0, ui.visuals().faint_bg_color);
    let mut bar = rect;
    bar.set_width(rect.width() * score.clamp(0.0, 1.0) as f32);
    ui.painter()
        .rect_filled(bar, 2.0, Color32::from_rgb(0xd9, 0x6c, 0x3c));
    ui.label(format!("{:.0}%", score * 100.0));
}
