//! Schema and migrations. Each migration is frozen SQL; the writer's column lists
//! (`columns.rs`) are checked against the migrated schema by a test.

use crate::StoreError;
use duckdb::Connection;

/// (version, description, SQL). Append new migrations; never edit an applied one.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial schema", V1),
    (2, "analysis results", V2),
    (3, "span attributes as JSON on spans", V3),
    (4, "async callers of traces", V4),
    (
        5,
        "cold starts, resends, output tokens and inherited conversations",
        V5,
    ),
    (6, "analysis runs and their ingest watermark", V6),
    (7, "canonical metric names for SQL, store recoveries", V7),
    (8, "the ingest log's loaded position", V8),
    (9, "evidence levels of causes and findings", V9),
    (10, "compact critical-path sections and span results", V10),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 10;

const V1: &str = r"
CREATE TABLE resources (
    resource_id BIGINT NOT NULL,
    service_name VARCHAR NOT NULL,
    attributes VARCHAR NOT NULL
);
CREATE TABLE resource_attributes (
    resource_id BIGINT NOT NULL,
    key VARCHAR NOT NULL,
    value_type VARCHAR NOT NULL,
    value VARCHAR,
    int_value BIGINT,
    double_value DOUBLE,
    bool_value BOOLEAN
);
CREATE TABLE spans (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    parent_span_id VARCHAR,
    trace_state VARCHAR,
    flags UINTEGER,
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    status_code VARCHAR NOT NULL,
    status_message VARCHAR,
    resource_id BIGINT NOT NULL,
    service_name VARCHAR NOT NULL,
    scope_name VARCHAR,
    scope_version VARCHAR,
    op_class VARCHAR NOT NULL,
    operation VARCHAR,
    model VARCHAR,
    provider VARCHAR,
    conversation_id VARCHAR,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cache_read_tokens BIGINT,
    cache_write_tokens BIGINT,
    stream BOOLEAN,
    time_to_first_chunk_ns BIGINT,
    queue_ns BIGINT,
    ttft_ns BIGINT,
    prefill_ns BIGINT,
    decode_ns BIGINT,
    inference_ns BIGINT,
    e2e_ns BIGINT,
    tool_name VARCHAR,
    tool_call_id VARCHAR,
    agent_name VARCHAR,
    data_source_id VARCHAR,
    mcp_method VARCHAR,
    mcp_session_id VARCHAR,
    db_system VARCHAR,
    db_operation VARCHAR,
    db_query_summary VARCHAR,
    db_pool_name VARCHAR,
    pool_wait_ns BIGINT,
    server_address VARCHAR,
    error_type VARCHAR,
    event_count INTEGER NOT NULL,
    link_count INTEGER NOT NULL,
    ingested_ns BIGINT NOT NULL
);
CREATE TABLE span_attributes (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value_type VARCHAR NOT NULL,
    value VARCHAR,
    int_value BIGINT,
    double_value DOUBLE,
    bool_value BOOLEAN
);
CREATE TABLE events (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    event_index INTEGER NOT NULL,
    time_ns BIGINT NOT NULL,
    name VARCHAR NOT NULL,
    attributes VARCHAR NOT NULL
);
CREATE TABLE links (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    linked_trace_id VARCHAR NOT NULL,
    linked_span_id VARCHAR NOT NULL,
    trace_state VARCHAR,
    attributes VARCHAR NOT NULL
);
CREATE TABLE metric_points (
    resource_id BIGINT NOT NULL,
    service_name VARCHAR NOT NULL,
    scope_name VARCHAR,
    name VARCHAR NOT NULL,
    description VARCHAR,
    unit VARCHAR,
    kind VARCHAR NOT NULL,
    temporality VARCHAR NOT NULL,
    monotonic BOOLEAN NOT NULL,
    start_ns BIGINT,
    time_ns BIGINT NOT NULL,
    attributes VARCHAR NOT NULL,
    value DOUBLE,
    count UBIGINT,
    sum DOUBLE,
    min DOUBLE,
    max DOUBLE,
    bucket_counts UBIGINT[],
    explicit_bounds DOUBLE[],
    quantiles VARCHAR,
    exemplars VARCHAR
);
CREATE TABLE logs (
    resource_id BIGINT NOT NULL,
    service_name VARCHAR NOT NULL,
    scope_name VARCHAR,
    time_ns BIGINT NOT NULL,
    observed_ns BIGINT NOT NULL,
    severity_number INTEGER NOT NULL,
    severity_text VARCHAR,
    body VARCHAR,
    trace_id VARCHAR,
    span_id VARCHAR,
    event_name VARCHAR,
    attributes VARCHAR NOT NULL
);
";

