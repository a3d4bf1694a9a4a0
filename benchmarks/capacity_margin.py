"""How much more load other mixes of rates carry than the two shapes the capacity table probes.

The exact strategies' relaxation (solvers/capacity.py) bounds a GPU's offered load by the largest load
the oracle accepts on equal rates or on one adapter carrying half the load, times the oracle's
`shape_margin`. This measures, with the shipped surrogate, the largest ratio over random
Dirichlet mixes and the paper's 4:2:1 mix at several adapter counts; the margin must be at least it.

    python benchmarks/capacity_margin.py --mixes 15
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from loraplace.solvers.capacity import LOAD_STEPS, _largest
from loraplace.solvers.gpu_fit import fit_many
from loraplace.solvers.placement import Share
from loraplace.surrogate.oracle import SurrogateOracle
from loraplace.twin.entities import Adapter, LengthSpec
from loraplace.twin.profile import load_profile

MAX_RATE = 3.2  # the surrogate's training range


def max_load(oracle, weights: np.ndarray, lengths: LengthSpec, rank: int = 8) -> float:
    tok = lengths.mean_input + lengths.mean_output

    def holds(i: int) -> bool:
        rates = weights * LOAD_STEPS[i] / tok
        if rates.max() > MAX_RATE:
            return False
        return fit_many(oracle, [[Share(Adapter(f"p{j}", rank, x)) for j, x in enumerate(rates)]], lengths)[0] is not None

    return LOAD_STEPS[max(_largest(holds, 0, len(LOAD_STEPS) - 1), 0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="llama-3.1-8b-instruct_h100-64gb")
    ap.add_argument("--mixes", type=int, default=15, help="random Dirichlet mixes per adapter count")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    profile = load_profile(args.profile)
    oracle, lengths, rng = SurrogateOracle.shipped(profile), LengthSpec(), np.random.default_rng(args.seed)
    rows = []
    for b in (16, 24, 32, 48, 64, 96, 128, 192, 256):
        heavy = np.full(b, 0.5 / (b - 1))
        heavy[0] = 0.5
        base = max(max_load(oracle, np.full(b, 1 / b), lengths), max_load(oracle, heavy, lengths))
        mixes = [rng.dirichlet(np.full(b, rng.choice([0.3, 0.5, 1.0, 3.0]))) for _ in range(args.mixes)]
        paper = np.array([(4.0, 2.0, 1.0)[i % 3] for i in range(b)])
        ratios = [max_load(oracle, w, lengths) / base for w in [*mixes, paper / paper.sum()]]
        rows.append({"adapters": b, "probed_tok_s": round(base), "max_ratio": round(max(ratios), 3)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"profile": profile.name, "max_ratio": max(r["max_ratio"] for r in rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
