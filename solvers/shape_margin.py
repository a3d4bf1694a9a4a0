"""How much more load other mixes of rates, or smaller ranks, carry than what the capacity tables probe.

The exact strategies' relaxation (solvers/capacity.py) bounds a GPU's offered load by the largest load
the oracle accepts on equal rates or on one adapter carrying half the load, adapters all of the GPU's rank,
times the oracle's `shape_margin` and `rank_margin`. This measures, for one oracle, the largest ratios over
random Dirichlet mixes and the paper's 4:2:1 mix at several adapter counts (`shape_ratios`) and over GPUs
with some adapters of rank 8 (`rank_ratios`): each margin must be at least its ratio.
"""

from __future__ import annotations

import numpy as np

from loraplace.twin.entities import LengthSpec
from loraplace.twin.oracle import Oracle

from .capacity import LOAD_STEPS, _largest
from .gpu_fit import accepted

ADAPTER_COUNTS = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
MAX_RATE = 3.2  # the surrogate's training range


def max_load(oracle: Oracle, weights: np.ndarray, lengths: LengthSpec, rank: int | np.ndarray = 8) -> float:
    """Largest offered load (tokens/s) the oracle accepts on adapters of rank `rank` (one, or one per adapter)
    sharing it as `weights`."""
    ranks = np.broadcast_to(rank, weights.shape)
    tok = lengths.mean_input + lengths.mean_output

    def holds(i: int) -> bool:
        rates = weights * LOAD_STEPS[i] / tok
        if rates.max() > MAX_RATE:
            return False
        return accepted(oracle, [(ranks.tolist(), rates.tolist())], lengths)[0]

    return LOAD_STEPS[max(_largest(holds, 0, len(LOAD_STEPS) - 1), 0)]


def shape_ratios(oracle: Oracle, mixes: int = 15, seed: int = 0, lengths: LengthSpec = LengthSpec()):
    """Per adapter count: the probed load of the two shapes and the largest ratio another mix reaches over it."""
    rng = np.random.default_rng(seed)
    for b in ADAPTER_COUNTS:
        heavy = np.full(b, 0.5 / (b - 1))
        heavy[0] = 0.5
        base = max(max_load(oracle, np.full(b, 1 / b), lengths), max_load(oracle, heavy, lengths))
        weights = [rng.dirichlet(np.full(b, rng.choice([0.3, 0.5, 1.0, 3.0]))) for _ in range(mixes)]
        paper = np.array([(4.0, 2.0, 1.0)[i % 3] for i in range(b)])
        ratios = [max_load(oracle, w, lengths) / base for w in [*weights, paper / paper.sum()]]
        yield {"adapters": b, "probed_tok_s": round(base), "max_ratio": round(max(ratios), 3)}


def rank_ratios(oracle: Oracle, mixes: int = 3, seed: int = 0, lengths: LengthSpec = LengthSpec()):
    """Per adapter count and rank class: how much more load a GPU carries when some of its adapters have a smaller
    rank than the class's (the capacity tables probe adapters all of the class's rank), on the paper's 4:2:1 mix
    and random Dirichlet mixes of rates, with a quarter, half or three quarters of the adapters at the class's
    rank and the rest of rank 8, the heaviest first and last."""
    rng = np.random.default_rng(seed)
    for b in ADAPTER_COUNTS[1:]:
        paper = np.array([(4.0, 2.0, 1.0)[i % 3] for i in range(b)])
        weights = [paper / paper.sum(), *(rng.dirichlet(np.full(b, rng.choice([0.5, 1.0, 3.0]))) for _ in range(mixes))]
        for r in (16, 32):
            ratio = 0.0
            for w in weights:
                w = np.sort(w)[::-1]
                base = max_load(oracle, w, lengths, r)
                for share in (0.25, 0.5, 0.75):
                    k = max(1, round(share * b))
                    for ranks in (np.r_[np.full(k, r), np.full(b - k, 8)], np.r_[np.full(b - k, 8), np.full(k, r)]):
                        ratio = max(ratio, max_load(oracle, w, lengths, ranks) / base)
            yield {"adapters": b, "rank_class": r, "max_ratio": round(ratio, 3)}
