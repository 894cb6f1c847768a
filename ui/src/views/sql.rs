//! The SQL console: example queries, the editor and the result table.

use crate::palette::count;
use crate::App;
use egui::{Key, KeyboardShortcut, Modifiers};
use egui_extras::{Column, TableBuilder};

pub(crate) const SQL_EXAMPLES: &[(&str, &str)] = &[
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
