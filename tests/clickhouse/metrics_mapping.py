#!/usr/bin/env python3
"""Reference implementation of the OpenTelemetry Collector ClickHouse exporter's METRICS mapping.

What an OTLP metric data point becomes in otel_metrics_gauge / otel_metrics_sum /
otel_metrics_histogram when the Collector's `clickhouse` exporter writes it, re-implemented
field by field in Python (the span side is mapping.py, whose AnyValue/AsString helpers this
reuses), so what tailscope reads or writes can be checked row for row without the Collector.

Written from (opentelemetry-collector-contrib, Apache-2.0), folder
exporter/clickhouseexporter/internal/metrics/ (the newest stored versions we could read; the
index does not order commits, so "newest" is judged from the code: the driver.Conn +
batch.Append + ordered-map version, with the lint-era `appendErr`/`closeErr` names):
  gauge_metrics.go      @ 404f0681642cf4b1528591346d38d8a6cf0dbc8e
  sum_metrics.go        @ c5701040398906613c00301432b7943f9d2387d7
                          (1c7d775d570f02d91bf4a0689f5f65d93ec2a11b: same Append)
  histogram_metrics.go  @ 57b29d74154d72320747c8dd2a0b4a1629a39187
                          (071a999c43acbcd6536958f03bef6ff21d4fd519: same Append)
  metrics_model.go      @ 054bd016347847a45932bd593540836fd0004c7c (semconv v1.38.0; its
                          MetricsModel.Add takes the pmetric.Metric and reads Name() /
                          Description() / Unit() itself; older ones got them as arguments:
                          same values) -- convertExemplars, getValue, AttributesToMap,
                          GetServiceName, convertSliceToArraySet
  exporter_metrics.go   @ 0769c47853cf14dfa0fc46af120275906eff489d (pushMetricsData: the
                          iteration and the per-type switch)
  internal/sql_templates/metrics_{gauge,sum,histogram}_insert.sql
                        @ cd1a250122ef040ce6747acaa7293f223ee20192 (the INSERT column lists;
                          the same files under internal/sqltemplates/ were not in the index)
The tables are the ones load.py creates: ddl/metrics_*_table.sql.tmpl rendered by
ddl/render.py (commits in ddl/NOTICE), the Map-typed (non-JSON) flavour, MergeTree().

Iteration (pushMetricsData): resourceMetrics in order -> scopeMetrics in order -> metrics in
order; each metric goes to its type's model (Add), each model then appends one row per data
point in that order (insert). A metric whose data is unset (pmetric.MetricTypeEmpty: none of
gauge/sum/histogram/exponentialHistogram/summary) fails the WHOLE push ("metrics type is
unset"): nothing of that request is written. map_request reports that as `rejected`.

Exponential histograms and summaries go to otel_metrics_exponential_histogram and
otel_metrics_summary in the exporter. This harness (render.py / load.py) does not create those
two tables, so their points are counted (`exp_histogram_points`, `summary_points`) and not
mapped to rows.

Field by field (column: value), in the INSERT column order of each table:
  ResourceAttributes    resource attributes, AttributesToMap (every pair, in order, value
                        through pcommon Value.AsString(): mapping.attributes_to_map)
  ResourceSchemaUrl     resourceMetrics.schemaUrl
  ScopeName             scope.name
  ScopeVersion          scope.version
  ScopeAttributes       scope.attributes, AttributesToMap
  ScopeDroppedAttrCount scope.droppedAttributesCount (UInt32)
  ScopeSchemaUrl        scopeMetrics.schemaUrl
  ServiceName           GetServiceName: resource "service.name" (first match) AsString(), "" if absent
  MetricName            metric.name
  MetricDescription     metric.description
  MetricUnit            metric.unit ("" when absent, as in the prometheus receiver's output)
  Attributes            dataPoint.attributes, AttributesToMap
  StartTimeUnix         dataPoint.startTimeUnixNano .AsTime() (0 -> 1970-01-01, not NULL)
  TimeUnix              dataPoint.timeUnixNano .AsTime()
 gauge, sum:
  Value                 getValue: asDouble as is; asInt -> float64(int64) (IEEE round to
                        nearest even, like Python's float(int)); neither -> 0.0
  Flags                 uint32(dataPoint.flags)
  Exemplars.FilteredAttributes / .TimeUnix / .Value / .SpanId / .TraceId
                        convertExemplars, one entry per exemplar in order: AttributesToMap,
                        timeUnixNano, getValue (asInt -> float64), hex.EncodeToString of the 8 /
                        16 id bytes -- NOT the traces' "or empty" helper: an absent or zero id is
                        "0000000000000000" / "00000000000000000000000000000000"
 sum only:
  AggregationTemporality int32(sum.aggregationTemporality): 0 unspecified, 1 delta, 2 cumulative
  IsMonotonic           sum.isMonotonic
 histogram (its INSERT order: ..., TimeUnix, Count, Sum, BucketCounts, ExplicitBounds,
 Exemplars.*, Flags, Min, Max, AggregationTemporality):
  Count                 dataPoint.count (UInt64)
  Sum                   dataPoint.sum; pdata's Sum() is 0 when unset (optional field)
  BucketCounts          dataPoint.bucketCounts (Array(UInt64)), [] when none
  ExplicitBounds        dataPoint.explicitBounds (Array(Float64)), [] when none
  Min / Max             dataPoint.min / .max; 0 when unset (HasMin/HasMax are not consulted)
  AggregationTemporality int32(histogram.aggregationTemporality)

Times and the table flavour: gauge and histogram have DateTime64(9) columns (exact ns). The sum
table's template (metrics_sum_table.sql @ 0d21cdd3, what render.py creates) has
`StartTimeUnix DateTime`, `TimeUnix DateTime` and `Exemplars.TimeUnix DateTime`: whole seconds.
clickhouse-go (ch-go proto.ToDateTime) writes uint32(t.Unix()): the seconds, floored, mod 2^32.
This module reads each column's type from the same render (ddl_columns) and stores what the
column keeps, so the rows here equal what ClickHouse holds. Rows carry times as integer ns.

Input: OTLP/JSON as the Collector's file exporter writes it, one request per line; lines
without resourceMetrics (spans) are skipped. int64/uint64 values are strings, enums numbers.
"""
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "ddl"))

