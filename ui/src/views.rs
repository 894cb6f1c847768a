//! The views and the window chrome (menu, status bar, dialogs, help).

use crate::evidence;
use crate::palette::{self, cause_colour, cause_label, clock, count, dur, dur_f, short};
use crate::protocol::{Request, SortColumn, TraceRowVm};
use crate::timeline::{self, Mode};
use crate::{App, Dialog, View, PAGE};
use egui::{Color32, Key, KeyboardShortcut, Modifiers, RichText, Sense};
use egui_extras::{Column, TableBuilder};
use egui_plot::{Bar, BarChart, Line, Plot, PlotPoints, Points, VLine};
use tailscope_model::Cause;

pub(crate) fn apply_theme(ctx: &egui::Context) {
    ctx.set_theme(egui::Theme::Dark);
    ctx.style_mut(|s| {
        s.spacing.item_spacing = egui::vec2(8.0, 5.0);
        s.spacing.button_padding = egui::vec2(8.0, 3.0);
        s.visuals.panel_fill = Color32::from_rgb(0x1b, 0x1d, 0x22);
        s.visuals.extreme_bg_color = Color32::from_rgb(0x13, 0x14, 0x18);
        s.visuals.faint_bg_color = Color32::from_rgb(0x22, 0x24, 0x2a);
        s.visuals.striped = true;
    });
}

const SHORTCUTS: &[(&str, &str)] = &[
    (
        "Ctrl+1 … Ctrl+7",
        "Overview, Traces, Trace, Conversation, Metrics, Replay, SQL",
    ),
    ("F1", "this help"),
    ("Ctrl+O / Ctrl+I", "open a store / import OTLP files"),
    ("Ctrl+Enter", "run the SQL console"),
    ("drag", "pan the timeline (time and rows)"),
    (
        "wheel / Ctrl+wheel",
        "scroll rows / zoom around the pointer",
    ),
    ("+ − or W S", "zoom the timeline in / out"),
    ("← → or A D", "pan the timeline"),
    ("0 or Home", "fit the whole trace"),
    ("F", "waterfall ↔ flame graph"),
    ("N / Shift+N", "next / previous search hit in the trace"),
];

pub(crate) fn shortcuts(app: &mut App, ctx: &egui::Context) {
    let keys = [
        Key::Num1,
        Key::Num2,
        Key::Num3,
        Key::Num4,
        Key::Num5,
        Key::Num6,
        Key::Num7,
        Key::Num8,
    ];
    for (k, v) in keys.iter().zip(View::ALL) {
        if ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, *k))) {
            app.set_view(v);
        }
    }
    if ctx.input(|i| i.key_pressed(Key::F1)) {
        app.help = !app.help;
    }
    if ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::O))) {
        app.open_path_dialog(Dialog::Open(app.store_label.clone()));
    }
    if ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::I))) {
        app.open_path_dialog(Dialog::Import(String::new()));
    }
    if app.view == View::Trace && !ctx.wants_keyboard_input() {
        let (f, n, shift) = ctx.input(|i| {
            (
                i.key_pressed(Key::F),
                i.key_pressed(Key::N),
                i.modifiers.shift,
            )
        });
        if let Some(t) = app.trace.as_mut() {
            if f {
                t.timeline.mode = match t.timeline.mode {
                    Mode::Waterfall => Mode::Flame,
                    Mode::Flame => Mode::Waterfall,
                };
            }
            if n && !t.hits.is_empty() {
                t.hit = if shift {
                    (t.hit + t.hits.len() - 1) % t.hits.len()
                } else {
                    (t.hit + 1) % t.hits.len()
                };
                let h = t.hits[t.hit];
                t.select(h);
            }
        }
    }
}