/// Results of `tailscope analyze`, replaced per trace on each run.
const V2: &str = r"
CREATE TABLE trace_analysis (
    trace_id VARCHAR NOT NULL,
    root VARCHAR NOT NULL,
    route VARCHAR NOT NULL,
    conversation_id VARCHAR,
    start_ns BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    primary_cause VARCHAR,
    orphans INTEGER NOT NULL,
    preprocessing_ns BIGINT NOT NULL,
    retrieval_ns BIGINT NOT NULL,
    pool_wait_ns BIGINT NOT NULL,
    db_ns BIGINT NOT NULL,
    queue_ns BIGINT NOT NULL,
    kv_eviction_ns BIGINT NOT NULL,
    prefill_ns BIGINT NOT NULL,
    decode_ns BIGINT NOT NULL,
    tool_ns BIGINT NOT NULL,
    tool_cold_start_ns BIGINT NOT NULL,
    retry_ns BIGINT NOT NULL,
    network_ns BIGINT NOT NULL,
    uninstrumented_ns BIGINT NOT NULL,
    other_ns BIGINT NOT NULL,
    analyzed_ns BIGINT NOT NULL
);
CREATE TABLE critical_path_sections (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    cause VARCHAR NOT NULL
);
CREATE TABLE span_analysis (
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    total_ns BIGINT NOT NULL,
    self_ns BIGINT NOT NULL,
    critical_ns BIGINT NOT NULL,
    skew_ns BIGINT NOT NULL,
    orphan BOOLEAN NOT NULL
);
CREATE TABLE findings (
    kind VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    conversation_id VARCHAR,
    estimated_cost_ns BIGINT NOT NULL,
    summary VARCHAR NOT NULL,
    evidence VARCHAR NOT NULL
);
";

/// Span attributes move into one JSON column of `spans` (one value per span instead of
/// one row per attribute: the long table capped ingest at a few thousand spans/s).
/// `span_attributes` stays queryable as a view over that column, plus the rows that
/// schema v1 and v2 wrote.
const V3: &str = r"
ALTER TABLE span_attributes RENAME TO span_attributes_v1;
ALTER TABLE spans ADD COLUMN attributes VARCHAR;
CREATE VIEW span_attributes AS
SELECT trace_id, span_id, key, value_type, value, int_value, double_value, bool_value
FROM span_attributes_v1
UNION ALL
SELECT s.trace_id, s.span_id, j.key,
       CASE json_type(j.value)
           WHEN 'VARCHAR' THEN 'string'
           WHEN 'BIGINT' THEN 'int'
           WHEN 'UBIGINT' THEN 'int'
           WHEN 'DOUBLE' THEN 'double'
           WHEN 'BOOLEAN' THEN 'bool'
           ELSE 'json'
       END AS value_type,
       CASE WHEN json_type(j.value) = 'VARCHAR' THEN j.value ->> '$' ELSE CAST(j.value AS VARCHAR) END AS value,
       CASE WHEN json_type(j.value) IN ('BIGINT', 'UBIGINT') THEN TRY_CAST(CAST(j.value AS VARCHAR) AS BIGINT) END AS int_value,
       CASE WHEN json_type(j.value) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST(CAST(j.value AS VARCHAR) AS DOUBLE) END AS double_value,
       CASE WHEN json_type(j.value) = 'BOOLEAN' THEN CAST(CAST(j.value AS VARCHAR) AS BOOLEAN) END AS bool_value
