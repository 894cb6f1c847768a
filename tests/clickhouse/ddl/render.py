#!/usr/bin/env python3
"""Render the OpenTelemetry Collector ClickHouse exporter's DDL templates.

The templates in this folder are copied verbatim from opentelemetry-collector-contrib,
exporter/clickhouseexporter/internal/sqltemplates/ (Apache-2.0; see NOTICE). Upstream fills
them two ways, and this renderer does both the way the exporter does:

  * Go text/template (traces_*.sql.tmpl): {{ident .Database}}, {{.Engine}}, {{- if .X}} ...
    {{- else}} ... {{- end}}. `ident` wraps a name in backticks (embed.go: templateFuncs);
    `{{-` trims the whitespace before it (text/template semantics).
  * fmt.Sprintf with %s (metrics_*.sql.tmpl), arguments in the exporter's order:
    database, table, cluster clause, engine, TTL clause.

Defaults are the exporter's defaults: tables otel_traces / otel_traces_trace_id_ts(_mv) /
otel_metrics_{gauge,sum,histogram}, no cluster (ClusterString ""), engine MergeTree() and, for
the trace-id/timestamp lookup table, AggregatingMergeTree() (config.go
traceIDTsTableEngineString), no TTL (TTL ""). HasFullTextSearch is what the exporter derives
from the server version (>= 26.2 -> text indexes, else bloom_filter indexes); pass it.

Usage as a script: render.py DATABASE [--full-text-search|--bloom-filter] prints the statements,
separated by ';\\n\\n' lines, in the order the exporter runs them.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The exporter's default table names (config.go defaults).
TRACES_TABLE = "otel_traces"
METRICS_TABLE_PREFIX = "otel_metrics"

# exporter_traces.go versionFullTextSearch
FULL_TEXT_SEARCH_MIN_VERSION = (26, 2)


def ident(name):
    """embed.go templateFuncs["ident"]: backticks, embedded backticks escaped."""
    return "`" + name.replace("`", "\\`") + "`"


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render_go_template(text, data):
    """The subset of Go text/template the exporter's DDL uses: {{.X}}, {{ident .X}},
    {{if .X}}/{{else}}/{{end}} (not nested deeper than the templates need), and the
    {{- / -}} whitespace trimming."""
    out = []
    # stack of (emitting_before_this_if, this_branch_taken)
    stack = []
    emitting = True
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos:m.start()]
        if m.group(1) == "-":
            literal = literal.rstrip(" \t\r\n")
        if emitting:
            out.append(literal)
        pos = m.end()
        if m.group(3) == "-":
            # trim following whitespace
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
        action = m.group(2)
        if action.startswith("if "):
            cond = bool(data[action[3:].strip().lstrip(".")])
            stack.append((emitting, cond))
            emitting = emitting and cond
        elif action == "else":
            outer, cond = stack[-1]
            emitting = outer and not cond
        elif action == "end":
            emitting, _ = stack.pop()
        elif action.startswith("ident "):
            if emitting:
                out.append(ident(data[action[6:].strip().lstrip(".")]))
        elif action.startswith("."):
            if emitting:
                out.append(str(data[action[1:]]))
        else:
            raise ValueError("unsupported template action: {{%s}}" % action)
    out.append(text[pos:] if emitting else "")
    if stack:
        raise ValueError("unterminated {{if}}")
    return "".join(out)


def _read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def traces_statements(database, table=TRACES_TABLE, full_text_search=False,
                      cluster="", engine="MergeTree()", lookup_engine="AggregatingMergeTree()", ttl=""):
    """The three statements exporter_traces.go createTraceTables runs, in its order."""
    return [
        render_go_template(_read("traces_table.sql.tmpl"), {
            "Database": database, "TableName": table, "ClusterString": cluster,
            "Engine": engine, "TTL": ttl, "HasFullTextSearch": full_text_search}),
        render_go_template(_read("traces_id_ts_lookup_table.sql.tmpl"), {
            "Database": database, "TableName": table + "_trace_id_ts", "ClusterString": cluster,
            "Engine": lookup_engine, "TTL": ttl}),
        render_go_template(_read("traces_id_ts_lookup_mv.sql.tmpl"), {
            "Database": database, "ViewName": table + "_trace_id_ts_mv",
            "TableName": table + "_trace_id_ts", "SourceTableName": table, "ClusterString": cluster}),
    ]


def metrics_statements(database, prefix=METRICS_TABLE_PREFIX, cluster="", engine="MergeTree()", ttl=""):
    """Gauge, sum and histogram tables (fmt.Sprintf templates: db, table, cluster, engine, TTL)."""
    out = []
    for kind in ("gauge", "sum", "histogram"):
        tmpl = _read("metrics_%s_table.sql.tmpl" % kind)
        out.append(tmpl % (database, "%s_%s" % (prefix, kind), cluster, engine, ttl))
    return out


def database_statement(database):
    # internal/clickhouse.go CreateDatabase: CREATE DATABASE IF NOT EXISTS <db> <cluster>
    return "CREATE DATABASE IF NOT EXISTS %s" % ident(database)


def full_text_search_for(version):
    """The exporter's rule: proto.CheckMinVersion(26.2, server version)."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]]
    return tuple(parts) >= FULL_TEXT_SEARCH_MIN_VERSION


def all_statements(database, full_text_search=False):
    return ([database_statement(database)]
            + traces_statements(database, full_text_search=full_text_search)
            + metrics_statements(database))


if __name__ == "__main__":
    args = sys.argv[1:]
    fts = "--full-text-search" in args
    args = [a for a in args if not a.startswith("--")]
    if len(args) != 1:
        sys.exit("usage: render.py DATABASE [--full-text-search|--bloom-filter]")
    print(";\n\n".join(s.strip() for s in all_statements(args[0], fts)) + ";")
