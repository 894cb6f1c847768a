#!/usr/bin/env python3
"""Print every otel_traces row of a database as canonical JSON lines, sorted by (TraceId, SpanId).

    dump.py URL DB [--table otel_traces]

One line per row: a JSON object with the exporter's 22 insert columns as keys
(Timestamp, TraceId, ..., Events.Timestamp, ..., Links.Attributes), keys sorted, maps with
sorted keys, compact separators, UTF-8 (no \\u escapes for non-ASCII). Timestamp and
Events.Timestamp are integer nanoseconds since the epoch; Duration an integer. This is exactly
what `mapping.py FIXTURE...` prints for the same spans, so the two can be compared line for
line (or parsed and compared as JSON values).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "ddl"))

import chhttp  # noqa: E402
import mapping  # noqa: E402
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


def main(argv):
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
