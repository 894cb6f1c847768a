"""The `semantic-cache` recording (standard library only): its seeded plan, the private
redis-server it runs against, and its ground truth read back from the fixture.

The agent (agent.py --mode semantic-cache) does, per turn, inside its `invoke_agent`
span: a cache lookup with redis-py (`GET semcache:v1:<sha256 of the normalised
question>`), then on a hit returns the cached answer and calls no model; on a miss
calls the model (openai client under opentelemetry-instrumentation-openai-v2) and
stores the answer (`SET key answer EX 3600`). Every Redis command goes through
redis-py under opentelemetry-instrumentation-redis, unmodified; nothing says hit or
miss: a hit is a lookup with no LLM call after it.

Plan (seeded): in one conversation (the "costly" one) every question is new (all
misses) and every lookup is slow; in the others, REPEATS of the turns ask a question
already answered earlier (by any other non-costly turn), in another surface form
(case, spacing, punctuation) that normalises to the same key: those are the hits.
SLOW_OTHER of the other turns get a slow lookup: right before the GET, a second,
untraced client (a raw socket) sends `CLIENT PAUSE <ms> ALL`, so the server holds the
GET for that long (real server-side latency inside the GET span, as during a
failover or a maintenance pause).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import time

TTL_S = 3600
KEY_PREFIX = "semcache:v1:"
REPEATS = 24                 # hits planned among the non-costly turns
SLOW_OTHER = 6               # slow lookups planted among the non-costly turns (3 hits, 3 misses)
SLOW_MS = (120, 320)         # their CLIENT PAUSE
COSTLY_SLOW_MS = (200, 400)  # every lookup of the costly conversation

CITIES = ["Paris", "Lyon", "Oslo", "Porto", "Quito", "Perth", "Austin", "Kyoto", "Accra", "Lima"]
TEMPLATES = [
    "Should I take an umbrella in {city} tomorrow?",
    "What will the high temperature be in {city} tomorrow?",
    "Is it windy enough to go sailing in {city} this weekend?",
    "Will it snow in {city} this week?",
    "When does the rain stop in {city} today?",
    "Is tomorrow a good day for a picnic in {city}?",
    "How humid will it be in {city} on Friday?",
]


def normalise(q: str) -> str:
    """The cache's normalisation: lowercase, whitespace collapsed, trailing ?!. dropped."""
    return " ".join(q.lower().split()).rstrip("?!. ")


def cache_key(q: str) -> str:
    return KEY_PREFIX + hashlib.sha256(normalise(q).encode()).hexdigest()[:32]


def variant(q: str, k: int) -> str:
    """Another surface form of q that normalises to the same key."""
    forms = [q.lower(), "  " + q.replace(" ", "  "), q.rstrip("?") + "??", q.upper(),
             q.rstrip("?") + " ?", q.lower().rstrip("?")]
    return forms[k % len(forms)]


