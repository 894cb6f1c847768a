//! The SQL console's result.

/// A SQL console result (cells already formatted).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlResult {
    pub sql: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub truncated: bool,
    pub elapsed_ms: f64,
}
