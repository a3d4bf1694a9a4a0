"""A space-filling design of single-GPU configurations covering what placement asks the oracle.

A Latin hypercube over (adapters, offered load, slots, rank mix, rate shape, length means), mapped to
concrete queries: adapter counts log-uniform in 8..576, offered load log-uniform around the GPU's
capacity for most points (so the starvation boundary is crossed densely) and into heavy overload for
the rest (so the saturated throughput is learnt, not extrapolated), rates either as the source paper's
three-rate mix (4:2:1) or as Dirichlet(0.5) popularity, clipped to 0.003..3.2 requests/s.
"""

from __future__ import annotations

import math

import numpy as np

from loraplace.twin.entities import LengthSpec
from loraplace.twin.oracle import GpuQuery, slot_candidates
from loraplace.twin.profile import Profile

RANK_MIXES = ((8,), (16,), (32,), (8, 16), (16, 32), (8, 32), (8, 16, 32))
MIN_ADAPTERS, MAX_ADAPTERS = 8, 576
MIN_RATE, MAX_RATE = 0.003, 3.2
LOAD_RANGE_TOK_S = (600.0, 30000.0)  # 70 % of points: around one GPU's capacity, where the boundary lies
OVERLOAD_RANGE_TOK_S = (30000.0, 150000.0)  # the rest: heavy overload, as in measured runs of many busy adapters
BOUNDARY_SHARE = 0.7
BASE_LENGTHS = LengthSpec()
LENGTH_SCALE = (0.75, 1.25)  # each length mean is drawn between these multiples of its BASE_LENGTHS value
DIMENSIONS = 7


def latin_hypercube(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n points in [0, 1)^d, one per stratum in every dimension."""
    u = (rng.permuted(np.tile(np.arange(n), (d, 1)), axis=1).T + rng.random((n, d))) / n
    return u


def _log_between(u: float, lo: float, hi: float) -> float:
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def slot_choices(n: int, profile: Profile, rank: int) -> list[int]:
    """max_loras values a strategy may pick for n adapters (the grid below n, and n), plus the first
    value past the memory limit so that start-up failures are in the sample too."""
    grid = slot_candidates(n)
    limit = profile.memory.max_slots(rank, profile.max_model_len)
    ok = [g for g in grid if g <= limit]
    over = [g for g in grid if g > limit][:1]
    return ok + over if ok else grid[:1]


def rate_vector(n: int, load_tok_s: float, tokens_per_request: float, dirichlet: bool,
                rng: np.random.Generator) -> np.ndarray:
    """Per-adapter rates whose offered load is about `load_tok_s` (before clipping to the rate range)."""
    if dirichlet:
        w = rng.dirichlet(np.full(n, 0.5))
    else:
        w = np.array([(4.0, 2.0, 1.0)[i % 3] for i in range(n)])
        w = rng.permutation(w) / w.sum()
    return np.clip(w * load_tok_s / tokens_per_request, MIN_RATE, MAX_RATE)


def design_point(u: np.ndarray, profile: Profile, rng: np.random.Generator) -> GpuQuery:
    """Map one hypercube point (and a per-point generator for the discrete draws) to a query."""
    n = int(round(_log_between(u[0], MIN_ADAPTERS, MAX_ADAPTERS)))
    load = (_log_between(u[1] / BOUNDARY_SHARE, *LOAD_RANGE_TOK_S) if u[1] < BOUNDARY_SHARE
            else _log_between((u[1] - BOUNDARY_SHARE) / (1 - BOUNDARY_SHARE), *OVERLOAD_RANGE_TOK_S))
    mix = RANK_MIXES[min(int(u[3] * len(RANK_MIXES)), len(RANK_MIXES) - 1)]
    ranks = rng.permutation([mix[i % len(mix)] for i in range(n)])
    choices = slot_choices(n, profile, max(mix))
    max_loras = choices[min(int(u[2] * len(choices)), len(choices) - 1)]
    lo, hi = LENGTH_SCALE
    lengths = LengthSpec(mean_input=round(BASE_LENGTHS.mean_input * (lo + (hi - lo) * u[5]), 1),
                         mean_output=round(BASE_LENGTHS.mean_output * (lo + (hi - lo) * u[6]), 1))
    rates = rate_vector(n, load, lengths.mean_input + lengths.mean_output, u[4] >= 0.5, rng)
    return GpuQuery.of(ranks, np.round(rates, 6), max_loras, lengths)


def design(profile: Profile, samples: int, seed: int) -> list[GpuQuery]:
    """The whole design; point i depends only on (seed, samples, i), so a run can resume anywhere."""
    u = latin_hypercube(samples, DIMENSIONS, np.random.default_rng(seed))
    return [design_point(u[i], profile, np.random.default_rng([seed, i])) for i in range(samples)]
