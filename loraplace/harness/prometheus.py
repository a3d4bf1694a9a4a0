"""Parse vLLM's Prometheus `/metrics` text into the few numbers the harness records."""

from __future__ import annotations

import re

LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# Gauges sampled during a run, and the counters read at its ends.
GAUGES = {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
          "kv_usage": "vllm:kv_cache_usage_perc"}
DEFERRED = ("vllm:num_requests_waiting_by_reason", "deferred")
COUNTERS = {"preemptions": "vllm:num_preemptions_total", "prompt_tokens": "vllm:prompt_tokens_total",
            "generation_tokens": "vllm:generation_tokens_total"}


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for each sample line; comments and malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), value))
    return out


def summarize(text: str) -> dict[str, float]:
    """Running, waiting, deferred-by-adapter-limit, KV usage and cumulative counters, summed over engines."""
    totals: dict[str, float] = {}
    names = {v: k for k, v in {**GAUGES, **COUNTERS}.items()}
    for name, labels, value in parse_metrics(text):
        key = names.get(name)
        if name == DEFERRED[0] and labels.get("reason") == DEFERRED[1]:
            key = "deferred"
        if key is not None:
            totals[key] = totals.get(key, 0.0) + value
    return totals
