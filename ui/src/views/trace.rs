//! The Trace view: waterfall / flame graph, the latency tree and the selected span's panel.

use crate::evidence;
use crate::palette::{self, cause_colour, clock, count, dur, short};
use crate::protocol::SpanChange;
use crate::timeline::{self, Mode};
use crate::{App, View};
use egui::{RichText, Sense};
use egui_extras::{Column, TableBuilder};
use tailscope_model::Cause;

pub(crate) fn trace(app: &mut App, ui: &mut egui::Ui) {
    if app.trace.is_none() {
        ui.centered_and_justified(|ui| {
            if app.loading_trace.is_some() {
                ui.spinner();
            } else {
                ui.label("Pick a trace in Traces or a finding in Overview.");
            }
        });
        return;
    }
    let mut open_conv = None;
    let mut open_metrics = false;
    let mut open_link: Option<String> = None;
    {
        let Some(t) = app.trace.as_mut() else { return };
        let d = &t.detail;
        ui.horizontal_wrapped(|ui| {
            ui.heading(&d.root);
            ui.label(RichText::new(dur(d.end_ns - d.start_ns)).strong());
            ui.weak(format!(
                "trace {} · {} spans · {}",
                d.trace_id,
                count(d.spans.len() as i64),
                clock(d.start_ns)
            ));
            if let Some(c) = d.primary_cause {
                ui.label("slower than usual because of");
                palette::swatch(ui, c);
                evidence::suffix(ui, d.primary_evidence, d.alternatives);
            }
            if let Some(c) = &d.conversation_id {
                if ui.button("Open conversation").clicked() {
                    open_conv = Some(c.clone());
                }
            }
            if ui.button("Metrics around this trace").clicked() {
                open_metrics = true;
            }
        });
        // Critical path by cause.
        ui.horizontal_wrapped(|ui| {
            ui.weak("critical path:");
            for (c, v) in &d.by_cause_ns {
                palette::swatch(ui, *c);
                ui.label(dur(*v));
                ui.add_space(4.0);
            }
            let ambiguous = d.ambiguous_ns();
            if ambiguous > 0 {
                ui.weak(format!("· {} of it ambiguous (hatched)", dur(ambiguous)))
                    .on_hover_text(evidence::HELP);
            }
        });
        ui.horizontal(|ui| {
            ui.selectable_value(&mut t.timeline.mode, Mode::Waterfall, "Waterfall");
            ui.selectable_value(&mut t.timeline.mode, Mode::Flame, "Flame graph");
            if ui.button("Fit").on_hover_text("0 / Home").clicked() {
                let m = t.timeline.mode;
                t.timeline = timeline::TimelineState::fit(&t.detail);
                t.timeline.mode = m;
            }
            ui.separator();
            if ui.button("Expand all").clicked() {
                t.set_all_collapsed(false);
            }
            if ui.button("Collapse all").clicked() {
                t.set_all_collapsed(true);
            }
            ui.separator();
            let r = ui.add(
                egui::TextEdit::singleline(&mut t.search)
                    .hint_text("search spans, attributes")
                    .desired_width(200.0),
            );
            if r.changed() {
                t.run_search();
                if let Some(&h) = t.hits.first() {
                    t.select(h);
                }
            }
            if !t.search.is_empty() {
                ui.label(format!("{} hits", t.hits.len()));
                if ui.small_button("next").clicked() && !t.hits.is_empty() {
                    t.hit = (t.hit + 1) % t.hits.len();
                    let h = t.hits[t.hit];
                    t.select(h);
                }
            }
        });
    }
    let mut whatif: Option<SpanChange> = None;
    let Some(t) = app.trace.as_mut() else { return };
    egui::SidePanel::right("span_panel")
        .resizable(true)
        .default_width(340.0)
        .show_inside(ui, |ui| {
            (open_link, whatif) = span_panel(ui, t);
        });
    egui::TopBottomPanel::bottom("tree_panel")
        .resizable(true)
        .default_height(ui.available_height() * 0.42)
        .show_inside(ui, |ui| {
            latency_tree(ui, t);
        });
    let out = timeline::show(ui, &t.detail, &t.rows, &mut t.timeline, t.selected, &t.hits);
    if let Some(i) = out.clicked {
        t.selected = Some(i);
    }
    if let Some(c) = whatif {
        app.span_whatif(c);
    }
    if let Some(c) = open_conv {
        app.open_conversation(&c);
    }
    if open_metrics {
        app.metrics = None;
        app.view = View::Metrics;
        app.request_metrics_for_selection();
    }
    if let Some(l) = open_link {
        app.open_trace(&l, None);
    }
}

