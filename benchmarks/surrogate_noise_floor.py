"""Surrogate noise floor: how far two twin runs of the same configuration (other seeds) are from each other.

The surrogate is scored against one seeded twin run per configuration. This re-simulates every row of
the held-out test split with another seed and reports the twin-against-twin error beside the
surrogate's, and the surrogate's error against the mean of the two runs (a less noisy label). When
the twin against itself is no closer than the surrogate, the remaining error is the twin's seed noise,
not the model's. With --runs, the configurations of a measured-runs file instead: each simulated over
the data's window and over the runs' own window (other seeds), the surrogate scored against both.
Usage:

    python benchmarks/surrogate_noise_floor.py --profile llama-3.1-8b-instruct_h100-64gb --json out.json
    python benchmarks/surrogate_noise_floor.py --profile llama-3.1-8b-instruct_h100-64gb \
        --runs ../shared/reference/runs/llama-3.1-8b-instruct_h100-64gb.csv --json out.json
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
from loraplace.surrogate.evaluate import run_query
from loraplace.surrogate.features import feature_matrix
from loraplace.surrogate.features import FEATURES
from loraplace.surrogate.generate import header_client
from loraplace.surrogate.metrics import ape_summary, classification_summary
from loraplace.surrogate.model import SurrogateModel, starved_rule
from loraplace.surrogate.oracle import shipped_model_dir
from loraplace.twin.oracle import simulate_query
from loraplace.twin.profile import load_profile
from loraplace.twin.validate import read_runs

ROOT = Path(__file__).resolve().parents[1]
OTHER_SEED = 2**31  # far from every seed the data generator uses (seed * 1,000,003 + index)


def simulate(jobs: list, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Each job's twin run: throughput on its query's offered-load scale (as the surrogate is scored), starved flag."""
    with ProcessPoolExecutor(workers) as pool:
        verdicts = list(pool.map(simulate_query, jobs, chunksize=4))
    ratio = np.array([v.throughput_tok_s / v.ideal_tok_s if v.ideal_tok_s else 0.0 for v in verdicts])
    return ratio * np.array([job[1].offered_tok_s for job in jobs]), np.array([v.starved for v in verdicts])


def holdout(args, profile, model) -> dict:
    """The held-out test rows: the recorded run against one more seed, and the surrogate against both (and per
    design, where the data mixes space-filling and near-boundary files)."""
    meta = model.metadata
    data = args.data or [ROOT / "surrogate" / "data" / f["file"] for f in meta["data"]["files"]]
    ds = load_dataset(data, profile)
    rows = split(len(ds.queries), meta["split"]["seed"])[2][: args.limit]
    window, threshold = ds.header["window_s"], ds.header["starvation_threshold"]
    jobs = [(profile, ds.queries[i], window, threshold, OTHER_SEED + int(i), header_client(ds.header)) for i in rows]
    second, starved_second = simulate(jobs, args.workers)
    X, y = ds.subset(rows)
    first = y["ratio"] * X[:, FEATURES.index("offered_tok_s")]  # the recorded run
    pred = model.predict(X, ("ratio", "starved"))
    starved_first, starved_pred = y["starved"] > 0.5, starved_rule(pred, threshold)

    def scores(keep: np.ndarray) -> dict:
        return {"rows": int(keep.sum()),
                "twin_vs_twin": {**ape_summary(first[keep], second[keep]),
                                 **classification_summary(starved_first[keep], starved_second[keep])},
                "surrogate_vs_recorded": {**ape_summary(first[keep], pred["throughput_tok_s"][keep]),
                                          **classification_summary(starved_first[keep], starved_pred[keep])},
                "surrogate_vs_mean_of_two": ape_summary((first[keep] + second[keep]) / 2, pred["throughput_tok_s"][keep])}

    kinds = ds.designs()[rows]
    by_design = {k: scores(kinds == k) for k in sorted(set(kinds))} if len(set(kinds)) > 1 else {}
    return {**scores(np.ones(len(rows), bool)), "window_s": window, **({"by_design": by_design} if by_design else {})}


def reference_configurations(args, profile, model) -> dict:
    """A measured-runs file's configurations, twin over the data's window and over the runs' window, other seeds."""
    runs = read_runs(args.runs)
    queries = [q for r in runs if (q := run_query(r, 0)) is not None][: args.limit]
    data_window = model.metadata["data"]["window_s"]
    runs_window = float(runs[0].row.get("duration_s") or 3600.0)
    client = header_client(model.metadata["data"])
    short = simulate([(profile, q, data_window, 0.9, OTHER_SEED + i, client) for i, q in enumerate(queries)], args.workers)[0]
    long = simulate([(profile, q, runs_window, 0.9, 2 * OTHER_SEED + i, client) for i, q in enumerate(queries)], args.workers)[0]
    pred = model.predict(feature_matrix(queries, profile), ("ratio",))["throughput_tok_s"]
    return {"runs_file": str(args.runs), "configurations": len(queries), "data_window_s": data_window,
            "runs_window_s": runs_window,
            "twin_short_vs_long": {**ape_summary(long, short), "bias_pct": round(float(np.mean((short - long) / long) * 100), 3)},
            "surrogate_vs_twin_short": ape_summary(short, pred), "surrogate_vs_twin_long": ape_summary(long, pred)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--data", nargs="*", type=Path, help="data files (default: those the shipped model records)")
    ap.add_argument("--runs", type=Path, help="score the configurations of this measured-runs file instead")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N rows or configurations")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args()
    if args.runs and not args.runs.is_file():
        print(f"runs file not found: {args.runs} (the benchmark needs ../shared)", file=sys.stderr)
        return 2
    profile = load_profile(args.profile)
    model = SurrogateModel.load(shipped_model_dir(args.profile))
    t0 = time.perf_counter()
    result = reference_configurations(args, profile, model) if args.runs else holdout(args, profile, model)
    out = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
                      f"{platform.python_version()}, {args.workers} processes",
           "profile": args.profile, **result, "wall_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
