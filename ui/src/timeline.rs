//! The trace timeline: a waterfall (one row per span) or a flame graph (one lane per
//! depth), with zoom and pan. Drawing follows puffin's rules: time maps to x once, spans
//! outside the view are culled, sub-pixel spans are drawn as a line, labels only where
//! they fit, and (flame graph) the children of a culled span are skipped.

use crate::evidence;
use crate::palette::{cause_colour, dimmed};
use crate::protocol::TraceDetail;
use egui::{pos2, vec2, Align2, Color32, FontId, Key, Rect, Sense, Stroke};

/// Waterfall or flame graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Waterfall,
    Flame,
}

/// The visible window of the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineState {
    /// Visible time, ns relative to the trace start.
    pub start: f64,
    pub end: f64,
    /// First visible row (waterfall) or lane (flame graph).
    pub top: f32,
    pub mode: Mode,
    /// Scroll so this row is visible on the next frame.
    pub reveal_row: Option<usize>,
}

impl TimelineState {
    pub fn fit(detail: &TraceDetail) -> Self {
        let d = (detail.end_ns - detail.start_ns).max(1) as f64;
        Self {
            start: -0.01 * d,
            end: 1.01 * d,
            top: 0.0,
            mode: Mode::Waterfall,
            reveal_row: None,
        }
    }

    /// Zooms by `factor` (> 1 zooms in) around the relative time `at`.
    pub fn zoom(&mut self, factor: f64, at: f64) {
        let factor = factor.clamp(0.05, 20.0);
        let span = ((self.end - self.start) / factor).max(100.0);
        let frac = ((at - self.start) / (self.end - self.start)).clamp(0.0, 1.0);
        self.start = at - frac * span;
        self.end = self.start + span;
    }

    pub fn pan(&mut self, dt: f64) {
        self.start += dt;
        self.end += dt;
    }
}

/// Row height in points.
pub const ROW: f32 = 18.0;
const RULER: f32 = 20.0;
const LANE: f32 = 12.0;
const CHAR_W: f32 = 6.6;

/// What the timeline did this frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimelineOutput {
    /// A span was clicked.
    pub clicked: Option<usize>,
    /// Spans painted this frame (for benchmarks and tests).
    pub drawn: usize,
}

fn nice_step(span_ns: f64, px: f32) -> f64 {
    let target = span_ns * 90.0 / f64::from(px.max(1.0));
    let p = 10f64.powf(target.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= target {
            return m * p;
        }
    }
    10.0 * p
}

/// Text that fits `width` points, shortened with an ellipsis; `None` when nothing fits.
fn fit_label(text: &str, width: f32) -> Option<String> {
    let n = ((width - 6.0) / CHAR_W).floor();
    if n < 3.0 {
        return None;
    }
    let n = n as usize;
    if text.chars().count() <= n {
        Some(text.to_owned())
    } else {
        let mut s: String = text.chars().take(n.saturating_sub(1)).collect();
        s.push('…');
        Some(s)
    }
}

