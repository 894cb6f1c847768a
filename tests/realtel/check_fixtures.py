#!/usr/bin/env python3
"""Summarise and sanity-check the real-telemetry fixtures (standard library only).

For each fixtures/<name>.jsonl: span counts by (service, scope, name, kind), the
parent span name of each, attribute keys and event names seen, and checks that
ids are lowercase hex of the right length, every parent is in the file, and every
trace id in <name>.truth.json has spans. Exit 1 on a failed check.

  python3 tests/realtel/check_fixtures.py [name ...]
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


def load(path: str):
    spans = []
    for n, line in enumerate(open(path), 1):
        d = json.loads(line)
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
        traces = {s["traceId"] for _, _, s, _ in spans}
        missing = [t["trace_id"] for t in truth["turns"] if t["trace_id"] not in traces]
        planted = Counter(t["planted"] or "none" for t in truth["turns"])
        print(f"  truth: {len(truth['turns'])} turns, planted {dict(planted)}, "
              f"versions {truth['versions']}")
        if missing:
            print(f"  MISSING traces for {len(missing)} truth turns: {missing[:3]}")
            ok = False
        ok = check_truth(spans, truth) and ok
    return ok


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
        a = {x["key"]: attr_value(x["value"]) for x in s.get("attributes", [])}
        for k in PROMPT_KEYS:
            if k in a:
                n["prompt_tokens"] += 1
                bad += a[k] != t["prompt_tokens"]
        for k in CACHED_KEYS:
            if k in a:
                n["cached_tokens"] += 1
                bad += a[k] != t["cached_tokens"]
        if s["name"] == "llm_request":
            n["llm_request"] += 1
            q = a["gen_ai.latency.time_in_queue"] * 1e9 - t["server"]["queue_ns"]
            p = a["gen_ai.latency.time_in_model_prefill"] * 1e9 - t["server"]["prefill_ns"]
            if abs(q) > 5e6 or abs(p) > 10e6:
                print(f"  llm_request of turn {t['conversation_id']}/{t['turn']}: queue off by "
                      f"{q / 1e6:.1f} ms, prefill off by {p / 1e6:.1f} ms")
                bad += 1
    print(f"  truth agreement: {dict(n)} checked, {bad} disagree")
    return bad == 0


def main() -> None:
    names = sys.argv[1:] or sorted(f[:-6] for f in os.listdir(FIX) if f.endswith(".jsonl"))
    ok = all([check(n) for n in names])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
