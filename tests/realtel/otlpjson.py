#!/usr/bin/env python3
"""Convert raw OTLP/HTTP protobuf bodies (ExportTraceServiceRequest, and
ExportMetricsServiceRequest for files named *.metrics.pb) into OTLP/JSON lines, in
file-name (arrival) order, the OpenTelemetry Collector file-exporter format: lowerCamelCase field names,
trace/span ids as lowercase hex, enums as numbers, int64 as strings.

Needs `opentelemetry-proto` (any venv under .venv-realtel/ has it):
  python otlpjson.py RAW_DIR OUT.jsonl     (RAW_DIR holds 000000.traces.pb, 000001.metrics.pb, ...)
"""

from __future__ import annotations

import base64
import json
import os
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def fix_ids(o):
    if isinstance(o, dict):
        for k, v in list(o.items()):
            if k in ID_KEYS and isinstance(v, str):
                o[k] = base64.b64decode(v).hex()
            else:
                fix_ids(v)
    elif isinstance(o, list):
        for v in o:
            fix_ids(v)
    return o


def to_json(body: bytes, metrics: bool = False) -> dict:
    req = ExportMetricsServiceRequest() if metrics else ExportTraceServiceRequest()
    req.ParseFromString(body)
    d = json_format.MessageToDict(req, use_integers_for_enums=True,
                                  preserving_proto_field_name=False)
    return fix_ids(d)


def main() -> None:
    raw_dir, out = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(raw_dir) if n.endswith(".pb"))
    with open(out, "w") as f:
        for n in names:
            with open(os.path.join(raw_dir, n), "rb") as r:
                d = to_json(r.read(), metrics=n.endswith(".metrics.pb"))
            if d.get("resourceSpans") or d.get("resourceMetrics"):
                f.write(json.dumps(d, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
