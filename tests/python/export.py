"""Export traces (with gen_ai attributes) and a histogram metric to a running
tailscope collector with the real OpenTelemetry Python SDK.

usage: export.py PROTOCOL ENDPOINT RUN_ID
  PROTOCOL: grpc | http/protobuf | http/json
Prints one JSON line describing what was sent, for the test to compare.
"""
import json
import sys

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

protocol, endpoint, run_id = sys.argv[1], sys.argv[2], sys.argv[3]

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
elif protocol == "http/protobuf":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http import Compression

    span_exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", compression=Compression.Gzip)
    metric_exporter = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics")
elif protocol == "http/json":
    # The Python SDK has no JSON exporter; send OTLP/JSON the way a JSON client does,
    # built from the SDK's own spans through its protobuf encoder and protobuf's JSON mapping.
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
    import urllib.request

    failures = []

    def post(path, msg):
        try:
            return _post(path, msg)
        except Exception as e:  # the SDK's processors swallow exporter errors
            failures.append(f"{path}: {e}")
            raise

    def _post(path, msg):
        body = MessageToDict(msg, use_integers_for_enums=True)
        # OTLP/JSON: ids are hex, not base64.
        import base64

        def fix(o):
            if isinstance(o, dict):
                for k, v in list(o.items()):
                    if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                        o[k] = base64.b64decode(v).hex()
                    else:
                        fix(v)
            elif isinstance(o, list):
                for v in o:
                    fix(v)
        fix(body)
        req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            reply = json.loads(r.read() or b"{}")
            assert r.headers["Content-Type"].startswith("application/json"), r.headers["Content-Type"]
            return reply

    class JsonSpanExporter(SpanExporter):
        def export(self, spans):
            post("/v1/traces", encode_spans(spans))
            return SpanExportResult.SUCCESS

        def shutdown(self):
            pass

    class JsonMetricExporter(MetricExporter):
        def __init__(self):
            super().__init__()

        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            post("/v1/metrics", encode_metrics(metrics_data))
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    span_exporter = JsonSpanExporter()
    metric_exporter = JsonMetricExporter()
else:
    raise SystemExit(f"unknown protocol {protocol}")

resource = Resource.create({"service.name": f"py-agent-{run_id}", "deployment.environment": "test"})
provider = TracerProvider(resource=resource)
provider.add_span_processor(SimpleSpanProcessor(span_exporter))
tracer = provider.get_tracer("tailscope.tests", "1.0")

reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = meter_provider.get_meter("tailscope.tests")
hist = meter.create_histogram("gen_ai.client.operation.duration", unit="s")

sent = []
with tracer.start_as_current_span("invoke_agent planner", kind=SpanKind.INTERNAL,
                                  attributes={"gen_ai.operation.name": "invoke_agent",
                                              "gen_ai.agent.name": "planner",
                                              "run.id": run_id}) as root:
    for turn in range(3):
        with tracer.start_as_current_span("chat llama-3", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "llama-3",
            "gen_ai.provider.name": "vllm",
            "gen_ai.conversation.id": f"conv-{run_id}",
            "gen_ai.usage.input_tokens": 1000 + 100 * turn,
            "gen_ai.usage.output_tokens": 50 + turn,
            "gen_ai.usage.cache_read.input_tokens": 900 if turn else 0,
            "gen_ai.response.time_to_first_chunk": 0.125,
            "gen_ai.request.stream": True,
            "gen_ai.request.temperature": 0.5,
            "tags": ["a", "b"],
            "run.id": run_id,
        }) as span:
            span.add_event("gen_ai.chunk", {"tokens": 4})
            if turn == 2:
                span.set_status(Status(StatusCode.ERROR, "rate limited"))
                span.set_attribute("error.type", "429")
            hist.record(0.5 + turn, {"gen_ai.request.model": "llama-3"})
            ctx = span.get_span_context()
            sent.append({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
                         "input_tokens": 1000 + 100 * turn, "attr_count": len(span.attributes)})
    root_ctx = root.get_span_context()
    sent.append({"trace_id": format(root_ctx.trace_id, "032x"), "span_id": format(root_ctx.span_id, "016x")})

provider.force_flush()
provider.shutdown()
meter_provider.force_flush()
meter_provider.shutdown()
if protocol == "http/json" and failures:
    raise SystemExit("OTLP/JSON export failed: " + "; ".join(failures))
print(json.dumps({"spans": sent, "histogram_count": 3, "histogram_sum": 4.5}))
