//! One cause palette for every view, its legend, and number formatting.

use egui::Color32;
use tailscope_model::Cause;

/// The colour of a cause (the same in the waterfall, flame graph, bars and legend).
pub fn cause_colour(c: Cause) -> Color32 {
    match c {
        Cause::Preprocessing => Color32::from_rgb(0x8e, 0x7c, 0xc3),
        Cause::Retrieval => Color32::from_rgb(0x4e, 0x9f, 0xd1),
        Cause::PoolWait => Color32::from_rgb(0xe0, 0x6c, 0x3c),
        Cause::Db => Color32::from_rgb(0xb0, 0x8a, 0x4a),
        Cause::Queue => Color32::from_rgb(0xe8, 0xb0, 0x30),
        Cause::KvEviction => Color32::from_rgb(0xd6, 0x3a, 0x4a),
        Cause::Prefill => Color32::from_rgb(0x3c, 0xae, 0x8f),
        Cause::Decode => Color32::from_rgb(0x5b, 0x8c, 0x5a),
        Cause::Tool => Color32::from_rgb(0x62, 0x74, 0xc8),
        Cause::ToolColdStart => Color32::from_rgb(0xc8, 0x4f, 0xb0),
        Cause::Retry => Color32::from_rgb(0xa0, 0x40, 0x40),
        Cause::Network => Color32::from_rgb(0x6f, 0xa8, 0xb8),
        Cause::Uninstrumented => Color32::from_rgb(0x88, 0x88, 0x88),
        Cause::Other => Color32::from_rgb(0x6a, 0x6a, 0x78),
    }
}

/// A cause's colour, dimmed (spans off the critical path).
pub fn dimmed(c: Color32) -> Color32 {
    Color32::from_rgba_unmultiplied(c.r(), c.g(), c.b(), 110)
}

/// Human label of a cause.
pub fn cause_label(c: Cause) -> &'static str {
    match c {
        Cause::Preprocessing => "preprocessing",
        Cause::Retrieval => "retrieval",
        Cause::PoolWait => "pool wait",
        Cause::Db => "db",
        Cause::Queue => "queue",
        Cause::KvEviction => "KV eviction",
        Cause::Prefill => "prefill",
        Cause::Decode => "decode",
        Cause::Tool => "tool",
        Cause::ToolColdStart => "tool cold start",
        Cause::Retry => "retry",
        Cause::Network => "network",
        Cause::Uninstrumented => "uninstrumented",
        Cause::Other => "other",
    }
}

/// A coloured swatch and the cause name.
pub fn swatch(ui: &mut egui::Ui, c: Cause) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    ui.painter().rect_filled(rect, 2.0, cause_colour(c));
    ui.label(cause_label(c));
}

/// The cause legend (wraps).
pub fn legend(ui: &mut egui::Ui, causes: &[Cause]) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        for &c in causes {
            swatch(ui, c);
            ui.add_space(6.0);
        }
    });
}

/// A duration for people: 850 µs, 12.3 ms, 4.56 s.
pub fn dur(ns: i64) -> String {
    dur_f(ns as f64)
}

pub fn dur_f(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if a >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if a >= 1e3 {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A wall-clock time of day (UTC) from ns since the epoch.
pub fn clock(ns: i64) -> String {
    let s = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let day = s.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        (day / 60) % 60,
        day % 60,
        ms
    )
}

/// The first 8 hex digits of an id.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// An integer with thin thousands separators.
pub fn count(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(dur(1_500_000_000), "1.50 s");
        assert_eq!(dur(12_340_000), "12.3 ms");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-12), "-12");
        assert_eq!(clock(3_723_004_000_000), "01:02:03.004");
        assert_eq!(short("0123456789abcdef"), "01234567");
    }

    #[test]
    fn every_cause_has_a_distinct_colour() {
        let mut seen = std::collections::HashSet::new();
        for c in Cause::ALL {
            assert!(seen.insert(cause_colour(c)), "{c} shares a colour");
        }
    }
}