#[allow(clippy::many_single_char_names)]
/// Draws the timeline. `rows` are the span indices shown in the waterfall (pre-order,
/// collapsed subtrees left out); `hits` marks search matches.
pub fn show(
    ui: &mut egui::Ui,
    detail: &TraceDetail,
    rows: &[usize],
    state: &mut TimelineState,
    selected: Option<usize>,
    hits: &[usize],
) -> TimelineOutput {
    let size = ui.available_size().max(vec2(200.0, 120.0));
    let (resp, painter) = ui.allocate_painter(size, Sense::click_and_drag());
    let rect = resp.rect;
    let mut out = TimelineOutput::default();
    let visuals = ui.visuals().clone();
    painter.rect_filled(rect, 0.0, visuals.extreme_bg_color);

    // Input: drag pans (x: time, y: rows); wheel scrolls rows, ctrl+wheel / pinch zooms
    // around the pointer; keys zoom and pan.
    let width = f64::from(rect.width());
    let ns_per_px = (state.end - state.start) / width;
    let lane_h = ROW;
    if resp.dragged() {
        let d = resp.drag_delta();
        state.pan(-f64::from(d.x) * ns_per_px);
        state.top -= d.y / lane_h;
    }
    if resp.hovered() {
        let (scroll, zoom, pointer) =
            ui.input(|i| (i.smooth_scroll_delta, i.zoom_delta(), i.pointer.hover_pos()));
        let at = pointer.map_or(f64::midpoint(state.start, state.end), |p| {
            state.start + f64::from(p.x - rect.left()) * ns_per_px
        });
        if (zoom - 1.0).abs() > f32::EPSILON {
            state.zoom(f64::from(zoom), at);
        } else {
            state.top -= scroll.y / lane_h;
            state.pan(-f64::from(scroll.x) * ns_per_px);
        }
    }
    if !ui.ctx().wants_keyboard_input() {
        let mid = f64::midpoint(state.start, state.end);
        let span = state.end - state.start;
        ui.input(|i| {
            if i.key_pressed(Key::Plus) || i.key_pressed(Key::Equals) || i.key_pressed(Key::W) {
                state.zoom(1.5, mid);
            }
            if i.key_pressed(Key::Minus) || i.key_pressed(Key::S) {
                state.zoom(1.0 / 1.5, mid);
            }
            if i.key_pressed(Key::ArrowLeft) || i.key_pressed(Key::A) {
                state.pan(-0.2 * span);
            }
            if i.key_pressed(Key::ArrowRight) || i.key_pressed(Key::D) {
                state.pan(0.2 * span);
            }
        });
        if ui.input(|i| i.key_pressed(Key::Num0) || i.key_pressed(Key::Home)) {
            let keep = state.mode;
            *state = TimelineState::fit(detail);
            state.mode = keep;
        }
    }

    let body_top = rect.top() + RULER + LANE + 4.0;
    let visible_lanes = ((rect.bottom() - body_top) / lane_h).max(1.0);
    let max_lane = match state.mode {
        Mode::Waterfall => rows.len() as f32,
        Mode::Flame => detail.spans.iter().map(|s| s.depth).max().unwrap_or(0) as f32 + 1.0,
    };
    if let Some(r) = state.reveal_row.take() {
        let lane = match state.mode {
            Mode::Waterfall => rows.iter().position(|&x| x == r).unwrap_or(0) as f32,
            Mode::Flame => detail.spans.get(r).map_or(0.0, |s| s.depth as f32),
        };
        if lane < state.top || lane > state.top + visible_lanes - 2.0 {
            state.top = lane - visible_lanes / 3.0;
        }
        if let Some(s) = detail.spans.get(r) {
            let (a, b) = (
                (s.input.start_ns - detail.start_ns) as f64,
                (s.input.end_ns - detail.start_ns) as f64,
            );
            if b < state.start || a > state.end {
                let w = state.end - state.start;
                state.start = a - 0.1 * w;
                state.end = state.start + w;
            }
        }
    }
    state.top = state
        .top
        .clamp(0.0, (max_lane - visible_lanes + 1.0).max(0.0));

    // Time maps to x once.
    let t0 = state.start;
    let scale = f64::from(rect.width()) / (state.end - state.start);
    let left = rect.left();
    let x_of = |rel_ns: f64| -> f32 { left + ((rel_ns - t0) * scale) as f32 };
    let rel = |ns: i64| (ns - detail.start_ns) as f64;

    // Ruler.
    let step = nice_step(state.end - state.start, rect.width());
    let mut t = (state.start / step).ceil() * step;
    let font = FontId::proportional(11.0);
    let weak = visuals.weak_text_color();
    let grid = visuals.widgets.noninteractive.bg_stroke.color;
    while t <= state.end {
        let x = x_of(t);
        painter.line_segment(
            [pos2(x, rect.top() + RULER - 4.0), pos2(x, rect.bottom())],
            Stroke::new(1.0, grid.gamma_multiply(0.5)),
        );
        painter.text(
            pos2(x + 2.0, rect.top() + 2.0),
            Align2::LEFT_TOP,
            crate::palette::dur_f(t),
            font.clone(),
            weak,
        );
        t += step;
    }

    // Critical-path lane: every section in its cause colour (hatched when ambiguous).
    let lane_rect = Rect::from_min_size(pos2(left, rect.top() + RULER), vec2(rect.width(), LANE));
    let mut last_px = f32::NEG_INFINITY;
    let mut hovered_section = None;
    for s in &detail.sections {
        let (x0, x1) = (x_of(rel(s.start_ns)), x_of(rel(s.end_ns)));
        if x1 < left || x0 > rect.right() || (x1 - x0 < 1.0 && x0.floor() <= last_px) {
            continue;
        }
        last_px = x1.floor();
        let r = Rect::from_x_y_ranges(
            x0.max(left)..=x1.min(rect.right()).max(x0 + 1.0),
            lane_rect.y_range(),
        );
        evidence::paint_section(&painter, r, s.cause, s.evidence);
        if resp.hover_pos().is_some_and(|p| r.contains(p)) {
            hovered_section = Some(s);
        }
        out.drawn += 1;
    }

    let body = Rect::from_min_max(pos2(left, body_top), rect.max);
    let painter = painter.with_clip_rect(body);
    let text_col = visuals.text_color();
    let hover = resp.hover_pos();
    let mut hovered: Option<usize> = None;
    let mut draw_span = |i: usize, y: f32, label_outside: bool, out: &mut TimelineOutput| {
        let s = &detail.spans[i];
        let (x0, x1) = (x_of(rel(s.input.start_ns)), x_of(rel(s.input.end_ns)));
        if x1 < left || x0 > rect.right() {
            return false;
        }
        out.drawn += 1;
        let on_path = s.cause.is_some();
        let base = cause_colour(s.colour_cause());
        let fill = if on_path { base } else { dimmed(base) };
        let y_range = (y + 2.0)..=(y + ROW - 2.0);
        let w = x1 - x0;
        let r = if w < 1.0 {
            let r = Rect::from_x_y_ranges(x0..=x0 + 1.0, y_range);
            painter.line_segment([r.center_top(), r.center_bottom()], Stroke::new(1.0, fill));
            r
        } else {
            let r = Rect::from_x_y_ranges(x0.max(left - 2.0)..=x1.min(rect.right() + 2.0), y_range);
            painter.rect_filled(r, 2.0, fill);
            r
        };
        if Some(i) == selected {
            painter.rect_stroke(
                r.expand(1.5),
                2.0,
                Stroke::new(2.0, visuals.selection.stroke.color),
                egui::StrokeKind::Outside,
            );
        } else if hits.binary_search(&i).is_ok() {
            painter.rect_stroke(
                r.expand(1.0),
                2.0,
                Stroke::new(1.5, Color32::YELLOW),
                egui::StrokeKind::Outside,
            );
        }
        let full = format!("{}  {}", s.input.name, crate::palette::dur(s.duration_ns()));
        let inside = (x1.min(rect.right()) - x0.max(left)).max(0.0);
        if let Some(label) = fit_label(&full, inside) {
            painter.text(
                pos2(x0.max(left) + 3.0, y + ROW / 2.0),
                Align2::LEFT_CENTER,
                label,
                font.clone(),
                Color32::from_gray(15),
            );
        } else if label_outside && x1 < rect.right() - 40.0 {
            if let Some(label) = fit_label(&full, rect.right() - x1 - 4.0) {
                painter.text(
                    pos2(x1.max(left) + 4.0, y + ROW / 2.0),
                    Align2::LEFT_CENTER,
                    label,
                    font.clone(),
                    text_col,
                );
            }
        }
        if hover.is_some_and(|p| r.expand2(vec2(2.0, 0.0)).contains(p)) {
            hovered = Some(i);
        }
        true
    };

    match state.mode {
        Mode::Waterfall => {
            let first = state.top.floor().max(0.0) as usize;
            let frac = state.top - first as f32;
            let n = visible_lanes.ceil() as usize + 1;
            for (k, &i) in rows.iter().enumerate().skip(first).take(n) {
                let y = body_top + ((k - first) as f32 - frac) * ROW;
                if Some(i) == selected {
                    painter.rect_filled(
                        Rect::from_x_y_ranges(rect.x_range(), y..=y + ROW),
                        0.0,
                        visuals.selection.bg_fill.gamma_multiply(0.35),
                    );
                }
                draw_span(i, y, true, &mut out);
            }
        }
        Mode::Flame => {
            let mut i = 0;
            let n = detail.spans.len();
            // Last pixel column drawn per depth: sub-pixel spans in one column merge.
            let mut last_px: Vec<f32> = Vec::new();
            let bottom_lane = state.top + visible_lanes + 1.0;
            while i < n {
                let s = &detail.spans[i];
                let lane = s.depth as f32;
                let (x0, x1) = (x_of(rel(s.input.start_ns)), x_of(rel(s.input.end_ns)));
                // Cull: off-screen in time, below the view, or narrower than a pixel:
                // skip the whole subtree (children lie within their parent).
                if x1 < left || x0 > rect.right() || lane > bottom_lane {
                    i = s.subtree_end.max(i + 1);
                    continue;
                }
                let y = body_top + (lane - state.top) * ROW;
                if x1 - x0 < 1.0 {
                    let d = s.depth as usize;
                    if last_px.len() <= d {
                        last_px.resize(d + 1, f32::NEG_INFINITY);
                    }
                    if lane >= state.top - 1.0 && x0.floor() > last_px[d] {
                        draw_span(i, y, false, &mut out);
                        last_px[d] = x0.floor();
                    }
                    i = s.subtree_end.max(i + 1);
                    continue;
                }
                if lane >= state.top - 1.0 {
                    draw_span(i, y, false, &mut out);
                }
                i += 1;
            }
        }
    }

    if let Some(i) = hovered {
        let s = &detail.spans[i];
        resp.clone().on_hover_ui_at_pointer(|ui| {
            ui.strong(&s.input.name);
            ui.label(format!(
                "{} · {} · starts at +{}",
                s.input.service,
                crate::palette::dur(s.duration_ns()),
                crate::palette::dur(s.input.start_ns - detail.start_ns)
            ));
            match s.cause {
                Some(c) => {
                    let (e, alts) = evidence::of_span(detail, i, c);
                    ui.label(format!(
                        "on the critical path: {} ({})",
                        crate::palette::dur(s.input.critical_ns),
                        evidence::cause_text(c, e, alts)
                    ))
                }
                None => ui.label("not on the critical path"),
            };
        });
    } else if let Some(s) = hovered_section {
        resp.clone().on_hover_ui_at_pointer(|ui| {
            ui.strong(evidence::cause_text(s.cause, s.evidence, s.alternatives));
            ui.label(format!(
                "critical path {} · {}",
                crate::palette::dur(s.end_ns - s.start_ns),
                detail.spans[s.span].input.name
            ));
        });
    }
    if resp.clicked() {
        out.clicked = hovered;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{SpanInput, TraceDetail};
    use tailscope_model::Cause;

    /// A root with `n` sequential children, each with one child.
    fn wide(n: usize) -> TraceDetail {
        let mut spans = vec![SpanInput {
            span_id: "root".into(),
            name: "root".into(),
            start_ns: 0,
            end_ns: n as i64 * 1000,
            ..SpanInput::default()
        }];
        for i in 0..n {
            let t = i as i64 * 1000;
            spans.push(SpanInput {
                span_id: format!("c{i}"),
                parent_span_id: Some("root".into()),
                name: format!("child {i}"),
                start_ns: t,
                end_ns: t + 900,
                ..SpanInput::default()
            });
            spans.push(SpanInput {
                span_id: format!("g{i}"),
                parent_span_id: Some(format!("c{i}")),
                name: format!("grandchild {i}"),
                start_ns: t + 100,
                end_ns: t + 800,
                ..SpanInput::default()
            });
        }
        let sections = vec![("c0".to_owned(), 0, 900, Cause::Tool)];
        TraceDetail::build("t".into(), spans, &sections)
    }

    fn draw(d: &TraceDetail, state: &mut TimelineState) -> TimelineOutput {
        let ctx = egui::Context::default();
        let rows: Vec<usize> = (0..d.spans.len()).collect();
        let mut out = TimelineOutput::default();
        let input = egui::RawInput {
            screen_rect: Some(Rect::from_min_size(pos2(0.0, 0.0), vec2(1000.0, 600.0))),
            ..egui::RawInput::default()
        };
        let _ = ctx.run(input, |ctx| {
            egui::CentralPanel::default().show(ctx, |ui| {
                out = show(ui, d, &rows, state, None, &[]);
            });
        });
        out
    }

    #[test]
    fn build_orders_spans_depth_first_with_subtree_ends() {
        let d = wide(3);
        let names: Vec<&str> = d.spans.iter().map(|s| s.input.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "root",
                "child 0",
                "grandchild 0",
                "child 1",
                "grandchild 1",
                "child 2",
                "grandchild 2"
            ]
        );
        assert_eq!(d.spans[0].subtree_end, 7);
        assert_eq!(d.spans[1].subtree_end, 3);
        assert_eq!(d.spans[2].depth, 2);
        assert_eq!(d.spans[1].cause, Some(Cause::Tool));
        assert_eq!(d.spans[3].cause, None);
        assert_eq!(d.by_cause_ns, vec![(Cause::Tool, 900)]);
    }

    #[test]
    fn flame_graph_culls_sub_pixel_subtrees_and_off_screen_spans() {
        let d = wide(20_000);
        let mut st = TimelineState::fit(&d);
        st.mode = Mode::Flame;
        // Zoomed out: each child is far below a pixel; its grandchild is never visited.
        let out = draw(&d, &mut st);
        assert!(
            out.drawn <= 1 + 20_000 + 2,
            "grandchildren skipped: {}",
            out.drawn
        );
        // Zoomed in on ten children: only those (and their parents) are drawn.
        st.start = 5_000_000.0;
        st.end = 5_010_000.0;
        let out = draw(&d, &mut st);
        assert!(out.drawn < 40, "only the visible window: {}", out.drawn);
        // The waterfall draws only the rows on screen.
        st.mode = Mode::Waterfall;
        let out = draw(&d, &mut st);
        assert!(out.drawn < 60, "{}", out.drawn);
    }

    #[test]
    fn sections_carry_their_evidence_and_ambiguous_ones_are_drawn() {
        use crate::protocol::SectionInput;
        use tailscope_model::{CauseSet, Evidence};
        let spans = wide(3).spans.into_iter().map(|s| s.input).collect();
        let kv = CauseSet::of(&[Cause::KvEviction]);
        let sec = |id: &str, a, b, cause, evidence, alternatives| SectionInput {
            span_id: id.into(),
            start_ns: a,
            end_ns: b,
            cause,
            evidence,
            alternatives,
        };
        let sections = [
            sec("c0", 0, 900, Cause::Queue, Some(Evidence::Ambiguous), kv),
            sec(
                "c1",
                1000,
                1900,
                Cause::Tool,
                Some(Evidence::Measured),
                CauseSet::EMPTY,
            ),
            sec(
                "c2",
                2000,
                2900,
                Cause::Queue,
                Some(Evidence::Inferred),
                CauseSet::EMPTY,
            ),
        ];
        let d = TraceDetail::build_with_evidence("t".into(), spans, &sections);
        assert_eq!(d.sections.len(), 3);
        assert_eq!(d.sections[0].evidence, Some(Evidence::Ambiguous));
        assert_eq!(d.sections[0].alternatives, kv);
        assert_eq!(d.ambiguous_ns(), 900);
        let c0 = d.find("c0").unwrap();
        assert_eq!(
            evidence::of_span(&d, c0, Cause::Queue),
            (Some(Evidence::Ambiguous), kv)
        );
        let c2 = d.find("c2").unwrap();
        assert_eq!(
            evidence::of_span(&d, c2, Cause::Queue),
            (Some(Evidence::Inferred), CauseSet::EMPTY)
        );
        // tuples (no evidence) still build
        assert_eq!(wide(1).sections[0].evidence, None);
        let mut st = TimelineState::fit(&d);
        let out = draw(&d, &mut st);
        assert!(out.drawn >= 3, "{}", out.drawn);
    }

    #[test]
    fn zoom_keeps_the_point_under_the_pointer() {
        let mut st = TimelineState {
            start: 0.0,
            end: 1000.0,
            top: 0.0,
            mode: Mode::Waterfall,
            reveal_row: None,
        };
        st.zoom(2.0, 250.0);
        assert!((st.start - 125.0).abs() < 1e-9 && (st.end - 625.0).abs() < 1e-9);
    }

    #[test]
    fn labels_fit_or_are_left_out() {
        assert_eq!(fit_label("decode", 200.0).as_deref(), Some("decode"));
        assert!(fit_label("a very long span name", 60.0)
            .unwrap()
            .ends_with('…'));
        assert_eq!(fit_label("x", 10.0), None);
    }
}
