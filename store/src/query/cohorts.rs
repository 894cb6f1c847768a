//! What compare reads: the cohorts' traces by rank, every span of them, and the
//! resources' attributes; and the rows the report's tail tables are computed from.

use super::QueryError;
use crate::read::{opt, Columns};
use crate::{Store, StoreError, CAUSE_COLUMNS};
use duckdb::arrow::record_batch::RecordBatch;
use tailscope_model::samples::{CohortRanks, CohortSpan, CohortTrace};

/// One analysed trace, for the tail tables: its group keys, duration and per-cause
/// critical-path time (`None`: the column is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct TailRow {
    pub route: Option<String>,
    pub conversation_id: Option<String>,
    pub duration_ns: i64,
    pub by_cause_ns: [Option<i64>; CAUSE_COLUMNS.len()],
}

/// The ranked traces and the predicate of the cohort `c` (a SQL `WITH` prefix).
fn cohort_sql(c: &CohortRanks) -> String {
    let (t0, lo, hi, p50) = (c.tail_from, c.band_from, c.band_to, c.p50);
    format!(
        "WITH ranked AS (
             SELECT trace_id, route, duration_ns,
                    row_number() OVER (ORDER BY duration_ns, trace_id) - 1 AS r
             FROM trace_analysis),
         cohort AS (SELECT * FROM ranked WHERE r >= {t0} OR (r >= {lo} AND r < {hi}) OR r = {p50})"
    )
}

/// Calls `visit` for each row of `batches` as a [`CohortSpan`].
fn visit_rows(
    batches: &[RecordBatch],
    mut visit: impl FnMut(CohortSpan<'_>),
) -> Result<(), QueryError> {
    for b in batches {
        let c = Columns::new(b);
        let (r, res, name, status, attrs) = (
            c.i64("r")?,
            c.i64("resource_id")?,
            c.str("name")?,
            c.str("status_code")?,
            c.str("attributes")?,
        );
        for i in 0..b.num_rows() {
            visit(CohortSpan {
                rank: usize::try_from(r.value(i)).unwrap_or(usize::MAX),
                resource_id: res.value(i),
                name: name.value(i),
                error: opt(status, i, |i| status.value(i) == "error").unwrap_or(false),
                attributes: opt(attrs, i, |i| attrs.value(i)),
            });
        }
    }
    Ok(())
}

impl Store {
    pub(super) fn cohort_traces_q(&self, c: &CohortRanks) -> Result<Vec<CohortTrace>, QueryError> {
        let mut out = Vec::new();
        for b in self.query_arrow(&format!(
            "{} SELECT r::BIGINT AS r, duration_ns::BIGINT AS d, route FROM cohort ORDER BY r",
            cohort_sql(c)
        ))? {
            let cols = Columns::new(&b);
            let (r, d, route) = (cols.i64("r")?, cols.i64("d")?, cols.str("route")?);
            for i in 0..b.num_rows() {
                out.push(CohortTrace {
                    rank: usize::try_from(r.value(i)).unwrap_or(usize::MAX),
                    duration_ns: opt(d, i, |i| d.value(i)).unwrap_or(0),
                    route: opt(route, i, |i| route.value(i).to_owned()).unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    pub(super) fn cohort_spans_q<S: Send>(
        &self,
        c: &CohortRanks,
        states: &mut [S],
        visit: &(impl Fn(&mut S, CohortSpan<'_>) + Sync),
    ) -> Result<(), QueryError> {
        let batches = self.query_arrow(&format!(
            "{} SELECT c.r::BIGINT AS r, s.resource_id::BIGINT AS resource_id, s.name, s.status_code, s.attributes
             FROM spans s JOIN cohort c USING (trace_id)",
            cohort_sql(c)
        ))?;
        if states.is_empty() {
            return Ok(());
        }
        let per = batches.len().div_ceil(states.len()).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = batches
                .chunks(per)
                .zip(states.iter_mut())
                .map(|(part, state)| scope.spawn(move || visit_rows(part, |row| visit(state, row))))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(QueryError::BadInput("a span reader panicked".to_owned()))
                })
            })
        })
    }

    pub(super) fn resource_attributes_q(&self) -> Result<Vec<(i64, String, String)>, QueryError> {
        let mut out = Vec::new();
        for b in self.query_arrow(
            "SELECT resource_id::BIGINT AS resource_id, key, coalesce(value, '') AS value FROM resource_attributes",
        )? {
            let c = Columns::new(&b);
            let (id, k, v) = (c.i64("resource_id")?, c.str("key")?, c.str("value")?);
            for i in 0..b.num_rows() {
                out.push((id.value(i), k.value(i).to_owned(), v.value(i).to_owned()));
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Every `trace_analysis` row with a duration, by ascending duration (ties by trace
    /// id): what the tail tables are computed from.
    pub fn tail_rows(&self) -> Result<Vec<TailRow>, StoreError> {
        let causes = CAUSE_COLUMNS
            .map(|c| format!("{c}_ns::BIGINT AS {c}"))
            .join(", ");
        let mut out = Vec::new();
        for b in self.query_arrow(&format!(
            "SELECT route, conversation_id, duration_ns::BIGINT AS d, {causes} FROM trace_analysis
             WHERE duration_ns IS NOT NULL ORDER BY duration_ns, trace_id"
        ))? {
            let c = Columns::new(&b);
            let (route, conv, d) = (c.str("route")?, c.str("conversation_id")?, c.i64("d")?);
            let cols = c.i64s(CAUSE_COLUMNS)?;
            out.reserve(b.num_rows());
            for i in 0..b.num_rows() {
                let mut by_cause_ns = [None; CAUSE_COLUMNS.len()];
                for (v, col) in by_cause_ns.iter_mut().zip(&cols) {
                    *v = opt(*col, i, |i| col.value(i));
                }
                out.push(TailRow {
                    route: opt(route, i, |i| route.value(i).to_owned()),
                    conversation_id: opt(conv, i, |i| conv.value(i).to_owned()),
                    duration_ns: d.value(i),
                    by_cause_ns,
                });
            }
        }
        Ok(out)
    }
}
