#!/usr/bin/env python3
"""Print every otel_traces row of a database as canonical JSON lines, sorted by (TraceId, SpanId).

    dump.py URL DB [--table otel_traces]
    dump.py URL DB --metrics        (the otel_metrics_gauge/_sum/_histogram rows instead)

One line per row: a JSON object with the exporter's 22 insert columns as keys
(Timestamp, TraceId, ..., Events.Timestamp, ..., Links.Attributes), keys sorted, maps with
sorted keys, compact separators, UTF-8 (no \\u escapes for non-ASCII). Timestamp and
Events.Timestamp are integer nanoseconds since the epoch; Duration an integer. This is exactly
what `mapping.py FIXTURE...` prints for the same spans, so the two can be compared line for
line (or parsed and compared as JSON values).

With --metrics: every row of otel_metrics_gauge, otel_metrics_sum and otel_metrics_histogram (in
that order, each sorted by its canonical line) as metrics_mapping.canonical prints them: the
exporter's insert columns plus "_table", keys and maps sorted, times as integer ns (the sum
table's DateTime columns hold seconds: ns = seconds * 1e9), floats read through toString so
-0, nan and inf survive (non-finite as "NaN"/"+Inf"/"-Inf"), UInt64 as integers. Exactly what
`metrics_mapping.py FIXTURE...` prints for the same points.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "ddl"))

import chhttp  # noqa: E402
import mapping  # noqa: E402
import metrics_mapping  # noqa: E402
import render  # noqa: E402

_SELECT = {
    "Timestamp": "toString(toUnixTimestamp64Nano(`Timestamp`))",
    "Duration": "toString(`Duration`)",
    "Events.Timestamp": "arrayMap(t -> toString(toUnixTimestamp64Nano(t)), `Events.Timestamp`)",
}


def rows(client, db, table="otel_traces"):
    cols = ", ".join("%s AS `%s`" % (_SELECT.get(c, "`%s`" % c), c) for c in mapping.COLUMNS)
    sql = "SELECT %s FROM %s.%s FORMAT JSONEachRow" % (cols, render.ident(db), render.ident(table))
    out = []
    for line in client.query(sql).decode("utf-8").splitlines():
        r = json.loads(line)
        r["Timestamp"] = int(r["Timestamp"])
        r["Duration"] = int(r["Duration"])
        r["Events.Timestamp"] = [int(t) for t in r["Events.Timestamp"]]
        out.append(r)
    return out


def _metric_select(kind, col):
    t = metrics_mapping.ddl_columns(kind)[col]
    q = "`%s`" % col
    if col in metrics_mapping.TIME_COLUMNS:
        return "toString(toUnixTimestamp(%s))" % q if "DateTime64" not in t else \
            "toString(toUnixTimestamp64Nano(%s))" % q
    if col in metrics_mapping.TIME_ARRAY_COLUMNS:
        f = "toUnixTimestamp64Nano" if "DateTime64" in t else "toUnixTimestamp"
        return "arrayMap(t -> toString(%s(t)), %s)" % (f, q)
    if col in metrics_mapping.FLOAT_COLUMNS or col in metrics_mapping.UINT64_COLUMNS:
        return "toString(%s)" % q
    if col in metrics_mapping.FLOAT_ARRAY_COLUMNS or col in metrics_mapping.UINT64_ARRAY_COLUMNS:
        return "arrayMap(x -> toString(x), %s)" % q
    return q


def metric_rows(client, db, kind):
    """The rows of otel_metrics_<kind>, as metrics_mapping row dicts (times in ns)."""
    cols = metrics_mapping.COLUMNS[kind]
    sel = ", ".join("%s AS `%s`" % (_metric_select(kind, c), c) for c in cols)
    sql = "SELECT %s FROM %s.%s FORMAT JSONEachRow" % (
        sel, render.ident(db), render.ident(metrics_mapping.TABLES[kind]))
    out = []
    for line in client.query(sql).decode("utf-8").splitlines():
        r = json.loads(line)
        for c in metrics_mapping.TIME_COLUMNS + metrics_mapping.TIME_ARRAY_COLUMNS:
            scale = 1 if "DateTime64" in metrics_mapping.ddl_columns(kind)[c] else 1_000_000_000
            r[c] = [int(t) * scale for t in r[c]] if isinstance(r[c], list) else int(r[c]) * scale
        for c in metrics_mapping.FLOAT_COLUMNS:
            if c in r:
                r[c] = float(r[c])
        for c in metrics_mapping.FLOAT_ARRAY_COLUMNS:
            if c in r:
                r[c] = [float(x) for x in r[c]]
        out.append(r)
    return out


def metric_lines(client, db):
    return metrics_mapping.canonical_lines(
        {k: metric_rows(client, db, k) for k in metrics_mapping.KINDS})


def main(argv):
    if "--metrics" in argv:
        argv = [a for a in argv if a != "--metrics"]
        if len(argv) != 2:
            sys.exit(__doc__)
        for line in metric_lines(chhttp.Client(argv[0]), argv[1]):
            sys.stdout.write(line + "\n")
        return 0
    table = "otel_traces"
    if "--table" in argv:
        i = argv.index("--table")
        table = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if len(argv) != 2:
        sys.exit(__doc__)
    client = chhttp.Client(argv[0])
    for r in sorted(rows(client, argv[1], table), key=mapping.sort_key):
        sys.stdout.write(mapping.canonical(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
