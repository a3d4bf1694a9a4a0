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

from loraplace.twin.errors import ConfigError
from loraplace.twin.oracle import GpuQuery
from loraplace.twin.profile import Profile

FEATURES = (
    "adapters", "max_loras", "max_lora_rank", "slots_per_adapter",
    "rank_max", "rank_mean", "rank_std",
    "rate_sum", "rate_mean", "rate_std", "rate_max", "rate_q50", "rate_q90",
    "top_share", "slot_share", "effective_adapters",
    "offered_tok_s", "offered_per_slot", "mean_input", "mean_output", "kv_tokens",
)
PER_GPU = ("max_loras", "max_lora_rank", "mean_input", "mean_output")  # a query's settings besides its adapters


def feature_matrix(queries: list[GpuQuery], profile: Profile) -> np.ndarray:
    """One row per query, columns in FEATURES order (a query's rates are already in decreasing order)."""
    n = np.array([len(q.ranks) for q in queries])
    total = int(n.sum())
    return _rows(n, np.fromiter(chain.from_iterable(q.ranks for q in queries), float, count=total),
                 np.fromiter(chain.from_iterable(q.rates for q in queries), float, count=total),
                 *(np.array([getattr(q, f) for q in queries], float) for f in PER_GPU), profile)


def feature_matrix_arrays(counts, ranks, rates, max_loras, max_lora_rank, mean_input, mean_output,
                          profile: Profile) -> np.ndarray:
    """The same rows from plain arrays: GPU i serves the `counts[i]` adapters that follow GPU i-1's in the flat
    `ranks` and `rates`; the other arguments hold one value per GPU. No Python object per adapter, so a large
    batch costs a few microseconds per GPU; adapters not already in decreasing rate order are sorted first,
    which costs more than the features themselves."""
    n = np.asarray(counts, int)
    if n.ndim != 1 or len(n) == 0 or (n < 1).any():
        raise ConfigError("feature rows need one adapter count of at least 1 per GPU")
    ranks, rates = np.asarray(ranks, float), np.asarray(rates, float)
    if ranks.shape != (n.sum(),) or rates.shape != ranks.shape:
        raise ConfigError(f"{n.sum()} adapters counted, but {ranks.size} ranks and {rates.size} rates given")
    per_gpu = [np.asarray(v, float) for v in (max_loras, max_lora_rank, mean_input, mean_output)]
    if any(v.shape != n.shape for v in per_gpu):
        raise ConfigError(f"{', '.join(PER_GPU)} need one value per GPU ({len(n)})")
    out_of_order = rates[1:] > rates[:-1]  # only the rates' order matters to the features
    out_of_order[np.cumsum(n)[:-1] - 1] = False  # between two GPUs' lists any order goes
    if out_of_order.any():  # sort into GpuQuery's order: decreasing rate, then increasing rank, within each GPU
        order = np.lexsort((ranks, -rates, np.repeat(np.arange(len(n)), n)))
        ranks, rates = ranks[order], rates[order]
    return _rows(n, ranks, rates, *per_gpu, profile)


def _rows(n: np.ndarray, ranks: np.ndarray, rates: np.ndarray, m: np.ndarray, mlr: np.ndarray, lin: np.ndarray,
          lout: np.ndarray, profile: Profile) -> np.ndarray:
    """Feature rows, vectorised over the ragged adapter lists (each GPU's rates in decreasing order)."""
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    nf = n.astype(float)

    def seg_sum(v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, start)

    def std(total: np.ndarray, squares: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(squares / nf - (total / nf) ** 2, 0.0))

    rank_sum, rank_squares = seg_sum(ranks), seg_sum(ranks * ranks)
    cum = np.cumsum(rates)
    before = np.concatenate(([0.0], cum))[start]  # cumulative sum up to each GPU's first rate
    total, squares = seg_sum(rates), seg_sum(rates * rates)
    safe = np.where(total > 0, total, 1.0)

    def quantile(q: float) -> np.ndarray:  # position from the top of each GPU's descending rates
        return rates[start + np.round((1 - q) * (n - 1)).astype(int)]

    top_m = cum[start + np.minimum(m.astype(int), n) - 1] - before
    kv = profile.memory.kv_tokens(m, mlr)
    offered = total * (lin + lout)
    cols = {
        "adapters": nf, "max_loras": m, "max_lora_rank": mlr, "slots_per_adapter": m / nf,
        "rank_max": np.maximum.reduceat(ranks, start), "rank_mean": rank_sum / nf, "rank_std": std(rank_sum, rank_squares),
        "rate_sum": total, "rate_mean": total / nf, "rate_std": std(total, squares), "rate_max": rates[start],
        "rate_q50": quantile(0.5), "rate_q90": quantile(0.9),
        "top_share": rates[start] / safe, "slot_share": top_m / safe,
        "effective_adapters": safe**2 / np.maximum(squares, 1e-300),
        "offered_tok_s": offered, "offered_per_slot": offered / m, "mean_input": lin, "mean_output": lout, "kv_tokens": kv,
    }
    out = np.empty((len(n), len(FEATURES)))
    for j, f in enumerate(FEATURES):
        out[:, j] = cols[f]
    return out
