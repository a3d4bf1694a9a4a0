"""What one simulation reports, computed from the request table at the end of the window."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .requests import RequestTable


@dataclass
class SimResult:
    status: str  # 'ok' or why the server fails to start
    throughput_tok_s: float  # prompt + output tokens of requests completed in the window, per second
    ideal_tok_s: float  # tokens of every request that arrived in the window, per second
    starved: bool
    arrivals: int
    completed: int
    dropped: int  # arrivals the client could not send (a port-limited client only)
    mean_ttft_ms: float
    p99_ttft_ms: float
    mean_itl_ms: float
    p99_itl_ms: float
    preemptions: int
    adapter_loads: int
    steps: int
    kv_cache_tokens: int
    duration_s: float
    wall_s: float
    queue: list = field(default_factory=list)

    def to_dict(self, with_queue: bool = False) -> dict:
        d = asdict(self)
        if not with_queue:
            d.pop("queue")
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else round(v, 4) if isinstance(v, float) else v)
                for k, v in d.items()}


def _weighted_p99(values: list, weights: list) -> float:
    if len(values) == 0:
        return float("nan")
    v, w = np.asarray(values), np.asarray(weights, float)
    order = np.argsort(v)
    cum = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cum, 0.99 * cum[-1])])


def summarise(sim, table: RequestTable, stats: dict, wall0: float) -> SimResult:
    """Window metrics; a server that failed to start served nothing."""
    T = sim.opt.duration
    arrived = table.arrival < T
    ideal = float((table.prompt[arrived] + table.output[arrived]).sum()) / T
    done = np.isfinite(table.finish) & (table.finish <= T)
    thr = float((table.prompt[done] + table.output[done]).sum()) / T
    ttft = (table.first_token[done] - table.arrival[done]) * 1000
    multi = done & (table.output > 1)
    itl_tokens = int((table.output[multi] - 1).sum())
    mean_itl = float((table.finish[multi] - table.first_token[multi]).sum()) * 1000 / itl_tokens if itl_tokens else float("nan")
    nan = float("nan")
    return SimResult(
        status=sim.status,
        throughput_tok_s=thr,
        ideal_tok_s=ideal,
        starved=bool(thr < sim.opt.starvation_threshold * ideal),
        arrivals=int(arrived.sum()),
        completed=int(done.sum()),
        dropped=int(stats.get("dropped", 0)),
        mean_ttft_ms=float(ttft.mean()) if len(ttft) else nan,
        p99_ttft_ms=float(np.percentile(ttft, 99)) if len(ttft) else nan,
        mean_itl_ms=mean_itl,
        p99_itl_ms=_weighted_p99(stats.get("itl_d", []), stats.get("itl_w", [])) * 1000,
        preemptions=int(stats.get("preemptions", 0)),
        adapter_loads=int(stats.get("loads", 0)),
        steps=int(stats.get("steps", 0)),
        kv_cache_tokens=int(sim.kv_tokens),
        duration_s=T,
        wall_s=time.perf_counter() - wall0,
        queue=stats.get("queue", []),
    )
