#!/usr/bin/env python3
"""A small multi-turn agent on the official `openai` client, run under one real,
unmodified instrumentation package (chosen by --mode) and exported with the real
OTel SDK (OTLPSpanExporter over HTTP/protobuf, BatchSpanProcessor).

  openinference  openinference-instrumentation-openai
  otel-genai     opentelemetry-instrumentation-openai-v2
  openllmetry    opentelemetry-instrumentation-openai (Traceloop / OpenLLMetry)
  langchain      langchain-openai ChatOpenAI + openinference-instrumentation-langchain
                 (+ openinference-instrumentation-openai under it)
  vllm-stack     openai-v2 + opentelemetry-instrumentation-httpx (httpx2 client) over a
                 server that emits vLLM's `llm_request` span, plus an MCP tool step
                 per turn through the real `mcp` SDK (which emits its own spans)

Tool-calling agents (each turn: the user question -> the model calls get_weather ->
the tool returns the long report -> the model answers, streamed on streaming turns):
  pydantic-ai    pydantic-ai's own Agent loop and its native OTel instrumentation
                 (Agent.instrument_all(InstrumentationSettings(tracer_provider=...,
                 include_content=False))),
                 OpenAIChatModel + OpenAIProvider(openai_client=AsyncOpenAI(...)),
                 message_history across turns, run_stream on streaming turns
  openlit        openlit.init() over our global TracerProvider (its default HTTP
                 instrumentation on), a plain tool loop on the openai client
  litellm        litellm.completion() tool loop, openinference-instrumentation-litellm
  llama-index    llama-index FunctionAgent (workflow) with a FunctionTool, OpenAILike
                 LLM, a llama-index Memory per conversation passed to every run,
                 openinference-instrumentation-llama-index

Semantic cache in front of the model (see semcache.py for the plan):
  semantic-cache redis-py under opentelemetry-instrumentation-redis + openai-v2: per
                 turn GET semcache:v1:<hash of the normalised question>; on a hit the
                 cached answer, no model call; on a miss the model call, then
                 SET key answer EX 3600. A planted slow lookup: a second, untraced
                 client sends CLIENT PAUSE <ms> ALL right before the GET.

Several stores written by one tool call (see writeamp.py for the plan):
  write-amplification  openai-v2 tool loop (save_ticket); the tool runs inside an
                 `execute_tool save_ticket` span and writes, one after another, through
                 sqlite3 (opentelemetry-instrumentation-sqlite3), redis-py
                 (opentelemetry-instrumentation-redis) and requests
                 (opentelemetry-instrumentation-requests, PUT to a small HTTP store):
                 all three on planted turns, one or two on the others.

Conversations run one after another, turns strictly sequential. Each turn opens
an `invoke_agent` span (INTERNAL) with gen_ai.operation.name=invoke_agent,
gen_ai.agent.name and gen_ai.conversation.id, as an application would.
Writes the turn list (trace ids) as JSON to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

MODEL = "llama-3.1-8b-instruct"
AGENT_NAME = "realtel-agent"
FRAMEWORK_AGENT_NAME = "weather-agent"   # the name given to a framework's own agent object
MCP_INIT_BASE_S = 0.003      # a warm MCP initialize
MCP_TOOL_S = 0.025           # get_weather's own work
MCP_EVERY = 3                # vllm-stack: an MCP tool step on turns 1, 4, 7, ...; on the
                             # other turns the report arrives without a tool call

CITIES = ["Paris", "Lyon", "Oslo", "Porto", "Quito", "Perth", "Austin", "Kyoto", "Accra", "Lima"]
FILLER = ("station report pressure hectopascal humidity percent wind knots gust visibility "
          "kilometre dew point ceiling broken overcast scattered drizzle mist trend steady "
          "rising falling outlook models ensemble spread confidence high moderate low").split()


def h(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def filler(n_chars: int, *seed) -> str:
    s, out, i = h(*seed), [], 0
    total = 0
    while total < n_chars:
        w = FILLER[(s >> (i % 48)) % len(FILLER) if i % 3 else (s + i) % len(FILLER)]
        out.append(w)
        total += len(w) + 1
        i += 1
    return " ".join(out)[:n_chars]


SYSTEM_PROMPT = ("You are a careful weather assistant. Answer briefly using the tool reports. "
                 "Reference handbook follows. " + filler(5500, "system"))


def tool_report(conv: str, turn: int, city: str) -> str:
    """The (long) result of get_weather: 1000-1800 characters."""
    n = 1000 + h("report", conv, turn) % 801
    return f"Weather report for {city}, day {turn}: " + filler(n, "report", conv, turn)


def user_message(conv: str, turn: int, city: str, report: str) -> str:
    return (f"Tool result (get_weather {city}):\n{report}\n\n"
            f"Question {turn}: should I take an umbrella in {city} tomorrow?")


TOOL_MODES = ("pydantic-ai", "openlit", "litellm", "llama-index")
TOOL_SCHEMA = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather report for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
CURRENT = {"conv": "", "turn": 0}    # which turn the tool is called in (for its report)
_LOOP = None


def run_async(coro):
    """One event loop for the whole run (an async HTTP client's pooled connections are
    bound to the loop that opened them); the caller's OTel context goes into the task."""
    global _LOOP
    import asyncio
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