FROM spans s, json_each(s.attributes) j
WHERE s.attributes IS NOT NULL;
";

/// The span (in another trace) that started a trace asynchronously, from a link on
/// the trace's root: async sub-agents and background jobs tied to their caller.
const V4: &str = r"
ALTER TABLE trace_analysis ADD COLUMN caller_trace_id VARCHAR;
ALTER TABLE trace_analysis ADD COLUMN caller_span_id VARCHAR;
";

/// `faas.coldstart` and `http.request.resend_count`, promoted for the cold-start and
/// retry rules; a trace's output tokens (decode is judged per token); each span's
/// conversation as analysis sees it (its own, an ancestor's or a linked span's).
const V5: &str = r"
ALTER TABLE spans ADD COLUMN cold_start BOOLEAN;
ALTER TABLE spans ADD COLUMN resend_count BIGINT;
ALTER TABLE trace_analysis ADD COLUMN output_tokens BIGINT;
ALTER TABLE span_analysis ADD COLUMN conversation_id VARCHAR;
";

/// One row per completed analysis run. `watermark_ns` is the largest `ingested_ns`
/// the run had seen: every span stamped at or below it is analysed (stamps rise in
/// commit order), so the next run recomputes only traces with spans above it.
/// `fits` is the latency model and tool baselines the run used (JSON) and
/// `fit_calls` the LLM calls they were fitted over, so that a later run can reuse
/// them while the store has not grown much. A store analysed before v6 starts from
/// its newest `analyzed_ns` (the wall clock when that run started, a safe watermark).
const V6: &str = r"
CREATE TABLE analysis_runs (
    finished_ns BIGINT NOT NULL,
    watermark_ns BIGINT NOT NULL,
    recomputed BIGINT NOT NULL,
    reused BIGINT NOT NULL,
    seconds DOUBLE NOT NULL,
    fits VARCHAR,
    fit_calls BIGINT
);
INSERT INTO analysis_runs
SELECT max(analyzed_ns), max(analyzed_ns), 0, count(*), 0, NULL, NULL FROM trace_analysis HAVING count(*) > 0;
";

/// The canonical GPU / inference-server metric names of `model::gpu_metrics`, visible
/// to SQL. `metric_names` (every source name with its canonical metric) and
/// `metric_units` (unit -> canonical unit factors) are filled from the Rust tables at
/// every open (`sync_metric_names`), so a newer build's names reach an older file.
/// `canonical_metric_points` reads every stored point of a known name under its
/// canonical name: gauges in the canonical unit (`value`), counters as stored
/// (`cumulative`; their rate is the difference over time, resets aside).
/// `store_recoveries` logs each time a damaged write-ahead log was cut back on open.
const V7: &str = r"
CREATE TABLE metric_names (
    name VARCHAR NOT NULL,
    canonical VARCHAR NOT NULL,
    canonical_unit VARCHAR NOT NULL,
    default_unit VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    shape VARCHAR NOT NULL
);
CREATE TABLE metric_units (
    unit VARCHAR NOT NULL,
    canonical_unit VARCHAR NOT NULL,
    factor DOUBLE NOT NULL
);
CREATE VIEW canonical_metric_points AS
SELECT n.canonical, n.canonical_unit AS unit, n.shape, n.origin, m.name AS source_name,
       m.resource_id, m.service_name, m.start_ns, m.time_ns, m.attributes,
       CASE WHEN n.shape = 'gauge' THEN m.value * u.factor END AS value,
       CASE WHEN n.shape = 'counter' THEN m.value END AS cumulative
FROM metric_points m
JOIN metric_names n ON m.name = n.name
LEFT JOIN metric_units u
  ON u.canonical_unit = n.canonical_unit
 AND u.unit = coalesce(nullif(trim(m.unit), ''), n.default_unit);
CREATE TABLE store_recoveries (
    at_ns BIGINT NOT NULL,
    what VARCHAR NOT NULL,
    wal_bytes BIGINT NOT NULL,
    kept_bytes BIGINT NOT NULL,
    set_aside VARCHAR
);
";

