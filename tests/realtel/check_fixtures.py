#!/usr/bin/env python3
"""Summarise and sanity-check the real-telemetry fixtures (standard library only).

For each fixtures/<name>.jsonl: span counts by (service, scope, name, kind), the
parent span name of each, attribute keys and event names seen, and checks that
ids are lowercase hex of the right length, every parent is in the file, and every
trace id in <name>.truth.json has spans; token / cached-token / vLLM latency values
agree with the truth's requests; the truth's per-turn fields are consistent
(planted, unplanted, clean, requests); for semantic-cache, each turn's Redis lookup,
LLM call and store against the truth (check_semantic_cache); for write-amplification, each
turn's tool span and its store writes / reads against the truth (check_write_amplification). Metrics lines (resourceMetrics) are summarised
(metric names, types, points, resource). Exit 1 on a failed check.

  python3 tests/realtel/check_fixtures.py [--dir DIR] [name ...]   # DIR: default fixtures/
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
KIND = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


METRICS: dict = {}


def load(path: str):
    spans = []
    METRICS.clear()
    for n, line in enumerate(open(path), 1):
        d = json.loads(line)
        for rm in d.get("resourceMetrics", []):
            res = {a["key"]: next(iter(a["value"].values()), None)
                   for a in rm.get("resource", {}).get("attributes", [])}
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    typ = next(k for k in m if k in ("gauge", "sum", "histogram"))
                    pts = m[typ].get("dataPoints", [])
                    e = METRICS.setdefault(m["name"], {"type": typ, "points": 0, "values": [],
                                                       "resource": res, "labels": set(),
                                                       "monotonic": m[typ].get("isMonotonic"),
                                                       "temporality": m[typ].get("aggregationTemporality")})
                    e["points"] += len(pts)
                    for pt in pts:
                        e["values"].append(pt.get("asDouble", pt.get("asInt")))
                        e["labels"].update(a["key"] for a in pt.get("attributes", []))
        for rs in d.get("resourceSpans", []):
            res = {a["key"]: next(iter(a["value"].values()), None)
                   for a in rs.get("resource", {}).get("attributes", [])}
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {}).get("name", "")
                for s in ss.get("spans", []):
                    spans.append((res.get("service.name", ""), scope, s, n))
    return spans


def check(name: str) -> bool:
    path = os.path.join(FIX, f"{name}.jsonl")
    spans = load(path)
    ok = True
    by_id = {s["spanId"]: s for _, _, s, _ in spans}
    groups = Counter()
    parents = defaultdict(Counter)
    keys = defaultdict(set)
    events = defaultdict(Counter)
    for svc, scope, s, line in spans:
        g = (svc, scope, s["name"], KIND.get(s.get("kind", 0), s.get("kind")))
        groups[g] += 1
        p = s.get("parentSpanId")
        if p:
            ps = by_id.get(p)
            parents[g][ps["name"] if ps else "<missing>"] += 1
            if not HEX16.match(p):
                print(f"  BAD parentSpanId {p!r} (line {line})")
                ok = False
        else:
            parents[g]["<root>"] += 1
        for a in s.get("attributes", []):
            keys[g].add(a["key"])
        for e in s.get("events", []):
            events[g][e["name"]] += 1
        if not HEX32.match(s["traceId"]) or not HEX16.match(s["spanId"]):
            print(f"  BAD ids {s['traceId']!r} {s['spanId']!r} (line {line})")
            ok = False
    print(f"== {name}: {len(spans)} spans, {os.path.getsize(path) / 1024:.0f} KiB, "
          f"{sum(1 for _ in open(path))} export requests")
    for g, c in sorted(groups.items(), key=lambda x: (x[0][0], x[0][1], x[0][2])):
        svc, scope, sname, kind = g
        print(f"  {c:4d}  {sname!r} kind={kind} scope={scope} service={svc}")
        print(f"        parent: {dict(parents[g])}")
        print(f"        attrs:  {sorted(keys[g])}")
        if events[g]:
            print(f"        events: {dict(events[g])}")
    tpath = os.path.join(FIX, f"{name}.truth.json")
    if os.path.exists(tpath):
        truth = json.load(open(tpath))
        if "semantic_cache" in truth:
            return check_semantic_cache(spans, truth) and ok
        if "write_amplification" in truth:
            return check_write_amplification(spans, truth) and ok
        traces = {s["traceId"] for _, _, s, _ in spans}
        missing = [t["trace_id"] for t in truth["turns"] if t["trace_id"] not in traces]
        planted = Counter(t["planted"] or "none" for t in truth["turns"])
        unplanted = Counter(u["cause"] for t in truth["turns"] for u in t.get("unplanted_all", []))
        n_req = sum(len(t.get("requests", [1])) for t in truth["turns"])
        print(f"  truth: {len(truth['turns'])} turns, {n_req} requests, planted {dict(planted)}, "
              f"unplanted {dict(unplanted)}, clean {sum(bool(t.get('clean')) for t in truth['turns'])}, "
              f"versions {truth['versions']}")
        ok = check_turns(truth) and ok
        if missing:
            print(f"  MISSING traces for {len(missing)} truth turns: {missing[:3]}")
            ok = False
        ok = check_truth(spans, truth) and ok
    if METRICS:
        print(f"  metrics: {len(METRICS)} names")
        for mname, e in sorted(METRICS.items()):
            vals = [v if isinstance(v, (int, float)) else int(v) for v in e["values"]]
            print(f"    {mname}: {e['type']} monotonic={e['monotonic']} temporality={e['temporality']} "
                  f"points={e['points']} min={min(vals)} max={max(vals)} labels={sorted(e['labels'])}")
        print(f"    resource: {next(iter(METRICS.values()))['resource']}")
    return ok


def check_turns(truth) -> bool:
    """The truth's own consistency: planted/extra, unplanted, clean, request lists."""
    ok = True
    thr = truth.get("clean_queue_threshold_ns", 50_000_000)
    for t in truth["turns"]:
        reqs = t.get("requests")
        if reqs is None:
            continue
        where = f"{t['conversation_id']}/{t['turn']}"
        r1 = reqs[0]
        errs = []
        if [r["request_index"] for r in reqs] != list(range(1, len(reqs) + 1)):
            errs.append("request indexes")
        if t["planted"] == "kv_eviction" and (r1["eviction_why"] != "planted"
                                              or t["extra_ns"] != r1["eviction_extra_ns"]):
            errs.append("planted eviction")
        if t["planted"] == "queue" and (t["extra_ns"] != r1["queue_ns"] or r1["load_queue"]):
            errs.append("planted queue")
        dirty = (t["planted"] is not None or any(r["evicted"] for r in reqs)
                 or any(r["queue_ns"] > thr for r in reqs))
        if t["clean"] == dirty:
            errs.append("clean flag")
        if (t["unplanted"] is None) != (not t["unplanted_all"]):
            errs.append("unplanted")
        for r in reqs:
            if r["evicted"] != (r["cached_tokens"] < r["would_cache_tokens"]):
                errs.append("evicted flag")
            if r["evicted"] and r["eviction_extra_ns"] <= 0:
                errs.append("eviction cost")
        if errs:
            print(f"  BAD truth turn {where}: {errs}")
            ok = False
    return ok


