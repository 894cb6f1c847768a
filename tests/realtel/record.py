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
PACKAGES = ["openinference", "otel-genai", "openllmetry", "langchain", "vllm-stack"]

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
}

# Packages whose versions go into the truth file.
VERSION_PREFIXES = ("openai", "opentelemetry-", "openinference-", "langchain", "mcp", "httpx",
                    "protobuf")


# ---------------------------------------------------------------- capture server
class Capture:
    def __init__(self):
        self.bodies: list[bytes] = []
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
                if self.path.rstrip("/") == "/v1/traces":
                    cap.bodies.append(body)
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
def record(name: str, args) -> dict:
    py = ensure_venv(name, args.reinstall)
    work = tempfile.mkdtemp(prefix=f"realtel-{name}-")
    plan = make_plan(name, args.seed, args.conversations, args.turns)
    plan_path = os.path.join(work, "plan.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    cap = Capture()
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("OTEL_", "OPENINFERENCE_", "TRACELOOP_")):
            del env[k]
    env.update(ENV[name])
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"

    log_path = os.path.join(work, "server.jsonl")
    srv_cmd = [sys.executable, os.path.join(HERE, "server.py"), "--plan", plan_path, "--log", log_path]
    if name == "vllm-stack":  # the server emits vLLM's llm_request span: needs the OTel SDK
        srv_cmd = [py] + srv_cmd[1:] + ["--otlp", cap.url]
    srv = subprocess.Popen(srv_cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = srv.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        raise SystemExit(f"[{name}] server did not start: {line}")
    base_url = f"http://127.0.0.1:{line[1]}/v1"
    turns_path = os.path.join(work, "turns.json")
    t0 = time.monotonic()
    err_path = os.path.join(work, "agent.stderr")
    try:
        with open(err_path, "w") as err:
            rc = subprocess.run([py, os.path.join(HERE, "agent.py"), "--mode", name,
                                 "--base-url", base_url, "--otlp", cap.url, "--plan", plan_path,
                                 "--out", turns_path],
                                env=env, stderr=None if args.verbose else err).returncode
        if rc != 0:
            sys.stderr.write(open(err_path).read()[-6000:])
            raise SystemExit(f"[{name}] agent failed (exit {rc})")
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    cap.wait_quiet()
    cap.close()
    wall = time.monotonic() - t0

    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    for i, b in enumerate(cap.bodies):
        with open(os.path.join(raw, f"{i:06d}.pb"), "wb") as f:
            f.write(b)
    os.makedirs(FIXTURES, exist_ok=True)
    out = os.path.join(FIXTURES, f"{name}.jsonl")
    subprocess.run([py, os.path.join(HERE, "otlpjson.py"), raw, out], check=True)

    # ---- truth: the agent's turns (trace ids) joined with the server's log
    turns = json.load(open(turns_path))
    srv_log = {(r["conversation_id"], r["turn"]): r for r in map(json.loads, open(log_path))}
    truth_turns = []
    for t in turns:
        s = srv_log[(t["conversation_id"], t["turn"])]
        planted, extra = s["planted"], s["extra_ns"]
        if t.get("tool_cold_start_s"):
            assert planted is None, "two causes planted on one turn"
            planted, extra = "tool_cold_start", int(round(t["tool_cold_start_s"] * 1e9))
        truth_turns.append({
            "trace_id": t["trace_id"], "conversation_id": t["conversation_id"], "turn": t["turn"],
            "stream": t["stream"], "prompt_tokens": s["prompt_tokens"],
            "cached_tokens": s["cached_tokens"], "completion_tokens": s["completion_tokens"],
            "planted": planted, "extra_ns": extra,
            "server": {"queue_ns": s["queue_ns"], "prefill_ns": s["prefill_ns"],
                       "decode_ns": s["decode_ns"], "would_cache_tokens": s["would_cache_tokens"],
                       "request_id": s["request_id"]},
        })
        cu = t.get("client_usage") or {}
        got = cu.get("prompt_tokens", cu.get("input_tokens"))
        if got is not None and got != s["prompt_tokens"]:
            print(f"[{name}] warning: client saw prompt_tokens {got} != server {s['prompt_tokens']}")
    sys.path.insert(0, HERE)
    import server as srvmod
    truth = {
        "package": name,
        "versions": versions(py),
        "content_capture": {"env": ENV[name]},
        "server": srvmod.rates(),
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
    size = os.path.getsize(out)
    print(f"[{name}] {len(cap.bodies)} exports, {size / 1024:.0f} KiB, {len(truth_turns)} turns, "
          f"planted {counts}, {wall:.1f} s", flush=True)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packages", nargs="*", default=PACKAGES, help=f"some of {PACKAGES}")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--reinstall", action="store_true", help="recreate the venvs")
    ap.add_argument("--setup-only", action="store_true", help="only create the venvs")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the agent's per-turn lines")
    args = ap.parse_args()
    for p in args.packages:
        if p not in PACKAGES:
            raise SystemExit(f"unknown package {p}; choose from {PACKAGES}")
    for p in args.packages:
        if args.setup_only:
            ensure_venv(p, args.reinstall)
        else:
            record(p, args)


if __name__ == "__main__":
    main()
