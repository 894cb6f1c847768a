//! The window chrome: theme, keyboard shortcuts, menu bar, status bar, path dialogs, help.

use crate::palette::{self, count};
use crate::protocol::Request;
use crate::state::Dialog;
use crate::timeline::Mode;
use crate::{App, View};
use egui::{Color32, Key, KeyboardShortcut, Modifiers, RichText};
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
        "Ctrl+1 … Ctrl+8",
        "Overview, Traces, Trace, Conversation, Metrics, Compare periods, Replay, SQL",
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
