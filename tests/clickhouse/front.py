#!/usr/bin/env python3
"""A small HTTP front that speaks the subset of ClickHouse's HTTP interface a client uses,
backed by chDB (ClickHouse's engine in-process, PyPI `chdb`). Test use only.

Run it with the chDB venv's python (scripts/setup makes it):
    ~/.cache/tailscope/chdb-venv/bin/python tests/clickhouse/front.py [--port 0] [--data DIR] [--log]

The first line on stdout is exactly `listening on http://127.0.0.1:PORT/` (flushed), so a
test can spawn it and read the port; `--port 0` (the default) picks a free one.

What it speaks (ClickHouse HTTP interface, https://clickhouse.com/docs/interfaces/http):
  * GET /ping and GET / without a query -> 200 `Ok.\\n`
  * the query in the `query` URL parameter (GET or POST) and/or in the POST body; with both,
    the body follows the URL query (after a newline), as in ClickHouse
  * INSERT ... FORMAT <fmt> with the data after it: the query in the URL and the data in the
    body (what clients do), or both in the body (data after the FORMAT line). The rows go in
    through chDB's streaming inserter (Connection.send_insert), so any input format chDB
    has works (RowBinary, Native, JSONEachRow, TSV, CSV, Parquet, ...) and binary data is
    taken byte-exact. INSERT ... VALUES (...) and INSERT ... SELECT run as plain queries.
  * FORMAT in the query; otherwise `default_format` (URL) or the X-ClickHouse-Format header;
    otherwise TabSeparated. Results are returned byte-exact as chDB produces them, binary
    formats included (RowBinary, RowBinaryWithNamesAndTypes, Native, ArrowStream, Parquet).
  * the database: `database` URL parameter or X-ClickHouse-Database header (else `default`)
  * query parameters: `param_<name>=<value>` for `{name:Type}` placeholders
  * settings given as other URL parameters: applied with SET for that query when chDB knows
    the setting, reset to DEFAULT after it; unknown ones are ignored (logged with --log)
  * any user: basic auth, `user`/`password` URL parameters or X-ClickHouse-User/-Key headers
  * request bodies with Content-Length or Transfer-Encoding: chunked; keep-alive
  * errors: HTTP 500, header X-ClickHouse-Exception-Code: <code>, body `Code: <code>. DB::Exception: ...\\n`
Not supported (answered with an error, never with wrong bytes): ClickHouse's own block
compression (`compress=1` / `decompress=1`, e.g. the Rust `clickhouse` crate's default LZ4:
use Compression::None), and a Content-Encoding on the request body. Sessions (`session_id`)
are not isolated: there is one chDB session, requests are handled one at a time.
"""
import argparse
import base64
import http.server
import json
import os
import re
import shutil
import signal
import socketserver
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

import chdb
from chdb import session as chdb_session

BINARY_FORMATS = {
    "rowbinary", "rowbinarywithnames", "rowbinarywithnamesandtypes", "rowbinarywithdefaults",
    "native", "arrow", "arrowstream", "parquet", "orc", "avro", "msgpack", "protobuf",
    "protobufsingle", "capnproto", "rawblob", "npy", "bsoneachrow",
}
# URL parameters that are part of the HTTP protocol, not settings
PROTOCOL_PARAMS = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "compress", "decompress",
    "enable_http_compression", "buffer_size", "wait_end_of_query", "http_wait_end_of_query",
    "role", "stacktrace", "client_protocol_version", "default_session_timeout",
}
_INSERT_FORMAT = re.compile(
    rb"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+([A-Za-z][A-Za-z0-9_]*)", re.I | re.S)
_FORMAT_IN_QUERY = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.I)
_CODE = re.compile(r"Code:\s*(\d+)\.")


