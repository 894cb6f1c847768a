#!/usr/bin/env python3
"""Regenerate the real-telemetry golden fixtures (tests/realtel/fixtures/).

For each package: make (or reuse) its own venv .venv-realtel/<name>/ from
requirements-<name>.txt, start server.py (deterministic OpenAI-compatible server,
planted evictions / queue delays from a seeded plan), run agent.py under that
package's unmodified instrumentation, capture the OTel SDK's OTLP/HTTP protobuf
POSTs in a tiny capture server here, and write

  fixtures/<name>.jsonl        one OTLP/JSON ExportTraceServiceRequest per line
  fixtures/<name>.truth.json   per-turn ground truth (trace id, tokens, planted cause, ns)

Standard library only; runs with any python3 >= 3.9. Usage:
  tests/realtel/record                     # all packages
  tests/realtel/record openinference       # some
  tests/realtel/record --seed 7 --conversations 4 --turns 6 otel-genai
  tests/realtel/record --seed 7 --out tests/realtel/fixtures-seed7 otel-genai   # elsewhere
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VENVS = os.path.join(ROOT, ".venv-realtel")
FIXTURES = os.path.join(HERE, "fixtures")
PACKAGES = ["openinference", "otel-genai", "openllmetry", "langchain", "vllm-stack",
            "pydantic-ai", "openlit", "litellm", "llama-index", "otel-genai-metrics",
            "semantic-cache", "write-amplification"]
# A recording that reuses another one's venv and agent mode.
VENV_OF = {"otel-genai-metrics": "otel-genai"}
MODE_OF = {"otel-genai-metrics": "otel-genai"}
# Recordings whose server also exports vLLM-shaped metrics (OTLP/HTTP) to the capture server.
METRICS = {"otel-genai-metrics"}

# Message content capture is turned off in every package that has a switch.
ENV = {
    "openinference": {"OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true",
                      "OPENINFERENCE_HIDE_INPUT_MESSAGES": "true",
                      "OPENINFERENCE_HIDE_OUTPUT_MESSAGES": "true"},
    "otel-genai": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "false"},
    "langchain": {"OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true",
                  "OPENINFERENCE_HIDE_INPUT_MESSAGES": "true",
                  "OPENINFERENCE_HIDE_OUTPUT_MESSAGES": "true"},
    "vllm-stack": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
    "otel-genai-metrics": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
    # pydantic-ai: InstrumentationSettings(include_content=False) in agent.py (no env switch)
    "pydantic-ai": {},
    # openlit: openlit.init(capture_message_content=False) in agent.py; same switch by env
    "openlit": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
    # litellm: no network besides the server (it would fetch a Hugging Face tokenizer for a
    # llama model name and its model cost map from GitHub)
    "litellm": {"HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true",
                "OPENINFERENCE_HIDE_INPUT_MESSAGES": "true",
                "OPENINFERENCE_HIDE_OUTPUT_MESSAGES": "true"},
    # semantic-cache: redis-py under opentelemetry-instrumentation-redis (its default, old
    # semconv: OTEL_SEMCONV_STABILITY_OPT_IN unset) in front of openai-v2
    "semantic-cache": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
    # write-amplification: sqlite3 / redis-py / requests instrumentations at their defaults
    # (old semconv) under an openai-v2 tool loop
    "write-amplification": {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"},
    "llama-index": {"OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true",
                    "OPENINFERENCE_HIDE_INPUT_MESSAGES": "true",
                    "OPENINFERENCE_HIDE_OUTPUT_MESSAGES": "true"},
}

# Packages whose versions go into the truth file.
VERSION_PREFIXES = ("openai", "opentelemetry-", "openinference-", "langchain", "mcp", "httpx",
                    "protobuf", "pydantic-ai", "pydantic_ai", "logfire", "openlit", "litellm",
                    "llama-index", "llama_index", "redis", "requests")


# ---------------------------------------------------------------- capture server
class Capture:
    def __init__(self):
        self.bodies: list[tuple[str, bytes]] = []   # ("traces" | "metrics", body), arrival order
        self.last = time.monotonic()
        cap = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                kind = self.path.rstrip("/").rsplit("/", 1)[-1]
                if kind in ("traces", "metrics"):
                    cap.bodies.append((kind, body))
                    cap.last = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        class S(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.httpd = S(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/traces"
        self.metrics_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/metrics"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_quiet(self, quiet_s=1.0, limit_s=15.0):
        t_end = time.monotonic() + limit_s
        while time.monotonic() < t_end and time.monotonic() - self.last < quiet_s:
            time.sleep(0.1)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- venvs
def venv_python(name: str) -> str:
    return os.path.join(VENVS, name, "bin", "python")


def ensure_venv(name: str, reinstall: bool = False) -> str:
    py = venv_python(name)
    req = os.path.join(HERE, f"requirements-{name}.txt")
    stamp = os.path.join(VENVS, name, ".realtel-req")
    want = open(req).read()
    if reinstall or not os.path.exists(py) or not os.path.exists(stamp) or open(stamp).read() != want:
        if reinstall and os.path.isdir(os.path.join(VENVS, name)):
            shutil.rmtree(os.path.join(VENVS, name))
        print(f"[{name}] creating venv and installing {os.path.relpath(req, ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", os.path.join(VENVS, name)], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", req], check=True)
        with open(stamp, "w") as f:
            f.write(want)
    return py


def versions(py: str) -> dict:
    out = subprocess.run([py, "-m", "pip", "freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    v = {}
    for line in out.splitlines():
        if "==" in line:
            k, ver = line.split("==", 1)
            if k.lower().startswith(VERSION_PREFIXES):
                v[k.lower()] = ver
    return dict(sorted(v.items()))


# ---------------------------------------------------------------- plan
def make_plan(name: str, seed: int, n_conv: int, n_turns: int) -> dict:
    """Seeded plan. Evictions only on turns >= 3 (turn 1 has nothing cached, so a
    cache read > 0 is first seen on turn 2: caching was seen before the eviction); never two causes on one turn; in vllm-stack the first MCP
    initialize of each conversation (turn 1) is a planted cold start."""
    rng = random.Random(seed)
    convs = [f"{name}-conv-{i + 1:02d}" for i in range(n_conv)]
    k = max(1, round(n_conv * 0.75))
    evict_convs = set(rng.sample(range(n_conv), k))
    queue_convs = set(rng.sample(range(n_conv), k))
    evict, queue, cold = [], [], []
    for i, c in enumerate(convs):
        e = rng.randint(3, n_turns) if i in evict_convs else None
        if e:
            evict.append([c, e])
        if i in queue_convs:
            q = rng.choice([t for t in range(2, n_turns + 1) if t != e])
            queue.append([c, q, round(rng.uniform(0.200, 0.450), 3)])
        cold_s = round(rng.uniform(0.400, 0.800), 3)
        if name == "vllm-stack":
            cold.append([c, 1, cold_s])
    return {"seed": seed, "conversations": convs, "turns": n_turns,
            "evict": evict, "queue": queue, "tool_cold_start": cold}


# ---------------------------------------------------------------- one package
def turn_truth(t: dict, reqs: list[dict], threshold_ns: int) -> dict:
    """One turn's truth from its requests (request 1 carries the planted cause)."""
    reqs = sorted(reqs, key=lambda r: r["request_index"])
    r1 = reqs[0]
    planted, extra = r1["planted"], 0
    if planted == "kv_eviction":
        extra = r1["eviction_extra_ns"]
    elif planted == "queue":
        extra = r1["queue_ns"]          # the measured wait behind the planted burst
    if t.get("tool_cold_start_s"):
        assert planted is None, "two causes planted on one turn"
        planted, extra = "tool_cold_start", int(round(t["tool_cold_start_s"] * 1e9))
    unplanted = []
    for r in reqs:
        if r["eviction_why"] == "pressure":
            unplanted.append({"cause": "kv_eviction", "request_index": r["request_index"],
                              "extra_ns": r["eviction_extra_ns"],
                              "evicted_tokens": r["would_cache_tokens"] - r["cached_tokens"]})
        if r["load_queue"] and r["queue_ns"] > threshold_ns:
            unplanted.append({"cause": "queue", "request_index": r["request_index"],
                              "extra_ns": r["queue_ns"]})
    top = max(unplanted, key=lambda u: u["extra_ns"]) if unplanted else None
    clean = (planted is None and not any(r["evicted"] for r in reqs)
             and all(r["queue_ns"] <= threshold_ns for r in reqs))
    keep = ("request_index", "stream", "tool_call", "prompt_tokens", "cached_tokens",
            "completion_tokens", "would_cache_tokens", "evicted", "eviction_why",
            "eviction_extra_ns", "queue_ns", "planted_queue_ns", "load_queue", "prefill_ns",
            "decode_ns", "start_ns", "end_ns", "request_id", "traceparent")
    return {
        "trace_id": t["trace_id"], "conversation_id": t["conversation_id"], "turn": t["turn"],
        "stream": t["stream"], "prompt_tokens": r1["prompt_tokens"],
        "cached_tokens": r1["cached_tokens"],
        "completion_tokens": sum(r["completion_tokens"] for r in reqs),
        "planted": planted, "extra_ns": extra,
        "unplanted": top["cause"] if top else None,
        "unplanted_extra_ns": top["extra_ns"] if top else 0,
        "unplanted_all": unplanted,
        "clean": clean,
        "server": {"queue_ns": sum(r["queue_ns"] for r in reqs),
                   "prefill_ns": sum(r["prefill_ns"] for r in reqs),
                   "decode_ns": sum(r["decode_ns"] for r in reqs),
                   "would_cache_tokens": r1["would_cache_tokens"],
                   "request_id": r1["request_id"]},
        "requests": [{"conversation_id": t["conversation_id"], "turn": t["turn"],
                      **{k: r[k] for k in keep}} for r in reqs],
    }


