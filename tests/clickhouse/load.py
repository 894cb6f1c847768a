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
Metric points (resourceMetrics lines; metrics_mapping.py) go the same way into
otel_metrics_gauge / _sum / _histogram, with the exporter's insert columns, after a check that
those are exactly the tables' ordinary columns on the server (DESCRIBE TABLE). Summary and
exponential-histogram points are counted and skipped (the exporter's summary and exponential
histogram tables are not created here). A fixture without metrics loads as before.
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
import metrics_mapping  # noqa: E402
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


def check_metric_tables(client, db):
    """The exporter's insert columns == the ordinary columns of each metrics table as created
    (and == the rendered DDL metrics_mapping reads its column types from). Raises on a mismatch."""
    metrics_mapping.check_columns_against_ddl()
    for kind in metrics_mapping.KINDS:
        table = metrics_mapping.TABLES[kind]
        sql = "DESCRIBE TABLE %s.%s FORMAT TabSeparated" % (render.ident(db), render.ident(table))
        on_server = {}
        for line in client.query(sql, describe_include_subcolumns=0).decode("utf-8").splitlines():
            f = line.split("\t")
            if len(f) > 2 and f[2] in ("ALIAS", "MATERIALIZED", "EPHEMERAL"):
                continue
            on_server[f[0]] = f[1]
        want = metrics_mapping.COLUMNS[kind]
        if sorted(on_server) != sorted(want):
            raise SystemExit("load: %s has columns %s, the exporter inserts %s" % (
                table, sorted(on_server), sorted(want)))
        ddl = metrics_mapping.ddl_columns(kind)
        for c in want:
            if on_server[c] != ddl[c].replace("Boolean", "Bool"):  # Boolean is Bool's alias
                raise SystemExit("load: %s.%s is %s on the server, %s in the rendered DDL" % (
                    table, c, on_server[c], ddl[c]))


def insert_metric_rows(client, db, kind, rows, batch=5000):
    cols = ", ".join("`%s`" % c for c in metrics_mapping.COLUMNS[kind])
    statement = "INSERT INTO %s.%s (%s) FORMAT JSONEachRow" % (
        render.ident(db), render.ident(metrics_mapping.TABLES[kind]), cols)
    n = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        body = "".join(metrics_mapping.to_jsoneachrow(kind, r) + "\n" for r in chunk).encode("utf-8")
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
    mtotal = {k: 0 for k in metrics_mapping.KINDS}
    skipped = {"summary_points": 0, "exp_histogram_points": 0, "rejected": 0}
    checked = False
    for f in files:
        t1 = time.monotonic()
        rows = mapping.map_file(f)
        n = insert_rows(client, db, rows, int(opts["--batch"]))
        total += n
        print("load: %s: %d spans in %.2fs" % (os.path.basename(f), n, time.monotonic() - t1), flush=True)
        t2 = time.monotonic()
        m = metrics_mapping.map_file(f)
        if not any(m["rows"].values()) and not any(m[k] for k in skipped):
            continue
        if not checked:
            check_metric_tables(client, db)
            checked = True
        got = {}
        for kind in metrics_mapping.KINDS:
            got[kind] = insert_metric_rows(client, db, kind, m["rows"][kind], int(opts["--batch"]))
            mtotal[kind] += got[kind]
        for k in skipped:
            skipped[k] += m[k]
        print("load: %s: metric points: %s%s in %.2fs" % (
            os.path.basename(f),
            ", ".join("%s %d" % (metrics_mapping.TABLES[k], got[k]) for k in metrics_mapping.KINDS),
            _skipped_note(m), time.monotonic() - t2), flush=True)
    print("load: %d spans from %d fixture(s) in %.2fs" % (total, len(files), time.monotonic() - t0), flush=True)
    print("load: metric points: %s%s" % (
        ", ".join("%s %d" % (metrics_mapping.TABLES[k], mtotal[k]) for k in metrics_mapping.KINDS),
        _skipped_note(skipped)), flush=True)
    return 0


def _skipped_note(m):
    notes = []
    if m["summary_points"]:
        notes.append("%d summary points skipped (no otel_metrics_summary here)" % m["summary_points"])
    if m["exp_histogram_points"]:
        notes.append("%d exponential histogram points skipped (no otel_metrics_exponential_histogram here)"
                     % m["exp_histogram_points"])
    if m["rejected"]:
        notes.append("%d request(s) rejected whole (a metric of unset type, as the exporter does)" % m["rejected"])
    return "; " + "; ".join(notes) if notes else ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