def is_redis(a: dict) -> bool:
    return a.get("db.system") == "redis" or a.get("db.system.name") == "redis"


def check_semantic_cache(spans, truth) -> bool:
    """semantic-cache: every truth turn has its trace; each trace has one root agent span
    and a GET (db.system redis) before anything else; a miss has exactly one LLM span,
    starting after the GET ended, then a SET after it; a hit has no LLM span and no SET.
    Span ids and durations agree with the truth; the truth's summary with its turns."""
    by_trace = defaultdict(list)
    for _, _, s, _ in spans:
        by_trace[s["traceId"]].append(s)
    errs = []
    sm = truth["summary"]
    for t in truth["turns"]:
        where = f"{t['conversation_id']}/{t['turn']}"
        ss = sorted(by_trace.get(t["trace_id"], []), key=lambda s: int(s["startTimeUnixNano"]))
        if not ss:
            errs.append(f"{where}: no spans")
            continue
        a = {s["spanId"]: {x["key"]: attr_value(x["value"]) for x in s.get("attributes", [])}
             for s in ss}
        roots = [s for s in ss if "parentSpanId" not in s]
        redis = [s for s in ss if is_redis(a[s["spanId"]])]
        gets = [s for s in redis if a[s["spanId"]].get("db.statement", a[s["spanId"]].get("db.query.text")) == "GET ?"]
        sets = [s for s in redis if s["name"] == "SET"]
        llm = [s for s in ss if a[s["spanId"]].get("gen_ai.operation.name") == "chat"]
        dur = lambda s: int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
        if len(roots) != 1 or len(gets) != 1:
            errs.append(f"{where}: {len(roots)} roots, {len(gets)} GET spans")
            continue
        g = gets[0]
        if g["parentSpanId"] != roots[0]["spanId"] or g is not ss[1]:
            errs.append(f"{where}: the GET is not the agent span's first child")
        if g["spanId"] != t["lookup"]["span_id"] or dur(g) != t["lookup"]["duration_ns"]:
            errs.append(f"{where}: lookup span/duration differs from the truth")
        if t["lookup"]["planted_slow"] != (t["lookup"]["planted_pause_ms"] > 0) or \
                (t["planted"] == "slow_cache_lookup") != t["lookup"]["planted_slow"]:
            errs.append(f"{where}: planted flags")
        if t["lookup"]["planted_slow"] and dur(g) < t["lookup"]["planted_pause_ms"] * 1e6 * 0.9:
            errs.append(f"{where}: slow lookup shorter than its pause")
        if not t["lookup"]["planted_slow"] and dur(g) > 50e6:
            errs.append(f"{where}: unplanted slow lookup ({dur(g) / 1e6:.1f} ms)")
        if t["cache"] == "hit":
            if llm or sets or t["llm"] is not None or t["repeat_of"] is None:
                errs.append(f"{where}: hit with {len(llm)} LLM spans, {len(sets)} SETs")
            continue
        if len(llm) != 1 or len(sets) != 1 or t["repeat_of"] is not None:
            errs.append(f"{where}: miss with {len(llm)} LLM spans, {len(sets)} SETs")
            continue
        c, st = llm[0], sets[0]
        if not (int(g["endTimeUnixNano"]) <= int(c["startTimeUnixNano"])
                and int(c["endTimeUnixNano"]) <= int(st["startTimeUnixNano"])):
            errs.append(f"{where}: not GET -> LLM -> SET in time")
        if c["parentSpanId"] != roots[0]["spanId"] or st["parentSpanId"] != roots[0]["spanId"]:
            errs.append(f"{where}: LLM / SET not children of the agent span")
        if c["spanId"] != t["llm"]["span_id"] or dur(c) != t["llm"]["duration_ns"] or \
                st["spanId"] != t["store"]["span_id"]:
            errs.append(f"{where}: LLM / store span differs from the truth")
        if a[c["spanId"]].get("gen_ai.usage.input_tokens") != t["llm"]["prompt_tokens"]:
            errs.append(f"{where}: input tokens {a[c['spanId']].get('gen_ai.usage.input_tokens')} "
                        f"!= truth {t['llm']['prompt_tokens']}")
    hits = [t for t in truth["turns"] if t["cache"] == "hit"]
    slow = [t for t in truth["turns"] if t["lookup"]["planted_slow"]]
    if (sm["hits"], sm["misses"], sm["slow_lookups"]) != (len(hits), len(truth["turns"]) - len(hits), len(slow)):
        errs.append("summary counts")
    costly = [t for t in truth["turns"] if t["conversation_id"] == sm["costly_conversation"]]
    if not costly or any(t["cache"] != "miss" or not t["lookup"]["planted_slow"] for t in costly) or \
            not sm["conversations"][sm["costly_conversation"]]["costs_more_than_it_saves"]:
        errs.append("the costly conversation is not all slow misses that cost more than they save")
    for e in errs:
        print(f"  BAD semantic-cache {e}")
    print(f"  truth: {len(truth['turns'])} turns, {len(hits)} hits / {len(truth['turns']) - len(hits)} "
          f"misses (hit rate {sm['hit_rate']}), {len(slow)} slow lookups "
          f"({sm['slow_lookups_on_hits']} on hits), costly {sm['costly_conversation']}, "
          f"versions {truth['versions']}, redis-server {truth.get('redis_server')}; {len(errs)} disagree")
    return not errs


