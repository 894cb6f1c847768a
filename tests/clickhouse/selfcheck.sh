#!/usr/bin/env bash
# Self-check of the ClickHouse test harness: starts the chDB front, creates the exporter's
# tables, loads two recorded fixtures with the exporter's mapping, and checks what comes back
# (counts, an exact quantile, a RowBinary result, an error, the lookup materialized view, and
# the rows themselves against mapping.py); then loads a recorded metrics fixture and a synthetic
# one into a second database and checks the metric tables (points per table, and the rows
# against metrics_mapping.py). Exits non-zero on any failure.
#   tests/clickhouse/selfcheck.sh [FIXTURE.jsonl...]   (default: openinference + langchain)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${TAILSCOPE_CHDB_VENV:-$HOME/.cache/tailscope/chdb-venv}/bin/python
"$py" -c 'import chdb' 2>/dev/null || { echo "selfcheck: no chDB venv at $py (run scripts/setup)" >&2; exit 1; }
command -v curl >/dev/null || { echo "selfcheck: needs curl" >&2; exit 1; }
if [ $# -gt 0 ]; then fixtures=("$@"); else
  fixtures=("$root/tests/realtel/fixtures/openinference.jsonl" "$root/tests/realtel/fixtures/langchain.jsonl"); fi

work=$(mktemp -d)
front_pid=""
cleanup() {
  if [ -n "$front_pid" ]; then kill "$front_pid" 2>/dev/null || true; wait "$front_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "selfcheck: FAIL: $*" >&2; [ -s "$work/front.err" ] && tail -20 "$work/front.err" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# 1. start the front; the first stdout line names the port
t0=$(now)
"$py" "$here/front.py" --port 0 --data "$work/db" --log >"$work/front.out" 2>"$work/front.err" &
front_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/front.out" ] && break
  kill -0 "$front_pid" 2>/dev/null || fail "front exited"
  sleep 0.02
done
line=$(head -1 "$work/front.out")
[[ "$line" =~ ^listening\ on\ (http://127\.0\.0\.1:[0-9]+/)$ ]] || fail "unexpected first line: $line"
url=${BASH_REMATCH[1]}
t1=$(now)
echo "front: $line (ready in $(secs "$t0" "$t1")s)"
[ "$(curl -sf "${url}ping")" = "Ok." ] || fail "/ping"
q() { curl -sf --data-binary "$1" "${url}?database=selfcheck${2:+&$2}"; }
echo "ClickHouse version: $(curl -sf --data-binary 'SELECT version()' "$url")"

# 2. tables + fixtures (plain python3: load.py needs no packages)
t2=$(now)
python3 "$here/load.py" "$url" selfcheck "${fixtures[@]}"
t3=$(now)
echo "load: total $(secs "$t2" "$t3")s for ${#fixtures[@]} fixture(s)"

# 3. answers
expected=$(python3 "$here/mapping.py" "${fixtures[@]}" | tee "$work/expected.jsonl" | wc -l)
traces=$(python3 "$here/mapping.py" "${fixtures[@]}" | python3 -c 'import sys,json; print(len({json.loads(l)["TraceId"] for l in sys.stdin}))')
got=$(q 'SELECT count(), uniqExact(TraceId) FROM otel_traces')
echo "count(), uniqExact(TraceId): $got (expected $expected	$traces)"
[ "$got" = "$expected	$traces" ] || fail "count/uniqExact"
p99=$(q 'SELECT quantileExact(0.99)(Duration) FROM otel_traces')
echo "quantileExact(0.99)(Duration): $p99 ns"
[[ "$p99" =~ ^[0-9]+$ ]] && [ "$p99" -gt 0 ] || fail "quantileExact"
ids=$(q 'SELECT count() FROM otel_traces_trace_id_ts FINAL')
echo "otel_traces_trace_id_ts (materialized view) traces: $ids"
[ "$ids" = "$traces" ] || fail "lookup table holds $ids traces, expected $traces"

# RowBinary: count() as UInt64 LE, then a String column (varint length + bytes)
q 'SELECT count() FROM otel_traces FORMAT RowBinary' >"$work/rb1"
rb=$(python3 -c 'import sys,struct; b=open(sys.argv[1],"rb").read(); assert len(b)==8, len(b); print(struct.unpack("<Q",b)[0])' "$work/rb1")
echo "RowBinary count(): $rb (8 bytes)"
[ "$rb" = "$expected" ] || fail "RowBinary count"
q 'SELECT SpanId, Duration FROM otel_traces ORDER BY TraceId, SpanId LIMIT 3 FORMAT RowBinaryWithNamesAndTypes' >"$work/rb2"
python3 - "$work/rb2" <<'PY' || fail "RowBinaryWithNamesAndTypes"
import sys, struct
b = open(sys.argv[1], "rb").read(); i = 0
def varint():
    global i; n = s = 0
    while True:
        c = b[i]; i += 1; n |= (c & 0x7f) << s; s += 7
        if c < 0x80: return n
def string():
    global i; n = varint(); v = b[i:i+n]; i += n; return v.decode()
ncol = varint(); names = [string() for _ in range(ncol)]; types = [string() for _ in range(ncol)]
assert names == ["SpanId", "Duration"] and types == ["String", "UInt64"], (names, types)
rows = []
while i < len(b):
    sid = string(); d = struct.unpack_from("<Q", b, i)[0]; i += 8; rows.append((sid, d))
assert len(rows) == 3 and all(len(s) == 16 for s, _ in rows), rows
print("RowBinaryWithNamesAndTypes:", names, types, rows)
PY

# binary output formats come back byte-exact: the front's bytes == chDB's own for the same query
for fmt in RowBinary RowBinaryWithNamesAndTypes Native ArrowStream Parquet; do
  sql="SELECT number, toString(number) AS s, toDateTime64(number, 9, 'UTC') AS t FROM numbers(5000) FORMAT $fmt"
  curl -sf --data-binary "$sql" "$url" >"$work/front.$fmt"
  "$py" -c 'import chdb,sys; sys.stdout.buffer.write(chdb.query(sys.argv[1]).bytes())' "$sql" >"$work/chdb.$fmt"
  cmp -s "$work/front.$fmt" "$work/chdb.$fmt" || fail "$fmt differs from chDB's own bytes"
  printf '%s: %s bytes, byte-exact\n' "$fmt" "$(wc -c <"$work/front.$fmt")"
done
# a 2 MB RowBinary insert (curl sends Expect: 100-continue) round-trips
"$py" -c 'import sys,struct; sys.stdout.buffer.write(b"".join(struct.pack("<Q", i) + bytes([3]) + b"x\n\t" for i in range(180000)))' >"$work/big.rb"
q 'CREATE TABLE big (a UInt64, s String) ENGINE = MergeTree ORDER BY a' >/dev/null
curl -sf --data-binary @"$work/big.rb" "${url}?database=selfcheck&query=INSERT%20INTO%20big%20FORMAT%20RowBinary" >/dev/null || fail "big RowBinary insert"
q 'SELECT * FROM big ORDER BY a FORMAT RowBinary' >"$work/big.back"
cmp -s "$work/big.rb" "$work/big.back" || fail "RowBinary insert/select round trip"
echo "RowBinary insert + select of $(wc -c <"$work/big.rb") bytes: round-trips byte-exact"

# an error: HTTP 500 with X-ClickHouse-Exception-Code
status=$(curl -s -o "$work/err.body" -D "$work/err.head" -w '%{http_code}' --data-binary 'SELECT no_such_column FROM otel_traces' "${url}?database=selfcheck")
code=$(tr -d '\r' <"$work/err.head" | awk -F': ' 'tolower($1)=="x-clickhouse-exception-code" {print $2}')
echo "error query: HTTP $status, X-ClickHouse-Exception-Code: $code, body: $(head -c 120 "$work/err.body")"
[ "$status" = 500 ] && [ "$code" = 47 ] && grep -q '^Code: 47\. DB::Exception' "$work/err.body" || fail "error answer"

# 4. row for row: what ClickHouse holds == the exporter's mapping (mapping.py)
python3 "$here/dump.py" "$url" selfcheck >"$work/dump.jsonl"
if ! cmp -s "$work/dump.jsonl" "$work/expected.jsonl"; then
  diff <(head -c 3000 "$work/dump.jsonl") <(head -c 3000 "$work/expected.jsonl") | head -20 >&2 || true
  fail "dump.py and mapping.py disagree"
fi
echo "dump.py == mapping.py: $(wc -l <"$work/dump.jsonl") rows identical"

# 5. metrics: the recorded vLLM metrics (prometheus receiver; spans and metrics mixed) and a
#    synthetic fixture (histograms, exemplars, int/NaN/Inf/-0 values, a summary, an exponential
#    histogram, a request with a metric of unset type) into their own database
mfix=("$root/tests/realtel/fixtures/otel-genai-metrics.jsonl" "$here/fixtures/metrics-synthetic.jsonl")
python3 "$here/load.py" "$url" selfmetrics "${mfix[@]}" | tee "$work/mload.out"
# points per table straight from the fixtures (not through metrics_mapping): a request with a
# metric of unset type is written by the exporter not at all
python3 - "${mfix[@]}" >"$work/mwant" <<'PY'
import json, sys
n = {"gauge": 0, "sum": 0, "histogram": 0}
for p in sys.argv[1:]:
    for line in open(p):
        req = json.loads(line)
        m = [m for rm in req.get("resourceMetrics", []) for sm in rm.get("scopeMetrics", []) for m in sm.get("metrics", [])]
        if any(not any(k in x for k in ("gauge", "sum", "histogram", "exponentialHistogram", "summary")) for x in m):
            continue
        for x in m:
            for k in n:
                if k in x:
                    n[k] += len(x[k].get("dataPoints", []))
print("\t".join(str(n[k]) for k in ("gauge", "sum", "histogram")))
PY
mgot=$(curl -sf --data-binary 'SELECT (SELECT count() FROM otel_metrics_gauge), (SELECT count() FROM otel_metrics_sum), (SELECT count() FROM otel_metrics_histogram)' "${url}?database=selfmetrics")
echo "metric points gauge/sum/histogram: $mgot (expected $(cat "$work/mwant"))"
[ "$mgot" = "$(cat "$work/mwant")" ] || fail "metric point counts"
# the recorded fixture alone, by its own numbers: 219 gauge and 219 sum points, no histograms
gr=$(python3 "$here/metrics_mapping.py" "${mfix[0]}" | python3 -c 'import sys,json,collections; c=collections.Counter(json.loads(l)["_table"] for l in sys.stdin); print(c["otel_metrics_gauge"], c["otel_metrics_sum"], c["otel_metrics_histogram"])')
echo "otel-genai-metrics.jsonl alone: gauge sum histogram = $gr"
[ "$gr" = "219 219 0" ] || fail "otel-genai-metrics.jsonl point counts changed: $gr"
python3 "$here/dump.py" "$url" selfmetrics --metrics >"$work/mdump.jsonl"
python3 "$here/metrics_mapping.py" "${mfix[@]}" >"$work/mexpected.jsonl"
if ! cmp -s "$work/mdump.jsonl" "$work/mexpected.jsonl"; then
  diff "$work/mdump.jsonl" "$work/mexpected.jsonl" | cut -c1-600 | head -10 >&2 || true
  fail "dump.py --metrics and metrics_mapping.py disagree"
fi
echo "dump.py --metrics == metrics_mapping.py: $(wc -l <"$work/mdump.jsonl") rows identical"
echo "selfcheck: ok"