def record(name: str, args) -> dict:
    py = ensure_venv(VENV_OF.get(name, name), args.reinstall)
    mode = MODE_OF.get(name, name)
    work = tempfile.mkdtemp(prefix=f"realtel-{name}-")
    sys.path.insert(0, HERE)
    import semcache
    import writeamp
    if name == "semantic-cache":
        plan = semcache.make_plan(name, args.seed, args.conversations, args.turns)
    elif name == "write-amplification":
        plan = writeamp.make_plan(name, args.seed, args.conversations, args.turns)
    else:
        plan = make_plan(name, args.seed, args.conversations, args.turns)
    plan_path = os.path.join(work, "plan.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    cap = Capture()
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("OTEL_", "OPENINFERENCE_", "TRACELOOP_", "LOGFIRE_", "OPENLIT_")):
            del env[k]
    env.update(ENV[name])
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"

    log_path = os.path.join(work, "server.jsonl")
    srv_cmd = [sys.executable, os.path.join(HERE, "server.py"), "--plan", plan_path, "--log", log_path,
               "--seed", str(args.seed)]
    if name == "vllm-stack":  # the server emits vLLM's llm_request span: needs the OTel SDK
        srv_cmd = [py] + srv_cmd[1:] + ["--otlp", cap.url]
    if name in METRICS:       # vLLM-shaped metrics over OTLP: needs the OTel SDK
        srv_cmd = [py] + srv_cmd[1:] + ["--metrics-otlp", cap.metrics_url]
    srv = subprocess.Popen(srv_cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = srv.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        raise SystemExit(f"[{name}] server did not start: {line}")
    base_url = f"http://127.0.0.1:{line[1]}/v1"
    turns_path = os.path.join(work, "turns.json")
    t0 = time.monotonic()
    err_path = os.path.join(work, "agent.stderr")
    agent_cmd = [py, os.path.join(HERE, "agent.py"), "--mode", mode, "--base-url", base_url,
                 "--otlp", cap.url, "--plan", plan_path, "--out", turns_path]
    redis_proc = redis_version = store = None
    try:
        if name in ("semantic-cache", "write-amplification"):   # a private redis-server, no persistence
            redis_proc, redis_port, redis_version = semcache.start_redis(work)
            agent_cmd += ["--redis-port", str(redis_port)]
        if name == "write-amplification":   # the HTTP object store, and the SQLite file
            store = writeamp.Store(plan)
            agent_cmd += ["--store-url", store.url, "--sqlite-path", os.path.join(work, "tickets.db")]
        with open(err_path, "w") as err:
            rc = subprocess.run(agent_cmd, env=env, stderr=None if args.verbose else err).returncode
        if rc != 0:
            sys.stderr.write(open(err_path).read()[-6000:])
            raise SystemExit(f"[{name}] agent failed (exit {rc})")
    finally:
        if redis_proc is not None:
            semcache.stop_redis(redis_proc)
        if store is not None:
            store.close()
        srv.terminate()
        srv.wait(timeout=30)
    cap.wait_quiet()
    cap.close()
    wall = time.monotonic() - t0

    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    for i, (kind, b) in enumerate(cap.bodies):
        with open(os.path.join(raw, f"{i:06d}.{kind}.pb"), "wb") as f:
            f.write(b)
    os.makedirs(FIXTURES, exist_ok=True)
    out = os.path.join(FIXTURES, f"{name}.jsonl")
    subprocess.run([py, os.path.join(HERE, "otlpjson.py"), raw, out], check=True)

    # ---- truth: the agent's turns (trace ids) joined with the server's log
    import server as srvmod
    threshold = srvmod.CLEAN_QUEUE_NS
    turns = json.load(open(turns_path))
    srv_recs = [json.loads(x) for x in open(log_path)]
    summary = next((r for r in srv_recs if r.get("summary")), None)
    by_turn: dict = {}
    for r in srv_recs:
        if not r.get("summary"):
            by_turn.setdefault((r["conversation_id"], r["turn"]), []).append(r)
    truth_turns = []
    if name == "semantic-cache":
        return record_semantic_cache(name, args, py, plan, turns, srv_recs, summary, out, work,
                                     wall, redis_version, cap, srvmod)
    if name == "write-amplification":
        return record_write_amplification(name, args, py, plan, turns, srv_recs, summary, out, work,
                                          wall, redis_version, store, cap, srvmod)
    for t in turns:
        reqs = by_turn[(t["conversation_id"], t["turn"])]
        truth_turns.append(turn_truth(t, reqs, threshold))
        cu = t.get("client_usage") or {}
        got = cu.get("prompt_tokens", cu.get("input_tokens"))
        if got is not None and got not in [r["prompt_tokens"] for r in reqs] + [sum(r["prompt_tokens"] for r in reqs)]:
            print(f"[{name}] warning: client saw prompt_tokens {got} != server "
                  f"{[r['prompt_tokens'] for r in reqs]}")
    n_req = sum(len(v) for v in by_turn.values())
    truth = {
        "package": name,
        "versions": versions(py),
        "content_capture": {"env": ENV[name]},
        "server": srvmod.params(),
        "clean_queue_threshold_ns": threshold,
        "server_summary": summary,
        "metrics": ({"otlp": "vLLM-shaped gauges and sums, as the Collector's Prometheus receiver "
                             "delivers them", "interval_ms": 300} if name in METRICS else None),
        "mcp": ({"init_base_s": 0.003, "tool_s": 0.025, "sdk": "mcp (in-process, legacy handshake)"}
                if name == "vllm-stack" else None),
        "plan": plan,
        "turns": truth_turns,
    }
    with open(os.path.join(FIXTURES, f"{name}.truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    shutil.rmtree(work, ignore_errors=True)
    counts = {}
    for t in truth_turns:
        counts[t["planted"] or "none"] = counts.get(t["planted"] or "none", 0) + 1
    unpl = {}
    for t in truth_turns:
        for u in t["unplanted_all"]:
            unpl[u["cause"]] = unpl.get(u["cause"], 0) + 1
    size = os.path.getsize(out)
    n_metrics = sum(1 for k, _ in cap.bodies if k == "metrics")
    print(f"[{name}] {len(cap.bodies) - n_metrics} trace exports, {n_metrics} metrics exports, "
          f"{size / 1024:.0f} KiB, {len(truth_turns)} turns / {n_req} requests, planted {counts}, "
          f"unplanted {unpl}, clean {sum(t['clean'] for t in truth_turns)}, {wall:.1f} s", flush=True)
    return counts


def record_semantic_cache(name, args, py, plan, turns, srv_recs, summary, out, work, wall,
                          redis_version, cap, srvmod) -> dict:
    import semcache
    threshold = srvmod.CLEAN_QUEUE_NS
    truth_turns, cache_summary = semcache.build_truth(plan, turns, srv_recs, out, threshold, turn_truth)
    truth = {
        "package": name,
        "versions": versions(py),
        "redis_server": redis_version,
        "content_capture": {"env": ENV[name]},
        "semconv": "instrumentation defaults: OTEL_SEMCONV_STABILITY_OPT_IN unset (old db.*/net.* names)",
        "semantic_cache": {
            "client": "redis-py, one redis.Redis(host=127.0.0.1, port, db=0, decode_responses=True)",
            "key": f"{semcache.KEY_PREFIX} + sha256(normalised question)[:32]",
            "normalise": "lowercase, whitespace collapsed, trailing ?!. and spaces dropped",
            "lookup": "GET key (before any LLM call)",
            "on_hit": "return the cached answer; no LLM call",
            "on_miss": "LLM call (openai client, openai-v2 instrumentation), then SET key answer EX ttl_s",
            "ttl_s": semcache.TTL_S,
            "slow_lookup": "right before the GET a second, untraced client (raw socket) sends "
                           "CLIENT PAUSE <planted_pause_ms> ALL; the server holds the GET until the "
                           "pause ends: the latency is inside the GET span (the GET lasts the "
                           "pause plus up to ~100 ms: Redis releases paused clients from its "
                           "cron, hz 10; truth lookup.duration_ns is the span's)",
            "hit_marker": "none on any span: a hit is a GET with no LLM span after it in the trace",
        },
        "server": srvmod.params(),
        "clean_queue_threshold_ns": threshold,
        "server_summary": summary,
        "summary": cache_summary,
        "plan": plan,
        "turns": truth_turns,
    }
    with open(os.path.join(FIXTURES, f"{name}.truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    shutil.rmtree(work, ignore_errors=True)
    cs = cache_summary
    print(f"[{name}] {len(cap.bodies)} trace exports, {os.path.getsize(out) / 1024:.0f} KiB, "
          f"{cs['turns']} turns: {cs['hits']} hits / {cs['misses']} misses "
          f"(hit rate {cs['hit_rate']:.2f}), {cs['slow_lookups']} slow lookups, "
          f"costly {cs['costly_conversation']}: "
          f"{cs['conversations'][cs['costly_conversation']]}, {wall:.1f} s", flush=True)
    return {"hit": cs["hits"], "miss": cs["misses"]}


def record_write_amplification(name, args, py, plan, turns, srv_recs, summary, out, work, wall,
                               redis_version, store, cap, srvmod) -> dict:
    import writeamp
    threshold = srvmod.CLEAN_QUEUE_NS
    truth_turns, wa_summary = writeamp.build_truth(plan, turns, srv_recs, out, threshold, turn_truth)
    truth = {
        "package": name,
        "versions": versions(py),
        "redis_server": redis_version,
        "content_capture": {"env": ENV[name]},
        "semconv": "instrumentation defaults: OTEL_SEMCONV_STABILITY_OPT_IN unset (old db.*/net.*/http.* names)",
        "write_amplification": {
            "finding": "one tool call (execute_tool span) writing to >= 3 distinct stores",
            "tool": "save_ticket(city), run by the agent inside `execute_tool save_ticket` "
                    "(INTERNAL; gen_ai.operation.name=execute_tool, gen_ai.tool.name, "
                    "gen_ai.tool.call.id, gen_ai.tool.type) between the two chat calls of a turn",
            "stores": {
                "sqlite": "Python sqlite3 under opentelemetry-instrumentation-sqlite3, a file "
                          "(WAL); INSERT INTO tickets / UPDATE city_counts via a cursor, then "
                          "COMMIT (untraced); delay: an AFTER INSERT/UPDATE trigger calls a "
                          "Python user function that sleeps the planted time (inside the span)",
                "redis": "redis-py under opentelemetry-instrumentation-redis, private "
                         "redis-server on 127.0.0.1; SET ticket:<id> <json> EX 86400 / SADD "
                         "tickets:city:<city> <id>; delay: CLIENT PAUSE <ms> WRITE from an "
                         "untraced raw-socket client right before (released by Redis's cron, "
                         "hz 10: up to ~100 ms more)",
                "http": f"requests (one Session) under opentelemetry-instrumentation-requests; "
                        f"PUT {store.url}/tickets/<id> (or /audit/<id>) to a small HTTP store in "
                        f"the recorder (writeamp.Store) that sleeps the planted time, then 201; "
                        f"a read is GET /cities/<city>/tickets"},
            "planted": "all_three: one write to each store, one after another, in a seeded order",
            "negatives": {"one": "one store written", "two": "two stores written",
                          "two_plus_read": "two stores written and the third only read "
                                           "(SELECT / GET / HTTP GET)",
                          "two_one_twice": "two stores, one written twice (INSERT + UPDATE, "
                                           "SET + SADD, PUT + PUT /audit): 3 write spans, 2 stores"},
            "delay_ms": writeamp.DELAY_MS, "read_delay_ms": writeamp.READ_DELAY_MS,
            "write_operations": sorted(writeamp.WRITE_OPS),
            "extra_ns": "planted turns: sum minus max of the write spans' durations "
                        "(what running the writes in parallel would save); 0 otherwise",
        },
        "http_store": {"url": store.url, "log": store.log},
        "server": srvmod.params(),
        "clean_queue_threshold_ns": threshold,
        "server_summary": summary,
        "summary": wa_summary,
        "plan": plan,
        "turns": truth_turns,
    }
    with open(os.path.join(FIXTURES, f"{name}.truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    shutil.rmtree(work, ignore_errors=True)
    ws = wa_summary
    print(f"[{name}] {len(cap.bodies)} trace exports, {os.path.getsize(out) / 1024:.0f} KiB, "
          f"{ws['turns']} turns: {ws['planted']} planted write_amplification, {ws['negatives']} "
          f"negatives {ws['kinds']}, saving {ws['planted_saving_ns']}, unplanted "
          f"{ws['unplanted_llm']}, clean {ws['clean_turns']}, {wall:.1f} s", flush=True)
    return {"write_amplification": ws["planted"], "none": ws["negatives"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packages", nargs="*", default=PACKAGES, help=f"some of {PACKAGES}")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--out", metavar="DIR",
                    help="where <name>.jsonl / <name>.truth.json go (default tests/realtel/fixtures)")
    ap.add_argument("--reinstall", action="store_true", help="recreate the venvs")
    ap.add_argument("--setup-only", action="store_true", help="only create the venvs")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the agent's per-turn lines")
    args = ap.parse_args()
    global FIXTURES
    FIXTURES = os.path.abspath(args.out or FIXTURES)
    for p in args.packages:
        if p not in PACKAGES:
            raise SystemExit(f"unknown package {p}; choose from {PACKAGES}")
    for p in args.packages:
        if args.setup_only:
            ensure_venv(VENV_OF.get(p, p), args.reinstall)
        else:
            record(p, args)


if __name__ == "__main__":
    main()
