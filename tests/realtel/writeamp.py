"""The `write-amplification` recording (standard library only): its seeded plan, the
small HTTP object store it writes to, and its ground truth read back from the fixture.

The agent (agent.py --mode write-amplification) does, per turn, inside its
`invoke_agent` span: a chat call (openai client under opentelemetry-instrumentation-
openai-v2) offering one tool, `save_ticket(city)`; the server answers with a call of
it; the agent runs the tool inside an `execute_tool save_ticket` span (as the GenAI
semantic conventions name it) and sends the result back for the final answer (a
second chat call). The tool writes the ticket, for real, through instrumented
clients, one store after another (children of the execute_tool span):

  sqlite  Python's sqlite3 (a file in the recording's work dir) under
          opentelemetry-instrumentation-sqlite3: INSERT INTO tickets (or UPDATE
          city_counts), then COMMIT (not traced: the instrumentation traces cursor
          execute only). An AFTER INSERT / AFTER UPDATE trigger calls a Python user
          function (`audit_hook`) that sleeps the planted time: the latency is inside
          the INSERT span (the statement runs the trigger).
  redis   redis-py under opentelemetry-instrumentation-redis against a private
          redis-server: SET ticket:<id> <json> EX 86400 (or SADD tickets:city:<city>
          <id>). Right before it a second, untraced client (a raw socket) sends
          CLIENT PAUSE <ms> WRITE: the server holds the write until the pause ends
          (plus up to ~100 ms: paused clients are released from Redis's cron, hz 10).
  http    requests under opentelemetry-instrumentation-requests: PUT
          http://127.0.0.2:<port>/tickets/<id> (or /audit/<id>) to the store below,
          which sleeps the planted time before it answers 201.

Plan (seeded): PLANTED of the turns write to all three stores (one write each, in a
shuffled order): `write_amplification`. The others are negatives: one store, two
stores, two stores plus a READ of the third (SELECT / GET / HTTP GET: not a write),
or two stores with one of them written twice (three write spans, two distinct stores).
Every write gets a planted delay, negatives too.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STORES = ("sqlite", "redis", "http")
PLANTED = 32                     # of 64 turns
NEGATIVE_KINDS = ("one", "two", "two_plus_read", "two_one_twice")
DELAY_MS = {"sqlite": (40, 180), "redis": (40, 160), "http": (100, 300)}
READ_DELAY_MS = (5, 30)          # the HTTP store's GET (sqlite / redis reads: no delay)
STORE_HOST = "127.0.0.2"         # the HTTP store's own loopback address (redis is on 127.0.0.1)
TTL_S = 86400
# a store's write, its second write (two_one_twice), and its read
FIRST = {"sqlite": "INSERT", "redis": "SET", "http": "PUT"}
SECOND = {"sqlite": "UPDATE", "redis": "SADD", "http": "PUT"}
READ = {"sqlite": "SELECT", "redis": "GET", "http": "GET"}
WRITE_OPS = {"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "MERGE", "SET", "SADD", "HSET",
             "DEL", "PUT", "PATCH", "POST"}


def ticket_id(ci: int, turn: int) -> str:
    return f"tkt-{ci + 1:02d}-{turn:02d}"


def make_plan(name: str, seed: int, n_conv: int, n_turns: int) -> dict:
    rng = random.Random(seed)
    convs = [f"{name}-conv-{i + 1:02d}" for i in range(n_conv)]
    cells = [(ci, t) for ci in range(n_conv) for t in range(1, n_turns + 1)]
    n_planted = min(len(cells), round(PLANTED * len(cells) / 64))
    planted = set(rng.sample(cells, n_planted))
    neg = [c for c in cells if c not in planted]
    rng.shuffle(neg)
    kinds = {c: NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)] for i, c in enumerate(neg)}
    turns = []
    for ci, t in cells:
        tid = ticket_id(ci, t)
        kind = "all_three" if (ci, t) in planted else kinds[(ci, t)]
        order = list(STORES)
        rng.shuffle(order)
        ops = []

        def write(store, second=False):
            op = SECOND[store] if second else FIRST[store]
            target = {"sqlite": "city_counts" if second else "tickets",
                      "redis": "tickets:city:<city>" if second else f"ticket:{tid}",
                      "http": f"/audit/{tid}" if second else f"/tickets/{tid}"}[store]
            ops.append({"store": store, "op": op, "write": True, "target": target,
                        "delay_ms": rng.randint(*DELAY_MS[store])})

        if kind == "all_three":
            for s in order:
                write(s)
        elif kind == "one":
            write(order[0])
        elif kind == "two":
            write(order[0])
            write(order[1])
        elif kind == "two_plus_read":
            reader = order[2]
            target = {"sqlite": "tickets", "redis": "ticket:last:<city>",
                      "http": "/cities/<city>/tickets"}[reader]
            read = {"store": reader, "op": READ[reader], "write": False, "target": target,
                    "delay_ms": rng.randint(*READ_DELAY_MS) if reader == "http" else 0}
            ops = []
            write(order[0])
            write(order[1])
            ops.insert(rng.randrange(3), read)
        elif kind == "two_one_twice":
            write(order[0])
            write(order[1])
            write(order[rng.randrange(2)], second=True)
        turns.append({"conversation_id": convs[ci], "turn": t, "ticket_id": tid, "kind": kind,
                      "planted": kind == "all_three", "ops": ops})
    return {"seed": seed, "conversations": convs, "turns": n_turns,
            "evict": [], "queue": [], "tool_cold_start": [],
            "write_amplification": {"planted_turns": n_planted, "ttl_s": TTL_S, "turns": turns}}


# ---------------------------------------------------------------- the HTTP object store
class Store:
    """PUT /tickets/<id>, PUT /audit/<id> (201 after the planted sleep), GET
    /cities/<city>/tickets (200, the ids stored for that city). The planted sleep of a
    request is looked up by (method, path) in the plan, in order of arrival."""

    def __init__(self, plan: dict, host: str = STORE_HOST):
        self.delays: dict = {}
        for t in plan["write_amplification"]["turns"]:
            for o in t["ops"]:
                if o["store"] == "http":
                    m = "PUT" if o["write"] else "GET"
                    self.delays.setdefault((m, o["target"], t["ticket_id"]), []).append(o["delay_ms"])
        self.objects: dict = {}
        self.log: list = []
        st = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, code: int, obj) -> None:
                b = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

            def _delay(self, method: str, target: str, tid: str) -> int:
                q = st.delays.get((method, target, tid)) or [0]
                ms = q.pop(0) if len(q) > 1 else q[0]
                time.sleep(ms / 1000)
                return ms

            def do_PUT(self):
                t0 = time.time_ns()
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                parts = self.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] not in ("tickets", "audit"):
                    self._reply(404, {"error": "not found"})
                    return
                tid = parts[1]
                ms = self._delay("PUT", self.path, tid)
                st.objects[self.path] = body
                self._reply(201, {"stored": self.path, "bytes": len(body)})
                st.log.append({"method": "PUT", "path": self.path, "ticket_id": tid,
                               "sleep_ms": ms, "start_ns": t0, "end_ns": time.time_ns()})

            def do_GET(self):
                t0 = time.time_ns()
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 3 or parts[0] != "cities" or parts[2] != "tickets":
                    self._reply(404, {"error": "not found"})
                    return
                tid = self.headers.get("X-Ticket-Id", "")
                ms = self._delay("GET", "/cities/<city>/tickets", tid)
                ids = sorted(p.split("/")[-1] for p in st.objects if p.startswith("/tickets/"))
                self._reply(200, {"city": parts[1], "tickets": ids[-5:]})
                st.log.append({"method": "GET", "path": self.path, "ticket_id": tid,
                               "sleep_ms": ms, "start_ns": t0, "end_ns": time.time_ns()})

        self.httpd = ThreadingHTTPServer((host, 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- truth
def _attrs(s: dict) -> dict:
    out = {}
    for a in s.get("attributes", []):
        v = a["value"]
        for k in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if k in v:
                out[a["key"]] = int(v[k]) if k == "intValue" else v[k]
    return out


def _dur(s: dict) -> int:
    return int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])


def classify(s: dict) -> dict | None:
    """A store access span: its store, address, operation, statement / url; None for
    other spans. Reads the instrumentations' attributes (old and new semconv names)."""
    a = _attrs(s)
    system = a.get("db.system.name", a.get("db.system"))
    if system:
        stmt = a.get("db.statement", a.get("db.query.text", ""))
        op = a.get("db.operation.name", a.get("db.operation")) or (stmt.split() or [s["name"]])[0]
        host = a.get("server.address", a.get("net.peer.name"))
        port = a.get("server.port", a.get("net.peer.port"))
        store = "sqlite" if system == "sqlite" else system
        return {"store": store, "db_system": system, "address": f"{host}:{port}" if host else None,
                "operation": op.upper(), "statement": stmt}
    method = a.get("http.request.method", a.get("http.method"))
    if method and s.get("kind") == 3:
        url = a.get("url.full", a.get("http.url", ""))
        return {"store": "http", "db_system": None,
                "address": url.split("://", 1)[-1].split("/", 1)[0], "operation": method.upper(),
                "statement": url}
    return None