pub(crate) fn menu_bar(app: &mut App, ctx: &egui::Context) {
    egui::TopBottomPanel::top("menu").show(ctx, |ui| {
        ui.horizontal(|ui| {
            egui::containers::menu::MenuButton::new("File").ui(ui, |ui| {
                if ui.button("Open store…").clicked() {
                    app.open_path_dialog(Dialog::Open(app.store_label.clone()));
                    ui.close();
                }
                if ui.button("Import OTLP files…").clicked() {
                    app.open_path_dialog(Dialog::Import(String::new()));
                    ui.close();
                }
                if ui.button("Export notebook…").clicked() {
                    app.open_path_dialog(Dialog::Export("tailscope-export".to_owned()));
                    ui.close();
                }
                if ui.button("Re-run analysis").clicked() {
                    app.send(Request::Analyze);
                    ui.close();
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            egui::containers::menu::MenuButton::new("Help").ui(ui, |ui| {
                if ui.button("Keyboard shortcuts (F1)").clicked() {
                    app.help = true;
                    ui.close();
                }
            });
            ui.separator();
            for v in View::ALL {
                let enabled =
                    v != View::Trace || app.trace.is_some() || app.loading_trace.is_some();
                if ui
                    .add_enabled(enabled, egui::Button::selectable(app.view == v, v.title()))
                    .clicked()
                {
                    app.set_view(v);
                }
            }
        });
    });
}

pub(crate) fn status_bar(app: &mut App, ctx: &egui::Context) {
    egui::TopBottomPanel::bottom("status").show(ctx, |ui| {
        ui.horizontal(|ui| {
            if let Some(job) = app.job.clone() {
                ui.label(RichText::new(&job.job).strong());
                let bar = egui::ProgressBar::new(job.fraction.unwrap_or(0.0))
                    .animate(job.fraction.is_none())
                    .desired_width(160.0)
                    .text(job.message.clone());
                ui.add(bar);
                // the analysis cannot be cancelled (it ends or is superseded)
                if job.job != crate::protocol::ANALYSIS_JOB && ui.button("Cancel").clicked() {
                    app.cancel_job();
                }
                ui.separator();
            } else if app.pending() > 0 {
                ui.spinner();
                ui.label("loading…");
                ui.separator();
            }
            match &app.collector {
                Some(c) => {
                    ui.label(format!(
                        "collector: gRPC {} · HTTP {} · {:.0} spans/s · {} stored · {} rejected",
                        c.grpc,
                        c.http,
                        c.spans_per_s,
                        count(c.spans_accepted as i64),
                        count(c.rejected as i64)
                    ));
                }
                None => {
                    ui.weak("collector off");
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                ui.weak(format!("store: {}", app.store_label));
            });
        });
        let mut dismiss = false;
        for e in &app.errors {
            ui.horizontal(|ui| {
                ui.colored_label(Color32::from_rgb(0xff, 0x80, 0x70), format!("⚠ {e}"));
            });
        }
        if !app.errors.is_empty() && ui.small_button("Dismiss").clicked() {
            dismiss = true;
        }
        if dismiss {
            app.errors.clear();
        }
    });
}

pub(crate) fn dialogs(app: &mut App, ctx: &egui::Context) {
    let Some(mut d) = app.dialog.take() else {
        return;
    };
    let (title, hint, button) = match &d {
        Dialog::Open(_) => ("Open store", "Path of a tailscope .duckdb store", "Open"),
        Dialog::Import(_) => (
            "Import OTLP files",
            "Paths, one per line (OTLP JSON, JSON lines or protobuf)",
            "Import",
        ),
        Dialog::Export(_) => (
            "Export notebook",
            "Folder for Parquet tables and the notebook",
            "Export",
        ),
    };
    let mut keep = true;
    let mut submit = false;
    egui::Window::new(title)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.label(hint);
            let rows = if matches!(d, Dialog::Import(_)) { 4 } else { 1 };
            let text = match &mut d {
                Dialog::Open(s) | Dialog::Import(s) | Dialog::Export(s) => s,
            };
            ui.add(
                egui::TextEdit::multiline(text)
                    .desired_rows(rows)
                    .desired_width(420.0),
            );
            ui.horizontal(|ui| {
                if ui.button(button).clicked() {
                    submit = true;
                }
                if ui.button("Cancel").clicked() {
                    keep = false;
                }
            });
        });
    if submit {
        app.submit_dialog(d);
    } else if keep {
        app.dialog = Some(d);
    }
}

pub(crate) fn help_window(app: &mut App, ctx: &egui::Context) {
    let mut open = app.help;
    egui::Window::new("Keyboard shortcuts")
        .open(&mut open)
        .resizable(false)
        .show(ctx, |ui| {
            egui::Grid::new("keys").striped(true).show(ui, |ui| {
                for (k, what) in SHORTCUTS {
                    ui.monospace(*k);
                    ui.label(*what);
                    ui.end_row();
                }
            });
            ui.separator();
            ui.label("Cause colours:");
            palette::legend(ui, &Cause::ALL);
        });
    app.help = open;
}

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
            crate::shared::panel(app, ui, shared);
        }
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
    let Some(t) = app.trace.as_mut() else { return };
    egui::SidePanel::right("span_panel")
        .resizable(true)
        .default_width(340.0)
        .show_inside(ui, |ui| {
            open_link = span_panel(ui, t);
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
fn latency_tree(ui: &mut egui::Ui, t: &mut crate::TraceState) {
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

/// The selected span's details; returns a linked trace to open.
fn span_panel(ui: &mut egui::Ui, t: &crate::TraceState) -> Option<String> {
    let mut open = None;
    let Some(i) = t.selected else {
        ui.weak("Click a span in the timeline or the tree.");
        ui.add_space(8.0);
        ui.label("Colours:");
        palette::legend(ui, &Cause::ALL);
        ui.weak("Bright: on the critical path (coloured by its cause). Dim: off the path. Hatched (critical-path lane): an ambiguous cause.");
        return None;
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
    open
}

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
const SIDE_A: Color32 = Color32::from_rgb(0xe3, 0x7b, 0x40);
const SIDE_B: Color32 = Color32::from_rgb(0x4e, 0x9f, 0xd1);

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
        crate::replay_form::show(app, ui);
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

const SQL_EXAMPLES: &[(&str, &str)] = &[
    ("p99 by root", "SELECT root, count(*) AS traces, round(quantile_disc(duration_ns, 0.99) / 1e6) AS p99_ms\nFROM trace_analysis GROUP BY root ORDER BY p99_ms DESC"),
    ("slowest LLM calls", "SELECT trace_id, name, model, (end_ns - start_ns) / 1e6 AS ms, input_tokens, cache_read_tokens\nFROM spans WHERE op_class = 'llm' ORDER BY ms DESC LIMIT 100"),
    ("findings", "SELECT kind, count(*) AS n, round(sum(estimated_cost_ns) / 1e9, 1) AS total_s\nFROM findings GROUP BY kind ORDER BY total_s DESC"),
    ("metric names", "SELECT name, kind, count(*) AS points FROM metric_points GROUP BY ALL ORDER BY points DESC"),
];

pub(crate) fn sql(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("SQL console");
        ui.weak("read-only DuckDB SQL over the store (spans, trace_analysis, critical_path_sections, span_analysis, findings, metric_points, …)");
    });
    ui.horizontal(|ui| {
        ui.label("Examples:");
        for (name, q) in SQL_EXAMPLES {
            if ui.small_button(*name).clicked() {
                (*q).clone_into(&mut app.sql);
            }
        }
    });
    ui.add(
        egui::TextEdit::multiline(&mut app.sql)
            .code_editor()
            .desired_rows(4)
            .desired_width(f32::INFINITY),
    );
    let run = ui.horizontal(|ui| {
        let b = ui.button("Run (Ctrl+Enter)").clicked();
        if let Some(r) = &app.sql_result {
            ui.weak(format!(
                "{} rows{} · {} columns · {:.1} ms",
                count(r.rows.len() as i64),
                if r.truncated {
                    " (first rows only)"
                } else {
                    ""
                },
                r.columns.len(),
                r.elapsed_ms
            ));
        }
        b
    });
    if run.inner
        || ui.input_mut(|i| {
            i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter))
        })
    {
        let q = app.sql.clone();
        app.run_sql(&q);
    }
    let Some(r) = app.sql_result.as_ref() else {
        ui.weak("Run a query to see its result here.");
        return;
    };
    if r.columns.is_empty() {
        ui.weak("No columns.");
        return;
    }
    egui::ScrollArea::horizontal().show(ui, |ui| {
        let mut tb = TableBuilder::new(ui).striped(true);
        for _ in &r.columns {
            tb = tb.column(
                Column::auto()
                    .at_least(60.0)
                    .at_most(400.0)
                    .resizable(true)
                    .clip(true),
            );
        }
        tb.header(20.0, |mut h| {
            for c in &r.columns {
                h.col(|ui| {
                    ui.strong(c);
                });
            }
        })
        .body(|body| {
            body.rows(18.0, r.rows.len(), |mut row| {
                let cells = &r.rows[row.index()];
                for v in cells {
                    row.col(|ui| {
                        ui.label(v);
                    });
                }
            });
        });
    });
}
