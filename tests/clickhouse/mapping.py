#!/usr/bin/env python3
"""Reference implementation of the OpenTelemetry Collector ClickHouse exporter's span mapping.

What a span becomes in `otel_traces` when the Collector's `clickhouse` exporter writes it,
re-implemented field by field in Python so tailscope's own writer (`serve --to clickhouse://`)
can be checked row for row against it without the Collector (its binary can't be installed here).

Written from (opentelemetry-collector-contrib, Apache-2.0):
  exporter/clickhouseexporter/exporter_traces.go   -- the templated-DDL version whose
      pushTraceData calls batch.Append(...) with span.Kind().String() and
      spanStatus.Code().String() (the newest stored version we could read; the index that
      served it did not name its commit, the templates beside it are at
      2bf6b9e1f8c8716ab54eaac1635e56b4d0649900 (traces_table.sql))
  exporter/clickhouseexporter/internal/util.go @ 64079aac9170092935a20f1f96863317bcd98273
      GetServiceName (resource "service.name" via Value.AsString()),
      AttributesToMap (every attribute, in map order, value via Value.AsString())
and from the collector's pdata (open-telemetry/opentelemetry-collector, Apache-2.0):
  pdata/ptrace/span_kind.go @ 3f73651d61a540fe543b53612d48e24be416e369  (SpanKind.String)
  pdata/ptrace/status_code.go @ d68a598ea803a81a125ccf0fe4c6a4ea8b773bca (StatusCode.String)
  pdata/pcommon/value.go (Value.AsString, float64AsString)
  internal/coreinternal/traceutil (TraceIDToHexOrEmptyString / SpanIDToHexOrEmptyString)

NOTE the exporter changed its kind/status strings over time. Old versions (the ones that
built SQL with fmt.Sprintf and `database/sql`) wrote traceutil.SpanKindStr /
traceutil.StatusCodeStr, i.e. "SPAN_KIND_CLIENT" / "STATUS_CODE_OK". The current version
writes pdata's String(): "Client" / "Ok". This module follows the current one; set
LEGACY_KIND_STATUS = True (or --legacy-kind-status) to get the old strings.
Old versions also copied the scope name/version into SpanAttributes
(otel.scope.name / otel.scope.version) and had no ScopeName/ScopeVersion columns; the
current one doesn't, and has the columns. A reader should accept both kind spellings.

Field by field (column: value), in the exporter's INSERT column order (traces_insert.sql):
  Timestamp          span start (DateTime64(9), UTC, exact ns)
  TraceId            lowercase hex of the 16 bytes; "" if all zero
  SpanId             lowercase hex of the 8 bytes; "" if all zero
  ParentSpanId       same; "" for a root
  TraceState         span.traceState as is
  SpanName           span.name
  SpanKind           Unspecified|Internal|Server|Client|Producer|Consumer ("" if out of range)
  ServiceName        resource attribute service.name through AsString() (so an int works); "" if absent
  ResourceAttributes resource attributes, AsString() values, map order kept
  ScopeName          scope.name
  ScopeVersion       scope.version
  SpanAttributes     span attributes, AsString() values, map order kept (no scope keys added)
  Duration           end - start in ns, computed on uint64 (pcommon.Timestamp): an end
                     before the start WRAPS to 2^64 - d, it is not clamped or negative
  StatusCode         Unset|Ok|Error
  StatusMessage      status.message
  Events.Timestamp / Events.Name / Events.Attributes   one entry per event, in order
  Links.TraceId / Links.SpanId / Links.TraceState / Links.Attributes   one per link

Value.AsString() (pcommon) by type:
  string -> as is; bool -> "true"/"false"; int -> decimal (strconv.FormatInt);
  double -> float64AsString: the ES6 / encoding/json rule, NOT strconv 'g':
            shortest round-trip digits; fixed notation ('f', -1) when 1e-6 <= |x| < 1e21 or
            x == 0, so 1.0 -> "1", 0.5 -> "0.5", 1e20 -> "100000000000000000000",
            -0.0 -> "-0"; exponent notation ('e', -1) otherwise, with a 2-digit negative
            exponent shortened: 1e-7 -> "1e-7", 1.5e-10 -> "1.5e-10", 1e21 -> "1e+21";
            NaN/±Inf -> "json: unsupported value: NaN" / "+Inf" / "-Inf".
  bytes  -> standard base64 (with padding);
  empty  -> "";
  array / kvlist -> json.Marshal(AsRaw()): Go encoding/json, i.e. compact, map keys
            sorted, doubles as above, ints as integers, bytes as base64 strings, empty as
            null, HTML-escaped strings (< > & as \\u003c \\u003e \\u0026, U+2028/9 escaped,
            invalid UTF-8 as U+FFFD). If the value holds a NaN/Inf, json.Marshal fails
            and AsString returns "" for the whole attribute.

Duplicate attribute keys (possible on the wire): the exporter passes both pairs to the Map
column; the dicts here keep one (the last value, at the first key's position).

Input: OTLP/JSON as the Collector's file exporter writes it, one
ExportTraceServiceRequest per line ({"resourceSpans": [...]}); ids are hex strings in this
JSON flavour (not base64 as in canonical proto3 JSON); int64 values are strings; enums are
numbers (enum names are accepted too). Lines without resourceSpans (metrics) are skipped.
"""
import base64
import json
import math
import sys
from decimal import Decimal