def spans_by_trace(fixture: str) -> dict:
    out: dict = {}
    for line in open(fixture):
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    out.setdefault(s["traceId"], []).append((ss.get("scope", {}).get("name", ""), s))
    for v in out.values():
        v.sort(key=lambda x: int(x[1]["startTimeUnixNano"]))
    return out


def build_truth(plan: dict, agent_turns: list, srv_recs: list, fixture: str,
                threshold_ns: int, request_truth) -> tuple[list, dict]:
    """Per-turn truth from the fixture's spans, the plan, the agent's turn list and the
    server's log; and a summary. `request_truth` is record.turn_truth."""
    wa = plan["write_amplification"]
    ptur = {(x["conversation_id"], x["turn"]): x for x in wa["turns"]}
    spans = spans_by_trace(fixture)
    srv: dict = {}
    for r in srv_recs:
        if not r.get("summary"):
            srv.setdefault((r["conversation_id"], r["turn"]), []).append(r)
    out = []
    for t in agent_turns:
        conv, turn = t["conversation_id"], t["turn"]
        p = ptur[(conv, turn)]
        sp = [s for _, s in spans[t["trace_id"]]]
        root = next(s for s in sp if "parentSpanId" not in s)
        tools = [s for s in sp if _attrs(s).get("gen_ai.operation.name") == "execute_tool"]
        assert len(tools) == 1, f"{conv}/{turn}: {len(tools)} execute_tool spans"
        tool = tools[0]
        accesses = []
        for s in sp:
            c = classify(s)
            if c is None:
                continue
            assert s.get("parentSpanId") == tool["spanId"], f"{conv}/{turn}: {s['name']} not under the tool"
            accesses.append((s, c))
        assert len(accesses) == len(p["ops"]), f"{conv}/{turn}: {len(accesses)} accesses, plan {p['ops']}"
        writes, reads = [], []
        for (s, c), o in zip(accesses, p["ops"]):
            assert c["store"] == o["store"] and c["operation"] == o["op"], (conv, turn, c, o)
            assert (c["operation"] in WRITE_OPS) == o["write"], (conv, turn, c, o)
            row = {"span_id": s["spanId"], "name": s["name"], "store": c["store"],
                   "db_system": c["db_system"], "address": c["address"],
                   "operation": c["operation"], "statement": c["statement"],
                   "duration_ns": _dur(s), "start_ns": int(s["startTimeUnixNano"]),
                   "end_ns": int(s["endTimeUnixNano"]), "planted_delay_ms": o["delay_ms"]}
            (writes if o["write"] else reads).append(row)
        for a, b in zip(accesses, accesses[1:]):   # one after another, never overlapping
            assert int(a[0]["endTimeUnixNano"]) <= int(b[0]["startTimeUnixNano"]), (conv, turn)
        stores = sorted({w["store"] for w in writes})
        planted = len(stores) >= 3
        assert planted == p["planted"], (conv, turn, stores)
        durs = [w["duration_ns"] for w in writes]
        sum_ns, max_ns = sum(durs), max(durs)
        llm = [s for s in sp if _attrs(s).get("gen_ai.operation.name") == "chat"]
        rt = request_truth(t, srv[(conv, turn)], threshold_ns)
        out.append({
            "trace_id": t["trace_id"], "conversation_id": conv, "turn": turn, "stream": t["stream"],
            "ticket_id": p["ticket_id"], "kind": p["kind"],
            "planted": "write_amplification" if planted else None,
            "extra_ns": sum_ns - max_ns if planted else 0,   # what running the writes in parallel saves
            "agent_span_id": root["spanId"], "turn_duration_ns": _dur(root),
            "tool": {"span_id": tool["spanId"], "name": tool["name"], "duration_ns": _dur(tool),
                     "start_ns": int(tool["startTimeUnixNano"]), "end_ns": int(tool["endTimeUnixNano"]),
                     "call_id": _attrs(tool).get("gen_ai.tool.call.id"),
                     "parent_span_id": tool.get("parentSpanId")},
            "writes": writes, "reads": reads,
            "distinct_write_stores": len(stores), "write_stores": stores,
            "writes_sum_ns": sum_ns, "writes_max_ns": max_ns,
            "sum_minus_max_ns": sum_ns - max_ns,
            "writes_share_of_turn": round(sum_ns / _dur(root), 4),
            "llm": {"span_ids": [c["spanId"] for c in llm], "prompt_tokens": rt["prompt_tokens"],
                    "cached_tokens": rt["cached_tokens"], "completion_tokens": rt["completion_tokens"],
                    "server": rt["server"], "unplanted": rt["unplanted"],
                    "unplanted_extra_ns": rt["unplanted_extra_ns"], "unplanted_all": rt["unplanted_all"],
                    "clean": rt["clean"], "requests": rt["requests"]},
            "clean_llm": rt["clean"],   # both LLM requests: no eviction, no wait > threshold
            "clean": not planted and rt["clean"],
        })
    pl = [r for r in out if r["planted"]]
    neg = [r for r in out if not r["planted"]]
    by_store: dict = {}
    for r in out:
        for w in r["writes"]:
            by_store.setdefault(w["store"], []).append(w["duration_ns"])
    summary = {
        "turns": len(out), "planted": len(pl), "negatives": len(neg),
        "kinds": {k: sum(r["kind"] == k for r in out) for k in ("all_three",) + NEGATIVE_KINDS},
        "planted_saving_ns": {"min": min(r["extra_ns"] for r in pl), "max": max(r["extra_ns"] for r in pl),
                              "median": int(statistics.median(r["extra_ns"] for r in pl))} if pl else None,
        "write_duration_ns": {s: {"min": min(v), "median": int(statistics.median(v)), "max": max(v),
                                  "n": len(v)} for s, v in sorted(by_store.items())},
        "negatives_with_three_write_spans": sum(len(r["writes"]) >= 3 for r in neg),
        "negatives_with_a_read": sum(bool(r["reads"]) for r in neg),
        "clean_llm_turns": sum(r["clean_llm"] for r in out),
        "clean_turns": sum(r["clean"] for r in out),
        "unplanted_llm": {c: sum(u["cause"] == c for r in out for u in r["llm"]["unplanted_all"])
                          for c in ("kv_eviction", "queue")},
    }
    return out, summary
