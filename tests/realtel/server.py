#!/usr/bin/env python3
"""Deterministic OpenAI-compatible chat server with a per-conversation prompt cache.

Standard library only (the optional vLLM-shaped `llm_request` span needs the
OpenTelemetry SDK, imported only when --otlp is given).

  POST /v1/chat/completions   streaming (SSE) and non-streaming
  GET  /v1/models

Token rule: prompt_tokens = sum over messages of ceil(len(content)/4) + 4.
The completion of (conversation, turn) has a length drawn from a seed of
(conversation, turn) in [COMPLETION_MIN, COMPLETION_MAX] tokens; its text has
exactly 4 characters per token, so the client can count it with the same rule.

Prompt cache (vLLM-like): per conversation (header X-Conversation-Id, else the
`user` field), the server remembers the previous request's messages plus its
answer. When the current prompt extends them, cached_tokens =
floor16(previous prompt_tokens + previous completion_tokens), else 0.

Latency it really sleeps:
  queue   = planted delay (0 normally)
  prefill = PREFILL_S_PER_TOKEN * (prompt_tokens - cached_tokens)
  decode  = DECODE_S_PER_TOKEN * completion_tokens
Streaming: the first chunk (role, empty content) is sent after queue + prefill,
then one chunk per token, each after DECODE_S_PER_TOKEN, then a usage chunk
(when stream_options.include_usage) and `data: [DONE]`.

Control plan (JSON file, --plan):
  {"evict": [["conv-01", 3], ...], "queue": [["conv-02", 5, 0.31], ...]}
`evict` drops the conversation's cache just before that turn; `queue` delays
that turn. Turns are counted per conversation by the server (1-based).

Each request is appended as one JSON line to --log (the ground truth source).
On start it prints `PORT <n>` on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFILL_S_PER_TOKEN = 0.0001   # 0.1 ms per uncached prompt token
DECODE_S_PER_TOKEN = 0.004     # 4 ms per output token
CACHE_BLOCK = 16               # vLLM block size: only full blocks are cached
MESSAGE_OVERHEAD = 4
COMPLETION_MIN = 15
COMPLETION_MAX = 60
MODEL = "llama-3.1-8b-instruct"

WORDS = ("the forecast model agrees that pressure rises over the coast while "
         "a slow front stalls inland so expect mild wind light rain and "
         "clearing skies by evening with cooler air after midnight").split()


def rates() -> dict:
    return {
        "prefill_s_per_token": PREFILL_S_PER_TOKEN,
        "decode_s_per_token": DECODE_S_PER_TOKEN,
        "cache_block_tokens": CACHE_BLOCK,
        "message_overhead_tokens": MESSAGE_OVERHEAD,
        "completion_tokens_range": [COMPLETION_MIN, COMPLETION_MAX],
        "token_rule": "sum over messages of ceil(len(content)/4) + 4",
        "model": MODEL,
    }


def seed_int(*parts) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big")


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def message_text(m: dict) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return str(c)


def prompt_tokens_of(messages: list) -> int:
    return sum(text_tokens(message_text(m)) + MESSAGE_OVERHEAD for m in messages)


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


def sleep_until(t: float) -> None:
    d = t - time.perf_counter()
    if d > 0:
        time.sleep(d)


class State:
    def __init__(self, plan: dict, log_path: str | None, tracer=None):
        self.lock = threading.Lock()
        self.evict = {(c, int(t)) for c, t in plan.get("evict", [])}
        self.queue = {(c, int(t)): float(d) for c, t, d in plan.get("queue", [])}
        self.turns: dict[str, int] = {}
        # conversation -> (messages, prompt_tokens, completion text, completion tokens)
        self.cache: dict[str, tuple[list, int, str, int]] = {}
        self.log = open(log_path, "a") if log_path else None
        self.tracer = tracer

    def write_log(self, rec: dict) -> None:
        if self.log:
            with self.lock:
                self.log.write(json.dumps(rec, sort_keys=True) + "\n")
                self.log.flush()


STATE: State | None = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "realtel-llm/1.0"

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
        messages = req.get("messages") or []
        conv = self.headers.get("X-Conversation-Id") or req.get("user") or "default"
        stream = bool(req.get("stream"))
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        prompt_tokens = prompt_tokens_of(messages)

        with st.lock:
            turn = st.turns.get(conv, 0) + 1
            st.turns[conv] = turn
            planted = None
            extra_s = 0.0
            prev = st.cache.get(conv)
            would_cache = 0
            if prev is not None:
                pmsgs, pprompt, ptext, pcomp = prev
                expected = pmsgs + [{"role": "assistant", "content": ptext}]
                if (len(messages) > len(expected)
                        and [(m.get("role"), message_text(m)) for m in messages[:len(expected)]]
                        == [(m.get("role"), message_text(m)) for m in expected]):
                    would_cache = (pprompt + pcomp) // CACHE_BLOCK * CACHE_BLOCK
            cached = would_cache
            if (conv, turn) in st.evict:
                planted = "kv_eviction"
                extra_s = PREFILL_S_PER_TOKEN * would_cache
                cached = 0
            queue_s = st.queue.get((conv, turn), 0.0)
            if queue_s > 0:
                planted = "queue" if planted is None else planted + "+queue"
                extra_s = queue_s
            completion_tokens, pieces = completion_for(conv, turn)
            text = "".join(pieces)
            st.cache[conv] = (messages, prompt_tokens, text, completion_tokens)

        prefill_s = PREFILL_S_PER_TOKEN * (prompt_tokens - cached)
        decode_s = DECODE_S_PER_TOKEN * completion_tokens
        req_id = "chatcmpl-" + uuid.UUID(int=seed_int("req", conv, turn) % (1 << 128)).hex
        created = int(time.time())
        model = req.get("model") or MODEL
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        t_sched = t0 + queue_s
        t_first = t_sched + prefill_s

        def finish(t_last: float) -> None:
            """The request is done in the engine: emit the server span and the log line
            before the last bytes go out (as vLLM does), so a client that exits right
            after its response cannot race them."""
            if st.tracer is not None:
                self._vllm_span(st.tracer, arrival_wall_ns, t0, t_sched, t_first, t_last, req,
                                req_id, model, prompt_tokens, completion_tokens)
            st.write_log({
                "conversation_id": conv, "turn": turn, "stream": stream,
                "prompt_tokens": prompt_tokens, "cached_tokens": cached,
                "completion_tokens": completion_tokens, "would_cache_tokens": would_cache,
                "planted": planted, "extra_ns": int(round(extra_s * 1e9)),
                "queue_ns": int(round(queue_s * 1e9)), "prefill_ns": int(round(prefill_s * 1e9)),
                "decode_ns": int(round(decode_s * 1e9)),
                "start_ns": arrival_wall_ns,
                "end_ns": arrival_wall_ns + int((t_last - t0) * 1e9),
                "request_id": req_id, "traceparent": self.headers.get("traceparent"),
            })

        if not stream:
            sleep_until(t_first + decode_s)
            finish(time.perf_counter())
            self._json(200, {
                "id": req_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            })
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(obj) -> None:
                data = ("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def delta(d, finish=None, use=None):
                o = {"id": req_id, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": [{"index": 0, "delta": d, "logprobs": None,
                                                  "finish_reason": finish}]}
                if include_usage:
                    o["usage"] = use
                return o

            sleep_until(t_first)
            chunk(delta({"role": "assistant", "content": ""}))
            for k, p in enumerate(pieces):
                sleep_until(t_first + DECODE_S_PER_TOKEN * (k + 1))
                chunk(delta({"content": p}))
            finish(time.perf_counter())
            chunk(delta({}, finish="stop"))
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


def main() -> None:
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--plan", help="control plan JSON file")
    ap.add_argument("--log", help="append one JSON line per request here")
    ap.add_argument("--otlp", help="emit vLLM-shaped llm_request spans to this OTLP/HTTP traces URL")
    a = ap.parse_args()
    plan = json.load(open(a.plan)) if a.plan else {}
    provider, tracer = make_tracer(a.otlp) if a.otlp else (None, None)
    STATE = State(plan, a.log, tracer)
    httpd = QuietServer((a.host, a.port), Handler)
    httpd.daemon_threads = True

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()
    httpd.server_close()
    if provider is not None:
        provider.shutdown()


if __name__ == "__main__":
    main()