#[allow(clippy::many_single_char_names)]
fn latency_tree(ui: &mut egui::Ui, t: &mut crate::state::TraceState) {
    let mut toggle = None;
    let mut select = None;
    let d = &t.detail;
    TableBuilder::new(ui)
        .striped(true)
        .column(Column::remainder().at_least(240.0).clip(true))
        .column(Column::exact(80.0))
        .column(Column::exact(80.0))
        .column(Column::exact(80.0))
        .column(Column::exact(70.0))
        .header(20.0, |mut h| {
            for name in ["span", "total", "self", "critical", "% parent"] {
                h.col(|ui| {
                    ui.strong(name);
                });
            }
        })
        .body(|body| {
            body.rows(20.0, t.rows.len(), |mut row| {
                let i = t.rows[row.index()];
                let s = &d.spans[i];
                row.set_selected(t.selected == Some(i));
                row.col(|ui| {
                    ui.horizontal(|ui| {
                        ui.add_space(s.depth as f32 * 14.0);
                        if s.has_children {
                            let icon = if t.collapsed[i] { "⏵" } else { "⏷" };
                            if ui
                                .add(egui::Button::new(icon).frame(false).small())
                                .clicked()
                            {
                                toggle = Some(i);
                            }
                        } else {
                            ui.add_space(16.0);
                        }
                        let (rect, _) =
                            ui.allocate_exact_size(egui::vec2(8.0, 8.0), Sense::hover());
                        let c = cause_colour(s.colour_cause());
                        ui.painter().rect_filled(
                            rect,
                            2.0,
                            if s.cause.is_some() {
                                c
                            } else {
                                palette::dimmed(c)
                            },
                        );
                        let name = if s.cause.is_some() {
                            RichText::new(&s.input.name).strong()
                        } else {
                            RichText::new(&s.input.name)
                        };
                        if ui.selectable_label(t.selected == Some(i), name).clicked() {
                            select = Some(i);
                        }
                    });
                });
                row.col(|ui| {
                    ui.label(dur(s.duration_ns()));
                });
                row.col(|ui| {
                    ui.label(dur(s.input.self_ns));
                });
                row.col(|ui| {
                    if s.input.critical_ns > 0 {
                        ui.label(dur(s.input.critical_ns));
                    } else {
                        ui.weak("—");
                    }
                });
                row.col(|ui| {
                    let pct = s.parent.map(|p| {
                        let pd = d.spans[p].duration_ns().max(1);
                        100.0 * s.duration_ns() as f64 / pd as f64
                    });
                    ui.label(pct.map_or_else(|| "—".to_owned(), |p| format!("{p:.0}%")));
                });
            });
        });
    if let Some(i) = toggle {
        t.collapsed[i] = !t.collapsed[i];
        t.recompute_rows();
    }
    if let Some(i) = select {
        t.selected = Some(i);
        t.timeline.reveal_row = Some(i);
    }
}

/// The changes the span panel offers.
const WHATIFS: [SpanChange; 3] = [
    SpanChange::Faster(0.5),
    SpanChange::Parallel,
    SpanChange::Instant,
];

