"""Surrogate noise floor: how far two twin runs of the same configuration (other seeds) are from each other.

The surrogate is scored against one seeded twin run per configuration. This re-simulates every row of
the held-out test split with another seed and reports the twin-against-twin error beside the
surrogate's, and the surrogate's error against the mean of the two runs (a less noisy label). When
the twin against itself is no closer than the surrogate, the remaining error is the twin's seed noise,
not the model's. Usage:

    python benchmarks/surrogate_noise_floor.py --profile llama-3.1-8b-instruct_h100-64gb --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from loraplace.surrogate.dataset import load_dataset, split
from loraplace.surrogate.features import FEATURES
from loraplace.surrogate.metrics import ape_summary, classification_summary
from loraplace.surrogate.model import SurrogateModel, starved_rule
from loraplace.surrogate.oracle import shipped_model_dir
from loraplace.twin.oracle import simulate_query
from loraplace.twin.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
OTHER_SEED = 2**31  # far from every seed the data generator uses (seed * 1,000,003 + index)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--data", nargs="*", type=Path, help="data files (default: those the shipped model records)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N test rows")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    model = SurrogateModel.load(shipped_model_dir(args.profile))
    meta = model.metadata
    data = args.data or [ROOT / "surrogate" / "data" / f["file"] for f in meta["data"]["files"]]
    ds = load_dataset(data, profile)
    rows = split(len(ds.queries), meta["split"]["seed"])[2][: args.limit]
    window, threshold = ds.header["window_s"], ds.header["starvation_threshold"]
    jobs = [(profile, ds.queries[i], window, threshold, OTHER_SEED + int(i)) for i in rows]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        again = list(pool.map(simulate_query, jobs, chunksize=4))
    wall = time.perf_counter() - t0
    X, y = ds.subset(rows)
    offered = X[:, FEATURES.index("offered_tok_s")]
    first = y["ratio"] * offered  # the recorded run, on the offered load's scale (as the surrogate is scored)
    second = np.array([v.throughput_tok_s / v.ideal_tok_s if v.ideal_tok_s else 0.0 for v in again]) * offered
    pred = model.predict(X, ("ratio", "starved"))
    starved_first = y["starved"] > 0.5
    starved_second = np.array([v.starved for v in again])
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}, {args.workers} processes",
        "profile": args.profile, "rows": int(len(rows)), "window_s": window, "wall_s": round(wall, 1),
        "twin_vs_twin": {**ape_summary(first, second), **classification_summary(starved_first, starved_second)},
        "surrogate_vs_recorded": {**ape_summary(first, pred["throughput_tok_s"]),
                                  **classification_summary(starved_first, starved_rule(pred, threshold))},
        "surrogate_vs_mean_of_two": ape_summary((first + second) / 2, pred["throughput_tok_s"]),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
