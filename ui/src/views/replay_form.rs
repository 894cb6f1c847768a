//! The replay form of the Replay view: a stored conversation, configurations A and B
//! (TOML, as `tailscope replay --a/--b` read them), repeats and scaling; Run starts the
//! worker's replay job (progress and Cancel in the status bar and here), and the saved
//! result opens in the Replay view when it finishes.

use crate::protocol::ANALYSIS_JOB;
use crate::{App, REPLAY_JOB};
use egui::RichText;

pub(crate) fn show(app: &mut App, ui: &mut egui::Ui) {
    ui.strong("Run a replay");
    let conversations: Vec<(String, u64)> = app
        .conversations
        .as_ref()
        .map(|l| {
            l.iter()
                .map(|c| (c.conversation_id.clone(), c.evictions))
                .collect()
        })
        .unwrap_or_default();
    let form = &mut app.replay_form.request;
    ui.horizontal(|ui| {
        ui.label("Conversation:");
        ui.add(
            egui::TextEdit::singleline(&mut form.conversation_id)
                .hint_text("gen_ai.conversation.id")
                .desired_width(260.0),
        );
        if !conversations.is_empty() {
            egui::ComboBox::from_id_salt("replay_conv_pick")
                .selected_text("pick…")
                .width(260.0)
                .show_ui(ui, |ui| {
                    // conversations with evictions first: the ones a replay explains
                    let mut list = conversations.clone();
                    list.sort_by_key(|(_, e)| std::cmp::Reverse(*e));
                    for (id, ev) in list {
                        let label = if ev > 0 {
                            format!("{id} · {ev} evicted turns")
                        } else {
                            id.clone()
                        };
                        if ui
                            .selectable_label(form.conversation_id == id, label)
                            .clicked()
                        {
                            form.conversation_id = id;
                        }
                    }
                });
        }
    });
    ui.horizontal(|ui| {
        ui.label("Repeats per side:");
        ui.add(egui::DragValue::new(&mut form.repeats).range(1..=10));
        ui.label("Token scale:");
        ui.add(
            egui::DragValue::new(&mut form.token_scale)
                .range(0.001..=1.0)
                .speed(0.005),
        )
        .on_hover_text("recorded token counts are multiplied by this, so long prompts replay quickly on the small CPU model");
        ui.label("Max output tokens:");
        ui.add(egui::DragValue::new(&mut form.max_output_tokens).range(1..=4096));
    });
    let conv_set = !app.replay_form.request.conversation_id.trim().is_empty();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(conv_set, egui::Button::new("A = as recorded"))
            .on_hover_text("size A like the server the conversation was recorded on: the cache from its hits and misses, the load no trace shows as bursts before its misses; B gets twice the cache")
            .clicked()
        {
            app.request_as_recorded();
        }
        if !app.replay_form.as_recorded_notes.is_empty() {
            ui.label(RichText::new("A is as recorded").italics());
        }
    });
    if !app.replay_form.as_recorded_notes.is_empty() {
        egui::CollapsingHeader::new("Why A is sized this way")
            .id_salt("replay_as_recorded_notes")
            .show(ui, |ui| {
                for n in &app.replay_form.as_recorded_notes {
                    ui.label(n);
                }
            });
    }
    let form = &mut app.replay_form.request;
    ui.columns(2, |cols| {
        for (k, (side, text)) in [("A", &mut form.a_toml), ("B", &mut form.b_toml)]
            .into_iter()
            .enumerate()
        {
            cols[k].label(RichText::new(format!("Configuration {side} (TOML)")).strong());
            egui::ScrollArea::vertical()
                .id_salt(format!("replay_cfg_{side}"))
                .max_height(200.0)
                .show(&mut cols[k], |ui| {
                    ui.add(
                        egui::TextEdit::multiline(text)
                            .code_editor()
                            .desired_rows(10)
                            .desired_width(f32::INFINITY),
                    );
                });
        }
    });
    let running = app
        .job
        .as_ref()
        .is_some_and(|j| j.job != ANALYSIS_JOB)
        .then(|| app.job.clone())
        .flatten();
    let ready = !app.replay_form.request.conversation_id.trim().is_empty()
        && !app.replay_form.request.a_toml.trim().is_empty()
        && !app.replay_form.request.b_toml.trim().is_empty();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(running.is_none() && ready, egui::Button::new("Run replay"))
            .clicked()
        {
            app.run_replay();
        }
        if ui.button("Close").clicked() {
            app.replay_form.open = false;
        }
        if let Some(j) = running.filter(|j| j.job == REPLAY_JOB) {
            ui.add(
                egui::ProgressBar::new(j.fraction.unwrap_or(0.0))
                    .desired_width(260.0)
                    .text(j.message.clone()),
            );
            if ui.button("Cancel replay").clicked() {
                app.cancel_job();
            }
        }
    });
}
