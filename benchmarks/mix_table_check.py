"""Checks the one assumption of the exact strategies' mix table (solvers/capacity.py, mix_table) on shipped instances.

The table finds, per rank class and adapter count, the heaviest mix of the instance's rates the oracle accepts by
binary searches that assume a shrinking rate never hurts. This asks every mix instead and reports where the
exhaustive answer carries more load than the searches found (per count, and for the largest load of a class):

    python benchmarks/mix_table_check.py paper-256-r8-16-high paper-128-r8-16-32-high --json out.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from loraplace.solvers.capacity import MIX_SEARCHES, MixSearches, accepts_mixes, capacity_table
from loraplace.solvers.instance_files import read_instance
from loraplace.solvers.placement_solve import make_oracle
from loraplace.twin.oracle import WINDOW_S
from loraplace.twin.profile import load_profile

BATCH = 5000  # mixes per oracle call


def check(name: str) -> list[dict]:
    inst = read_instance(name)
    oracle = make_oracle("surrogate", load_profile(inst.profile), inst.starvation_threshold, WINDOW_S, 0, 2)
    coarse = capacity_table(inst, oracle)
    rows = []
    for r in coarse.classes:
        s = MixSearches.of(Counter(a.rate for a in inst.adapters if a.rank <= r), coarse.max_adapters[r], MIX_SEARCHES)
        searched: dict[int, float] = {}
        for n, mix in zip(s.counts, s.heaviest(lambda mixes: accepts_mixes(oracle, inst, r, s.rates, mixes))):
            if mix is not None:
                searched[n] = max(searched.get(n, 0.0), float(mix @ s.rates))
        every = [(s.counts[i], s.mix(i, x)) for i in range(len(s.counts)) for x in range(s.lo[i], s.hi[i] + 1)]
        exhaustive: dict[int, float] = {}
        for k in range(0, len(every), BATCH):
            chunk = every[k:k + BATCH]
            for (n, mix), ok in zip(chunk, accepts_mixes(oracle, inst, r, s.rates, [m for _, m in chunk])):
                if ok:
                    exhaustive[n] = max(exhaustive.get(n, 0.0), float(mix @ s.rates))
        missed = {n: v / searched.get(n, 0.0) if searched.get(n) else None for n, v in exhaustive.items()
                  if v > searched.get(n, 0.0) + 1e-9}
        rows.append({"instance": name, "rank_class": r, "mixes": len(every), "counts": len(exhaustive),
                     "counts_where_search_missed_load": len(missed),
                     "max_missed_ratio": max((v for v in missed.values() if v), default=1.0),
                     "largest_load_ratio": max(exhaustive.values()) / max(searched.values())})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instances", nargs="+", help="shipped instance names or files")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    rows = []
    for name in args.instances:
        for row in check(name):
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
