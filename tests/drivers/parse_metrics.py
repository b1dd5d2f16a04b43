"""Parses OpenMetrics text (stdin) with Prometheus's own parser and prints every sample as
one JSON line: {"name": ..., "labels": {...}, "value": ...}. Fails on text the parser rejects."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}))