/// Units a metric point may carry, tried against each canonical unit.
const UNITS: &[&str] = &[
    "",
    "1",
    "ratio",
    "%",
    "percent",
    "By",
    "B",
    "bytes",
    "KiB",
    "MiB",
    "GiB",
    "kB",
    "KB",
    "MB",
    "GB",
    "W",
    "mW",
    "kW",
    "Hz",
    "kHz",
    "MHz",
    "GHz",
    "Cel",
    "C",
    "°C",
    "{request}",
];

/// Makes `metric_names` and `metric_units` match this build's tables (a no-op when
/// they do).
pub(crate) fn sync_metric_names(conn: &Connection) -> Result<(), StoreError> {
    use tailscope_model::gpu_metrics::{convert, lookup, Shape, CANONICAL, SOURCES};
    let mut names: Vec<String> = Vec::new();
    for s in SOURCES {
        if let Some((_, c)) = lookup(s.name) {
            let shape = match c.shape {
                Shape::Gauge => "gauge",
                Shape::Counter => "counter",
            };
            names.push(format!(
                "('{}', '{}', '{}', '{}', '{}', '{shape}')",
                s.name.replace('\'', "''"),
                c.name,
                c.unit,
                s.default_unit.replace('\'', "''"),
                s.origin.as_str()
            ));
        }
    }
    let mut units: Vec<String> = Vec::new();
    let mut canonical_units: Vec<&str> = CANONICAL.iter().map(|c| c.unit).collect();
    canonical_units.sort_unstable();
    canonical_units.dedup();
    for cu in canonical_units {
        for u in UNITS {
            if let Some(f) = convert(1.0, u, cu) {
                units.push(format!("('{}', '{cu}', {f:e})", u.replace('\'', "''")));
            }
        }
    }
    let have: (i64, i64) = conn.query_row(
        "SELECT (SELECT count(*) FROM metric_names), (SELECT count(*) FROM metric_units)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let want = (names.len() as i64, units.len() as i64);
    if have == want {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN TRANSACTION;
         DELETE FROM metric_names; DELETE FROM metric_units;
         INSERT INTO metric_names VALUES {};
         INSERT INTO metric_units VALUES {};
         COMMIT;",
        names.join(", "),
        units.join(", ")
    ))?;
    Ok(())
}

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per migration.
/// Refuses a file written by a newer tailscope rather than guessing.
pub(crate) fn migrate(conn: &Connection) -> Result<i32, StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies migrations up to `target` (older targets only for tests).
pub(crate) fn migrate_to(conn: &Connection, target: i32) -> Result<i32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER NOT NULL,
            description VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );",
    )?;
    let current: i32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, description, sql) in MIGRATIONS {
        if *version <= current || *version > target {
            continue;
        }
        conn.execute_batch("BEGIN TRANSACTION")?;
        let applied = conn.execute_batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                duckdb::params![version, description],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                // The original error is what matters; a failed rollback adds nothing.
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::Migration {
                    version: *version,
                    source: e,
                });
            }
        }
    }
    Ok(target.min(SCHEMA_VERSION))
}

/// `ingest_log` holds, in one row, the sequence number of the last ingest-log frame
/// loaded into the tables (`ingestlog.rs`). It is updated in the transaction that
/// loads the frame, so a frame is loaded exactly once across crashes.
const V8: &str = r"
CREATE TABLE ingest_log (loaded_seq BIGINT NOT NULL);
INSERT INTO ingest_log VALUES (0);
";

/// How each cause is known (design.md evidence levels): per critical-path section and
/// finding, `evidence` / `evidence_level` (measured, inferred, ambiguous) and the
/// `alternatives` that explain it about as well (cause names joined by commas); per
/// trace, its time on ambiguous sections and each cause's level as JSON, and its LLM
/// calls' uncached input tokens (prefill is judged per token, as decode is). Results
/// stored before have none, so the run log is cleared: the next run recomputes all.
const V9: &str = r"
ALTER TABLE trace_analysis ADD COLUMN ambiguous_ns BIGINT;
ALTER TABLE trace_analysis ADD COLUMN cause_evidence VARCHAR;
ALTER TABLE trace_analysis ADD COLUMN uncached_tokens BIGINT;
ALTER TABLE critical_path_sections ADD COLUMN evidence VARCHAR;
ALTER TABLE critical_path_sections ADD COLUMN alternatives VARCHAR;
ALTER TABLE findings ADD COLUMN evidence_level VARCHAR;
ALTER TABLE findings ADD COLUMN alternatives VARCHAR;
DELETE FROM analysis_runs;
";