LEGACY_KIND_STATUS = False

SPAN_KIND = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
STATUS_CODE = {0: "Unset", 1: "Ok", 2: "Error"}
# traceutil.SpanKindStr / StatusCodeStr (older exporter versions)
LEGACY_SPAN_KIND = {0: "SPAN_KIND_UNSPECIFIED", 1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER",
                    3: "SPAN_KIND_CLIENT", 4: "SPAN_KIND_PRODUCER", 5: "SPAN_KIND_CONSUMER"}
LEGACY_STATUS_CODE = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}
_KIND_NAMES = {v: k for k, v in LEGACY_SPAN_KIND.items()}
_STATUS_NAMES = {v: k for k, v in LEGACY_STATUS_CODE.items()}

# The exporter's INSERT column order (traces_insert.sql).
COLUMNS = [
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
    "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes",
    "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes",
    "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
]
MAP_COLUMNS = ("ResourceAttributes", "SpanAttributes")
MAP_ARRAY_COLUMNS = ("Events.Attributes", "Links.Attributes")
TIME_COLUMNS = ("Timestamp",)
TIME_ARRAY_COLUMNS = ("Events.Timestamp",)

U64 = 1 << 64


class _Unsupported(Exception):
    """A NaN/Inf inside an array or map: Go's json.Marshal errors, AsString gives ""."""


# ---------------------------------------------------------------- numbers


def _shortest_digits(f):
    """(digits, exp): the shortest decimal digits that round-trip |f| (what Go's strconv with
    precision -1 and Python's repr both compute), value = d1.d2d3... * 10^exp."""
    d = Decimal(repr(abs(f)))
    digits = "".join(map(str, d.as_tuple().digits)).strip("0") or "0"
    return digits, d.adjusted()


def go_format_float(f):
    """pcommon float64AsString (== encoding/json's float64 encoder)."""
    if math.isnan(f):
        return "json: unsupported value: NaN"
    if math.isinf(f):
        return "json: unsupported value: " + ("+Inf" if f > 0 else "-Inf")
    neg = math.copysign(1.0, f) < 0
    a = abs(f)
    if a == 0:
        return "-0" if neg else "0"
    digits, exp = _shortest_digits(f)
    sign = "-" if neg else ""
    if 1e-6 <= a < 1e21:
        # strconv 'f', -1: fixed notation, shortest digits, no trailing ".0"
        if exp >= 0:
            intpart = digits[:exp + 1].ljust(exp + 1, "0")
            frac = digits[exp + 1:]
        else:
            intpart = "0"
            frac = "0" * (-exp - 1) + digits
        return sign + intpart + ("." + frac if frac else "")
    # strconv 'e', -1: d[.ddd]e±XX (at least two exponent digits) ...
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    es = "-" if exp < 0 else "+"
    ed = "%02d" % abs(exp)
    s = sign + mant + "e" + es + ed
    # ... then float64AsString's clean-up: e-09 -> e-9 (only a negative, zero-padded exponent)
    if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
        s = s[:-2] + s[-1]
    return s