WRITE_OPS = {"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "MERGE", "SET", "SADD", "HSET",
             "DEL", "PUT", "PATCH", "POST"}


def store_access(s: dict, a: dict):
    """(store, operation) of a store client span, from the instrumentations' attributes
    (old or new semconv names); None for other spans."""
    system = a.get("db.system.name", a.get("db.system"))
    if system:
        stmt = a.get("db.statement", a.get("db.query.text", "")) or s["name"]
        return system, (a.get("db.operation.name", a.get("db.operation")) or stmt.split()[0]).upper()
    method = a.get("http.request.method", a.get("http.method"))
    if method and s.get("kind") == 3:
        return "http", method.upper()
    return None


def check_write_amplification(spans, truth) -> bool:
    """write-amplification: every truth turn has its trace: one root agent span (with the
    conversation id), two chat spans and one `execute_tool save_ticket` span between them,
    all children of the root; every store client span (sqlite / redis / HTTP) is a child of
    the tool span, inside it, one after another, and is the truth's write or read (span id,
    store, operation, duration); each write lasts at least 0.9 x its planted delay; planted
    exactly when the writes reach 3 distinct stores, extra_ns = sum - max of the writes;
    chat input tokens equal the truth's requests; summary counts."""
    by_trace = defaultdict(list)
    for _, _, s, _ in spans:
        by_trace[s["traceId"]].append(s)
    errs = []
    dur = lambda s: int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])
    st = lambda s: int(s["startTimeUnixNano"])
    en = lambda s: int(s["endTimeUnixNano"])
    for t in truth["turns"]:
        where = f"{t['conversation_id']}/{t['turn']}"
        ss = sorted(by_trace.get(t["trace_id"], []), key=st)
        if not ss:
            errs.append(f"{where}: no spans")
            continue
        a = {s["spanId"]: {x["key"]: attr_value(x["value"]) for x in s.get("attributes", [])}
             for s in ss}
        roots = [s for s in ss if "parentSpanId" not in s]
        tools = [s for s in ss if a[s["spanId"]].get("gen_ai.operation.name") == "execute_tool"]
        chats = [s for s in ss if a[s["spanId"]].get("gen_ai.operation.name") == "chat"]
        if len(roots) != 1 or len(tools) != 1 or len(chats) != 2:
            errs.append(f"{where}: {len(roots)} roots, {len(tools)} tool spans, {len(chats)} chat spans")
            continue
        root, tool = roots[0], tools[0]
        if a[root["spanId"]].get("gen_ai.conversation.id") != t["conversation_id"] or \
                root["spanId"] != t["agent_span_id"] or dur(root) != t["turn_duration_ns"]:
            errs.append(f"{where}: agent span differs from the truth")
        if tool["spanId"] != t["tool"]["span_id"] or dur(tool) != t["tool"]["duration_ns"] or \
                a[tool["spanId"]].get("gen_ai.tool.name") != "save_ticket" or \
                tool["name"] != "execute_tool save_ticket":
            errs.append(f"{where}: tool span differs from the truth")
        if any(s.get("parentSpanId") != root["spanId"] for s in [tool] + chats) or \
                not en(chats[0]) <= st(tool) <= en(tool) <= st(chats[1]):
            errs.append(f"{where}: not chat -> execute_tool -> chat under the agent span")
        acc = [s for s in ss if store_access(s, a[s["spanId"]])]
        want = sorted(t["writes"] + t["reads"], key=lambda w: w["start_ns"])
        if [s["spanId"] for s in acc] != [w["span_id"] for w in want]:
            errs.append(f"{where}: store spans {[s['name'] for s in acc]} != truth "
                        f"{[w['name'] for w in want]}")
            continue
        for s, w in zip(acc, want):
            store, op = store_access(s, a[s["spanId"]])
            if s.get("parentSpanId") != tool["spanId"] or st(s) < st(tool) or en(s) > en(tool):
                errs.append(f"{where}: {s['name']} not inside the tool span")
            if (store, op, dur(s)) != (w["store"], w["operation"], w["duration_ns"]):
                errs.append(f"{where}: {s['name']} is {(store, op, dur(s))}, truth "
                            f"{(w['store'], w['operation'], w['duration_ns'])}")
            if (op in WRITE_OPS) != (w in t["writes"]):
                errs.append(f"{where}: {s['name']} write/read differs from the truth")
            if w in t["writes"] and dur(s) < w["planted_delay_ms"] * 1e6 * 0.9:
                errs.append(f"{where}: {s['name']} shorter than its planted delay")
        for x, y in zip(acc, acc[1:]):
            if en(x) > st(y):
                errs.append(f"{where}: store spans overlap")
        stores = {w["store"] for w in t["writes"]}
        ds = [w["duration_ns"] for w in t["writes"]]
        if (t["planted"] == "write_amplification") != (len(stores) >= 3) or \
                t["distinct_write_stores"] != len(stores) or \
                t["sum_minus_max_ns"] != sum(ds) - max(ds) or \
                t["extra_ns"] != (sum(ds) - max(ds) if t["planted"] else 0):
            errs.append(f"{where}: planted / distinct stores / sum - max")
        for c, r in zip(chats, t["llm"]["requests"]):
            if a[c["spanId"]].get("gen_ai.usage.input_tokens") != r["prompt_tokens"]:
                errs.append(f"{where}: chat input tokens {a[c['spanId']].get('gen_ai.usage.input_tokens')} "
                            f"!= truth {r['prompt_tokens']}")
        if t["clean"] != (t["planted"] is None and t["clean_llm"]) or t["clean_llm"] != t["llm"]["clean"]:
            errs.append(f"{where}: clean flags")
        if [r["tool_call"] for r in t["llm"]["requests"]] != [True, False]:
            errs.append(f"{where}: the server's requests are not tool call, answer")
    sm = truth["summary"]
    planted = [t for t in truth["turns"] if t["planted"]]
    if (sm["turns"], sm["planted"]) != (len(truth["turns"]), len(planted)):
        errs.append("summary counts")
    for e in errs:
        print(f"  BAD write-amplification {e}")
    kinds = Counter(t["kind"] for t in truth["turns"])
    print(f"  truth: {len(truth['turns'])} turns, {len(planted)} planted write_amplification, "
          f"kinds {dict(kinds)}, {sum(len(t['writes']) for t in truth['turns'])} writes / "
          f"{sum(len(t['reads']) for t in truth['turns'])} reads, planted saving (sum - max) "
          f"{sm['planted_saving_ns']}, versions {truth['versions']}, redis-server "
          f"{truth.get('redis_server')}; {len(errs)} disagree")
    return not errs


