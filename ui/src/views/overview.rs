//! The Overview view: counts, percentiles, the tail's causes by cohort, histogram, CDF, findings.

use super::empty_state;
use crate::evidence;
use crate::palette::{self, cause_colour, cause_label, count, dur, dur_f};
use crate::App;
use egui::{Color32, RichText, Sense};
use egui_plot::{Bar, BarChart, Line, Plot, PlotPoints, VLine};
use tailscope_model::Cause;

fn stat(ui: &mut egui::Ui, label: &str, value: String) {
    egui::Frame::group(ui.style())
        .inner_margin(8.0)
        .show(ui, |ui| {
            ui.vertical(|ui| {
                ui.weak(label);
                ui.label(RichText::new(value).size(20.0).strong());
            });
        });
}

pub(crate) fn overview(app: &mut App, ui: &mut egui::Ui) {
    let Some(o) = app.overview.clone() else {
        ui.centered_and_justified(|ui| {
            ui.spinner();
        });
        return;
    };
    if o.traces == 0 {
        empty_state(ui, app);
        return;
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.horizontal(|ui| {
            stat(ui, "traces", count(o.traces as i64));
            stat(ui, "spans", count(o.spans as i64));
            stat(ui, "p50", dur_f(o.p50_ns));
            stat(ui, "p90", dur_f(o.p90_ns));
            stat(ui, "p99", dur_f(o.p99_ns));
            stat(ui, "metric points", count(o.metric_points as i64));
        });
        ui.add_space(6.0);
        ui.heading("Why is the tail slow?");
        ui.weak("Mean critical-path time per cause in each latency cohort. The difference between the tail and the median band is what to fix.");
        tail_bars(ui, &o.cohorts);
        let mut used: Vec<Cause> = Cause::ALL
            .into_iter()
            .filter(|c| o.cohorts.iter().any(|k| k.mean_by_cause_ns.iter().any(|(x, v)| x == c && *v > 0.0)))
            .collect();
        if used.is_empty() {
            used = Cause::ALL.to_vec();
        }
        palette::legend(ui, &used);
        if let Some(shared) = &o.shared {
            ui.add_space(8.0);
            super::shared_values::panel(app, ui, shared);
        }
        ui.add_space(8.0);
        super::fix_first::panel(app, ui);
        ui.add_space(8.0);
        ui.columns(2, |cols| {
            cols[0].strong("Latency histogram");
            let bars: Vec<Bar> = o
                .histogram
                .iter()
                .map(|(lo, hi, n)| {
                    Bar::new(f64::midpoint(*lo, *hi), *n as f64)
                        .width((hi - lo) * 0.95)
                        .fill(Color32::from_rgb(0x4e, 0x9f, 0xd1))
                })
                .collect();
            Plot::new("histogram")
                .height(180.0)
                .allow_scroll(false)
                .x_axis_label("trace duration (ms)")
                .y_axis_label("traces")
                .show(&mut cols[0], |p| {
                    p.bar_chart(BarChart::new("traces", bars));
                    for (q, v) in [("p50", o.p50_ns), ("p90", o.p90_ns), ("p99", o.p99_ns)] {
                        p.vline(VLine::new(q, v / 1e6).color(Color32::from_rgb(0xe8, 0xb0, 0x30)));
                    }
                });
            cols[1].strong("CDF");
            Plot::new("cdf")
                .height(180.0)
                .allow_scroll(false)
                .x_axis_label("trace duration (ms)")
                .y_axis_label("fraction ≤ x")
                .show(&mut cols[1], |p| {
                    p.line(Line::new("cdf", PlotPoints::from(o.cdf.clone())).color(Color32::from_rgb(0x3c, 0xae, 0x8f)));
                    for (q, v) in [("p50", o.p50_ns), ("p90", o.p90_ns), ("p99", o.p99_ns)] {
                        p.vline(VLine::new(q, v / 1e6).color(Color32::from_rgb(0xe8, 0xb0, 0x30)));
                    }
                });
        });
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            ui.heading("Top findings");
            if let Some(t) = o.slowest_trace.clone() {
                if ui.button("Open the slowest trace").clicked() {
                    app.open_trace(&t, None);
                }
            }
        });
        if o.findings.is_empty() {
            ui.weak("No findings: nothing stands out in these traces.");
        }
        for (k, f) in o.findings.iter().enumerate() {
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("saves ~{}", dur(f.cost_ns))).strong());
                ui.monospace(&f.kind);
                evidence::badge(ui, f.evidence_level);
                if !f.alternatives.is_empty() {
                    ui.weak(evidence::alternatives_text(f.alternatives));
                }
                if ui
                    .add(egui::Button::new(format!("Open span #{}", k + 1)))
                    .on_hover_text(format!("trace {} span {}", f.trace_id, f.span_id))
                    .clicked()
                {
                    app.open_trace(&f.trace_id, Some(&f.span_id));
                }
            });
            ui.add(egui::Label::new(&f.summary).wrap());
            ui.separator();
        }
    });
}

fn tail_bars(ui: &mut egui::Ui, cohorts: &[crate::protocol::Cohort]) {
    let max: f64 = cohorts
        .iter()
        .map(|c| c.mean_by_cause_ns.iter().map(|(_, v)| v).sum::<f64>())
        .fold(1.0, f64::max);
    let label_w = 190.0;
    for c in cohorts {
        ui.horizontal(|ui| {
            ui.add_sized(
                [label_w, 20.0],
                egui::Label::new(format!("{} · {} traces", c.name, c.traces)).truncate(),
            );
            let total: f64 = c.mean_by_cause_ns.iter().map(|(_, v)| v).sum();
            let w = (ui.available_width() - 90.0).max(100.0);
            let (rect, resp) = ui.allocate_exact_size(egui::vec2(w, 20.0), Sense::hover());
            let mut x = rect.left();
            let mut hovered = None;
            for (cause, v) in &c.mean_by_cause_ns {
                let seg = (*v / max) as f32 * w;
                if seg <= 0.0 {
                    continue;
                }
                let r = egui::Rect::from_x_y_ranges(x..=x + seg, rect.y_range());
                ui.painter().rect_filled(r, 0.0, cause_colour(*cause));
                if resp.hover_pos().is_some_and(|p| r.contains(p)) {
                    hovered = Some((*cause, *v));
                }
                x += seg;
            }
            if let Some((cause, v)) = hovered {
                resp.on_hover_text(format!("{}: {} mean", cause_label(cause), dur_f(v)));
            }
            ui.label(dur_f(total));
        });
    }
}
