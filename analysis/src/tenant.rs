//! The per-tenant view: traffic, tokens, latency and tail share per tenant, so one
//! noisy neighbour shows.
//!
//! A trace's tenant is the value of the tenant key on any of its spans (the smallest
//! when several differ), else on their resources. The key is the one asked for, else
//! the first of [`TENANT_KEYS`] the store has, else the root's `service.name`. Tokens
//! are those of the trace's innermost LLM client calls. The tail is the same cohort as
//! `compare`'s and the report's (the slowest traces from the percentile up, by rank).

use crate::cols::{opt_i64, Cols};
use crate::AnalysisError;
use serde::Serialize;
use std::fmt::Write;
use tailscope_store::Store;

/// Keys tried, in order, when no key is given.
pub const TENANT_KEYS: [&str; 5] = [
    "tenant.id",
    "tenant",
    "enduser.id",
    "user.id",
    "customer.id",
];

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct TenantOptions {
    /// The tail percentile (0 means the default, 99).
    pub percentile: f64,
    /// The attribute that names a tenant (default: the first of [`TENANT_KEYS`] found).
    pub key: Option<String>,
}

/// Every tenant's share of traffic, tokens and the tail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantView {
    /// The key tenants were read from (`service.name` when the store has no tenant key).
    pub key: String,
    pub percentile: f64,
    pub traces: usize,
    pub tail_traces: usize,
    /// Most tokens first.
    pub tenants: Vec<TenantRow>,
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRow {
    /// The tenant; `(none)` for traces without the key.
    pub tenant: String,
    pub traces: usize,
    /// Share of all traces.
    pub traffic_share: f64,
    pub tail_traces: usize,
    /// Share of the tail's traces.
    pub tail_share: f64,
    /// `tail_share / traffic_share`: above 1, the tenant is slow more often than others.
    pub lift: f64,
    pub p50_ns: i64,
    pub p99_ns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Share of all input and output tokens.
    pub token_share: f64,
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 200
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@".contains(c))
}

/// Where the store has `key`: on spans, on resources, or nowhere.
fn has_key(store: &Store, key: &str) -> Result<(bool, bool), AnalysisError> {
    let on_spans = crate::cols::scalar_i64(
        store,
        &format!(
            "SELECT count(*)::BIGINT FROM (SELECT 1 FROM spans WHERE contains(attributes, '\"{key}\"')
             AND json_extract_string(attributes, '$.\"{key}\"') IS NOT NULL LIMIT 1)"
        ),
    )?
    .unwrap_or(0)
        > 0;
    let on_resources = crate::cols::scalar_i64(
        store,
        &format!("SELECT count(*)::BIGINT FROM resource_attributes WHERE key = '{key}'"),
    )?
    .unwrap_or(0)
        > 0;
    Ok((on_spans, on_resources))
}