PROMPT_KEYS = ("llm.token_count.prompt", "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
CACHED_KEYS = ("llm.token_count.prompt_details.cache_read", "gen_ai.usage.cache_read.input_tokens")


def attr_value(v: dict):
    for k in ("intValue", "doubleValue", "stringValue", "boolValue"):
        if k in v:
            return int(v[k]) if k == "intValue" else v[k]
    return None


def check_truth(spans, truth) -> bool:
    """Every token count / cached count / vLLM latency an LLM span reports agrees with
    the truth of its trace (so a recording that went wrong is caught)."""
    turns = {t["trace_id"]: t for t in truth["turns"]}
    bad, n = 0, Counter()
    for _, _, s, _ in spans:
        t = turns.get(s["traceId"])
        if t is None:
            continue
        reqs = t.get("requests") or [{"prompt_tokens": t["prompt_tokens"],
                                      "cached_tokens": t["cached_tokens"],
                                      "request_id": t["server"]["request_id"], **t["server"]}]
        # a call span reports one request; a run span (pydantic-ai `agent run`) the sum
        ok_prompt = {r["prompt_tokens"] for r in reqs} | {sum(r["prompt_tokens"] for r in reqs)}
        ok_cached = {r["cached_tokens"] for r in reqs} | {sum(r["cached_tokens"] for r in reqs)}
        a = {x["key"]: attr_value(x["value"]) for x in s.get("attributes", [])}
        for k in PROMPT_KEYS:
            if k in a:
                n["prompt_tokens"] += 1
                if a[k] not in ok_prompt:
                    print(f"  {s['name']} of {t['conversation_id']}/{t['turn']}: {k}={a[k]}, "
                          f"truth {sorted(ok_prompt)}")
                    bad += 1
        for k in CACHED_KEYS:
            if k in a:
                n["cached_tokens"] += 1
                if a[k] not in ok_cached:
                    print(f"  {s['name']} of {t['conversation_id']}/{t['turn']}: {k}={a[k]}, "
                          f"truth {sorted(ok_cached)}")
                    bad += 1
        if s["name"] == "llm_request":
            n["llm_request"] += 1
            r = next((r for r in reqs if r["request_id"] == a["gen_ai.request.id"]), reqs[0])
            q = a["gen_ai.latency.time_in_queue"] * 1e9 - r["queue_ns"]
            p = a["gen_ai.latency.time_in_model_prefill"] * 1e9 - r["prefill_ns"]
            if abs(q) > 5e6 or abs(p) > 10e6:
                print(f"  llm_request of turn {t['conversation_id']}/{t['turn']}: queue off by "
                      f"{q / 1e6:.1f} ms, prefill off by {p / 1e6:.1f} ms")
                bad += 1
    print(f"  truth agreement: {dict(n)} checked, {bad} disagree")
    return bad == 0


def main() -> None:
    global FIX
    args = sys.argv[1:]
    if args[:1] == ["--dir"] and len(args) > 1:
        FIX, args = os.path.abspath(args[1]), args[2:]
    names = args or sorted(f[:-6] for f in os.listdir(FIX) if f.endswith(".jsonl"))
    ok = all([check(n) for n in names])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
