//! Typed, named access to the columns of the Arrow batches our own SQL returns
//! (compare, diff, tenants). DuckDB gives VARCHAR, BIGINT, DOUBLE and lists as
//! Utf8, Int64, Float64 and List; the queries cast to those types.

use crate::AnalysisError;
use tailscope_store::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, ListArray, StringArray,
};
use tailscope_store::arrow::datatypes::{Float64Type, Int64Type};
use tailscope_store::RecordBatch;

fn schema_err(what: String) -> AnalysisError {
    AnalysisError::Store(tailscope_store::StoreError::Schema(what))
}

pub(crate) struct Cols<'a>(pub(crate) &'a RecordBatch);

impl<'a> Cols<'a> {
    fn col(&self, name: &str) -> Result<&'a dyn Array, AnalysisError> {
        self.0
            .column_by_name(name)
            .map(AsRef::as_ref)
            .ok_or_else(|| schema_err(format!("result has no column {name}")))
    }

    pub(crate) fn str(&self, name: &str) -> Result<&'a StringArray, AnalysisError> {
        self.col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| schema_err(format!("column {name} is not VARCHAR")))
    }

    pub(crate) fn i64(&self, name: &str) -> Result<&'a Int64Array, AnalysisError> {
        self.col(name)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| schema_err(format!("column {name} is not BIGINT")))
    }

    pub(crate) fn f64(&self, name: &str) -> Result<&'a Float64Array, AnalysisError> {
        self.col(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| schema_err(format!("column {name} is not DOUBLE")))
    }

    pub(crate) fn list(&self, name: &str) -> Result<&'a ListArray, AnalysisError> {
        self.col(name)?
            .as_list_opt::<i32>()
            .ok_or_else(|| schema_err(format!("column {name} is not a LIST")))
    }
}

/// The value at `i`, `None` when null.
pub(crate) fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn opt_f64(a: &Float64Array, i: usize) -> Option<f64> {
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// The single BIGINT of a one-row, one-column result (0 when empty or null).
pub(crate) fn scalar_i64(
    store: &tailscope_store::Store,
    sql: &str,
) -> Result<Option<i64>, AnalysisError> {
    for b in store.query_arrow(sql)? {
        if b.num_rows() > 0 {
            let a = b
                .column(0)
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| schema_err(format!("not a BIGINT: {sql}")))?;
            return Ok(opt_i64(a, 0));
        }
    }
    Ok(None)
}

pub(crate) use tailscope_analysis_core::hash::FastMap;