/// The per-tenant view over the stored analysis (run [`crate::update`] first).
pub fn tenants(store: &Store, opts: &TenantOptions) -> Result<TenantView, AnalysisError> {
    let percentile = if opts.percentile == 0.0 {
        99.0
    } else {
        opts.percentile
    };
    crate::Options { percentile }.check()?;
    let mut found = None;
    match &opts.key {
        Some(k) => {
            if !valid_key(k) {
                return Err(AnalysisError::BadInput(format!(
                    "'{k}' is not an attribute key (letters, digits and . _ - : / @)"
                )));
            }
            found = Some((k.clone(), has_key(store, k)?));
        }
        None => {
            for k in TENANT_KEYS {
                let (s, r) = has_key(store, k)?;
                if s || r {
                    found = Some((k.to_owned(), (s, r)));
                    break;
                }
            }
        }
    }
    let (key, tenant_sql) = match found {
        Some((k, (on_spans, on_resources))) => {
            let spans = if on_spans {
                format!(
                    "SELECT trace_id, min(json_extract_string(attributes, '$.\"{k}\"')) AS v
                     FROM spans WHERE contains(attributes, '\"{k}\"') GROUP BY trace_id"
                )
            } else {
                "SELECT NULL::VARCHAR AS trace_id, NULL::VARCHAR AS v WHERE false".to_owned()
            };
            let resources = if on_resources {
                format!(
                    "SELECT s.trace_id, min(a.value) AS v FROM spans s
                     JOIN resource_attributes a ON a.resource_id = s.resource_id AND a.key = '{k}'
                     GROUP BY s.trace_id"
                )
            } else {
                "SELECT NULL::VARCHAR AS trace_id, NULL::VARCHAR AS v WHERE false".to_owned()
            };
            (
                k,
                format!(
                    "SELECT trace_id, coalesce(min(sv.v), min(rv.v)) AS tenant
                     FROM ({spans}) sv FULL JOIN ({resources}) rv USING (trace_id) GROUP BY trace_id"
                ),
            )
        }
        None => (
            "service.name".to_owned(),
            "SELECT trace_id, split_part(route, ' ', 1) AS tenant FROM trace_analysis".to_owned(),
        ),
    };
    let n =
        crate::cols::scalar_i64(store, "SELECT count(*)::BIGINT FROM trace_analysis")?.unwrap_or(0);
    let n = usize::try_from(n).unwrap_or(0);
    let k =
        ((n as f64 * (100.0 - percentile) / 100.0).ceil() as usize).clamp(usize::from(n > 0), n);
    let t0 = n - k;
    let sql = format!(
        "WITH ranked AS (
             SELECT trace_id, duration_ns, row_number() OVER (ORDER BY duration_ns, trace_id) - 1 AS r
             FROM trace_analysis),
         tenant AS ({tenant_sql}),
         calls AS (SELECT trace_id, span_id, input_tokens, output_tokens FROM spans
                   WHERE op_class = 'llm' AND kind <> 'server'),
         wrappers AS (SELECT DISTINCT trace_id, parent_span_id AS span_id FROM spans
                      WHERE op_class = 'llm' AND kind <> 'server' AND parent_span_id IS NOT NULL),
         tokens AS (SELECT c.trace_id, sum(coalesce(c.input_tokens, 0)) AS i, sum(coalesce(c.output_tokens, 0)) AS o
                    FROM calls c ANTI JOIN wrappers w ON w.trace_id = c.trace_id AND w.span_id = c.span_id
                    GROUP BY c.trace_id)
         SELECT coalesce(t.tenant, '(none)') AS tenant, count(*)::BIGINT AS traces,
                (count(*) FILTER (WHERE r.r >= {t0}))::BIGINT AS tail,
                quantile_disc(r.duration_ns, 0.5)::BIGINT AS p50, quantile_disc(r.duration_ns, 0.99)::BIGINT AS p99,
                coalesce(sum(k.i), 0)::BIGINT AS input_tokens, coalesce(sum(k.o), 0)::BIGINT AS output_tokens
         FROM ranked r LEFT JOIN tenant t USING (trace_id) LEFT JOIN tokens k USING (trace_id)
         GROUP BY 1"
    );
    let mut rows = Vec::new();
    for b in store.query_arrow(&sql)? {
        let c = Cols(&b);
        let (tenant, traces, tail, p50, p99, input, output) = (
            c.str("tenant")?,
            c.i64("traces")?,
            c.i64("tail")?,
            c.i64("p50")?,
            c.i64("p99")?,
            c.i64("input_tokens")?,
            c.i64("output_tokens")?,
        );
        for i in 0..b.num_rows() {
            rows.push(TenantRow {
                tenant: tenant.value(i).to_owned(),
                traces: usize::try_from(traces.value(i)).unwrap_or(0),
                traffic_share: 0.0,
                tail_traces: usize::try_from(tail.value(i)).unwrap_or(0),
                tail_share: 0.0,
                lift: 0.0,
                p50_ns: opt_i64(p50, i).unwrap_or(0),
                p99_ns: opt_i64(p99, i).unwrap_or(0),
                input_tokens: input.value(i),
                output_tokens: output.value(i),
                token_share: 0.0,
            });
        }
    }
    let tokens: i64 = rows.iter().map(|r| r.input_tokens + r.output_tokens).sum();
    for r in &mut rows {
        r.traffic_share = r.traces as f64 / n.max(1) as f64;
        r.tail_share = r.tail_traces as f64 / k.max(1) as f64;
        r.lift = if r.traffic_share > 0.0 {
            r.tail_share / r.traffic_share
        } else {
            0.0
        };
        r.token_share = (r.input_tokens + r.output_tokens) as f64 / tokens.max(1) as f64;
    }
    rows.sort_by(|a, b| {
        (b.input_tokens + b.output_tokens)
            .cmp(&(a.input_tokens + a.output_tokens))
            .then(b.traces.cmp(&a.traces))
            .then(a.tenant.cmp(&b.tenant))
    });
    Ok(TenantView {
        key,
        percentile,
        traces: n,
        tail_traces: k,
        tenants: rows,
    })
}

fn tokens_text(n: i64) -> String {
    if n >= 10_000_000 {
        format!("{:.0}M", n as f64 / 1e6)
    } else if n >= 10_000 {
        format!("{:.0}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

impl TenantView {
    /// The readable table.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Per tenant ({}): {} traces, {} in the tail at p{}. Most tokens first; lift above 1: slow more often than its share of traffic.\n",
            self.key, self.traces, self.tail_traces, self.percentile
        );
        let _ = writeln!(
            o,
            "  {:<32} {:>7} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>6} {:>6}",
            "tenant",
            "traces",
            "traffic",
            "in tok",
            "out tok",
            "tokens",
            "p50",
            "p99",
            "tail",
            "lift"
        );
        for r in &self.tenants {
            let name: String = r.tenant.chars().take(32).collect();
            let _ = writeln!(
                o,
                "  {:<32} {:>7} {:>6.1}% {:>9} {:>9} {:>6.1}% {:>9} {:>9} {:>5.1}% {:>5.1}×",
                name,
                r.traces,
                r.traffic_share * 100.0,
                tokens_text(r.input_tokens),
                tokens_text(r.output_tokens),
                r.token_share * 100.0,
                crate::compare::secs(r.p50_ns),
                crate::compare::secs(r.p99_ns),
                r.tail_share * 100.0,
                r.lift
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_before_they_reach_sql() {
        assert!(valid_key("tenant.id") && valid_key("app.customer-id"));
        assert!(!valid_key("x'; DROP TABLE spans; --") && !valid_key("a\"b") && !valid_key(""));
        assert_eq!(tokens_text(12_345_678), "12M");
        assert_eq!(tokens_text(45_600), "46k");
        assert_eq!(tokens_text(999), "999");
    }
}
