"""Rates sized to a profile: the scale of a run's rate pattern at which the twin just keeps up.

A measurement plan written as loads (0.5 = half of what the server sustains, 2 = twice) then means the
same on a fast machine and a slow one, where fixed rates would overload every run of the slower one.
"""

from __future__ import annotations

import math

from .entities import LengthSpec
from .errors import ConfigError
from .profile import Profile
from .validate import Run, pattern, simulate_run

SIZING_WINDOW_S = 600.0  # long enough that requests in flight at the end weigh little in the ratio


def served_share(profile: Profile, row: dict, scale: float, window: float = SIZING_WINDOW_S, seed: int = 0) -> float:
    """Throughput over ideal when the row's adapter rates are multiplied by `scale` (no client port limit)."""
    rates = ";".join(f"{r * scale:.9g}" for r in pattern(row["adapter_rates"], float, "adapter_rates"))
    run = Run({**row, "adapter_rates": rates, "duration_s": window, "arrivals": "", "status": "ok"})
    out = simulate_run((profile, run, seed, None, LengthSpec.sigma))
    if out["predicted_status"] != "ok":
        raise ConfigError(f"run {row.get('run_id')}: the profile says this server does not start ({out['predicted_status']})")
    return out["predicted_tok_s"] / out["ideal_tok_s"] if out["ideal_tok_s"] else 1.0


def saturation_scale(profile: Profile, row: dict, threshold: float = 0.9, window: float = SIZING_WINDOW_S,
                     seed: int = 0, rel_tol: float = 0.01) -> float:
    """The largest multiple of the row's rates at which the twin still serves `threshold` of the ideal
    (bracketed by doubling or halving from 1, then bisected in log scale to `rel_tol`)."""
    lo = hi = 1.0
    if served_share(profile, row, 1.0, window, seed) >= threshold:
        while served_share(profile, row, hi * 2, window, seed) >= threshold:
            hi *= 2
            if hi > 1e6:
                raise ConfigError(f"run {row.get('run_id')}: the twin never saturates this server")
        lo, hi = hi, hi * 2
    else:
        while served_share(profile, row, lo / 2, window, seed) < threshold:
            lo /= 2
            if lo < 1e-6:
                raise ConfigError(f"run {row.get('run_id')}: the twin starves this server at any rate")
        lo, hi = lo / 2, lo
    while hi / lo > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        if served_share(profile, row, mid, window, seed) >= threshold:
            lo = mid
        else:
            hi = mid
    return lo


def sized_row(profile: Profile, row: dict, load: float, **kw) -> dict:
    """The row with its rates set to `load` times the saturation point of its rate pattern."""
    if not load > 0:
        raise ConfigError(f"run {row.get('run_id')}: load must be positive, got {load}")
    s = saturation_scale(profile, row, **kw)
    rates = ";".join(f"{r * s * load:.6g}" for r in pattern(row["adapter_rates"], float, "adapter_rates"))
    return {**row, "adapter_rates": rates, "saturation_scale": f"{s:.6g}"}