def make_plan(name: str, seed: int, n_conv: int, n_turns: int) -> dict:
    rng = random.Random(seed)
    convs = [f"{name}-conv-{i + 1:02d}" for i in range(n_conv)]
    costly = rng.randrange(1, n_conv) if n_conv > 1 else 0
    others = [(ci, t) for ci in range(n_conv) if ci != costly for t in range(1, n_turns + 1)]
    eligible = [x for x in others if x != others[0]]          # the very first turn can't hit
    repeats = set(rng.sample(eligible, min(REPEATS, len(eligible))))
    fresh = [(tpl, c) for tpl in TEMPLATES for c in CITIES]
    rng.shuffle(fresh)
    asked: list[tuple[str, str, int]] = []   # (canonical question, conversation, turn), non-costly
    turns = []
    for ci, conv in enumerate(convs):
        for t in range(1, n_turns + 1):
            if (ci, t) in repeats and asked:
                canon, rc, rt = rng.choice(asked)
                q = variant(canon, rng.randrange(6))
                repeat_of = {"conversation_id": rc, "turn": rt}
            else:
                tpl, city = fresh.pop()
                canon = tpl.format(city=city)
                q, repeat_of = canon, None
                if ci != costly:
                    asked.append((canon, conv, t))
            turns.append({"conversation_id": conv, "turn": t, "question": q,
                          "key": cache_key(q), "repeat_of": repeat_of, "slow_ms": 0})
    by = {(x["conversation_id"], x["turn"]): x for x in turns}
    rep = sorted(repeats)
    new = [x for x in others if x not in repeats and x != others[0]]
    for ci, t in rng.sample(rep, SLOW_OTHER // 2) + rng.sample(new, SLOW_OTHER - SLOW_OTHER // 2):
        by[(convs[ci], t)]["slow_ms"] = rng.randint(*SLOW_MS)
    for t in range(1, n_turns + 1):
        by[(convs[costly], t)]["slow_ms"] = rng.randint(*COSTLY_SLOW_MS)
    return {"seed": seed, "conversations": convs, "turns": n_turns,
            "evict": [], "queue": [], "tool_cold_start": [],
            "semantic_cache": {"costly_conversation": convs[costly], "ttl_s": TTL_S,
                               "turns": turns}}


# ---------------------------------------------------------------- redis-server
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def resp(*args) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = str(a).encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    return b"".join(out)


def raw_command(port: int, *args, timeout: float = 2.0) -> bytes:
    """One command on a fresh, untraced connection (another client, not the agent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(resp(*args))
        return s.recv(65536)


def start_redis(work: str):
    exe = shutil.which("redis-server")
    if not exe:
        raise SystemExit("[semantic-cache] needs redis-server (apt-get install -y redis-server)")
    port = free_port()
    d = os.path.join(work, "redis")
    os.makedirs(d)
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_end = time.monotonic() + 10
    while True:
        try:
            if raw_command(port, "PING").startswith(b"+PONG"):
                break
        except OSError:
            pass
        if time.monotonic() > t_end or proc.poll() is not None:
            proc.kill()
            raise SystemExit("[semantic-cache] redis-server did not start")
        time.sleep(0.05)
    version = raw_command(port, "INFO", "server").decode(errors="replace")
    version = next((ln.split(":", 1)[1].strip() for ln in version.splitlines()
                    if ln.startswith("redis_version:")), "?")
    return proc, port, version


def stop_redis(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


def _pct(xs: list, p: float) -> int:
    xs = sorted(xs)
    if not xs:
        return 0
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))   # nearest rank
    return xs[k]


def build_truth(plan: dict, agent_turns: list, srv_recs: list, fixture: str, threshold_ns: int,
                request_truth) -> tuple[list, dict]:
    """Per-turn truth (from the fixture's spans, the agent's turn list and the server's log)
    and the cache summary. `request_truth(t, reqs)` is record.turn_truth for a miss's request."""
    sc = plan["semantic_cache"]
    ptur = {(x["conversation_id"], x["turn"]): x for x in sc["turns"]}
    spans = spans_by_trace(fixture)
    # the server numbers a conversation's turns by its requests: the k-th miss of a
    # conversation is the server's turn k
    srv: dict = {}
    for r in srv_recs:
        if not r.get("summary"):
            srv.setdefault((r["conversation_id"], r["turn"]), []).append(r)
    miss_no: dict = {}
    out = []
    for t in agent_turns:
        conv, turn = t["conversation_id"], t["turn"]
        p = ptur[(conv, turn)]
        sp = spans[t["trace_id"]]
        root = next(s for _, s in sp if "parentSpanId" not in s)
        redis = [s for _, s in sp if _attrs(s).get("db.system") == "redis"
                 or _attrs(s).get("db.system.name") == "redis"]
        llm = [s for _, s in sp if "gen_ai.request.model" in _attrs(s)]
        get = next(s for s in redis if s["name"] == "GET")
        sets = [s for s in redis if s["name"] == "SET"]
        hit = t["cache"] == "hit"
        assert hit == (not llm), f"{conv}/{turn}: cache {t['cache']} but {len(llm)} LLM spans"
        row = {"trace_id": t["trace_id"], "conversation_id": conv, "turn": turn,
               "stream": t["stream"], "question": p["question"], "cache_key": p["key"],
               "repeat_of": p["repeat_of"], "cache": t["cache"],
               "planted": "slow_cache_lookup" if p["slow_ms"] else None,
               "extra_ns": 0,   # filled below: lookup - median normal lookup
               "lookup": {"span_id": get["spanId"], "name": get["name"],
                          "duration_ns": _dur(get), "planted_slow": bool(p["slow_ms"]),
                          "planted_pause_ms": p["slow_ms"],
                          "start_ns": int(get["startTimeUnixNano"]),
                          "end_ns": int(get["endTimeUnixNano"])},
               "llm": None, "store": None,
               "turn_duration_ns": _dur(root), "agent_span_id": root["spanId"],
               "clean_llm": None,   # misses: the LLM request waited <= threshold, no eviction
               "clean": not p["slow_ms"]}   # nothing planted, and on a miss a clean LLM request
        if not hit:
            miss_no[conv] = miss_no.get(conv, 0) + 1
            reqs = srv[(conv, miss_no[conv])]
            rt = request_truth(t, reqs, threshold_ns)
            for r in rt["requests"]:
                r["server_turn"] = miss_no[conv]
            c = llm[0]
            row["llm"] = {"span_id": c["spanId"], "name": c["name"], "duration_ns": _dur(c),
                          "start_ns": int(c["startTimeUnixNano"]), "end_ns": int(c["endTimeUnixNano"]),
                          "prompt_tokens": rt["prompt_tokens"], "cached_tokens": rt["cached_tokens"],
                          "completion_tokens": rt["completion_tokens"], "server": rt["server"],
                          "unplanted": rt["unplanted"], "unplanted_extra_ns": rt["unplanted_extra_ns"],
                          "unplanted_all": rt["unplanted_all"], "requests": rt["requests"]}
            s = sets[0]
            row["store"] = {"span_id": s["spanId"], "name": s["name"], "duration_ns": _dur(s),
                            "ttl_s": sc["ttl_s"]}
            row["clean_llm"] = rt["clean"]
            row["clean"] = row["clean"] and rt["clean"]
        out.append(row)
    normal = [r["lookup"]["duration_ns"] for r in out if not r["lookup"]["planted_slow"]]
    base = int(statistics.median(normal))
    for r in out:
        if r["planted"]:
            r["extra_ns"] = r["lookup"]["duration_ns"] - base
    hits = [r for r in out if r["cache"] == "hit"]
    misses = [r for r in out if r["cache"] == "miss"]
    llm_mean = int(statistics.mean(r["llm"]["duration_ns"] for r in misses))
    per_conv = {}
    for conv in plan["conversations"]:
        rs = [r for r in out if r["conversation_id"] == conv]
        h = [r for r in rs if r["cache"] == "hit"]
        m = [r for r in rs if r["cache"] == "miss"]
        # what the cache cost this conversation: every miss's lookup + store (would not
        # exist without the cache); what it saved: each hit's avoided LLM call (the mean
        # measured LLM call) minus the hit's own lookup
        cost = sum(r["lookup"]["duration_ns"] + r["store"]["duration_ns"] for r in m)
        saved = sum(llm_mean - r["lookup"]["duration_ns"] for r in h)
        per_conv[conv] = {"hits": len(h), "misses": len(m),
                          "slow_lookups": sum(r["lookup"]["planted_slow"] for r in rs),
                          "miss_overhead_ns": cost, "hit_savings_ns": saved,
                          "costs_more_than_it_saves": cost > saved}
    td = lambda rs: [r["turn_duration_ns"] for r in rs]
    summary = {
        "turns": len(out), "hits": len(hits), "misses": len(misses),
        "hit_rate": round(len(hits) / len(out), 4),
        "slow_lookups": sum(r["lookup"]["planted_slow"] for r in out),
        "slow_lookups_on_hits": sum(r["lookup"]["planted_slow"] for r in hits),
        "slow_lookups_on_misses": sum(r["lookup"]["planted_slow"] for r in misses),
        "normal_lookup_median_ns": base,
        "normal_lookup_max_ns": max(normal),
        "slow_lookup_over_pause_ns": {   # GET duration - planted pause: Redis releases paused
            # clients from its cron (hz 10), so a paused GET ends up to ~100 ms after the pause
            "min": min(r["lookup"]["duration_ns"] - r["lookup"]["planted_pause_ms"] * 1_000_000
                       for r in out if r["planted"]),
            "max": max(r["lookup"]["duration_ns"] - r["lookup"]["planted_pause_ms"] * 1_000_000
                       for r in out if r["planted"])},
        "clean_turns": sum(r["clean"] for r in out),
        "llm_call_mean_ns": llm_mean,
        "turn_ns": {"hit": {"p50": _pct(td(hits), 50), "p99": _pct(td(hits), 99)},
                    "miss": {"p50": _pct(td(misses), 50), "p99": _pct(td(misses), 99)},
                    "all": {"p50": _pct(td(out), 50), "p99": _pct(td(out), 99)},
                    "percentile": "nearest rank"},
        "costly_conversation": sc["costly_conversation"],
        "conversations": per_conv,
    }
    return out, summary
