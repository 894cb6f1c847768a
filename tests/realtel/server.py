#!/usr/bin/env python3
"""Realistic OpenAI-compatible chat server: jitter, load-dependent queueing, a shared
fixed-size prefix cache with LRU evictions, tool calling, and an exact truth log.

Standard library only, except the optional vLLM-shaped `llm_request` span (--otlp)
and the vLLM-shaped metrics (--metrics-otlp), which need the OpenTelemetry SDK.

  POST /v1/chat/completions   streaming (SSE) and non-streaming, tool calls
  GET  /v1/models

Tokens: every message is 4 overhead tokens + ceil(len(text)/4) content tokens, where
text is its content, or for an assistant tool-call message its content + the function
name + the canonical (sorted, compact) JSON arguments of each call. A request with
`tools` counts them first as one more such "message" (their canonical JSON). Each
token is a 4-character piece, so the prompt is a real token sequence that the cache
hashes in 16-token blocks.

Engine (vLLM-like):
  * MAX_NUM_SEQS engine slots shared by the traced requests and a simulated BACKGROUND
    load of other tenants (untraced requests arriving Poisson, random prompt and
    output sizes, occupying slots and cache blocks). A request that finds no free
    slot waits in FIFO order; that wait is its queue_ns.
  * prefix cache of CACHE_BLOCKS blocks of 16 tokens, shared by everything. Block
    hashes form a chain (hash of the parent hash + the block's tokens, full blocks
    only), rooted in a per-conversation salt (like vLLM's cache_salt), so a
    conversation hits only its own earlier prompt + answer. A request's cached tokens
    = its longest run of leading blocks present in the cache (never the whole prompt).
    Under pressure the least recently used unpinned blocks are evicted (a chain's
    tail first), so a conversation can lose part or all of its prefix.
  * costs: prefill(n_new, n_cached) = P0 + A*n_new + B*n_new*(n_cached + n_new/2)
    (attention over the context), times a lognormal jitter factor; decode per
    token = D0 * (1 + ctx/D_CTX), times a per-request and a per-token lognormal factor.
  * planted causes (control plan, --plan): `evict` drops a conversation's blocks just
    before the first request of that turn; `queue` injects a burst of background
    requests just ahead of that request, so it waits on real load (its measured wait is
    the truth).

Turns: a request whose last message is a user message starts the conversation's next
turn (request 1); a request that follows a tool result is the next request of the same
turn. Conversation: header X-Conversation-Id, else the `user` field, else "default".

Tool calling: with `tools` and a user message last, the answer is one call of the first
tool (get_weather) with {"city": <city named in the user message>}, finish_reason
"tool_calls" (streamed as tool_call deltas). After a tool result, a text answer.

Each traced request is appended as one JSON line to --log (the ground truth source);
background requests are counted in a summary line written at shutdown.
On start it prints `PORT <n>` on stdout.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------- parameters
MODEL = "llama-3.1-8b-instruct"
CACHE_BLOCK = 16               # vLLM block size: only full blocks are cached
MESSAGE_OVERHEAD = 4
COMPLETION_MIN = 15
COMPLETION_MAX = 60
P0 = 0.004                     # prefill fixed overhead (s)
A = 6.0e-5                     # prefill s per new token
B = 1.2e-8                     # prefill s per (new token x context token): attention
D0 = 0.0035                    # decode s per token at empty context
D_CTX = 16000.0                # decode per token grows by D0 per D_CTX context tokens
SIGMA_PREFILL = 0.10           # lognormal jitter (per request)
SIGMA_DECODE = 0.08            # lognormal jitter (per request)
SIGMA_TOKEN = 0.10             # lognormal jitter (per decoded token)
MAX_NUM_SEQS = 4               # engine slots
CACHE_BLOCKS = 850             # prefix-cache capacity in blocks (13,600 tokens)
BG_RATE = 2.4                  # background arrivals per second (Poisson)
BG_TENANTS = 6                 # background tenants, each with a shared prefix
BG_PROMPT = (200, 2400)        # background prompt tokens (uniform) ...
BG_LARGE_P = 0.06              # ... and with this probability a large document
BG_LARGE = (4000, 7000)
BG_OUTPUT = (16, 200)          # background output tokens (uniform)
BURST_EXTRA = (0.05, 0.25)     # planted queue: the other burst requests run this much longer
CLEAN_QUEUE_NS = 50_000_000    # a turn with a wait above this is not clean
TOOL_CALL_EXTRA_TOKENS = 6     # a tool call's output: name + args + this many tokens

WORDS = ("the forecast model agrees that pressure rises over the coast while "
         "a slow front stalls inland so expect mild wind light rain and "
         "clearing skies by evening with cooler air after midnight").split()


def params() -> dict:
    return {
        "model": MODEL,
        "cache_block_tokens": CACHE_BLOCK,
        "message_overhead_tokens": MESSAGE_OVERHEAD,
        "completion_tokens_range": [COMPLETION_MIN, COMPLETION_MAX],
        "token_rule": "per message ceil(len(text)/4) + 4; tools (canonical JSON) count as one more message",
        "prefill_cost": "P0 + A*n_new + B*n_new*(n_cached + n_new/2), x lognormal(0, sigma_prefill)",
        "prefill_p0_s": P0, "prefill_a_s_per_token": A, "prefill_b_s_per_token2": B,
        "decode_cost": "per token D0*(1 + context/D_ctx) x lognormal(0, sigma_decode) per request "
                       "x lognormal(0, sigma_token) per token",
        "decode_d0_s_per_token": D0, "decode_d_ctx_tokens": D_CTX,
        "sigma_prefill": SIGMA_PREFILL, "sigma_decode": SIGMA_DECODE, "sigma_token": SIGMA_TOKEN,
        "max_num_seqs": MAX_NUM_SEQS,
        "cache_capacity_blocks": CACHE_BLOCKS,
        "cache_keying": "block-hash chain of full 16-token blocks, rooted in the conversation "
                        "(cache salt); LRU eviction of unpinned blocks, a chain's tail first",
        "background": {"rate_per_s": BG_RATE, "tenants": BG_TENANTS, "prompt_tokens": list(BG_PROMPT),
                       "large_p": BG_LARGE_P, "large_prompt_tokens": list(BG_LARGE),
                       "output_tokens": list(BG_OUTPUT)},
        "planted_queue": "a burst of max_num_seqs background requests arrives just ahead of the "
                         "planted request: one runs for the planned delay, the others "
                         f"{BURST_EXTRA[0]}-{BURST_EXTRA[1]} s longer; the truth is the measured wait",
        "clean_queue_threshold_ns": CLEAN_QUEUE_NS,
    }


def seed_int(*parts) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def prefill_s(n_new: int, n_cached: int) -> float:
    if n_new <= 0:
        return 0.0
    return P0 + A * n_new + B * n_new * (n_cached + n_new / 2)


def decode_tok_s(ctx: int) -> float:
    return D0 * (1.0 + ctx / D_CTX)


# ---------------------------------------------------------------- tokens
def message_text(m: dict) -> str:
    c = m.get("content")
    if c is None:
        text = ""
    elif isinstance(c, str):
        text = c
    elif isinstance(c, list):  # content parts
        text = "".join(p.get("text", "") for p in c if isinstance(p, dict))
    else:
        text = str(c)
    for tc in m.get("tool_calls") or []:
        f = tc.get("function") or {}
        args = f.get("arguments") or ""
        try:
            args = json.dumps(json.loads(args or "{}"), sort_keys=True, separators=(",", ":"))
        except (ValueError, TypeError):
            pass
        text += (f.get("name") or "") + args
    return text


def message_pieces(role: str, text: str) -> list[str]:
    return ([f"<|{role}", "|>", "\n", "::"]
            + [text[k:k + 4] for k in range(0, len(text), 4)])


def prompt_pieces(req: dict) -> list[str]:
    out: list[str] = []
    tools = req.get("tools")
    if tools:
        out += message_pieces("tools", json.dumps(tools, sort_keys=True, separators=(",", ":")))
    for m in req.get("messages") or []:
        out += message_pieces(m.get("role") or "user", message_text(m))
    return out


def completion_for(conv: str, turn: int) -> tuple[int, list[str]]:
    """Deterministic completion: n tokens, n pieces of exactly 4 characters."""
    s = seed_int("completion", conv, turn)
    n = COMPLETION_MIN + s % (COMPLETION_MAX - COMPLETION_MIN + 1)
    text = ""
    i = s
    while len(text) < 4 * n:
        text += WORDS[i % len(WORDS)] + " "
        i = i // 7 + 13 * len(text)
    text = text[: 4 * n]
    return n, [text[k:k + 4] for k in range(0, 4 * n, 4)]


def block_hashes(salt: str, pieces: list[str]) -> list[bytes]:
    out, parent = [], hashlib.blake2b(salt.encode(), digest_size=12).digest()
    for k in range(0, len(pieces) // CACHE_BLOCK * CACHE_BLOCK, CACHE_BLOCK):
        parent = hashlib.blake2b(parent + "\x00".join(pieces[k:k + CACHE_BLOCK]).encode(),
                                 digest_size=12).digest()
        out.append(parent)
    return out


def sleep_until(t: float) -> None:
    d = t - time.perf_counter()
    if d > 0:
        time.sleep(d)


# ---------------------------------------------------------------- engine
class Engine:
    """Slots (FIFO wait) + the shared prefix cache. All under one lock."""

    def __init__(self):
        self.cond = threading.Condition()
        self.free = MAX_NUM_SEQS
        self.waiting: collections.deque = collections.deque()
        self.cache: collections.OrderedDict[bytes, str] = collections.OrderedDict()  # LRU: front oldest
        self.by_salt: dict[str, set] = collections.defaultdict(set)
        self.ever: dict[str, set] = collections.defaultdict(set)   # traced salts: every block ever cached
        self.pins: collections.Counter = collections.Counter()
        self.running_blocks = 0
        self.queries = 0        # prefix cache queries (tokens)
        self.hits = 0           # prefix cache hits (tokens)
        self.preemptions = 0
        self.pressure_evicted_blocks = 0
        self.bg_done = 0
        self.bg_queue_ns = 0

    # --- slots
    def enqueue(self, ticket) -> None:
        with self.cond:
            self.waiting.append(ticket)

    def wait_slot(self, ticket) -> None:
        with self.cond:
            while not (self.waiting and self.waiting[0] is ticket and self.free > 0):
                self.cond.wait()
            self.waiting.popleft()
            self.free -= 1
            self.cond.notify_all()

    def release(self, hashes: list[bytes], n_blocks: int) -> None:
        with self.cond:
            self.free += 1
            for h in hashes:
                self.pins[h] -= 1
                if self.pins[h] <= 0:
                    del self.pins[h]
            self.running_blocks -= n_blocks
            self.cond.notify_all()

    # --- cache (call with the lock held)
    def _evict_one(self) -> bool:
        for h in self.cache:
            if h not in self.pins:
                salt = self.cache.pop(h)
                self.by_salt[salt].discard(h)
                self.pressure_evicted_blocks += 1
                return True
        self.preemptions += 1
        return False

    def _insert(self, salt: str, hashes: list[bytes], pin: bool) -> None:
        # tail first, so the head of the chain is the most recently used
        for h in reversed(hashes):
            if h in self.cache:
                self.cache.move_to_end(h)
            else:
                while len(self.cache) >= CACHE_BLOCKS:
                    if not self._evict_one():
                        break
                self.cache[h] = salt
                self.by_salt[salt].add(h)
            if pin:
                self.pins[h] += 1

    def admit(self, salt: str, hashes: list[bytes], n_prompt: int, traced: bool) -> tuple[int, int]:
        """At scheduling time: the cached prefix (tokens), and the prefix an unbounded
        cache would have had (tokens); then the prompt's blocks are cached and pinned."""
        with self.cond:
            limit = (n_prompt - 1) // CACHE_BLOCK   # never the whole prompt
            hit = 0
            while hit < min(limit, len(hashes)) and hashes[hit] in self.cache:
                hit += 1
            would = hit
            if traced:
                ever = self.ever[salt]
                while would < min(limit, len(hashes)) and hashes[would] in ever:
                    would += 1
                ever.update(hashes)
            self._insert(salt, hashes, pin=True)
            self.running_blocks += len(hashes)
            self.queries += n_prompt
            self.hits += hit * CACHE_BLOCK
            return hit * CACHE_BLOCK, would * CACHE_BLOCK

    def cache_output(self, salt: str, hashes: list[bytes]) -> None:
        with self.cond:
            self.ever[salt].update(hashes)
            self._insert(salt, hashes, pin=False)

    def drop(self, salt: str) -> int:
        with self.cond:
            n = 0
            for h in list(self.by_salt[salt]):
                if h in self.cache and h not in self.pins:
                    del self.cache[h]
                    n += 1
            self.by_salt[salt] = {h for h in self.by_salt[salt] if h in self.cache}
            return n

    def gauges(self) -> dict:
        with self.cond:
            return {"waiting": len(self.waiting), "running": MAX_NUM_SEQS - self.free,
                    "kv": min(1.0, self.running_blocks / CACHE_BLOCKS),
                    "queries": self.queries, "hits": self.hits, "preemptions": self.preemptions}


