"""Features of one GPU configuration, computed the same way for training, evaluation and the solvers.

The source paper's features (sum and standard deviation of rates; max, mean and standard deviation of
ranks; `max_loras`; served adapters) plus what the twin shows to matter: offered tokens/s, rate
quantiles, the largest adapter's share, the share of load the `max_loras` busiest adapters carry
(what resident slots can absorb), slots per adapter, the effective number of adapters, the length
means and the KV-cache capacity the profile gives this configuration.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from loraplace.twin.oracle import GpuQuery
from loraplace.twin.profile import Profile

FEATURES = (
    "adapters", "max_loras", "max_lora_rank", "slots_per_adapter",
    "rank_max", "rank_mean", "rank_std",
    "rate_sum", "rate_mean", "rate_std", "rate_max", "rate_q50", "rate_q90",
    "top_share", "slot_share", "effective_adapters",
    "offered_tok_s", "offered_per_slot", "mean_input", "mean_output", "kv_tokens",
)


def feature_matrix(queries: list[GpuQuery], profile: Profile) -> np.ndarray:
    """One row per query, columns in FEATURES order (vectorised over the ragged adapter lists of all queries)."""
    n = np.array([len(q.ranks) for q in queries])
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    ranks = np.fromiter(chain.from_iterable(q.ranks for q in queries), float, count=int(n.sum()))
    rates = np.fromiter(chain.from_iterable(q.rates for q in queries), float, count=int(n.sum()))  # each descending
    m = np.array([q.max_loras for q in queries], float)
    mlr = np.array([q.max_lora_rank for q in queries], float)
    lin = np.array([q.mean_input for q in queries])
    lout = np.array([q.mean_output for q in queries])
    nf = n.astype(float)

    def seg_sum(v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, start)

    def seg_std(v: np.ndarray) -> np.ndarray:
        mean = seg_sum(v) / nf
        return np.sqrt(np.maximum(seg_sum(v * v) / nf - mean**2, 0.0))

    total = seg_sum(rates)
    safe = np.where(total > 0, total, 1.0)
    cum = np.cumsum(rates)
    before = np.concatenate(([0.0], cum))[start]  # cumulative sum up to each query's first rate

    def quantile(q: float) -> np.ndarray:  # position from the top of each query's descending rates
        return rates[start + np.round((1 - q) * (n - 1)).astype(int)]

    top_m = cum[start + np.minimum(m.astype(int), n) - 1] - before
    kv = np.array([profile.memory.kv_tokens(q.max_loras, q.max_lora_rank) for q in queries], float)
    offered = total * (lin + lout)
    cols = {
        "adapters": nf, "max_loras": m, "max_lora_rank": mlr, "slots_per_adapter": m / nf,
        "rank_max": np.maximum.reduceat(ranks, start), "rank_mean": seg_sum(ranks) / nf, "rank_std": seg_std(ranks),
        "rate_sum": total, "rate_mean": total / nf, "rate_std": seg_std(rates), "rate_max": rates[start],
        "rate_q50": quantile(0.5), "rate_q90": quantile(0.9),
        "top_share": rates[start] / safe, "slot_share": top_m / safe,
        "effective_adapters": safe**2 / np.maximum(seg_sum(rates * rates), 1e-300),
        "offered_tok_s": offered, "offered_per_slot": offered / m, "mean_input": lin, "mean_output": lout, "kv_tokens": kv,
    }
    return np.column_stack([cols[f] for f in FEATURES])
