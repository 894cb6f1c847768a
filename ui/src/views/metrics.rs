//! The Metrics view: GPU and inference-server series by canonical name, around the selection.

use crate::App;
use egui::{Color32, RichText};
use egui_plot::{Line, Plot, PlotPoints};

/// Colours of the lines in one metrics plot.
const SERIES_COLOURS: [Color32; 8] = [
    Color32::from_rgb(0x4e, 0x9f, 0xd1),
    Color32::from_rgb(0xe3, 0x7b, 0x40),
    Color32::from_rgb(0x6a, 0xbf, 0x69),
    Color32::from_rgb(0xc5, 0x6c, 0xd6),
    Color32::from_rgb(0xd9, 0xc2, 0x4a),
    Color32::from_rgb(0x4f, 0xc9, 0xb8),
    Color32::from_rgb(0xe0, 0x5f, 0x7a),
    Color32::from_rgb(0x9a, 0xa5, 0xb8),
];
const BAND: Color32 = Color32::from_rgb(0xe8, 0xb0, 0x30);

/// A canonical unit for an axis title.
fn unit_label(unit: &str) -> &str {
    match unit {
        "1" => "ratio 0–1",
        "By" => "GiB",
        "W" => "watts",
        "Hz" => "hertz",
        "Cel" => "°C",
        "{request}" => "requests",
        "1/s" => "per second",
        u => u,
    }
}

pub(crate) fn metrics(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("Metrics timeline");
        if !app.metrics_label.is_empty() {
            ui.label(format!("around {}", app.metrics_label));
        }
        if ui.button("Reload").clicked() {
            app.metrics = None;
            app.request_metrics_for_selection();
        }
    });
    let Some(m) = app.metrics.clone() else {
        ui.spinner();
        return;
    };
    let x = |ns: i64| (ns - m.from_ns) as f64 / 1e9;
    if m.band.is_some() {
        ui.weak("GPU and inference-server series by canonical name (DCGM, OTel hw.gpu, NVML and vLLM alike); x: seconds from the window's start; the shaded band is the selection.");
    } else {
        ui.weak("GPU and inference-server series by canonical name (DCGM, OTel hw.gpu, NVML and vLLM alike) over the whole store; open a trace or conversation to zoom in.");
    }
    if m.series.is_empty() {
        ui.add_space(20.0);
        ui.label("No GPU or inference-server metrics in this window. DCGM exporter, OTel hw.gpu.*, vLLM /metrics (via the Collector) and `tailscope serve --gpu-sampler` series appear here.");
        return;
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        for (canonical, unit) in m.groups() {
            ui.label(
                RichText::new(format!("{canonical}  ({})", unit_label(&unit)))
                    .strong()
                    .monospace(),
            );
            // Bytes in GiB, so the axis reads.
            let scale = if unit == "By" {
                1.0 / f64::from(1u32 << 30)
            } else {
                1.0
            };
            let group: Vec<(String, Vec<[f64; 2]>)> = m
                .series
                .iter()
                .filter(|s| s.canonical == canonical && s.unit == unit)
                .map(|s| {
                    let pts = s.points.iter().map(|p| [p[0], p[1] * scale]).collect();
                    (s.legend(), pts)
                })
                .collect();
            let (lo, hi) = group
                .iter()
                .flat_map(|(_, pts)| pts.iter().map(|p| p[1]))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                });
            let (lo, hi) = if lo.is_finite() {
                let lo = lo.min(0.0);
                let hi = if unit == "1" { hi.max(1.0) } else { hi };
                (lo, if hi - lo < 1e-6 { lo + 1.0 } else { hi })
            } else {
                (0.0, 1.0)
            };
            Plot::new(("metric", &canonical, &unit))
                .height(130.0)
                .allow_scroll(false)
                .y_axis_min_width(56.0)
                .link_axis("metrics_x", [true, false])
                .link_cursor("metrics_x", [true, false])
                .legend(egui_plot::Legend::default().position(egui_plot::Corner::LeftTop))
                .include_x(0.0)
                .include_x(x(m.to_ns))
                .include_y(lo)
                .include_y(hi)
                .show(ui, |p| {
                    if let Some((a, b)) = m.band {
                        let (a, b) = (x(a), x(b).max(x(a) + 1e-3));
                        p.polygon(
                            egui_plot::Polygon::new(
                                "",
                                PlotPoints::from(vec![[a, lo], [b, lo], [b, hi], [a, hi]]),
                            )
                            .fill_color(BAND.gamma_multiply(0.18))
                            .stroke(egui::Stroke::new(1.0, BAND.gamma_multiply(0.6))),
                        );
                    }
                    for (k, (legend, pts)) in group.iter().enumerate() {
                        p.line(
                            Line::new(legend.clone(), PlotPoints::from(pts.clone()))
                                .color(SERIES_COLOURS[k % SERIES_COLOURS.len()]),
                        );
                    }
                });
        }
    });
}
