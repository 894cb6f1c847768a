//! The Replay view: saved A/B replays, their summary, TTFT CDF, arrivals and focus turns.

use crate::palette::{clock, count, dur};
use crate::App;
use egui::{Color32, RichText};
use egui_plot::{Line, Plot, PlotPoints, Points, VLine};

const SIDE_A: Color32 = Color32::from_rgb(0xe3, 0x7b, 0x40);
const SIDE_B: Color32 = Color32::from_rgb(0x4e, 0x9f, 0xd1);

/// The focus conversation's session id (the replay's `focus`).
fn focus_turns<'a>(
    r: &'a crate::protocol::ReplayVm,
    side: &'a str,
) -> impl Iterator<Item = &'a crate::protocol::ReplayTurnVm> {
    r.turns
        .iter()
        .filter(move |t| t.side == side && t.session_id == r.focus)
}

pub(crate) fn replay(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("Replay");
        ui.weak("what-if replays of recorded conversations on a simulated vLLM (A vs B)");
        if ui.button("Reload").clicked() {
            app.reload_replays();
        }
        if !app.replay_form.open && ui.button("New replay…").clicked() {
            let c = app
                .conversation
                .as_ref()
                .map(|c| c.conversation_id.clone())
                .unwrap_or_default();
            app.open_replay_form(&c);
        }
    });
    if app.replay_form.open {
        super::replay_form::show(app, ui);
        ui.separator();
    }
    let Some(list) = app.replays.clone() else {
        ui.spinner();
        return;
    };
    if list.is_empty() {
        ui.add_space(20.0);
        ui.label(format!(
            "No replays yet — run `tailscope replay --scenario seed --db {}`, or open a conversation and press Replay A/B…",
            app.store_label
        ));
        return;
    }
    let current = app.replay.as_ref().map(|r| r.replay_id.clone());
    let mut open = None;
    ui.horizontal(|ui| {
        ui.label("Replay:");
        egui::ComboBox::from_id_salt("replay_pick")
            .selected_text(current.as_deref().map_or_else(String::new, |id| {
                list.iter()
                    .find(|l| l.replay_id == id)
                    .map_or_else(|| id.to_owned(), replay_title)
            }))
            .width(420.0)
            .show_ui(ui, |ui| {
                for l in &list {
                    if ui
                        .selectable_label(current.as_deref() == Some(&l.replay_id), replay_title(l))
                        .clicked()
                    {
                        open = Some(l.replay_id.clone());
                    }
                }
            });
    });
    if let Some(id) = open {
        app.open_replay(&id);
    }
    let Some(r) = app.replay.clone() else {
        ui.spinner();
        return;
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        replay_summary(ui, &r);
        ui.add_space(8.0);
        ui.columns(2, |cols| {
            replay_cdf(&mut cols[0], &r);
            replay_arrivals(&mut cols[1], &r);
        });
        ui.add_space(8.0);
        replay_focus_table(ui, &r);
    });
}

fn replay_title(l: &crate::protocol::ReplayListItem) -> String {
    format!(
        "#{} · {} · focus {}",
        l.replay_id,
        clock(l.created_ns),
        l.focus
    )
}

fn replay_summary(ui: &mut egui::Ui, r: &crate::protocol::ReplayVm) {
    ui.label(RichText::new("Summary (mean over repeats)").strong());
    let (Some(a), Some(b)) = (
        r.sides.iter().find(|s| s.side == "A"),
        r.sides.iter().find(|s| s.side == "B"),
    ) else {
        ui.weak("this replay lacks one of its sides");
        return;
    };
    egui::Grid::new("replay_summary")
        .striped(true)
        .num_columns(4)
        .spacing([24.0, 3.0])
        .show(ui, |ui| {
            ui.strong("metric");
            ui.strong(RichText::new(format!("A ({}×)", a.repeats)).color(SIDE_A));
            ui.strong(RichText::new(format!("B ({}×)", b.repeats)).color(SIDE_B));
            ui.strong("B vs A");
            ui.end_row();
            for ((label, va, unit), (_, vb, _)) in a.metrics.iter().zip(&b.metrics) {
                ui.label(label);
                ui.monospace(fmt_metric(*va, unit));
                ui.monospace(fmt_metric(*vb, unit));
                if va.abs() > 1e-12 && va.is_finite() && vb.is_finite() {
                    ui.monospace(format!("{:+.0}%", (vb / va - 1.0) * 100.0));
                } else {
                    ui.monospace("–");
                }
                ui.end_row();
            }
        });
    for s in [a, b] {
        ui.weak(format!("{}: {}", s.side, s.config_json))
            .on_hover_text(&s.config_json);
    }
}