import mapping  # noqa: E402
import render  # noqa: E402

KINDS = ("gauge", "sum", "histogram")
TABLES = {k: "%s_%s" % (render.METRICS_TABLE_PREFIX, k) for k in KINDS}

_COMMON = [
    "ResourceAttributes", "ResourceSchemaUrl", "ScopeName", "ScopeVersion", "ScopeAttributes",
    "ScopeDroppedAttrCount", "ScopeSchemaUrl", "ServiceName", "MetricName", "MetricDescription",
    "MetricUnit", "Attributes", "StartTimeUnix", "TimeUnix",
]
_EXEMPLARS = ["Exemplars.FilteredAttributes", "Exemplars.TimeUnix", "Exemplars.Value",
              "Exemplars.SpanId", "Exemplars.TraceId"]

# The exporter's INSERT column lists (metrics_*_insert.sql), in order.
COLUMNS = {
    "gauge": _COMMON + ["Value", "Flags"] + _EXEMPLARS,
    "sum": _COMMON + ["Value", "Flags"] + _EXEMPLARS + ["AggregationTemporality", "IsMonotonic"],
    "histogram": _COMMON + ["Count", "Sum", "BucketCounts", "ExplicitBounds"] + _EXEMPLARS
                 + ["Flags", "Min", "Max", "AggregationTemporality"],
}
MAP_COLUMNS = ("ResourceAttributes", "ScopeAttributes", "Attributes")
TIME_COLUMNS = ("StartTimeUnix", "TimeUnix")
TIME_ARRAY_COLUMNS = ("Exemplars.TimeUnix",)
FLOAT_COLUMNS = ("Value", "Sum", "Min", "Max")
FLOAT_ARRAY_COLUMNS = ("Exemplars.Value", "ExplicitBounds")
UINT64_COLUMNS = ("Count",)
UINT64_ARRAY_COLUMNS = ("BucketCounts",)

