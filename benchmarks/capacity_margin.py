"""How much more load other mixes of rates, and smaller ranks, carry than what the capacity tables probe.

Measures solvers.shape_margin.shape_ratios and rank_ratios with the shipped surrogate of a profile and prints
them beside the margins that oracle uses (each must be at least the ratio it covers; tests check both):

    python benchmarks/capacity_margin.py --profile llama-3.1-8b-instruct_h100-64gb --mixes 15
"""

from __future__ import annotations

import argparse
import json

from loraplace.solvers.shape_margin import rank_ratios, shape_ratios
from loraplace.surrogate.oracle import SurrogateOracle
from loraplace.twin.profile import load_profile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="llama-3.1-8b-instruct_h100-64gb")
    ap.add_argument("--mixes", type=int, default=15, help="random Dirichlet mixes per adapter count")
    ap.add_argument("--rank-mixes", type=int, default=3, help="random Dirichlet mixes per count for the rank ratios")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    oracle = SurrogateOracle.shipped(load_profile(args.profile))
    rows = []
    for row in shape_ratios(oracle, args.mixes, args.seed):
        rows.append(row)
        print(json.dumps(row), flush=True)
    ranks = []
    for row in rank_ratios(oracle, args.rank_mixes, args.seed):
        ranks.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"profile": args.profile, "max_ratio": max(r["max_ratio"] for r in rows),
                      "shape_margins": oracle.shape_margins, "max_rank_ratio": max(r["max_ratio"] for r in ranks),
                      "rank_margin": oracle.rank_margin}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