class Background(threading.Thread):
    """Poisson arrivals of untraced requests from other tenants."""

    def __init__(self, engine: Engine, seed: int, rate: float):
        super().__init__(daemon=True)
        self.engine, self.rng, self.rate = engine, random.Random(seed_int("background", seed)), rate
        self.n = 0
        self.lock = threading.Lock()
        self.tenant_prefix = [256 + seed_int("tenant", seed, k) % 768 for k in range(BG_TENANTS)]

    def run(self) -> None:
        if self.rate <= 0:
            return
        t = time.perf_counter()
        while True:
            t += self.rng.expovariate(self.rate)
            sleep_until(t)
            self.spawn()

    def spawn(self, duration_s: float | None = None, ticket=None) -> object:
        with self.lock:
            self.n += 1
            k = self.n
            r = self.rng
            tenant = r.randrange(BG_TENANTS)
            n_prompt = (r.randint(*BG_LARGE) if r.random() < BG_LARGE_P else r.randint(*BG_PROMPT))
            n_out = r.randint(*BG_OUTPUT)
            jp, jd = r.lognormvariate(0, SIGMA_PREFILL), r.lognormvariate(0, SIGMA_DECODE)
        pre = self.tenant_prefix[tenant]
        pieces = ([f"t{tenant}:{i}" for i in range(min(pre, n_prompt))]
                  + [f"r{k}:{i}" for i in range(max(0, n_prompt - pre))]
                  + [f"o{k}:{i}" for i in range(n_out)])
        salt = f"bg-tenant-{tenant}"
        hashes = block_hashes(salt, pieces)
        ticket = ticket if ticket is not None else object()
        if ticket is not None:
            self.engine.enqueue(ticket)

        def go():
            t_arr = time.perf_counter()
            self.engine.wait_slot(ticket)
            t_s = time.perf_counter()
            cached, _ = self.engine.admit(salt, hashes, n_prompt, traced=False)
            if duration_s is not None:
                d = duration_s
            else:
                d = (prefill_s(n_prompt - cached, cached) * jp
                     + n_out * decode_tok_s(n_prompt + n_out // 2) * jd)
            sleep_until(t_s + d)
            self.engine.release(hashes, len(hashes))
            with self.engine.cond:
                self.engine.bg_done += 1
                self.engine.bg_queue_ns += int((t_s - t_arr) * 1e9)

        threading.Thread(target=go, daemon=True).start()
        return ticket


class State:
    def __init__(self, plan: dict, log_path: str | None, seed: int, tracer=None):
        self.lock = threading.Lock()
        self.seed = seed
        self.evict = {(c, int(t)) for c, t in plan.get("evict", [])}
        self.queue = {(c, int(t)): float(d) for c, t, d in plan.get("queue", [])}
        self.turns: dict[str, int] = {}
        self.req_in_turn: dict[str, int] = {}
        self.log = open(log_path, "a") if log_path else None
        self.tracer = tracer
        self.engine = Engine()
        self.bg = Background(self.engine, seed, BG_RATE)
        self.traced = 0

    def write_log(self, rec: dict) -> None:
        if self.log:
            with self.lock:
                self.log.write(json.dumps(rec, sort_keys=True) + "\n")
                self.log.flush()

    def summary(self) -> dict:
        e = self.engine
        with e.cond:
            return {"summary": True, "background_requests": e.bg_done,
                    "background_queue_ns_total": e.bg_queue_ns,
                    "pressure_evicted_blocks": e.pressure_evicted_blocks,
                    "prefix_cache_queries_tokens": e.queries, "prefix_cache_hits_tokens": e.hits,
                    "preemptions": e.preemptions, "traced_requests": self.traced}


STATE: State | None = None
CITY_RE = re.compile(r"\bin ([A-Z][a-z]+)\b")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "realtel-llm/2.0"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "realtel"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        arrival_wall_ns = time.time_ns()
        t0 = time.perf_counter()
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": "not found"}})
            return
        n = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(n) or b"{}")
        st = STATE
        eng = st.engine
        messages = req.get("messages") or []
        conv = self.headers.get("X-Conversation-Id") or req.get("user") or "default"
        stream = bool(req.get("stream"))
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        last_role = (messages[-1].get("role") if messages else "user") or "user"
        tools = req.get("tools") or []
        pieces = prompt_pieces(req)
        prompt_tokens = len(pieces)

        with st.lock:
            if last_role == "user" or conv not in st.turns:
                st.turns[conv] = st.turns.get(conv, 0) + 1
                st.req_in_turn[conv] = 0
            turn = st.turns[conv]
            st.req_in_turn[conv] += 1
            idx = st.req_in_turn[conv]
            st.traced += 1
        first = idx == 1
        rng = random.Random(seed_int("jitter", st.seed, conv, turn, idx))
        jp = rng.lognormvariate(0, SIGMA_PREFILL)
        jd = rng.lognormvariate(0, SIGMA_DECODE)

        planted = None
        planted_queue_s = 0.0
        if first and (conv, turn) in st.evict:
            planted = "kv_eviction"
            eng.drop(conv)
        ticket = object()
        if first and (conv, turn) in st.queue:
            planted_queue_s = st.queue[(conv, turn)]
            planted = "queue" if planted is None else planted + "+queue"
            brng = random.Random(seed_int("burst", st.seed, conv, turn))
            durs = [planted_queue_s] + [planted_queue_s + brng.uniform(*BURST_EXTRA)
                                        for _ in range(MAX_NUM_SEQS - 1)]
            for d in durs:
                st.bg.spawn(duration_s=d)
        eng.enqueue(ticket)
        eng.wait_slot(ticket)
        t_sched = time.perf_counter()
        salt = conv
        hashes = block_hashes(salt, pieces)
        cached, would_cache = eng.admit(salt, hashes, prompt_tokens, traced=True)

        # ---- the answer
        tool_call = None
        if tools and last_role == "user":
            fn = ((tools[0].get("function") or {}).get("name")) or "get_weather"
            m = CITY_RE.findall(message_text(messages[-1])) if messages else []
            city = m[-1] if m else "Paris"
            args = json.dumps({"city": city})
            call_id = "call_" + uuid.UUID(int=seed_int("call", conv, turn, idx) % (1 << 128)).hex[:24]
            tool_call = {"id": call_id, "type": "function", "function": {"name": fn, "arguments": args}}
            out_msg = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
            completion_tokens = math.ceil(len(fn + args) / 4) + TOOL_CALL_EXTRA_TOKENS
            arg_pieces = [args[k:k + 4] for k in range(0, len(args), 4)]
            text = ""
            finish_reason = "tool_calls"
        else:
            completion_tokens, tpieces = completion_for(conv, turn)
            text = "".join(tpieces)
            out_msg = {"role": "assistant", "content": text}
            finish_reason = "stop"

        evicted = cached < would_cache
        why = ("planted" if planted and "kv_eviction" in planted else "pressure") if evicted else None
        pf = prefill_s(prompt_tokens - cached, cached) * jp
        pf_if_cached = prefill_s(prompt_tokens - would_cache, would_cache) * jp
        eviction_extra_s = max(0.0, pf - pf_if_cached) if evicted else 0.0
        tok = [decode_tok_s(prompt_tokens + k) * jd * rng.lognormvariate(0, SIGMA_TOKEN)
               for k in range(completion_tokens)]
        decode = sum(tok)
        req_id = "chatcmpl-" + uuid.UUID(int=seed_int("req", conv, turn, idx) % (1 << 128)).hex
        created = int(time.time())
        model = req.get("model") or MODEL
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        t_first = t_sched + pf
        queue_s = t_sched - t0

        def finish(t_last: float) -> None:
            """The request is done in the engine: cache its output, free its slot, emit the
            server span and the log line before the last bytes go out (as vLLM does), so a
            client that exits right after its response cannot race them."""
            out_hashes = block_hashes(salt, pieces + message_pieces("assistant", message_text(out_msg)))
            eng.cache_output(salt, out_hashes)
            eng.release(hashes, len(hashes))
            if st.tracer is not None:
                self._vllm_span(st.tracer, arrival_wall_ns, t0, t_sched, t_first, t_last, req,
                                req_id, model, prompt_tokens, completion_tokens)
            st.write_log({
                "conversation_id": conv, "turn": turn, "request_index": idx, "stream": stream,
                "tool_call": tool_call is not None,
                "prompt_tokens": prompt_tokens, "cached_tokens": cached,
                "completion_tokens": completion_tokens, "would_cache_tokens": would_cache,
                "planted": planted,
                "evicted": evicted, "eviction_why": why,
                "eviction_extra_ns": int(round(eviction_extra_s * 1e9)),
                "planted_queue_ns": int(round(planted_queue_s * 1e9)),
                "queue_ns": int(round(queue_s * 1e9)),
                "load_queue": queue_s > 0.001 and planted_queue_s == 0,
                "prefill_ns": int(round(pf * 1e9)),
                "decode_ns": int(round(decode * 1e9)),
                "start_ns": arrival_wall_ns,
                "end_ns": arrival_wall_ns + int((t_last - t0) * 1e9),
                "request_id": req_id, "traceparent": self.headers.get("traceparent"),
            })

        if not stream:
            sleep_until(t_first + decode)
            finish(time.perf_counter())
            msg = dict(out_msg)
            if tool_call is None:
                msg.pop("tool_calls", None)
            self._json(200, {
                "id": req_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": msg, "logprobs": None,
                             "finish_reason": finish_reason}],
                "usage": usage,
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj) -> None:
            data = ("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def delta(d, finish=None):
            o = {"id": req_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": [{"index": 0, "delta": d, "logprobs": None,
                                              "finish_reason": finish}]}
            if include_usage:
                o["usage"] = None
            return o

        sleep_until(t_first)
        t = t_first
        if tool_call is None:
            chunk(delta({"role": "assistant", "content": ""}))
            for k, p in enumerate(tpieces):
                t += tok[k]
                sleep_until(t)
                chunk(delta({"content": p}))
        else:
            head = {"index": 0, "id": tool_call["id"], "type": "function",
                    "function": {"name": tool_call["function"]["name"], "arguments": ""}}
            chunk(delta({"role": "assistant", "content": None, "tool_calls": [head]}))
            for k in range(completion_tokens - len(arg_pieces)):   # name and framing tokens
                t += tok[k]
            sleep_until(t)
            for j, p in enumerate(arg_pieces):
                t += tok[completion_tokens - len(arg_pieces) + j]
                sleep_until(t)
                chunk(delta({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}))
        sleep_until(t_first + decode)
        finish(time.perf_counter())
        chunk(delta({}, finish=finish_reason))
        if include_usage:
            chunk({"id": req_id, "object": "chat.completion.chunk", "created": created,
                   "model": model, "choices": [], "usage": usage})
        chunk("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _vllm_span(self, tracer, arrival_ns, t0, t_sched, t_first, t_last, req, req_id, model,
                   prompt_tokens, completion_tokens):
        """The span vLLM's output processor emits when a request finishes (SERVER kind,
        start = arrival, parent from the request's traceparent)."""
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind
        ctx = extract({k.lower(): v for k, v in self.headers.items()})
        attrs = {
            "gen_ai.latency.time_to_first_token": t_first - t0,
            "gen_ai.latency.e2e": t_last - t0,
            "gen_ai.latency.time_in_queue": t_sched - t0,
            "gen_ai.usage.prompt_tokens": prompt_tokens,
            "gen_ai.usage.completion_tokens": completion_tokens,
            "gen_ai.latency.time_in_model_prefill": t_first - t_sched,
            "gen_ai.latency.time_in_model_decode": t_last - t_first,
            "gen_ai.latency.time_in_model_inference": t_last - t_sched,
            "gen_ai.request.id": req_id,
            "gen_ai.response.model": model,
        }
        for k_req, k_attr in (("top_p", "gen_ai.request.top_p"),
                              ("max_tokens", "gen_ai.request.max_tokens"),
                              ("max_completion_tokens", "gen_ai.request.max_tokens"),
                              ("temperature", "gen_ai.request.temperature"),
                              ("n", "gen_ai.request.n")):
            if req.get(k_req):
                attrs[k_attr] = req[k_req]
        span = tracer.start_span("llm_request", context=ctx, kind=SpanKind.SERVER,
                                 attributes=attrs, start_time=arrival_ns)
        span.end(end_time=arrival_ns + int((t_last - t0) * 1e9))


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def make_tracer(endpoint: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider(resource=Resource.create({"service.name": "vllm"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider, provider.get_tracer("vllm.tracing")


PROM_SCOPE = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"


def make_metrics(endpoint: str, port: int, engine: Engine, interval_ms: int):
    """vLLM's /metrics as the Collector's Prometheus receiver delivers them over OTLP:
    gauges stay gauges, `_total` counters become cumulative monotonic sums, labels are
    point attributes, the scrape target is the resource. Instrument names with ':' are
    not allowed by the SDK, so each is created with a '.' and renamed by a View."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import View
    from opentelemetry.sdk.resources import Resource
    labels = {"model_name": MODEL, "engine": "0"}
    gauges = {"num_requests_waiting": "waiting", "num_requests_running": "running",
              "kv_cache_usage_perc": "kv"}
    sums = {"prefix_cache_queries_total": "queries", "prefix_cache_hits_total": "hits",
            "num_preemptions_total": "preemptions"}
    names = list(gauges) + list(sums)
    views = [View(instrument_name=f"vllm.{n}", name=f"vllm:{n}") for n in names]
    resource = Resource({"service.name": "vllm", "service.instance.id": f"127.0.0.1:{port}",
                         "server.address": "127.0.0.1", "server.port": str(port),
                         "url.scheme": "http"})
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint),
                                           export_interval_millis=interval_ms)
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    meter = provider.get_meter(PROM_SCOPE, "0.140.0")

    def cb(key):
        def f(_opts: CallbackOptions):
            return [Observation(engine.gauges()[key], labels)]
        return f
    for n, key in gauges.items():
        meter.create_observable_gauge(f"vllm.{n}", callbacks=[cb(key)])
    for n, key in sums.items():
        meter.create_observable_counter(f"vllm.{n}", callbacks=[cb(key)])
    return provider


def main() -> None:
    global STATE, BG_RATE, CACHE_BLOCKS, MAX_NUM_SEQS
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--plan", help="control plan JSON file")
    ap.add_argument("--log", help="append one JSON line per traced request here")
    ap.add_argument("--seed", type=int, default=None, help="jitter/background seed (default: the plan's)")
    ap.add_argument("--otlp", help="emit vLLM-shaped llm_request spans to this OTLP/HTTP traces URL")
    ap.add_argument("--metrics-otlp", help="export vLLM-shaped metrics to this OTLP/HTTP metrics URL")
    ap.add_argument("--metrics-interval-ms", type=int, default=300)
    ap.add_argument("--background-rate", type=float, default=BG_RATE)
    ap.add_argument("--cache-blocks", type=int, default=CACHE_BLOCKS)
    ap.add_argument("--max-num-seqs", type=int, default=MAX_NUM_SEQS)
    a = ap.parse_args()
    BG_RATE, CACHE_BLOCKS, MAX_NUM_SEQS = a.background_rate, a.cache_blocks, a.max_num_seqs
    plan = json.load(open(a.plan)) if a.plan else {}
    seed = a.seed if a.seed is not None else int(plan.get("seed", 0))
    provider, tracer = make_tracer(a.otlp) if a.otlp else (None, None)
    STATE = State(plan, a.log, seed, tracer)
    httpd = QuietServer((a.host, a.port), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    mprovider = make_metrics(a.metrics_otlp, port, STATE.engine, a.metrics_interval_ms) \
        if a.metrics_otlp else None
    STATE.bg.start()

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {port}", flush=True)
    httpd.serve_forever()
    httpd.server_close()
    STATE.write_log(STATE.summary())
    if provider is not None:
        provider.shutdown()
    if mprovider is not None:
        mprovider.shutdown()


if __name__ == "__main__":
    main()