class FrontError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Engine:
    """One persistent chDB session. Requests are served one at a time (under self.lock): the
    session's current database is global, and one statement at a time is what chDB's
    streaming inserter allows."""

    def __init__(self, path, log):
        self.path = path
        self.log = log
        self.lock = threading.Lock()
        self.session = chdb_session.Session(path)
        self.conn = self.session._conn  # chdb.state.sqlitelike.Connection: query/send_insert
        self.current_db = None
        self.version = self._text("SELECT version()").strip()
        self.timezone = self._text("SELECT timezone()").strip()
        self.settings = set(self._text("SELECT name FROM system.settings").split())

    def _text(self, sql):
        return self.conn.query(sql, "TabSeparated").bytes().decode()

    def use(self, db):
        if db != self.current_db:
            self.conn.query("USE " + ident(db), "TabSeparated")
            self.current_db = db

    def run(self, sql, fmt, params, settings):
        applied = []
        try:
            for k, v in settings.items():
                if k in self.settings:
                    self.conn.query("SET %s = %s" % (k, quote(v)), "TabSeparated")
                    applied.append(k)
                elif self.log:
                    log("ignored URL parameter %s=%s" % (k, v))
            res = self.conn.query(sql, fmt, params=params)
            return res.bytes(), {"read_rows": res.rows_read(), "read_bytes": res.bytes_read(),
                                 "written_rows": res.rows_written(), "written_bytes": res.bytes_written(),
                                 "elapsed_ns": int(res.elapsed() * 1e9)}
        finally:
            for k in applied:
                try:
                    self.conn.query("SET %s = DEFAULT" % k, "TabSeparated")
                except Exception:
                    pass

    def insert(self, statement, fmt, data):
        ins = self.conn.send_insert(statement, fmt)
        try:
            step = 1 << 20
            for i in range(0, len(data), step):
                ins.append(data[i:i + step])
            res = ins.finish()
        except BaseException:
            try:
                ins.cancel()
            except Exception:
                pass
            raise
        return {"read_rows": 0, "read_bytes": 0, "written_rows": res.rows_written,
                "written_bytes": res.bytes_written, "elapsed_ns": int(res.elapsed * 1e9)}


