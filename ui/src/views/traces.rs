//! The Traces view: the paged table of traces, with text and SQL filters and sortable columns.

use super::{cause_cell, empty_state};
use crate::palette::{clock, count, dur, short};
use crate::protocol::{SortColumn, TraceRowVm};
use crate::{App, PAGE};
use egui::{Color32, Key, RichText, Sense};
use egui_extras::{Column, TableBuilder};

pub(crate) fn traces(app: &mut App, ui: &mut egui::Ui) {
    if app.traces.total.is_none() && app.traces.requested.is_empty() {
        app.request_page(0);
    }
    if app.overview.as_ref().is_some_and(|o| o.traces == 0) {
        empty_state(ui, app);
        return;
    }
    let mut reload = false;
    ui.horizontal(|ui| {
        ui.label("Filter:");
        let r = ui.add(egui::TextEdit::singleline(&mut app.traces.text).hint_text("trace id, root, cause, conversation").desired_width(220.0));
        if r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) || r.changed() && app.traces.text.is_empty() {
            reload = true;
        }
        ui.label("SQL WHERE:");
        let r = ui.add(
            egui::TextEdit::singleline(&mut app.traces.where_sql)
                .hint_text("e.g. duration_ns > 5e9 AND spans > 10")
                .code_editor()
                .desired_width(300.0),
        ).on_hover_text("Columns: trace_id, root, start_ns, duration_ns, ttft_ns, input_tokens, output_tokens, primary_cause, conversation_id, spans, pct");
        if r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
            reload = true;
        }
        if ui.button("Apply").clicked() {
            reload = true;
        }
        if let Some(t) = app.traces.total {
            ui.weak(format!("{} traces", count(t as i64)));
        }
    });
    if let Some((k, v)) = app.value_filter().cloned() {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("only traces with {k} = {v}")).strong())
                .on_hover_text("from the overview's \"what the slow traces share\" panel");
            if ui.button("✕ Clear value filter").clicked() {
                app.clear_value_filter();
            }
        });
    }
    if reload {
        app.traces.query.text = app.traces.text.trim().to_owned();
        app.traces.query.where_sql = app.traces.where_sql.trim().to_owned();
        app.reload_traces();
    }
    let total = app.traces.total.unwrap_or(0);
    let (p50, p90, p99) = app
        .overview
        .as_ref()
        .map_or((f64::MAX, f64::MAX, f64::MAX), |o| {
            (o.p50_ns, o.p90_ns, o.p99_ns)
        });
    let mut need = Vec::new();
    let mut open: Option<String> = None;
    let mut open_conv: Option<String> = None;
    let mut sort_by: Option<SortColumn> = None;
    let cols: [(&str, Option<SortColumn>); 10] = [
        ("trace", None),
        ("start", Some(SortColumn::Start)),
        ("root", Some(SortColumn::Root)),
        ("duration", Some(SortColumn::Duration)),
        ("pct", None),
        ("TTFT", Some(SortColumn::Ttft)),
        ("tokens in/out", Some(SortColumn::InputTokens)),
        ("spans", Some(SortColumn::Spans)),
        ("primary cause", Some(SortColumn::PrimaryCause)),
        ("conversation", None),
    ];
    let q = app.traces.query.clone();
    TableBuilder::new(ui)
        .striped(true)
        .sense(Sense::click())
        .column(Column::exact(80.0))
        .column(Column::exact(95.0))
        .column(Column::initial(170.0).resizable(true).clip(true))
        .column(Column::exact(80.0))
        .column(Column::exact(60.0))
        .column(Column::exact(70.0))
        .column(Column::exact(95.0))
        .column(Column::exact(50.0))
        .column(Column::exact(130.0))
        .column(Column::remainder().clip(true))
        .header(22.0, |mut h| {
            for (name, sort) in cols {
                h.col(|ui| match sort {
                    Some(s) => {
                        let arrow = if q.sort == s {
                            if q.descending {
                                " ⏷"
                            } else {
                                " ⏶"
                            }
                        } else {
                            ""
                        };
                        if ui
                            .add(
                                egui::Button::new(RichText::new(format!("{name}{arrow}")).strong())
                                    .frame(false),
                            )
                            .clicked()
                        {
                            sort_by = Some(s);
                        }
                    }
                    None => {
                        ui.strong(name);
                    }
                });
            }
        })
        .body(|body| {
            body.rows(20.0, total, |mut row| {
                let i = row.index();
                let page = i / PAGE;
                let Some(r) = app.traces.pages.get(&page).and_then(|p| p.get(i % PAGE)) else {
                    if !app.traces.requested.contains(&page) {
                        need.push(page);
                    }
                    row.col(|ui| {
                        ui.weak("…");
                    });
                    return;
                };
                let r: &TraceRowVm = r;
                row.set_selected(app.traces.selected.as_deref() == Some(r.trace_id.as_str()));
                row.col(|ui| {
                    if ui
                        .link(RichText::new(short(&r.trace_id)).monospace())
                        .clicked()
                    {
                        open = Some(r.trace_id.clone());
                    }
                });
                row.col(|ui| {
                    ui.label(clock(r.start_ns));
                });
                row.col(|ui| {
                    ui.label(&r.root);
                });
                row.col(|ui| {
                    let d = r.duration_ns as f64;
                    let text = RichText::new(dur(r.duration_ns));
                    if d >= p99 {
                        ui.label(text.color(Color32::from_rgb(0xff, 0x70, 0x60)).strong());
                    } else if d >= p90 {
                        ui.label(text.color(Color32::from_rgb(0xe8, 0xb0, 0x30)));
                    } else if d <= p50 {
                        ui.label(text.weak());
                    } else {
                        ui.label(text);
                    }
                });
                row.col(|ui| {
                    let txt = format!("p{:.0}", r.percentile.floor().min(99.0));
                    if r.percentile >= 99.0 {
                        ui.colored_label(Color32::from_rgb(0xff, 0x70, 0x60), "≥p99");
                    } else if r.percentile >= 90.0 {
                        ui.colored_label(Color32::from_rgb(0xe8, 0xb0, 0x30), txt);
                    } else {
                        ui.weak(txt);
                    }
                });
                row.col(|ui| {
                    ui.label(r.ttft_ns.map_or_else(|| "—".to_owned(), dur));
                });
                row.col(|ui| {
                    let t = |v: Option<i64>| v.map_or_else(|| "—".to_owned(), count);
                    ui.label(format!("{} / {}", t(r.input_tokens), t(r.output_tokens)));
                });
                row.col(|ui| {
                    ui.label(r.spans.to_string());
                });
                row.col(|ui| cause_cell(ui, r.primary_cause, r.primary_evidence));
                row.col(|ui| {
                    if let Some(c) = &r.conversation_id {
                        if ui.link(c).on_hover_text("open this conversation").clicked() {
                            open_conv = Some(c.clone());
                        }
                    }
                });
                if row.response().clicked() {
                    open = Some(r.trace_id.clone());
                }
            });
        });
    for p in need {
        app.request_page(p);
    }
    if let Some(s) = sort_by {
        if app.traces.query.sort == s {
            app.traces.query.descending = !app.traces.query.descending;
        } else {
            app.traces.query.sort = s;
            app.traces.query.descending = !matches!(s, SortColumn::Root | SortColumn::PrimaryCause);
        }
        app.reload_traces();
    }
    if let Some(t) = open {
        app.traces.selected = Some(t.clone());
        app.open_trace(&t, None);
    }
    if let Some(c) = open_conv {
        app.open_conversation(&c);
    }
}
