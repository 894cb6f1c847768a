//! The Conversation view: the conversation picker, TTFT and token plots, the turn table.

use super::cause_cell;
use crate::palette::{cause_colour, clock, count, dur};
use crate::{App, View};
use egui::Color32;
use egui_extras::{Column, TableBuilder};
use egui_plot::{Line, Plot, PlotPoints, Points};
use tailscope_model::Cause;

pub(crate) fn conversation(app: &mut App, ui: &mut egui::Ui) {
    let mut open_conv = None;
    let mut open_trace = None;
    egui::SidePanel::left("conversations")
        .resizable(true)
        .default_width(230.0)
        .show_inside(ui, |ui| {
            ui.strong("Conversations (slowest first)");
            let list = app.conversations.clone().unwrap_or_default();
            if list.is_empty() {
                ui.weak("none yet: conversations come from gen_ai.conversation.id or session.id");
            }
            let current = app.conversation.as_ref().map(|c| c.conversation_id.clone());
            egui::ScrollArea::vertical().show_rows(ui, 20.0, list.len(), |ui, range| {
                for c in &list[range] {
                    let text = format!(
                        "{} · {} turns · {}{}",
                        c.conversation_id,
                        c.turns,
                        dur(c.total_ns),
                        if c.evictions > 0 { " ⚠" } else { "" }
                    );
                    if ui
                        .selectable_label(
                            current.as_deref() == Some(c.conversation_id.as_str()),
                            text,
                        )
                        .clicked()
                    {
                        open_conv = Some(c.conversation_id.clone());
                    }
                }
            });
        });
    match app.conversation.clone() {
        None => {
            ui.centered_and_justified(|ui| {
                ui.label("Pick a conversation on the left, or open one from a trace.");
            });
        }
        Some(c) => {
            let mut replay_it = false;
            ui.horizontal(|ui| {
                ui.heading(format!("Conversation {}", c.conversation_id));
                if ui
                    .button("Replay A/B…")
                    .on_hover_text("replay this conversation and its competitors on the embedded engine under two configurations")
                    .clicked()
                {
                    replay_it = true;
                }
            });
            if replay_it {
                app.open_replay_form(&c.conversation_id);
                app.set_view(View::Replay);
            }
            let ev = c.turns.iter().filter(|t| t.evicted).count();
            ui.label(format!(
                "{} turns · {} with a KV-cache eviction (the cached prefix had to be prefilled again)",
                c.turns.len(),
                ev
            ));
            let ttft: Vec<[f64; 2]> = c
                .turns
                .iter()
                .enumerate()
                .filter_map(|(k, t)| t.ttft_ns.map(|v| [k as f64 + 1.0, v as f64 / 1e6]))
                .collect();
            let evicted: Vec<[f64; 2]> = c
                .turns
                .iter()
                .enumerate()
                .filter(|(_, t)| t.evicted)
                .filter_map(|(k, t)| t.ttft_ns.map(|v| [k as f64 + 1.0, v as f64 / 1e6]))
                .collect();
            let inp: Vec<[f64; 2]> = c
                .turns
                .iter()
                .enumerate()
                .filter_map(|(k, t)| t.input_tokens.map(|v| [k as f64 + 1.0, v as f64]))
                .collect();
            let cached: Vec<[f64; 2]> = c
                .turns
                .iter()
                .enumerate()
                .map(|(k, t)| [k as f64 + 1.0, t.cache_read_tokens.unwrap_or(0) as f64])
                .collect();
            ui.columns(2, |cols| {
                Plot::new("conv_ttft")
                    .height(150.0)
                    .allow_scroll(false)
                    .x_axis_label("turn")
                    .y_axis_label("TTFT (ms)")
                    .legend(egui_plot::Legend::default())
                    .show(&mut cols[0], |p| {
                        p.line(
                            Line::new("TTFT", PlotPoints::from(ttft))
                                .color(Color32::from_rgb(0x3c, 0xae, 0x8f)),
                        );
                        p.points(
                            Points::new("evicted", PlotPoints::from(evicted))
                                .radius(5.0)
                                .color(cause_colour(Cause::KvEviction)),
                        );
                    });
                Plot::new("conv_tokens")
                    .height(150.0)
                    .allow_scroll(false)
                    .x_axis_label("turn")
                    .y_axis_label("tokens")
                    .legend(egui_plot::Legend::default())
                    .show(&mut cols[1], |p| {
                        p.line(
                            Line::new("input", PlotPoints::from(inp))
                                .color(Color32::from_rgb(0x4e, 0x9f, 0xd1)),
                        );
                        p.line(
                            Line::new("cache read", PlotPoints::from(cached))
                                .color(Color32::from_rgb(0xe8, 0xb0, 0x30)),
                        );
                    });
            });
            TableBuilder::new(ui)
                .striped(true)
                .column(Column::exact(45.0))
                .column(Column::exact(95.0))
                .column(Column::exact(80.0))
                .column(Column::exact(80.0))
                .column(Column::exact(90.0))
                .column(Column::exact(90.0))
                .column(Column::exact(110.0))
                .column(Column::exact(130.0))
                .column(Column::remainder())
                .header(20.0, |mut h| {
                    for n in [
                        "turn",
                        "start",
                        "duration",
                        "TTFT",
                        "input tok",
                        "cache read",
                        "eviction",
                        "primary cause",
                        "trace",
                    ] {
                        h.col(|ui| {
                            ui.strong(n);
                        });
                    }
                })
                .body(|body| {
                    body.rows(20.0, c.turns.len(), |mut row| {
                        let k = row.index();
                        let t = &c.turns[k];
                        row.col(|ui| {
                            ui.label((k + 1).to_string());
                        });
                        row.col(|ui| {
                            ui.label(clock(t.start_ns));
                        });
                        row.col(|ui| {
                            ui.label(dur(t.duration_ns));
                        });
                        row.col(|ui| {
                            ui.label(t.ttft_ns.map_or_else(|| "—".to_owned(), dur));
                        });
                        row.col(|ui| {
                            ui.label(t.input_tokens.map_or_else(|| "—".to_owned(), count));
                        });
                        row.col(|ui| {
                            ui.label(t.cache_read_tokens.map_or_else(|| "—".to_owned(), count));
                        });
                        row.col(|ui| {
                            if t.evicted {
                                ui.colored_label(cause_colour(Cause::KvEviction), "⚠ evicted");
                            }
                        });
                        row.col(|ui| cause_cell(ui, t.primary_cause, None));
                        row.col(|ui| {
                            if ui.link(format!("Open turn {}", k + 1)).clicked() {
                                open_trace = Some(t.trace_id.clone());
                            }
                        });
                    });
                });
        }
    }
    if let Some(c) = open_conv {
        app.open_conversation(&c);
    }
    if let Some(t) = open_trace {
        app.open_trace(&t, None);
    }
}
