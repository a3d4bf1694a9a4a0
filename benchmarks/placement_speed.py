"""Placement speed with the surrogate oracle: the greedy on the 1,280-adapter instances and on a
10,000-adapter synthetic one (median of --repeat runs, each with a fresh oracle cache). Usage:

    python benchmarks/placement_speed.py --repeat 3 --json speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from loraplace.solvers.greedy import greedy
from loraplace.solvers.instance_files import read_instance, shipped_instances
from loraplace.solvers.placement import PlacementInstance
from loraplace.surrogate.oracle import SurrogateOracle
from loraplace.twin.entities import Adapter
from loraplace.twin.profile import load_profile


def synthetic(n: int, seed: int = 0) -> PlacementInstance:
    """n adapters, ranks {8,16,32}, Dirichlet(0.5) popularity over 0.1 requests/s per adapter on average."""
    rng = np.random.default_rng(seed)
    rates = np.maximum(rng.dirichlet(np.full(n, 0.5)) * 0.1 * n, 1e-6)
    ranks = rng.choice([8, 16, 32], n)
    return PlacementInstance(f"synthetic-{n}", "llama-3.1-8b-instruct_h100-64gb",
                             tuple(Adapter(f"a{i}", int(ranks[i]), float(rates[i])) for i in range(n)))


def time_greedy(inst: PlacementInstance, repeat: int) -> dict:
    profile = load_profile(inst.profile)
    walls, gpus = [], None
    for _ in range(repeat):
        oracle = SurrogateOracle.shipped(profile)
        t = time.perf_counter()
        gpus = len(greedy(inst, oracle))
        walls.append(time.perf_counter() - t)
    return {"instance": inst.name, "adapters": len(inst.adapters), "gpus": gpus,
            "median_s": round(statistics.median(walls), 3), "max_s": round(max(walls), 3), "oracle_calls": oracle.calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    insts = [read_instance(n) for n in shipped_instances() if n.startswith("paper-1280-")] + [synthetic(10_000)]
    rows = []
    for inst in insts:
        rows.append(time_greedy(inst, args.repeat))
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}",
           "command": f"python benchmarks/placement_speed.py --repeat {args.repeat}", "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