/// The cause names in code order (`Cause as u8`, design.md's order) as a DuckDB list,
/// frozen at v10: a new cause takes a migration that replaces the views below.
macro_rules! v10_causes {
    () => {
        "['preprocessing', 'retrieval', 'pool_wait', 'db', 'queue', 'kv_eviction', 'prefill', 'decode', 'tool', 'tool_cold_start', 'retry', 'network', 'uninstrumented', 'other']"
    };
}
pub(crate) use v10_causes;

/// `critical_path_sections` rows (text ids and names, as before v10) of `$src` as
/// `path_sections` rows; rows whose ids or cause do not parse are left out.
macro_rules! sections_from_text {
    ($src:literal) => {
        concat!(
            "SELECT trace_id::UUID, ('0x' || span_id)::UBIGINT, start_ns, end_ns,
       list_position(", $crate::schema::v10_causes!(), ", cause) - 1,
       coalesce(list_position(['measured', 'inferred', 'ambiguous'], evidence), 4) - 1,
       coalesce(list_sum(list_transform(string_split(coalesce(alternatives, ''), ','),
           lambda x: 1 << (list_position(", $crate::schema::v10_causes!(), ", trim(x)) - 1))), 0)
FROM ", $src, "
WHERE TRY_CAST(trace_id AS UUID) IS NOT NULL AND TRY_CAST('0x' || span_id AS UBIGINT) IS NOT NULL
  AND list_position(", $crate::schema::v10_causes!(), ", cause) IS NOT NULL"
        )
    };
}
pub(crate) use sections_from_text;

/// `span_analysis` rows (text ids, as before v10) of `$src` as `span_times` rows.
macro_rules! spans_from_text {
    ($src:literal) => {
        concat!(
            "SELECT trace_id::UUID, ('0x' || span_id)::UBIGINT, total_ns, self_ns, critical_ns,
       skew_ns, orphan, conversation_id
FROM ", $src, "
WHERE TRY_CAST(trace_id AS UUID) IS NOT NULL AND TRY_CAST('0x' || span_id AS UBIGINT) IS NOT NULL"
        )
    };
}
pub(crate) use spans_from_text;

/// Critical-path sections and per-span results in compact tables (issue 25): ids as
/// UUID (trace) and UBIGINT (span), the cause and evidence as codes (evidence 3: a
/// section stored before levels), the alternatives as a bit set (bit `Cause as u16`).
/// Written with hex ids and names they cost about four times as much (DuckDB
/// compressing millions of random strings at commit). The old tables are moved over,
/// and `critical_path_sections` and `span_analysis` stay as views with the old
/// columns, so SQL, export and the shared results read them as before.
const V10: &str = concat!(
    "CREATE TABLE path_sections (
    trace_id UUID NOT NULL,
    span_id UBIGINT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    cause UTINYINT NOT NULL,
    evidence UTINYINT NOT NULL,
    alternatives USMALLINT NOT NULL
);
CREATE TABLE span_times (
    trace_id UUID NOT NULL,
    span_id UBIGINT NOT NULL,
    total_ns BIGINT NOT NULL,
    self_ns BIGINT NOT NULL,
    critical_ns BIGINT NOT NULL,
    skew_ns BIGINT NOT NULL,
    orphan BOOLEAN NOT NULL,
    conversation_id VARCHAR
);
INSERT INTO path_sections ",
    sections_from_text!("critical_path_sections"),
    ";
INSERT INTO span_times ",
    spans_from_text!("span_analysis"),
    ";
