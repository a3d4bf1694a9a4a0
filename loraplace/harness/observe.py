"""One measured window on a running server: client timings, engine counters (probe) and /metrics together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import loadgen
from .probe import read_snapshot

SETTLE_S = 0.6  # longer than the probe's flush period, so the closing snapshot is complete


@dataclass
class Observation:
    """What one window measured; engine means are per scheduler step that scheduled something.

    `busy_step_ms` is the mean wall time of an engine step, the engine's idle gaps excluded.
    """

    duration_s: float
    sent: int
    completed: int
    prompt_tokens: int
    output_tokens: int
    mean_itl_ms: float
    mean_ttft_ms: float
    steps: int
    mean_batch: float
    mean_loras: float
    mean_waiting: float
    mean_tokens_per_step: float
    mean_decode_per_step: float
    mean_prefill_sq_per_step: float
    sched_ms_per_step: float
    busy_step_ms: float
    preemptions: float
    activations: int
    activation_ms: float
    disk_loads: int
    disk_load_ms: float
    errors: int
    first_error: str | None = None

    @property
    def throughput_tok_s(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.duration_s


def _delta(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in b if k not in ("time", "pid")}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def observe(url: str, probe: Path, requests: list[loadgen.Request], window_s: float, **kw) -> Observation:
    """Run one window of `requests` and collect everything the calibration and run files need."""
    s0, w0 = read_snapshot(probe, "sched"), read_snapshot(probe, "worker")
    res = loadgen.run(url, requests, window_s, **kw)
    time.sleep(SETTLE_S)
    s, w = _delta(s0, read_snapshot(probe, "sched")), _delta(w0, read_snapshot(probe, "worker"))
    done = res.completed()
    steps = s.get("steps", 0.0)
    per_step = (lambda k: s.get(k, 0.0) / steps) if steps else (lambda k: float("nan"))
    itl = [(o.done - o.first_token) / (o.output_tokens - 1) * 1e3 for o in done if o.output_tokens > 1 and o.first_token is not None]
    ttft = [(o.first_token - o.sent) * 1e3 for o in done if o.first_token is not None]
    duration = res.elapsed_s if kw.get("drain") else window_s
    return Observation(
        duration_s=duration, sent=len(res.outcomes), completed=len(done),
        prompt_tokens=sum(o.prompt_tokens for o in done), output_tokens=sum(o.output_tokens for o in done),
        mean_itl_ms=_mean(itl), mean_ttft_ms=_mean(ttft), steps=int(steps),
        mean_batch=per_step("batch"), mean_loras=per_step("loras"), mean_waiting=per_step("waiting"),
        mean_tokens_per_step=per_step("tokens"), mean_decode_per_step=per_step("decode_seqs"),
        mean_prefill_sq_per_step=per_step("prefill_sq"), sched_ms_per_step=per_step("sched_s") * 1e3,
        busy_step_ms=s.get("busy_step_s", 0.0) / max(s.get("busy_steps", 0.0), 1.0) * 1e3,
        preemptions=res.metrics_delta.get("preemptions", 0.0),
        activations=int(w.get("activations_n", 0)), activation_ms=w.get("activations_s", 0.0) / max(w.get("activations_n", 0), 1) * 1e3,
        disk_loads=int(w.get("disk_loads_n", 0)), disk_load_ms=w.get("disk_loads_s", 0.0) / max(w.get("disk_loads_n", 0), 1) * 1e3,
        errors=len(res.errors()), first_error=next(iter(res.errors()), None))
