//! Two periods compared (`tailscope diff`): the headline and each metric's change.

/// Two periods compared (`tailscope diff`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiffVm {
    /// The periods as the form shows them (`FROM..TO`, RFC 3339).
    pub before_text: String,
    pub after_text: String,
    pub before_traces: u64,
    pub after_traces: u64,
    /// The stored span start range `[from, to)`.
    pub range_ns: (i64, i64),
    pub headline: String,
    /// Significant first, largest first.
    pub changes: Vec<ChangeVm>,
    /// The confidence of the intervals (e.g. 0.99).
    pub confidence: f64,
}

/// One metric of one group before and after.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeVm {
    /// `route`, `operation` or `llm`.
    pub scope: String,
    /// What it is about: `service · operation`, or `model @ server`.
    pub subject: String,
    pub metric: String,
    /// Values as a person reads them (`1.20 s`, `42.0 ms/token`).
    pub before: String,
    pub after: String,
    /// `after / before − 1`.
    pub change: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub significant: bool,
    pub n_before: u64,
    pub n_after: u64,
}