DROP TABLE critical_path_sections;
DROP TABLE span_analysis;
CREATE VIEW critical_path_sections AS
SELECT replace(trace_id::VARCHAR, '-', '') AS trace_id, printf('%016x', span_id) AS span_id,
       start_ns, end_ns, ",
    v10_causes!(),
    "[cause + 1] AS cause,
       ['measured', 'inferred', 'ambiguous', ''][evidence + 1] AS evidence,
       array_to_string(list_filter(",
    v10_causes!(),
    ", lambda x, i: (alternatives >> (i - 1)) & 1 = 1), ',') AS alternatives
FROM path_sections;
CREATE VIEW span_analysis AS
SELECT replace(trace_id::VARCHAR, '-', '') AS trace_id, printf('%016x', span_id) AS span_id,
       total_ns, self_ns, critical_ns, skew_ns, orphan, conversation_id
FROM span_times;
"
);

/// The cause list of v10, for the test that it is this build's.
#[cfg(test)]
const V10_CAUSES: &str = v10_causes!();

#[cfg(test)]
mod v10_tests {
    use super::*;
    use tailscope_model::Cause;

    /// The codes v10 stores are `Cause as u8`, and its list of names is this build's.
    #[test]
    fn cause_codes_are_this_builds() {
        let names: Vec<String> = Cause::ALL
            .iter()
            .map(|c| format!("'{}'", c.as_str()))
            .collect();
        assert_eq!(V10_CAUSES, format!("[{}]", names.join(", ")));
        for (k, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(*c as usize, k);
        }
    }

    /// Sections and span rows of a v9 store read back the same through v10's views.
    #[test]
    fn v9_results_move_to_the_compact_tables() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, 9).unwrap();
        conn.execute_batch(
            "INSERT INTO critical_path_sections VALUES
               ('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 10, 20, 'kv_eviction', 'ambiguous', 'queue,kv_eviction'),
               ('0af7651916cd43dd8448eb211c80319c', 'ffffffffffffffff', 20, 30, 'decode', '', ''),
               ('0af7651916cd43dd8448eb211c80319c', '00f067aa0ba902b7', 30, 40, 'decode', NULL, NULL),
               ('not-a-trace', 'b7ad6b7169203331', 1, 2, 'db', 'measured', ''),
               ('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 1, 2, 'no_such_cause', 'measured', '');
             INSERT INTO span_analysis VALUES
               ('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 5, 4, 3, 0, false, 'conv-1'),
               ('0af7651916cd43dd8448eb211c80319c', '00f067aa0ba902b7', 9, 9, 0, 1, true, NULL);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let rows = |sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            let out = stmt
                .query_map([], |r| {
                    let n = r.as_ref().column_count();
                    Ok((0..n)
                        .map(|k| match r.get_ref(k).unwrap() {
                            duckdb::types::ValueRef::Null => "NULL".to_owned(),
                            duckdb::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                            v => format!("{v:?}"),
                        })
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            out
        };
        assert_eq!(
            rows("SELECT * FROM critical_path_sections ORDER BY start_ns"),
            vec![
                "0af7651916cd43dd8448eb211c80319c|b7ad6b7169203331|BigInt(10)|BigInt(20)|kv_eviction|ambiguous|queue,kv_eviction",
                "0af7651916cd43dd8448eb211c80319c|ffffffffffffffff|BigInt(20)|BigInt(30)|decode||",
                "0af7651916cd43dd8448eb211c80319c|00f067aa0ba902b7|BigInt(30)|BigInt(40)|decode||",
            ]
        );
        assert_eq!(
            rows("SELECT * FROM span_analysis ORDER BY total_ns"),
            vec![
                "0af7651916cd43dd8448eb211c80319c|b7ad6b7169203331|BigInt(5)|BigInt(4)|BigInt(3)|BigInt(0)|Boolean(false)|conv-1",
                "0af7651916cd43dd8448eb211c80319c|00f067aa0ba902b7|BigInt(9)|BigInt(9)|BigInt(0)|BigInt(1)|Boolean(true)|NULL",
            ]
        );
    }
}