def ident(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote(v):
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def log(msg):
    sys.stderr.write("[front %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def error_code(message):
    m = _CODE.search(message)
    return int(m.group(1)) if m else 1001  # STD_EXCEPTION


def clean_message(message):
    # chDB's streaming inserter prefixes its own words; ClickHouse's body starts at "Code:"
    i = message.find("Code:")
    return message[i:] if i > 0 else message


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tailscope-chdb-front"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet unless --log
        if self.server.log:
            log("%s %s" % (self.address_string(), fmt % args))

    # ------------------------------------------------------------ plumbing

    def _body(self):
        if self.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
            raise FrontError(1, "Code: 1. DB::Exception: the chDB front does not support "
                                "Content-Encoding %s on requests. (UNSUPPORTED_METHOD)"
                             % self.headers.get("Content-Encoding"))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._handle(b"")

    def do_POST(self):
        try:
            body = self._body()
        except FrontError as e:
            self.close_connection = True
            return self._error(e.code, e.message)
        self._handle(body)

    def _error(self, code, message):
        message = clean_message(message).rstrip("\n") + "\n"
        self._send(500, message.encode("utf-8", "replace"), [
            ("Content-Type", "text/plain; charset=UTF-8"),
            ("X-ClickHouse-Exception-Code", str(code)),
            ("X-ClickHouse-Server-Display-Name", "chdb-front"),
        ])
        if self.server.log:
            log("-> 500 code %d: %s" % (code, message.strip()[:300]))

    # ------------------------------------------------------------ one request

    def _handle(self, body):
        t0 = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = url.path.rstrip("/") or "/"
        if path == "/ping" or (path == "/" and "query" not in params and not body):
            return self._send(200, b"Ok.\n", [("Content-Type", "text/html; charset=UTF-8")])
        if path != "/":
            return self._send(404, b"There is no handle " + path.encode() + b"\n",
                              [("Content-Type", "text/plain; charset=UTF-8")])
        engine = self.server.engine
        for bad in ("compress", "decompress"):
            if params.get(bad, "0") not in ("", "0"):
                return self._error(1, "Code: 1. DB::Exception: the chDB front does not implement "
                                      "ClickHouse's compressed HTTP blocks (%s=1); use no compression. "
                                      "(UNSUPPORTED_METHOD)" % bad)
        db = params.get("database") or self.headers.get("X-ClickHouse-Database") or "default"
        default_format = (params.get("default_format") or self.headers.get("X-ClickHouse-Format")
                          or "TabSeparated")
        qparams = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items()
                    if k not in PROTOCOL_PARAMS and not k.startswith("param_")}
        url_query = params.get("query", "").encode("utf-8")
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = [("X-ClickHouse-Query-Id", query_id),
                   ("X-ClickHouse-Server-Display-Name", "chdb-front"),
                   ("X-ClickHouse-Timezone", engine.timezone)]
        self._what = ("query", "")
        try:
            with engine.lock:
                out, out_fmt, summary = self._execute(engine, db, url_query, body, default_format,
                                                      qparams, settings)
        except FrontError as e:
            self._log(db, len(body), None, t0)
            return self._error(e.code, e.message)
        except Exception as e:  # chDB's ChdbError / RuntimeError carry "Code: N. DB::Exception: ..."
            self._log(db, len(body), None, t0)
            msg = str(e)
            return self._error(error_code(msg), msg)
        summary = {k: str(v) for k, v in summary.items()}
        summary["result_rows"] = "0"
        summary["result_bytes"] = str(len(out))
        ctype = ("application/octet-stream" if out_fmt.lower() in BINARY_FORMATS
                 else "application/json; charset=UTF-8" if out_fmt.lower().startswith("json")
                 else "text/plain; charset=UTF-8")
        headers += [("Content-Type", ctype), ("X-ClickHouse-Format", out_fmt),
                    ("X-ClickHouse-Summary", json.dumps(summary, separators=(",", ":")))]
        self._send(200, out, headers)
        self._log(db, len(body), len(out), t0)

    def _execute(self, engine, db, url_query, body, default_format, qparams, settings):
        try:
            engine.use(db)
        except Exception as e:
            raise FrontError(error_code(str(e)), str(e))
        # the INSERT ... FORMAT case: data after the FORMAT clause
        head = url_query if url_query else body[:65536]
        m = _INSERT_FORMAT.match(head)
        if m and re.search(rb"\bVALUES\b", m.group(1), re.I):
            m = None  # INSERT ... VALUES (...): a plain query (a FORMAT inside a value is data)
        if m:
            statement = m.group(1).decode("utf-8")
            fmt = m.group(2).decode("ascii")
            if url_query:
                rest = url_query[m.end():]
                data = (rest.lstrip(b" \t\r\n") + b"\n" + body) if rest.strip() else body
            else:
                data = body[m.end():]
                # the data starts after the FORMAT line (or one blank)
                mm = re.match(rb"[ \t]*\r?\n", data)
                data = data[mm.end():] if mm else data[1:] if data[:1] in (b" ", b"\t") else data
            self._what = ("insert", statement + " FORMAT " + fmt)
            return b"", fmt, engine.insert(statement, fmt, data)
        sql = (url_query + b"\n" + body) if (url_query and body) else (url_query or body)
        sql_text = sql.decode("utf-8")
        self._what = ("query", sql_text)
        if not sql_text.strip():
            raise FrontError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        fm = _FORMAT_IN_QUERY.search(sql_text)
        out, summary = engine.run(sql_text, default_format, qparams, settings)
        return out, (fm.group(1) if fm else default_format), summary

    def _log(self, db, nin, nout, t0):
        if not self.server.log:
            return
        kind, shown = self._what
        q = " ".join(shown.split())
        if len(q) > 400:
            q = q[:400] + "..."
        log("%s db=%s in=%dB out=%s %.1fms: %s" % (
            kind, db, nin, "ERR" if nout is None else "%dB" % nout, (time.monotonic() - t0) * 1e3, q))


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    # A thread per connection, so an idle keep-alive connection (a client's pool) never
    # blocks another client; the engine itself runs one request at a time (Engine.lock).
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    ap.add_argument("--data", help="chDB data directory (kept); default: a temp dir removed on exit")
    ap.add_argument("--log", action="store_true", help="log each query and the response size to stderr")
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when stdin closes (a spawning test that dies takes the front with it)")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="the certificate's PEM private key")
    a = ap.parse_args()

    tmp = None
    data = a.data
    if not data:
        tmp = tempfile.mkdtemp(prefix="tailscope-chdb-")
        data = os.path.join(tmp, "db")
    os.makedirs(data, exist_ok=True)
    engine = Engine(data, a.log)
    srv = Server((a.host, a.port), Handler)
    srv.engine = engine
    srv.log = a.log
    scheme = "http"
    if a.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    port = srv.server_address[1]
    sys.stdout.write("listening on %s://%s:%d/\n" % (scheme, a.host, port))
    sys.stdout.flush()
    log("chdb %s, ClickHouse %s, data %s%s" % (chdb.__version__, engine.version, data,
                                              " (temporary)" if tmp else ""))

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.exit_on_stdin_eof:
        def watch():
            while sys.stdin.buffer.read(65536):
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        try:
            engine.session.close()
        except Exception:
            pass
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