NS = 1_000_000_000
U32 = 1 << 32


# ---------------------------------------------------------------- the DDL as load.py creates it


def _split_top(s):
    """Split a column list on commas outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


def _strip_codec(t):
    return re.sub(r"\s+CODEC\(.*$", "", t.strip(), flags=re.S).strip()


_DDL_CACHE = {}


def ddl_columns(kind):
    """{column: type} of the table render.metrics_statements creates for this kind (what load.py
    runs), Nested columns flattened to Exemplars.X -> Array(T)."""
    if kind in _DDL_CACHE:
        return _DDL_CACHE[kind]
    stmt = render.metrics_statements("db")[KINDS.index(kind)]
    body = stmt[stmt.index("(", stmt.index('"%s"' % TABLES[kind])) + 1:stmt.index(") ENGINE")]
    cols = {}
    for item in _split_top(body):
        if item.startswith("INDEX ") or item.startswith("PROJECTION "):
            continue
        name, rest = item.split(None, 1)
        if rest.startswith("Nested"):
            rest = _strip_codec(rest)
            inner = rest[rest.index("(") + 1:rest.rindex(")")]
            for sub in _split_top(inner):
                sn, st = sub.split(None, 1)
                cols["%s.%s" % (name, sn)] = "Array(%s)" % _strip_codec(st)
        else:
            cols[name] = _strip_codec(rest)
    _DDL_CACHE[kind] = cols
    return cols


def check_columns_against_ddl():
    """Every column the exporter inserts exists in the rendered table (and is every ordinary
    column there). Raises ValueError otherwise."""
    for kind in KINDS:
        ddl = ddl_columns(kind)
        ins = COLUMNS[kind]
        missing = [c for c in ins if c not in ddl]
        extra = [c for c in ddl if c not in ins]
        if missing or extra:
            raise ValueError("%s: insert columns not in the DDL %s, DDL columns not inserted %s"
                             % (TABLES[kind], missing, extra))


def _seconds_only(kind, col):
    t = ddl_columns(kind)[col]
    return re.fullmatch(r"(Array\()?DateTime(\(.*\))?\)?", t) is not None


def time_for_column(kind, col, ns):
    """What the column keeps of a time.Time of `ns` nanoseconds: DateTime64(9) -> ns as is;
    DateTime -> uint32(t.Unix()) seconds (floored, mod 2^32), returned as ns."""
    if _seconds_only(kind, col):
        return ((ns // NS) % U32) * NS
    return ns


# ---------------------------------------------------------------- values


def _u64(x):
    v = int(x or 0)
    if not 0 <= v < (1 << 64):
        raise ValueError("uint64 out of range: %r" % x)
    return v


def _u32(x):
    return int(x or 0) % U32


def _int32(x):
    v = int(x or 0)
    return (v + (1 << 31)) % U32 - (1 << 31)


def _enum(x, names):
    if isinstance(x, str) and not x.lstrip("-").isdigit():
        return names.get(x, 0)
    return int(x or 0)


_TEMPORALITY = {"AGGREGATION_TEMPORALITY_UNSPECIFIED": 0, "AGGREGATION_TEMPORALITY_DELTA": 1,
                "AGGREGATION_TEMPORALITY_CUMULATIVE": 2}


def get_value(p):
    """getValue(IntValue, DoubleValue, ValueType) for a NumberDataPoint or an Exemplar."""
    if "asDouble" in p:
        return mapping._double(p["asDouble"])
    if "asInt" in p:
        return float(mapping._int64(p["asInt"]))
    return 0.0


def raw_id(s, nbytes):
    """hex.EncodeToString(id[:]): lowercase hex, all zeros when absent."""
    if not s:
        return "00" * nbytes
    s = s.lower()
    if len(s) != 2 * nbytes:
        raise ValueError("id %r is not %d hex bytes" % (s, nbytes))
    int(s, 16)
    return s


def service_name(res_attrs):
    for kv in res_attrs or []:
        if kv["key"] == "service.name":  # pcommon Map.Get: first match
            return mapping.as_string(kv.get("value"))
    return ""


def _exemplars(kind, exs):
    return {
        "Exemplars.FilteredAttributes": [mapping.attributes_to_map(e.get("filteredAttributes")) for e in exs],
        "Exemplars.TimeUnix": [time_for_column(kind, "Exemplars.TimeUnix", mapping._ts(e.get("timeUnixNano")))
                               for e in exs],
        "Exemplars.Value": [get_value(e) for e in exs],
        "Exemplars.SpanId": [raw_id(e.get("spanId"), 8) for e in exs],
        "Exemplars.TraceId": [raw_id(e.get("traceId"), 16) for e in exs],
    }


# ---------------------------------------------------------------- rows


def empty_result():
    return {"rows": {k: [] for k in KINDS}, "summary_points": 0, "exp_histogram_points": 0,
            "rejected": 0}


def map_request(req):
    """{"rows": {kind: [row...]}, "summary_points": n, "exp_histogram_points": n,
    "rejected": 0|1} for one ExportMetricsServiceRequest (dict)."""
    out = empty_result()
    for rm in req.get("resourceMetrics") or []:
        res_attrs = (rm.get("resource") or {}).get("attributes") or []
        res_map = mapping.attributes_to_map(res_attrs)
        svc = service_name(res_attrs)
        res_url = rm.get("schemaUrl") or ""
        for sm in rm.get("scopeMetrics") or []:
            scope = sm.get("scope") or {}
            scope_map = mapping.attributes_to_map(scope.get("attributes"))
            head = {
                "ResourceSchemaUrl": res_url,
                "ScopeName": scope.get("name") or "",
                "ScopeVersion": scope.get("version") or "",
                "ScopeDroppedAttrCount": _u32(scope.get("droppedAttributesCount")),
                "ScopeSchemaUrl": sm.get("schemaUrl") or "",
                "ServiceName": svc,
            }
            for m in sm.get("metrics") or []:
                kind = next((k for k in ("gauge", "sum", "histogram", "exponentialHistogram", "summary")
                             if k in m), None)
                if kind is None:
                    # MetricTypeEmpty: pushMetricsData returns "metrics type is unset", nothing written
                    r = empty_result()
                    r["rejected"] = 1
                    return r
                data = m[kind] or {}
                dps = data.get("dataPoints") or []
                if kind == "exponentialHistogram":
                    out["exp_histogram_points"] += len(dps)
                    continue
                if kind == "summary":
                    out["summary_points"] += len(dps)
                    continue
                for dp in dps:
                    row = {"ResourceAttributes": dict(res_map), "ScopeAttributes": dict(scope_map)}
                    row.update(head)
                    row.update({
                        "MetricName": m.get("name") or "",
                        "MetricDescription": m.get("description") or "",
                        "MetricUnit": m.get("unit") or "",
                        "Attributes": mapping.attributes_to_map(dp.get("attributes")),
                        "StartTimeUnix": time_for_column(kind, "StartTimeUnix",
                                                         mapping._ts(dp.get("startTimeUnixNano"))),
                        "TimeUnix": time_for_column(kind, "TimeUnix", mapping._ts(dp.get("timeUnixNano"))),
                    })
                    if kind in ("gauge", "sum"):
                        row["Value"] = get_value(dp)
                    else:
                        row["Count"] = _u64(dp.get("count"))
                        row["Sum"] = mapping._double(dp.get("sum", 0))
                        row["BucketCounts"] = [_u64(x) for x in dp.get("bucketCounts") or []]
                        row["ExplicitBounds"] = [mapping._double(x) for x in dp.get("explicitBounds") or []]
                        row["Min"] = mapping._double(dp.get("min", 0))
                        row["Max"] = mapping._double(dp.get("max", 0))
                    row["Flags"] = _u32(dp.get("flags"))
                    row.update(_exemplars(kind, dp.get("exemplars") or []))
                    if kind in ("sum", "histogram"):
                        row["AggregationTemporality"] = _int32(
                            _enum(data.get("aggregationTemporality"), _TEMPORALITY))
                    if kind == "sum":
                        row["IsMonotonic"] = bool(data.get("isMonotonic"))
                    out["rows"][kind].append({c: row[c] for c in COLUMNS[kind]})
    return out


def map_file(path):
    total = empty_result()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            req = json.loads(line)
            if "resourceMetrics" not in req:
                continue
            r = map_request(req)
            for k in KINDS:
                total["rows"][k].extend(r["rows"][k])
            for k in ("summary_points", "exp_histogram_points", "rejected"):
                total[k] += r[k]
    return total


# ---------------------------------------------------------------- canonical form


def _canon_float(x):
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return x


def normalize(kind, row):
    """Types fixed for comparison: floats as Python floats (non-finite as "NaN"/"+Inf"/"-Inf"),
    UInt64s as ints, times as ints (ns), booleans as bools."""
    r = dict(row)
    for c in FLOAT_COLUMNS:
        if c in r:
            r[c] = _canon_float(r[c])
    for c in FLOAT_ARRAY_COLUMNS:
        if c in r:
            r[c] = [_canon_float(x) for x in r[c]]
    for c in UINT64_COLUMNS:
        if c in r:
            r[c] = int(r[c])
    for c in UINT64_ARRAY_COLUMNS:
        if c in r:
            r[c] = [int(x) for x in r[c]]
    for c in TIME_COLUMNS:
        r[c] = int(r[c])
    r["Exemplars.TimeUnix"] = [int(t) for t in r["Exemplars.TimeUnix"]]
    if "IsMonotonic" in r:
        r["IsMonotonic"] = bool(r["IsMonotonic"])
    return r


def canonical(kind, row):
    """One row as a canonical JSON line: {"_table": TABLE, column: value...}, keys sorted (maps
    too), compact, UTF-8, times as integer ns. dump.py --metrics prints rows read back the same way."""
    r = normalize(kind, row)
    r["_table"] = TABLES[kind]
    return json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_lines(rows_by_kind):
    """All rows, canonical: gauge, sum, histogram (KINDS order), each sorted by line."""
    lines = []
    for kind in KINDS:
        lines.extend(sorted(canonical(kind, r) for r in rows_by_kind.get(kind, [])))
    return lines


# ---------------------------------------------------------------- JSONEachRow


def _ch_float(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _ch_time(kind, col, ns):
    """A time as JSON number text: a DateTime takes integer unix seconds; a DateTime64(9)
    decimal seconds with 9 digits, UNQUOTED (read exactly, as a decimal; a quoted
    "0.000000000" or "1.5" is parsed as a date-time string and fails or lands in the wrong year)."""
    if _seconds_only(kind, col):
        return "%d" % (ns // NS)  # already what the column keeps (time_for_column)
    return mapping.ns_to_ch(ns)


def to_jsoneachrow(kind, row):
    """The row as a JSONEachRow line for INSERT INTO otel_metrics_<kind> (COLUMNS[kind])."""
    parts = []
    for c in COLUMNS[kind]:
        v = row[c]
        if c in TIME_COLUMNS:
            enc = _ch_time(kind, c, v)
        elif c in TIME_ARRAY_COLUMNS:
            enc = "[" + ",".join(_ch_time(kind, c, t) for t in v) + "]"
        elif c in FLOAT_COLUMNS:
            enc = json.dumps(_ch_float(v))
        elif c in FLOAT_ARRAY_COLUMNS:
            enc = json.dumps([_ch_float(x) for x in v])
        else:
            enc = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        parts.append(json.dumps(c) + ":" + enc)
    return "{" + ",".join(parts) + "}"


if __name__ == "__main__":
    files = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not files or any(a.startswith("--") for a in sys.argv[1:]):
        sys.exit("usage: metrics_mapping.py FIXTURE.jsonl...   (prints the mapped metric rows of "
                 "otel_metrics_gauge/_sum/_histogram as canonical JSON lines, sorted; "
                 "the same form as dump.py --metrics)")
    check_columns_against_ddl()
    rows = {k: [] for k in KINDS}
    for p in files:
        r = map_file(p)
        for k in KINDS:
            rows[k].extend(r["rows"][k])
    for line in canonical_lines(rows):
        sys.stdout.write(line + "\n")
