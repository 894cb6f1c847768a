//! The per-tenant view's reads: where a key occurs, and each analysed trace's tenant,
//! duration and tokens.

use super::QueryError;
use crate::read::{opt, Columns};
use crate::Store;
use tailscope_model::samples::{KeyPresence, TenantTrace};

/// An attribute key safe to put in a JSON path and a string literal.
pub fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 200
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@".contains(c))
}

pub(crate) fn checked_key(key: &str) -> Result<&str, QueryError> {
    if valid_key(key) {
        Ok(key)
    } else {
        Err(QueryError::BadInput(format!(
            "'{key}' is not an attribute key (letters, digits and . _ - : / @)"
        )))
    }
}

/// Each trace's input and output tokens (`trace_id, i, o`): those of its innermost LLM
/// client calls ([`super::periods::innermost_llm_sql`]), over the local spans of the
/// traces in `traces` (a SQL set of trace ids; `None`: every trace). The one
/// definition of a trace's tokens for the per-tenant view, local or shared.
pub(crate) fn trace_tokens_sql(traces: Option<&str>) -> String {
    let pred = traces.map_or_else(|| "true".to_owned(), |t| format!("trace_id IN ({t})"));
    format!(
        "SELECT trace_id, sum(coalesce(input_tokens, 0))::BIGINT AS i, sum(coalesce(output_tokens, 0))::BIGINT AS o
         FROM ({}) GROUP BY trace_id",
        super::periods::innermost_llm_sql("input_tokens, output_tokens", &pred)
    )
}

impl Store {
    pub(super) fn key_presence_q(&self, key: &str) -> Result<KeyPresence, QueryError> {
        let key = checked_key(key)?;
        let on_spans: i64 = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM spans WHERE contains(attributes, '\"{key}\"')
                 AND json_extract_string(attributes, '$.\"{key}\"') IS NOT NULL LIMIT 1)"
            ),
            [],
            |r| r.get(0),
        )?;
        let on_resources: i64 = self.conn.query_row(
            "SELECT count(*) FROM resource_attributes WHERE key = ?",
            [key],
            |r| r.get(0),
        )?;
        Ok(KeyPresence {
            on_spans: on_spans > 0,
            on_resources: on_resources > 0,
        })
    }

    pub(super) fn tenant_traces_q(
        &self,
        key: Option<(&str, KeyPresence)>,
    ) -> Result<Vec<TenantTrace>, QueryError> {
        const NONE: &str = "SELECT NULL::VARCHAR AS trace_id, NULL::VARCHAR AS v WHERE false";
        let tenant_sql = match key {
            Some((k, at)) => {
                let k = checked_key(k)?;
                let spans = if at.on_spans {
                    format!(
                        "SELECT trace_id, min(json_extract_string(attributes, '$.\"{k}\"')) AS v
                         FROM spans WHERE contains(attributes, '\"{k}\"') GROUP BY trace_id"
                    )
                } else {
                    NONE.to_owned()
                };
                let resources = if at.on_resources {
                    format!(
                        "SELECT s.trace_id, min(a.value) AS v FROM spans s
                         JOIN resource_attributes a ON a.resource_id = s.resource_id AND a.key = '{k}'
                         GROUP BY s.trace_id"
                    )
                } else {
                    NONE.to_owned()
                };
                format!(
                    "SELECT trace_id, coalesce(min(sv.v), min(rv.v)) AS tenant
                     FROM ({spans}) sv FULL JOIN ({resources}) rv USING (trace_id) GROUP BY trace_id"
                )
            }
            None => "SELECT trace_id, split_part(route, ' ', 1) AS tenant FROM trace_analysis"
                .to_owned(),
        };
        let sql = format!(
            "WITH tenant AS ({tenant_sql}),
             tokens AS ({tokens})
             SELECT t.tenant, r.duration_ns::BIGINT AS duration_ns,
                    coalesce(k.i, 0)::BIGINT AS input_tokens, coalesce(k.o, 0)::BIGINT AS output_tokens
             FROM trace_analysis r LEFT JOIN tenant t USING (trace_id) LEFT JOIN tokens k USING (trace_id)
             ORDER BY r.duration_ns, r.trace_id",
            tokens = trace_tokens_sql(None)
        );
        let mut out = Vec::new();
        for b in self.query_arrow(&sql)? {
            let c = Columns::new(&b);
            let (tenant, d, i, o) = (
                c.str("tenant")?,
                c.i64("duration_ns")?,
                c.i64("input_tokens")?,
                c.i64("output_tokens")?,
            );
            for r in 0..b.num_rows() {
                out.push(TenantTrace {
                    tenant: opt(tenant, r, |r| tenant.value(r).to_owned()),
                    duration_ns: opt(d, r, |r| d.value(r)).unwrap_or(0),
                    input_tokens: i.value(r),
                    output_tokens: o.value(r),
                });
            }
        }
        Ok(out)
    }
}
