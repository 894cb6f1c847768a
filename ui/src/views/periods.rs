//! The compare-periods view (`tailscope diff`): two windows of the store (by default the
//! first half of its time range against the second, editable as the CLI takes them),
//! the headline and the table of changes with their confidence intervals.

use crate::palette::count;
use crate::protocol::ChangeVm;
use crate::App;
use egui::{Color32, Key, RichText};
use egui_extras::{Column, TableBuilder};

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

pub(crate) fn show(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("Compare periods");
        ui.weak("what changed between two windows of the store, per route, operation and model");
    });
    let mut run = false;
    let mut halves = false;
    ui.horizontal(|ui| {
        ui.label("Before:");
        let r1 = ui.add(
            egui::TextEdit::singleline(&mut app.periods.before)
                .hint_text("FROM..TO")
                .desired_width(420.0),
        );
        ui.label("After:");
        let r2 = ui.add(
            egui::TextEdit::singleline(&mut app.periods.after)
                .hint_text("FROM..TO")
                .desired_width(420.0),
        );
        if (r1.lost_focus() || r2.lost_focus()) && ui.input(|i| i.key_pressed(Key::Enter)) {
            run = true;
        }
    })
    .response
    .on_hover_text("FROM..TO: RFC 3339 (2026-03-02T09:00:00Z), a date, Unix time, now, or -2h before the newest span; an empty side is the store's start or end");
    ui.horizontal(|ui| {
        if ui.button("Compare").clicked() {
            run = true;
        }
        if ui.button("First half vs second half").clicked() {
            halves = true;
        }
        ui.checkbox(&mut app.periods.all, "show every change");
        if app.periods.requested {
            ui.spinner();
        }
    });
    if run {
        let p = (
            app.periods.before.trim().to_owned(),
            app.periods.after.trim().to_owned(),
        );
        app.compare_periods(Some(p));
    } else if halves {
        app.compare_periods(None);
    }
    let Some(d) = app.periods.diff.clone() else {
        if !app.periods.requested {
            ui.weak("Press Compare.");
        }
        return;
    };
    ui.add_space(6.0);
    // red: worse (slower, fewer cache hits), green: better
    ui.label(RichText::new(&d.headline).heading().strong());
    ui.label(format!(
        "before: {} traces · after: {} traces · {:.0}% intervals clustered by conversation; significant = the interval excludes 0 and the change is material",
        count(d.before_traces as i64),
        count(d.after_traces as i64),
        d.confidence * 100.0
    ));
    ui.add_space(6.0);
    let rows: Vec<&ChangeVm> = d
        .changes
        .iter()
        .filter(|c| app.periods.all || c.significant)
        .collect();
    if rows.is_empty() {
        ui.label(format!(
            "No significant change ({} measured; tick \"show every change\" to list them).",
            d.changes.len()
        ));
        return;
    }
    ui.push_id("diff_table", |ui| {
        TableBuilder::new(ui)
            .striped(true)
            .column(Column::exact(70.0))
            .column(Column::initial(430.0).resizable(true).clip(true))
            .column(Column::initial(170.0).clip(true))
            .column(Column::exact(100.0))
            .column(Column::exact(100.0))
            .column(Column::exact(80.0))
            .column(Column::remainder())
            .header(20.0, |mut h| {
                for name in [
                    "scope", "what", "metric", "before", "after", "change", "interval",
                ] {
                    h.col(|ui| {
                        ui.strong(name);
                    });
                }
            })
            .body(|body| {
                body.rows(20.0, rows.len(), |mut row| {
                    let c = rows[row.index()];
                    let colour = if !c.significant {
                        None
                    } else if (c.change.unwrap_or(0.0) > 0.0) != (c.metric == "cache_hit_ratio") {
                        Some(Color32::from_rgb(0xe0, 0x60, 0x50))
                    } else {
                        Some(Color32::from_rgb(0x3c, 0xae, 0x8f))
                    };
                    row.col(|ui| {
                        ui.label(&c.scope);
                    });
                    row.col(|ui| {
                        ui.label(&c.subject)
                            .on_hover_text(format!("{} before · {} after", c.n_before, c.n_after));
                    });
                    row.col(|ui| {
                        ui.monospace(&c.metric);
                    });
                    row.col(|ui| {
                        ui.label(&c.before);
                    });
                    row.col(|ui| {
                        ui.label(&c.after);
                    });
                    row.col(|ui| {
                        let t = c.change.map_or_else(|| "—".to_owned(), pct);
                        match colour {
                            Some(col) => ui.label(RichText::new(t).color(col).strong()),
                            None => ui.label(t),
                        };
                    });
                    row.col(|ui| {
                        let t = c.ci.map_or_else(
                            || "too few to tell".to_owned(),
                            |(lo, hi)| format!("{} … {}", pct(lo), pct(hi)),
                        );
                        ui.weak(t);
                    });
                });
            });
    });
}
