//! How a cause is known (design.md "Evidence levels"), as every view shows it: a level
//! (`measured`, `inferred`, `ambiguous`) and, for an ambiguous answer, the other causes
//! that explain it about as well. Ambiguous critical-path sections are drawn hatched
//! over a faded cause colour, so they stay in the one cause palette.

use crate::palette::{cause_colour, cause_label};
use crate::protocol::TraceDetail;
use egui::{Color32, Painter, Rect, RichText, Stroke};
use tailscope_model::{Cause, CauseSet, Evidence};

/// The hover text that explains the three levels.
pub const HELP: &str = "How the cause is known:\n\
    • measured: the telemetry times it (a server span, a first-token time, cache reads, corroborating server metrics)\n\
    • inferred: the latency model or a rule derives it\n\
    • ambiguous: two or more causes explain it about equally; the most likely is shown, \
    the alternatives name the others (the finding says what telemetry would settle it)";

/// `or KV eviction, uninstrumented` (empty when there are none).
pub fn alternatives_text(alts: CauseSet) -> String {
    if alts.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = alts.iter().map(cause_label).collect();
    format!("or {}", names.join(", "))
}

/// `measured`, `inferred`, `ambiguous: or KV eviction` (alternatives only when there are some).
pub fn level_text(e: Evidence, alts: CauseSet) -> String {
    let alt = alternatives_text(alts);
    if alt.is_empty() {
        e.as_str().to_owned()
    } else {
        format!("{}: {alt}", e.as_str())
    }
}

/// A section's or span's cause with its evidence: `queue · ambiguous (or KV eviction)`.
pub fn cause_text(c: Cause, e: Option<Evidence>, alts: CauseSet) -> String {
    let mut s = cause_label(c).to_owned();
    if let Some(e) = e {
        s.push_str(" · ");
        s.push_str(e.as_str());
    }
    let alt = alternatives_text(alts);
    if !alt.is_empty() {
        s.push_str(" (");
        s.push_str(&alt);
        s.push(')');
    }
    s
}

/// How span `i`'s critical time as cause `c` is known: the weakest level of its
/// sections with that cause, and their alternatives together.
pub fn of_span(d: &TraceDetail, i: usize, c: Cause) -> (Option<Evidence>, CauseSet) {
    d.sections_of(i)
        .filter(|s| s.cause == c)
        .fold((None, CauseSet::EMPTY), |(e, alts), s| {
            (e.max(s.evidence), alts.union(s.alternatives))
        })
}

/// The traces table's mark after an ambiguous primary cause.
pub fn primary_mark(e: Option<Evidence>) -> &'static str {
    if e == Some(Evidence::Ambiguous) {
        "?"
    } else {
        ""
    }
}

/// The colour of a level's badge.
pub fn level_colour(e: Evidence) -> Color32 {
    match e {
        Evidence::Measured => Color32::from_rgb(0x3c, 0xae, 0x8f),
        Evidence::Inferred => Color32::from_rgb(0x6f, 0xa8, 0xd8),
        Evidence::Ambiguous => Color32::from_rgb(0xe8, 0xb0, 0x30),
    }
}

/// A small coloured label naming the level (nothing when unknown), with [`HELP`] on hover.
pub fn badge(ui: &mut egui::Ui, e: Option<Evidence>) {
    if let Some(e) = e {
        ui.label(RichText::new(e.as_str()).small().color(level_colour(e)))
            .on_hover_text(HELP);
    }
}

/// The level and alternatives after a cause: `(ambiguous: or KV eviction)`, with [`HELP`]
/// on hover (nothing when the level is unknown).
pub fn suffix(ui: &mut egui::Ui, e: Option<Evidence>, alts: CauseSet) {
    if let Some(e) = e {
        let text = RichText::new(format!("({})", level_text(e, alts)));
        let text = if e == Evidence::Ambiguous {
            text.color(level_colour(e))
        } else {
            text.weak()
        };
        ui.label(text).on_hover_text(HELP);
    }
}

/// Fills `r` in the cause colour; an ambiguous section is faded and hatched.
pub fn paint_section(painter: &Painter, rect: Rect, cause: Cause, level: Option<Evidence>) {
    let base = cause_colour(cause);
    if level != Some(Evidence::Ambiguous) {
        painter.rect_filled(rect, 0.0, base);
        return;
    }
    painter.rect_filled(rect, 0.0, base.gamma_multiply(0.35));
    let painter = painter.with_clip_rect(rect.intersect(painter.clip_rect()));
    let height = rect.height();
    let mut x = rect.left() - height;
    while x < rect.right() {
        painter.line_segment(
            [
                egui::pos2(x, rect.bottom()),
                egui::pos2(x + height, rect.top()),
            ],
            Stroke::new(1.5, base),
        );
        x += 5.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_level_and_the_alternatives() {
        let alts = CauseSet::of(&[Cause::KvEviction, Cause::Uninstrumented]);
        assert_eq!(
            level_text(Evidence::Ambiguous, alts),
            "ambiguous: or KV eviction, uninstrumented"
        );
        assert_eq!(level_text(Evidence::Measured, CauseSet::EMPTY), "measured");
        assert_eq!(
            cause_text(
                Cause::Queue,
                Some(Evidence::Ambiguous),
                CauseSet::of(&[Cause::KvEviction])
            ),
            "queue · ambiguous (or KV eviction)"
        );
        assert_eq!(
            cause_text(Cause::Prefill, Some(Evidence::Inferred), CauseSet::EMPTY),
            "prefill · inferred"
        );
        assert_eq!(cause_text(Cause::Tool, None, CauseSet::EMPTY), "tool");
        assert_eq!(primary_mark(Some(Evidence::Ambiguous)), "?");
        assert_eq!(primary_mark(Some(Evidence::Measured)), "");
        assert_eq!(primary_mark(None), "");
    }

    #[test]
    fn every_level_has_a_distinct_badge_colour() {
        let mut seen = std::collections::HashSet::new();
        for e in Evidence::ALL {
            assert!(seen.insert(level_colour(e)), "{e}");
        }
    }
}