# ---------------------------------------------------------------- Go encoding/json


def _go_json_string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")   # Go >= 1.22
        elif ch == "\f":
            out.append("\\f")   # Go >= 1.22
        elif o < 0x20 or ch in "<>&" or o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")  # a lone surrogate is invalid UTF-8 in Go
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_json(raw):
    """json.Marshal of pcommon AsRaw() output."""
    if raw is None:
        return "null"
    if raw is True:
        return "true"
    if raw is False:
        return "false"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            raise _Unsupported()
        return go_format_float(raw)
    if isinstance(raw, str):
        return _go_json_string(raw)
    if isinstance(raw, bytes):
        return '"' + base64.b64encode(raw).decode("ascii") + '"'
    if isinstance(raw, list):
        return "[" + ",".join(_go_json(x) for x in raw) + "]"
    if isinstance(raw, dict):
        # Go sorts map keys by their bytes (== code points for valid UTF-8)
        items = sorted(raw.items(), key=lambda kv: kv[0].encode("utf-8", "surrogatepass"))
        return "{" + ",".join(_go_json_string(k) + ":" + _go_json(v) for k, v in items) + "}"
    raise TypeError(type(raw))


# ---------------------------------------------------------------- OTLP/JSON AnyValue


def _int64(x):
    v = int(x)
    if not -(1 << 63) <= v < (1 << 63):
        raise ValueError("int64 out of range: %r" % x)
    return v


def _double(x):
    if isinstance(x, str):
        # proto3 JSON spells the special values as strings
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(x) if x in (
            "NaN", "Infinity", "-Infinity") else float(x)
    return float(x)