fn fmt_metric(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let n = if v == 0.0 {
        "0".to_owned()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

fn replay_cdf(ui: &mut egui::Ui, r: &crate::protocol::ReplayVm) {
    ui.label(RichText::new("TTFT CDF, all turns").strong());
    Plot::new("replay_cdf")
        .height(240.0)
        .allow_scroll(false)
        .legend(egui_plot::Legend::default().position(egui_plot::Corner::RightBottom))
        .x_axis_label("TTFT (ms)")
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            for (side, colour) in [("A", SIDE_A), ("B", SIDE_B)] {
                let mut v: Vec<f64> = r
                    .turns
                    .iter()
                    .filter(|t| t.side == side)
                    .map(|t| t.ttft_ns as f64 / 1e6)
                    .collect();
                if v.is_empty() {
                    continue;
                }
                v.sort_by(f64::total_cmp);
                let n = v.len() as f64;
                let pts: Vec<[f64; 2]> = v
                    .iter()
                    .enumerate()
                    .map(|(i, ms)| [*ms, (i + 1) as f64 / n])
                    .collect();
                p.line(Line::new(side, PlotPoints::from(pts)).color(colour));
            }
        });
}

fn replay_arrivals(ui: &mut egui::Ui, r: &crate::protocol::ReplayVm) {
    ui.label(
        RichText::new(format!(
            "Focus conversation {}: TTFT by arrival, evictions of its blocks",
            r.focus
        ))
        .strong(),
    );
    let t0 = r.turns.iter().map(|t| t.arrival_ns).min().unwrap_or(0);
    let x = |ns: i64| (ns - t0) as f64 / 1e9;
    let evictions: Vec<&crate::protocol::ReplayEvictionVm> = r
        .evictions
        .iter()
        .filter(|e| e.owner_session == r.focus)
        .collect();
    let resp = Plot::new("replay_arrivals")
        .height(240.0)
        .allow_scroll(false)
        .legend(egui_plot::Legend::default().position(egui_plot::Corner::RightTop))
        .x_axis_label("arrival (s from the first request)")
        .y_axis_label("TTFT (ms)")
        .include_y(0.0)
        .show(ui, |p| {
            for (side, colour) in [("A", SIDE_A), ("B", SIDE_B)] {
                let pts: Vec<[f64; 2]> = focus_turns(r, side)
                    .map(|t| [x(t.arrival_ns), t.ttft_ns as f64 / 1e6])
                    .collect();
                p.line(
                    Line::new(format!("{side} TTFT"), PlotPoints::from(pts.clone())).color(colour),
                );
                p.points(
                    Points::new(format!("{side} TTFT"), PlotPoints::from(pts))
                        .color(colour)
                        .radius(3.0),
                );
                for e in evictions.iter().filter(|e| e.side == side) {
                    p.vline(
                        VLine::new(format!("{side} eviction"), x(e.t_ns))
                            .color(colour.gamma_multiply(0.7))
                            .style(egui_plot::LineStyle::dashed_loose()),
                    );
                }
            }
            p.pointer_coordinate()
        });
    if let Some(ptr) = resp.inner {
        if resp.response.hovered() {
            let near = |e: &&&crate::protocol::ReplayEvictionVm| {
                let d = (x(e.t_ns) - ptr.x).abs();
                let w = (resp.transform.bounds().width() / 100.0).max(1e-6);
                d <= w
            };
            let hits: Vec<String> = evictions
                .iter()
                .filter(near)
                .take(6)
                .map(|e| {
                    format!(
                        "{}: evicted by {} turn {} (block of turn {})",
                        e.side, e.by_session, e.by_turn, e.owner_turn
                    )
                })
                .collect();
            if !hits.is_empty() {
                resp.response.on_hover_text(hits.join("\n"));
            }
        }
    }
    let (na, nb) = (
        evictions.iter().filter(|e| e.side == "A").count(),
        evictions.iter().filter(|e| e.side == "B").count(),
    );
    ui.weak(format!(
        "evictions of the focus conversation's blocks: A {na} · B {nb}"
    ));
}

fn replay_focus_table(ui: &mut egui::Ui, r: &crate::protocol::ReplayVm) {
    ui.label(
        RichText::new(format!(
            "Focus conversation {}, turn by turn (first repeat)",
            r.focus
        ))
        .strong(),
    );
    let a: Vec<&crate::protocol::ReplayTurnVm> = focus_turns(r, "A").collect();
    let b: Vec<&crate::protocol::ReplayTurnVm> = focus_turns(r, "B").collect();
    let mut turns: Vec<i64> = a.iter().chain(&b).map(|t| t.turn).collect();
    turns.sort_unstable();
    turns.dedup();
    egui::Grid::new("replay_turns")
        .striped(true)
        .num_columns(7)
        .spacing([24.0, 3.0])
        .show(ui, |ui| {
            for h in [
                "turn",
                "TTFT A",
                "TTFT B",
                "prefix hits A",
                "prefix hits B",
                "prefill A",
                "prefill B",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for turn in turns {
                let ta = a.iter().find(|t| t.turn == turn);
                let tb = b.iter().find(|t| t.turn == turn);
                ui.label(format!("turn {turn}"));
                for t in [ta, tb] {
                    ui.monospace(t.map_or_else(|| "–".to_owned(), |t| dur(t.ttft_ns)));
                }
                for t in [ta, tb] {
                    ui.monospace(t.map_or_else(|| "–".to_owned(), |t| count(t.prefix_hit_tokens)));
                }
                for t in [ta, tb] {
                    ui.monospace(t.map_or_else(|| "–".to_owned(), |t| count(t.prefill_tokens)));
                }
                ui.end_row();
            }
        });
}