/// "What if this span ...": a button per change, and the trace's re-walked duration
/// once the worker answers for this span.
fn whatif_section(
    ui: &mut egui::Ui,
    t: &crate::state::TraceState,
    span_id: &str,
) -> Option<SpanChange> {
    let mut asked = None;
    ui.add_space(6.0);
    ui.strong("What if this span were…");
    ui.horizontal_wrapped(|ui| {
        for c in WHATIFS {
            if ui
                .add_enabled(!t.whatif_asked, egui::Button::new(c.label()))
                .clicked()
            {
                asked = Some(c);
            }
        }
        if t.whatif_asked {
            ui.spinner();
        }
    });
    if let Some(w) = t.whatif.as_ref().filter(|w| w.span_id == span_id) {
        let saved = w.before_ns - w.after_ns;
        ui.label(format!(
            "{}: the trace {} → {} ({})",
            w.change.label(),
            dur(w.before_ns),
            dur(w.after_ns),
            if saved > 0 {
                format!("−{}", dur(saved))
            } else {
                "no change: off the critical path".to_owned()
            }
        ));
    }
    ui.weak("The trace re-walked over its tree with this span changed (`tailscope whatif`): what waits for it moves, a parallel sibling bounds it.");
    asked
}

/// The selected span's details; returns a linked trace to open and a "what if" asked.
fn span_panel(
    ui: &mut egui::Ui,
    t: &crate::state::TraceState,
) -> (Option<String>, Option<SpanChange>) {
    let mut open = None;
    let mut whatif = None;
    let Some(i) = t.selected else {
        ui.weak("Click a span in the timeline or the tree.");
        ui.add_space(8.0);
        ui.label("Colours:");
        palette::legend(ui, &Cause::ALL);
        ui.weak("Bright: on the critical path (coloured by its cause). Dim: off the path. Hatched (critical-path lane): an ambiguous cause.");
        return (None, None);
    };
    let s = &t.detail.spans[i];
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading(&s.input.name);
        egui::Grid::new("span_facts")
            .num_columns(2)
            .striped(true)
            .show(ui, |ui| {
                let mut kv = |k: &str, v: String| {
                    ui.weak(k);
                    ui.label(v);
                    ui.end_row();
                };
                kv("service", s.input.service.clone());
                kv("duration", dur(s.duration_ns()));
                kv(
                    "starts at",
                    format!("+{}", dur(s.input.start_ns - t.detail.start_ns)),
                );
                kv("self time", dur(s.input.self_ns));
                kv("critical time", dur(s.input.critical_ns));
                kv("kind", s.input.kind.clone());
                kv("status", s.input.status.clone());
                kv("span id", s.input.span_id.clone());
            });
        if let Some(c) = s.cause {
            ui.horizontal(|ui| {
                ui.label("on the critical path as");
                palette::swatch(ui, c);
                let (e, alts) = evidence::of_span(&t.detail, i, c);
                evidence::suffix(ui, e, alts);
            });
        }
        whatif = whatif_section(ui, t, &s.input.span_id);
        ui.collapsing(format!("Attributes ({})", s.input.attributes.len()), |ui| {
            egui::Grid::new("attrs")
                .num_columns(2)
                .striped(true)
                .show(ui, |ui| {
                    for (k, v) in &s.input.attributes {
                        ui.monospace(k);
                        ui.add(egui::Label::new(v).wrap());
                        ui.end_row();
                    }
                });
        })
        .header_response
        .on_hover_text("every attribute of the span");
        ui.collapsing(format!("Events ({})", s.input.events.len()), |ui| {
            for e in &s.input.events {
                ui.label(format!(
                    "+{}  {}",
                    dur(e.time_ns - t.detail.start_ns),
                    e.name
                ));
                for (k, v) in &e.attributes {
                    ui.weak(format!("    {k} = {v}"));
                }
            }
        });
        ui.collapsing(format!("Links ({})", s.input.links.len()), |ui| {
            for (tr, sp) in &s.input.links {
                if ui
                    .link(format!("trace {} span {}", short(tr), short(sp)))
                    .clicked()
                {
                    open = Some(tr.clone());
                }
            }
        });
    });
    (open, whatif)
}