def get_weather_report(city: str) -> str:
    return tool_report(CURRENT["conv"], CURRENT["turn"], city)


def question(turn: int, city: str) -> str:
    return f"Question {turn}: should I take an umbrella in {city} tomorrow?"


def setup_tracing(mode: str, otlp: str):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider(resource=Resource.create({"service.name": f"realtel-agent-{mode}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp)))
    trace.set_tracer_provider(provider)

    if mode == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif mode == "semantic-cache":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        RedisInstrumentor().instrument(tracer_provider=provider)
    elif mode == "write-amplification":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        RedisInstrumentor().instrument(tracer_provider=provider)
        RequestsInstrumentor().instrument(tracer_provider=provider)
        SQLite3Instrumentor().instrument(tracer_provider=provider)
    elif mode in ("otel-genai", "vllm-stack"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        if mode == "vllm-stack":
            import openai
            if int(openai.__version__.split(".")[0]) >= 3:  # openai 3.x sends through httpx2
                from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor as HI
            else:
                from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor as HI
            HI().instrument(tracer_provider=provider)
    elif mode == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif mode == "langchain":
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor
        LangChainInstrumentor().instrument(tracer_provider=provider)
        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif mode == "pydantic-ai":
        pass  # native instrumentation, set on the Agent (PydanticAiAgent)
    elif mode == "openlit":
        import openlit
        # picks up the global TracerProvider set above; its default instrumentors
        # (openai, httpx, requests, urllib, ...) stay on; metrics/events not exported here
        openlit.init(application_name=f"realtel-agent-{mode}", service_name=f"realtel-agent-{mode}",
                     capture_message_content=False, disable_metrics=True, disable_events=True)
    elif mode == "litellm":
        from openinference.instrumentation.litellm import LiteLLMInstrumentor
        LiteLLMInstrumentor().instrument(tracer_provider=provider)
    elif mode == "llama-index":
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
        LlamaIndexInstrumentor().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown mode {mode}")
    return provider, trace.get_tracer("realtel.agent")


class McpStep:
    """One MCP session per turn through the real `mcp` SDK (in-process server, legacy
    initialize handshake). The SDK emits `MCP send <method> [<tool>]` CLIENT spans and
    `<method> [<tool>]` SERVER spans itself. A planted cold start makes the server's
    initialize sleep."""

    def __init__(self):
        import anyio
        from mcp.server.mcpserver import MCPServer
        self.anyio = anyio
        self.cold_s = 0.0
        self.server = MCPServer("weather-tools")

        @self.server.tool()
        def get_weather(city: str, conversation: str, day: int) -> str:
            time.sleep(MCP_TOOL_S)
            return tool_report(conversation, day, city)

        step = self

        class InitLatency:  # server-side middleware: the cold path of initialize
            async def __call__(self, ctx, call_next):
                if ctx.method == "initialize":
                    await anyio.sleep(MCP_INIT_BASE_S + step.cold_s)
                return await call_next(ctx)

        self.server._lowlevel_server.middleware.append(InitLatency())

    def run(self, conv: str, turn: int, city: str, cold_s: float) -> str:
        from mcp import Client
        self.cold_s = cold_s

        async def go():
            async with Client(self.server, mode="legacy") as c:
                r = await c.call_tool("get_weather", {"city": city, "conversation": conv, "day": turn})
                return r.content[0].text
        return self.anyio.run(go)


def chat_openai(client, messages, stream: bool) -> tuple[str, dict]:
    kw = dict(model=MODEL, messages=messages, max_tokens=256, temperature=0.2)
    if stream:
        out, usage = [], {}
        resp = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
        for c in resp:
            if c.choices and c.choices[0].delta.content:
                out.append(c.choices[0].delta.content)
            if c.usage is not None:
                usage = c.usage.model_dump()
        return "".join(out), usage
    r = client.chat.completions.create(**kw)
    return r.choices[0].message.content, r.usage.model_dump()


def chat_langchain(llm, messages, stream: bool) -> tuple[str, dict]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    cls = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    lc = [cls[m["role"]](content=m["content"]) for m in messages]
    if stream:
        acc = None
        for ch in llm.stream(lc):
            acc = ch if acc is None else acc + ch
        return acc.content, dict(acc.usage_metadata or {})
    r = llm.invoke(lc)
    return r.content, dict(r.usage_metadata or {})


# ---------------------------------------------------------------- tool-calling agents
class PydanticAiAgent:
    def __init__(self, base_url: str, provider):
        from pydantic_ai import Agent
        from pydantic_ai.models.instrumented import InstrumentationSettings
        self.Agent, self.base_url = Agent, base_url
        # pydantic-ai 2.x: the Agent has no `instrument=` argument any more; instrument_all
        # is its switch for every agent
        Agent.instrument_all(InstrumentationSettings(
            tracer_provider=provider, include_content=False,
            include_model_request_parameters=False))  # its documented switch for size

    def new_conversation(self, conv: str) -> None:
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider
        client = AsyncOpenAI(base_url=self.base_url, api_key="sk-realtel", max_retries=0,
                             default_headers={"X-Conversation-Id": conv})
        model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
        self.agent = self.Agent(model, system_prompt=SYSTEM_PROMPT, name=FRAMEWORK_AGENT_NAME,
                                model_settings={"max_tokens": 256, "temperature": 0.2})

        @self.agent.tool_plain
        def get_weather(city: str) -> str:
            """Weather report for a city."""
            return get_weather_report(city)
        self.conv, self.history = conv, []

    def turn(self, turn: int, city: str, stream: bool) -> tuple[str, dict]:
        async def go():
            if stream:
                async with self.agent.run_stream(question(turn, city), message_history=self.history,
                                                 conversation_id=self.conv) as r:
                    parts = [d async for d in r.stream_text(delta=True)]
                    text = "".join(parts)
                return text, r
            r = await self.agent.run(question(turn, city), message_history=self.history,
                                     conversation_id=self.conv)
            return r.output, r
        text, r = run_async(go())
        self.history = r.all_messages()
        u = r.usage() if callable(getattr(r, "usage", None)) else None
        return text, {"input_tokens": getattr(u, "input_tokens", None)} if u else {}


class OpenAiToolLoop:
    """A plain tool loop on the `openai` client (openlit instruments the client)."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def new_conversation(self, conv: str) -> None:
        from openai import OpenAI
        self.client = OpenAI(base_url=self.base_url, api_key="sk-realtel", max_retries=0,
                             default_headers={"X-Conversation-Id": conv})
        self.messages = [{"role": "system", "content": SYSTEM_PROMPT}]

    def call(self, stream: bool) -> tuple[dict, dict]:
        kw = dict(model=MODEL, messages=self.messages, tools=[TOOL_SCHEMA], max_tokens=256,
                  temperature=0.2)
        if not stream:
            r = self.client.chat.completions.create(**kw)
            m = r.choices[0].message
            msg = {"role": "assistant", "content": m.content}
            if m.tool_calls:
                msg["tool_calls"] = [tc.model_dump() for tc in m.tool_calls]
            return msg, r.usage.model_dump()
        return self.accumulate(self.client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kw))

    @staticmethod
    def accumulate(chunks) -> tuple[dict, dict]:
        """The assistant message (text or tool calls) and usage of a chunk stream."""
        text, calls, usage = [], {}, {}
        for c in chunks:
            if getattr(c, "usage", None) is not None:
                usage = c.usage.model_dump()
            if not c.choices:
                continue
            d = c.choices[0].delta
            if d.content:
                text.append(d.content)
            for tc in d.tool_calls or []:
                e = calls.setdefault(tc.index, {"id": None, "type": "function",
                                                "function": {"name": "", "arguments": ""}})
                e["id"] = tc.id or e["id"]
                if tc.function:
                    e["function"]["name"] += tc.function.name or ""
                    e["function"]["arguments"] += tc.function.arguments or ""
        msg = {"role": "assistant", "content": "".join(text) or None}
        if calls:
            msg["tool_calls"] = [calls[k] for k in sorted(calls)]
        return msg, usage

    def turn(self, turn: int, city: str, stream: bool) -> tuple[str, dict]:
        self.messages.append({"role": "user", "content": question(turn, city)})
        for _ in range(4):
            msg, usage = self.call(stream)
            self.messages.append(msg)
            if not msg.get("tool_calls"):
                return msg["content"] or "", usage
            for tc in msg["tool_calls"]:
                args = json.loads(tc["function"]["arguments"] or "{}")
                self.messages.append({"role": "tool", "tool_call_id": tc["id"],
                                      "content": get_weather_report(**args)})
        raise RuntimeError("no answer after 4 model calls")


class LiteLLMToolLoop(OpenAiToolLoop):
    """The same loop through litellm.completion() (openai-compatible provider)."""

    def new_conversation(self, conv: str) -> None:
        self.conv = conv
        self.messages = [{"role": "system", "content": SYSTEM_PROMPT}]

    def call(self, stream: bool) -> tuple[dict, dict]:
        import litellm
        kw = dict(model=f"openai/{MODEL}", api_base=self.base_url, api_key="sk-realtel",
                  messages=self.messages, tools=[TOOL_SCHEMA], max_tokens=256, temperature=0.2,
                  extra_headers={"X-Conversation-Id": self.conv}, num_retries=0)
        if not stream:
            r = litellm.completion(**kw)
            m = r.choices[0].message
            msg = {"role": "assistant", "content": m.content}
            if m.tool_calls:
                msg["tool_calls"] = [{"id": tc.id, "type": "function",
                                      "function": {"name": tc.function.name,
                                                   "arguments": tc.function.arguments}}
                                     for tc in m.tool_calls]
            return msg, r.usage.model_dump() if r.usage else {}
        return self.accumulate(litellm.completion(stream=True, stream_options={"include_usage": True},
                                                  **kw))


class LlamaIndexAgent:
    def __init__(self, base_url: str):
        self.base_url = base_url

    def new_conversation(self, conv: str) -> None:
        from llama_index.core.agent.workflow import FunctionAgent
        from llama_index.core.tools import FunctionTool
        from llama_index.core.memory import Memory
        from llama_index.llms.openai_like import OpenAILike
        llm = OpenAILike(model=MODEL, api_base=self.base_url, api_key="sk-realtel",
                         is_chat_model=True, is_function_calling_model=True,
                         context_window=32768, max_tokens=256, temperature=0.2, max_retries=0,
                         default_headers={"X-Conversation-Id": conv})

        def get_weather(city: str) -> str:
            """Weather report for a city."""
            return get_weather_report(city)
        self.agent = FunctionAgent(name=FRAMEWORK_AGENT_NAME, tools=[FunctionTool.from_defaults(get_weather)],
                                   llm=llm, system_prompt=SYSTEM_PROMPT)
        # the conversation: llama-index's own Memory, passed to every run. (A workflow
        # Context passed as ctx= does NOT carry it across runs: the context state is
        # serialized between runs and the memory is skipped as unserializable.)
        self.memory = Memory.from_defaults(session_id=conv, token_limit=40000)

    def turn(self, turn: int, city: str, stream: bool) -> tuple[str, dict]:
        self.agent.streaming = stream

        async def go():
            h = self.agent.run(question(turn, city), memory=self.memory)
            async for _ in h.stream_events():
                pass
            return await h
        r = run_async(go())
        return str(r.response.content or ""), {}


def semantic_cache_run(a, plan, tracer) -> list:
    """The semantic-cache agent: a Redis lookup before every model call (semcache.py)."""
    import redis
    from openai import OpenAI
    from opentelemetry.trace import SpanKind
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import semcache
    sc = plan["semantic_cache"]
    ptur = {(x["conversation_id"], x["turn"]): x for x in sc["turns"]}
    cache = redis.Redis(host="127.0.0.1", port=a.redis_port, db=0, decode_responses=True)
    turns_out = []
    for ci, conv in enumerate(plan["conversations"]):
        client = OpenAI(base_url=a.base_url, api_key="sk-realtel", max_retries=0,
                        default_headers={"X-Conversation-Id": conv})
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for turn in range(1, plan["turns"] + 1):
            p = ptur[(conv, turn)]
            stream = (ci + turn) % 2 == 0
            attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
                     "gen_ai.conversation.id": conv}
            t0 = time.time_ns()
            usage, pause = {}, None
            with tracer.start_as_current_span(f"invoke_agent {AGENT_NAME}", kind=SpanKind.INTERNAL,
                                              attributes=attrs) as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                key = semcache.cache_key(p["question"])
                assert key == p["key"]
                if p["slow_ms"]:   # another client pauses the server: the GET waits it out
                    pause = semcache.raw_command(a.redis_port, "CLIENT", "PAUSE", p["slow_ms"], "ALL")
                    assert pause.startswith(b"+OK"), pause
                cached = cache.get(key)
                messages.append({"role": "user", "content": p["question"]})
                if cached is not None:
                    text = cached
                else:
                    text, usage = chat_openai(client, messages, stream)
                    cache.set(key, text, ex=sc["ttl_s"])
                messages.append({"role": "assistant", "content": text})
            turns_out.append({"trace_id": trace_id, "conversation_id": conv, "turn": turn,
                              "stream": stream, "cache": "hit" if cached is not None else "miss",
                              "client_usage": usage, "duration_ns": time.time_ns() - t0})
            print(f"{conv} turn {turn} {'hit' if cached is not None else 'miss'} "
                  f"slow={p['slow_ms']} {(time.time_ns() - t0) / 1e6:.0f} ms", file=sys.stderr)
    return turns_out


SAVE_TICKET_SCHEMA = {"type": "function", "function": {
    "name": "save_ticket", "description": "File a support ticket about a city's weather service.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TICKET_SQL = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS tickets (id TEXT PRIMARY KEY, conversation_id TEXT, turn INTEGER,
                                    city TEXT, body TEXT, created_ns INTEGER);
CREATE TABLE IF NOT EXISTS city_counts (city TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS audit (tbl TEXT, key TEXT, hook INTEGER);
CREATE TRIGGER IF NOT EXISTS tickets_audit AFTER INSERT ON tickets
  BEGIN INSERT INTO audit VALUES ('tickets', NEW.id, audit_hook('tickets', NEW.id)); END;
CREATE TRIGGER IF NOT EXISTS city_counts_audit AFTER UPDATE ON city_counts
  BEGIN INSERT INTO audit VALUES ('city_counts', NEW.city, audit_hook('city_counts', NEW.city)); END;
"""


def write_amplification_run(a, plan, tracer) -> list:
    """The write-amplification agent: a tool loop whose tool writes to 1-3 stores (writeamp.py)."""
    import sqlite3
    import redis
    import requests
    from openai import OpenAI
    from opentelemetry.trace import SpanKind
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import semcache
    wa = plan["write_amplification"]
    ptur = {(x["conversation_id"], x["turn"]): x for x in wa["turns"]}
    # the trigger's hook sleeps the planted time of the write being executed
    pending = {"s": 0.0}

    def audit_hook(tbl, key):
        time.sleep(pending["s"])
        pending["s"] = 0.0
        return 1
    db = sqlite3.connect(a.sqlite_path)          # a TracedConnectionProxy (cursor execute traced)
    db.create_function("audit_hook", 2, audit_hook)
    db.executescript(TICKET_SQL)                 # set-up: Connection.executescript is not traced
    db.executemany("INSERT OR IGNORE INTO city_counts(city, n) VALUES (?, 0)", [(c,) for c in CITIES])
    db.commit()
    cache = redis.Redis(host="127.0.0.1", port=a.redis_port, db=0, decode_responses=True)
    http = requests.Session()

    def save_ticket(p, conv, turn, city):
        tid, stored = p["ticket_id"], []
        ticket = {"id": tid, "conversation_id": conv, "turn": turn, "city": city,
                  "summary": f"umbrella stand broken in {city}", "created_ns": time.time_ns()}
        body = json.dumps(ticket)
        for o in p["ops"]:
            st, op = o["store"], o["op"]
            if st == "sqlite":
                cur = db.cursor()
                if op == "INSERT":
                    pending["s"] = o["delay_ms"] / 1000
                    cur.execute("INSERT INTO tickets(id, conversation_id, turn, city, body, created_ns) "
                                "VALUES (?, ?, ?, ?, ?, ?)",
                                (tid, conv, turn, city, body, ticket["created_ns"]))
                    db.commit()
                elif op == "UPDATE":
                    pending["s"] = o["delay_ms"] / 1000
                    cur.execute("UPDATE city_counts SET n = n + 1 WHERE city = ?", (city,))
                    db.commit()
                else:
                    cur.execute("SELECT id, turn FROM tickets WHERE city = ? ORDER BY created_ns DESC "
                                "LIMIT 5", (city,))
                    cur.fetchall()
                cur.close()
            elif st == "redis":
                if o["write"]:   # another client pauses writes: the command waits it out
                    r = semcache.raw_command(a.redis_port, "CLIENT", "PAUSE", o["delay_ms"], "WRITE")
                    assert r.startswith(b"+OK"), r
                if op == "SET":
                    cache.set(f"ticket:{tid}", body, ex=wa["ttl_s"])
                elif op == "SADD":
                    cache.sadd(f"tickets:city:{city}", tid)
                else:
                    cache.get(f"ticket:last:{city}")
            else:
                if op == "PUT":
                    path = o["target"]
                    r = http.put(a.store_url + path, data=body,
                                 headers={"Content-Type": "application/json"}, timeout=30)
                else:
                    r = http.get(f"{a.store_url}/cities/{city}/tickets",
                                 headers={"X-Ticket-Id": tid}, timeout=30)
                r.raise_for_status()
            stored.append(f"{st}:{op}")
        return json.dumps({"ticket_id": tid, "status": "filed", "ops": stored})

    def call(client, messages, stream):
        kw = dict(model=MODEL, messages=messages, tools=[SAVE_TICKET_SCHEMA], max_tokens=256,
                  temperature=0.2)
        if not stream:
            r = client.chat.completions.create(**kw)
            m = r.choices[0].message
            msg = {"role": "assistant", "content": m.content}
            if m.tool_calls:
                msg["tool_calls"] = [tc.model_dump() for tc in m.tool_calls]
            return msg, r.usage.model_dump()
        return OpenAiToolLoop.accumulate(client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kw))

    turns_out = []
    for ci, conv in enumerate(plan["conversations"]):
        client = OpenAI(base_url=a.base_url, api_key="sk-realtel", max_retries=0,
                        default_headers={"X-Conversation-Id": conv})
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for turn in range(1, plan["turns"] + 1):
            p = ptur[(conv, turn)]
            stream = (ci + turn) % 2 == 0
            city = CITIES[h("city", conv, turn) % len(CITIES)]
            attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
                     "gen_ai.conversation.id": conv}
            t0 = time.time_ns()
            calls = 0
            with tracer.start_as_current_span(f"invoke_agent {AGENT_NAME}", kind=SpanKind.INTERNAL,
                                              attributes=attrs) as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                messages.append({"role": "user", "content":
                                 f"Question {turn}: the umbrella stand in {city} is broken, "
                                 f"please file a ticket."})
                for _ in range(4):
                    msg, usage = call(client, messages, stream)
                    messages.append(msg)
                    if not msg.get("tool_calls"):
                        break
                    for tc in msg["tool_calls"]:
                        fn = tc["function"]["name"]
                        args = json.loads(tc["function"]["arguments"] or "{}")
                        tattrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": fn,
                                  "gen_ai.tool.call.id": tc["id"], "gen_ai.tool.type": "function"}
                        with tracer.start_as_current_span(f"execute_tool {fn}", kind=SpanKind.INTERNAL,
                                                          attributes=tattrs):
                            assert fn == "save_ticket", fn
                            result = save_ticket(p, conv, turn, args.get("city", city))
                        calls += 1
                        messages.append({"role": "tool", "tool_call_id": tc["id"], "content": result})
                else:
                    raise RuntimeError("no answer after 4 model calls")
            assert calls == 1, f"{conv}/{turn}: {calls} tool calls"
            turns_out.append({"trace_id": trace_id, "conversation_id": conv, "turn": turn,
                              "stream": stream, "client_usage": usage, "city": city,
                              "duration_ns": time.time_ns() - t0})
            print(f"{conv} turn {turn} {p['kind']} {[o['store'] + ':' + o['op'] for o in p['ops']]} "
                  f"{(time.time_ns() - t0) / 1e6:.0f} ms", file=sys.stderr)
    http.close()
    db.close()
    return turns_out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--otlp", required=True)
    ap.add_argument("--plan", required=True, help="plan JSON (conversations, turns, cold starts)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--redis-port", type=int, default=6379, help="semantic-cache: the redis-server")
    ap.add_argument("--store-url", help="write-amplification: the HTTP store")
    ap.add_argument("--sqlite-path", help="write-amplification: the SQLite file")
    a = ap.parse_args()
    plan = json.load(open(a.plan))
    provider, tracer = setup_tracing(a.mode, a.otlp)
    if a.mode in ("semantic-cache", "write-amplification"):
        run = semantic_cache_run if a.mode == "semantic-cache" else write_amplification_run
        turns_out = run(a, plan, tracer)
        provider.force_flush()
        provider.shutdown()
        with open(a.out, "w") as f:
            json.dump(turns_out, f, indent=1, default=str)
        return
    from opentelemetry.trace import SpanKind

    using_session = None
    if a.mode in ("openinference", "langchain"):
        from openinference.instrumentation import using_session
    mcp = McpStep() if a.mode == "vllm-stack" else None
    tool_agent = None
    if a.mode == "pydantic-ai":
        tool_agent = PydanticAiAgent(a.base_url, provider)
    elif a.mode == "openlit":
        tool_agent = OpenAiToolLoop(a.base_url)
    elif a.mode == "litellm":
        tool_agent = LiteLLMToolLoop(a.base_url)
    elif a.mode == "llama-index":
        tool_agent = LlamaIndexAgent(a.base_url)
    cold = {(c, int(t)): float(s) for c, t, s in plan.get("tool_cold_start", [])}

    turns_out = []
    for ci, conv in enumerate(plan["conversations"]):
        headers = {"X-Conversation-Id": conv}
        if tool_agent is not None:
            tool_agent.new_conversation(conv)
        elif a.mode == "langchain":
            from langchain_openai import ChatOpenAI
            llm_s = ChatOpenAI(model=MODEL, base_url=a.base_url, api_key="sk-realtel", max_retries=0,
                               temperature=0.2, max_tokens=256, default_headers=headers,
                               stream_usage=True)
        else:
            from openai import OpenAI
            client = OpenAI(base_url=a.base_url, api_key="sk-realtel", max_retries=0,
                            default_headers=headers)
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for turn in range(1, plan["turns"] + 1):
            stream = (ci + turn) % 2 == 0
            city = CITIES[h("city", conv, turn) % len(CITIES)]
            attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
                     "gen_ai.conversation.id": conv}
            t0 = time.time_ns()
            with tracer.start_as_current_span(f"invoke_agent {AGENT_NAME}", kind=SpanKind.INTERNAL,
                                              attributes=attrs) as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                sess = using_session(conv) if using_session else None
                if sess:
                    sess.__enter__()
                try:
                    cold_s = cold.get((conv, turn), 0.0)
                    if tool_agent is not None:
                        CURRENT.update(conv=conv, turn=turn)
                        text, usage = tool_agent.turn(turn, city, stream)
                    else:
                        if mcp is not None and turn % MCP_EVERY == 1 % MCP_EVERY:
                            report = mcp.run(conv, turn, city, cold_s)
                        else:
                            report = tool_report(conv, turn, city)
                        messages.append({"role": "user",
                                         "content": user_message(conv, turn, city, report)})
                        if a.mode == "langchain":
                            text, usage = chat_langchain(llm_s, messages, stream)
                        else:
                            text, usage = chat_openai(client, messages, stream)
                        messages.append({"role": "assistant", "content": text})
                finally:
                    if sess:
                        sess.__exit__(None, None, None)
            turns_out.append({"trace_id": trace_id, "conversation_id": conv, "turn": turn,
                              "stream": stream, "client_usage": usage,
                              "tool_cold_start_s": cold_s if mcp is not None else 0.0,
                              "duration_ns": time.time_ns() - t0})
            print(f"{conv} turn {turn} stream={stream} {(time.time_ns() - t0) / 1e6:.0f} ms",
                  file=sys.stderr)
    provider.force_flush()
    provider.shutdown()
    with open(a.out, "w") as f:
        json.dump(turns_out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
