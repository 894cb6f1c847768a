#!/usr/bin/env python3
"""Create the exporter's tables through a ClickHouse HTTP endpoint and load OTLP/JSON fixtures
into otel_traces, mapped the way the Collector's ClickHouse exporter maps them (mapping.py).

    load.py URL DB FIXTURE.jsonl... [--batch N] [--full-text-search auto|on|off]
                                    [--legacy-kind-status] [--no-create]
    load.py --dump URL DB            (same as dump.py URL DB)

URL is the front (or any ClickHouse) HTTP endpoint, e.g. http://127.0.0.1:PORT/ (user:password@
in it for basic auth). DB is created if missing (CREATE DATABASE IF NOT EXISTS), then the
exporter's DDL (ddl/render.py: otel_traces, otel_traces_trace_id_ts + _mv,
otel_metrics_gauge/_sum/_histogram; IF NOT EXISTS, so re-running is fine). The index flavour
follows the exporter: text indexes when the server is >= 26.2 (auto, the default), else
bloom_filter. Spans go in with INSERT INTO DB.otel_traces (columns) FORMAT JSONEachRow,
--batch rows per INSERT (default 5000, the exporter README's recommended batch size).
Plain urllib, no extra packages: runs on any python3.
Prints one summary line per fixture and a total, with timings, on stdout.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "ddl"))

import chhttp  # noqa: E402
import mapping  # noqa: E402
import render  # noqa: E402


def create_tables(client, db, full_text_search="auto"):
    if full_text_search == "auto":
        version = client.query("SELECT version()").decode().strip()
        fts = render.full_text_search_for(version)
    else:
        fts = full_text_search == "on"
    for st in render.all_statements(db, fts):
        client.query(st)
    return fts


def insert_rows(client, db, rows, batch=5000, table=render.TRACES_TABLE):
    cols = ", ".join("`%s`" % c for c in mapping.COLUMNS)
    statement = "INSERT INTO %s.%s (%s) FORMAT JSONEachRow" % (render.ident(db), render.ident(table), cols)
    n = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        body = "".join(mapping.to_jsoneachrow(r) + "\n" for r in chunk).encode("utf-8")
        client.insert(statement, body)
        n += len(chunk)
    return n


def main(argv):
    if argv and argv[0] == "--dump":
        import dump
        return dump.main(argv[1:])
    opts = {"--batch": "5000", "--full-text-search": "auto"}
    flags = set()
    pos = []
    it = iter(argv)
    for a in it:
        if a in opts:
            opts[a] = next(it)
        elif a in ("--legacy-kind-status", "--no-create"):
            flags.add(a)
        elif a.startswith("--"):
            sys.exit("unknown option %s\n%s" % (a, __doc__))
        else:
            pos.append(a)
    if len(pos) < 2:
        sys.exit(__doc__)
    url, db, files = pos[0], pos[1], pos[2:]
    if "--legacy-kind-status" in flags:
        mapping.LEGACY_KIND_STATUS = True
    client = chhttp.Client(url)
    t0 = time.monotonic()
    if "--no-create" not in flags:
        fts = create_tables(client, db, opts["--full-text-search"])
        print("load: tables ready in %s (%s indexes) in %.2fs" % (
            db, "text" if fts else "bloom_filter", time.monotonic() - t0), flush=True)
    total = 0
    for f in files:
        t1 = time.monotonic()
        rows = mapping.map_file(f)
        n = insert_rows(client, db, rows, int(opts["--batch"]))
        total += n
        print("load: %s: %d spans in %.2fs" % (os.path.basename(f), n, time.monotonic() - t1), flush=True)
    print("load: %d spans from %d fixture(s) in %.2fs" % (total, len(files), time.monotonic() - t0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