def as_raw(v):
    """pcommon Value.AsRaw() of an OTLP/JSON AnyValue."""
    if not v:
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return _int64(v["intValue"])
    if "doubleValue" in v:
        return _double(v["doubleValue"])
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    if "arrayValue" in v:
        return [as_raw(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        out = {}
        for kv in (v["kvlistValue"] or {}).get("values", []):
            out[kv["key"]] = as_raw(kv.get("value"))
        return out
    return None


def as_string(v):
    """pcommon Value.AsString() of an OTLP/JSON AnyValue."""
    if not v:
        return ""
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return "true" if v["boolValue"] else "false"
    if "intValue" in v:
        return str(_int64(v["intValue"]))
    if "doubleValue" in v:
        return go_format_float(_double(v["doubleValue"]))
    if "bytesValue" in v:
        return base64.b64encode(base64.b64decode(v["bytesValue"])).decode("ascii")
    if "arrayValue" in v or "kvlistValue" in v:
        try:
            return _go_json(as_raw(v))
        except _Unsupported:
            return ""
    return ""


def attributes_to_map(attrs):
    """internal.AttributesToMap: every key in order, value AsString()."""
    out = {}
    for kv in attrs or []:
        out[kv["key"]] = as_string(kv.get("value"))
    return out


# ---------------------------------------------------------------- ids, enums, time


def hex_id(s, nbytes):
    """traceutil.TraceIDToHexOrEmptyString / SpanIDToHexOrEmptyString on the decoded id."""
    if not s:
        return ""
    s = s.lower()
    if len(s) != 2 * nbytes:
        raise ValueError("id %r is not %d hex bytes" % (s, nbytes))
    int(s, 16)
    return "" if set(s) == {"0"} else s


def _enum(x, names):
    if isinstance(x, str) and not x.lstrip("-").isdigit():
        return names.get(x, -1)
    return int(x or 0)


def span_kind_str(kind):
    k = _enum(kind, _KIND_NAMES)
    return (LEGACY_SPAN_KIND if LEGACY_KIND_STATUS else SPAN_KIND).get(k, "")


def status_code_str(code):
    c = _enum(code, _STATUS_NAMES)
    return (LEGACY_STATUS_CODE if LEGACY_KIND_STATUS else STATUS_CODE).get(c, "")


def _ts(x):
    return int(x or 0)


# ---------------------------------------------------------------- rows


def map_request(req):
    """Rows for one ExportTraceServiceRequest (dict), in the exporter's iteration order.
    Timestamps are integer ns since the epoch (UTC)."""
    rows = []
    for rs in req.get("resourceSpans") or []:
        res_attrs = (rs.get("resource") or {}).get("attributes") or []
        res_map = attributes_to_map(res_attrs)
        service = ""
        for kv in res_attrs:
            if kv["key"] == "service.name":  # pcommon Map.Get returns the first match
                service = as_string(kv.get("value"))
                break
        for ss in rs.get("scopeSpans") or []:
            scope = ss.get("scope") or {}
            for sp in ss.get("spans") or []:
                start, end = _ts(sp.get("startTimeUnixNano")), _ts(sp.get("endTimeUnixNano"))
                status = sp.get("status") or {}
                events = sp.get("events") or []
                links = sp.get("links") or []
                rows.append({
                    "Timestamp": start,
                    "TraceId": hex_id(sp.get("traceId"), 16),
                    "SpanId": hex_id(sp.get("spanId"), 8),
                    "ParentSpanId": hex_id(sp.get("parentSpanId"), 8),
                    "TraceState": sp.get("traceState") or "",
                    "SpanName": sp.get("name") or "",
                    "SpanKind": span_kind_str(sp.get("kind")),
                    "ServiceName": service,
                    "ResourceAttributes": dict(res_map),
                    "ScopeName": scope.get("name") or "",
                    "ScopeVersion": scope.get("version") or "",
                    "SpanAttributes": attributes_to_map(sp.get("attributes")),
                    "Duration": (end - start) % U64,
                    "StatusCode": status_code_str(status.get("code")),
                    "StatusMessage": status.get("message") or "",
                    "Events.Timestamp": [_ts(e.get("timeUnixNano")) for e in events],
                    "Events.Name": [e.get("name") or "" for e in events],
                    "Events.Attributes": [attributes_to_map(e.get("attributes")) for e in events],
                    "Links.TraceId": [hex_id(l.get("traceId"), 16) for l in links],
                    "Links.SpanId": [hex_id(l.get("spanId"), 8) for l in links],
                    "Links.TraceState": [l.get("traceState") or "" for l in links],
                    "Links.Attributes": [attributes_to_map(l.get("attributes")) for l in links],
                })
    return rows


def map_file(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.extend(map_request(json.loads(line)))
    return rows


# ---------------------------------------------------------------- canonical form


def canonical(row):
    """One row as a canonical JSON line: keys sorted (maps too), compact, UTF-8, integers
    for times (ns) and Duration. dump.py prints rows read back from ClickHouse the same way."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sort_key(row):
    return (row["TraceId"], row["SpanId"], canonical(row))


def ns_to_ch(ns):
    """A DateTime64(9) value for JSONEachRow input: decimal unix seconds, timezone-proof."""
    return "%d.%09d" % divmod(ns, 1_000_000_000)


def to_jsoneachrow(row):
    """The row as a JSONEachRow line for INSERT INTO otel_traces (... the exporter's columns)."""
    out = dict(row)
    out["Timestamp"] = ns_to_ch(row["Timestamp"])
    out["Events.Timestamp"] = [ns_to_ch(t) for t in row["Events.Timestamp"]]
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--legacy-kind-status" in args:
        LEGACY_KIND_STATUS = True
    files = [a for a in args if not a.startswith("--")]
    if not files:
        sys.exit("usage: mapping.py [--legacy-kind-status] FIXTURE.jsonl...   "
                 "(prints the mapped rows as canonical JSON lines sorted by TraceId, SpanId)")
    rows = []
    for p in files:
        rows.extend(map_file(p))
    for r in sorted(rows, key=sort_key):
        sys.stdout.write(canonical(r) + "\n")
