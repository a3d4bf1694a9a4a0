"""Live vLLM against itself: the same plan measured several times, and the twin against each measurement and their mean.

The twin is judged against one live measurement per run, but a live engine on two shared cores does not
repeat itself: the same requests, sent at the same times to the same server configuration, can settle
in different regimes when a run is overloaded. This reports how far the measurements of each run are
from their mean (the engine's own noise floor for the twin's error) beside the twin's error against
each and against the mean, and, where the runs files record them, the adapter slot loads the engine
made beside the twin's. The runs files must come from the same plan and seed. Usage:

    python benchmarks/vllm_cpu_repeats.py RUNS_A.csv RUNS_B.csv [RUNS_C.csv ...] --profile PROFILE.json --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from loraplace.twin.profile import load_profile
from loraplace.twin.validate import read_runs, validate


def ape(measured: np.ndarray, predicted: np.ndarray) -> dict:
    return summary(np.abs(predicted - measured) / measured * 100)


def summary(e: np.ndarray) -> dict:
    """Mean, median and max of absolute percentage errors, and how many exceed 10 %."""
    return {"mape_pct": round(float(e.mean()), 3), "median_ape_pct": round(float(np.median(e)), 3),
            "max_ape_pct": round(float(e.max()), 3), "runs_over_10pct": int((e > 10).sum())}


def flag_accuracy(twin: list[dict], runs: list) -> float:
    """The twin's starvation flag against one file's, over the runs that served in both (as `twin validate` counts)."""
    served = [(t, r) for t, r in zip(twin, runs) if t["predicted_status"] == "ok" and r.row["status"] == "ok"]
    return round(float(np.mean([r.get("starved", int) == t["predicted_starved"] for t, r in served])), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="two or more runs files of the same plan and seed")
    ap.add_argument("--profile", required=True, help="the profile the twin uses (the one calibrated that day)")
    ap.add_argument("--seed", type=int, default=0, help="the seed the runs files were measured with")
    ap.add_argument("--json", type=Path, help="write the report here too")
    args = ap.parse_args()
    if len(args.runs) < 2:
        sys.exit("vllm_cpu_repeats: give at least two runs files")
    profile = load_profile(args.profile)
    files = [read_runs(p) for p in args.runs]
    key = ("run_id", "n_adapters", "max_loras", "max_lora_rank", "adapter_ranks", "adapter_rates", "arrivals")
    if len({tuple(tuple(r.row[k] for k in key) for r in runs) for runs in files}) > 1:
        sys.exit("vllm_cpu_repeats: the runs files differ in their runs or arrivals (not the same plan and seed)")
    twin, _ = validate(profile, files[0], seed=args.seed)  # the same requests in every file: one simulation serves all
    keep = [i for i, t in enumerate(twin) if t["predicted_status"] == "ok"
            and all(runs[i].get("throughput_tok_s") for runs in files)]
    m = np.array([[runs[i].get("throughput_tok_s") for i in keep] for runs in files])  # files x runs
    tw = np.array([twin[i]["predicted_tok_s"] for i in keep])
    mean = m.mean(axis=0)
    flags = np.array([[runs[i].get("starved", int) for i in keep] for runs in files])
    loads = np.array([[runs[i].get("adapter_loads", float) for i in keep] for runs in files], float)  # None -> nan
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "profile": profile.name, "runs_files": [str(p) for p in args.runs], "n_runs": len(twin), "n_served_in_all": len(keep),
        "measurements_against_their_mean": summary(np.abs(m - mean) / mean * 100),
        "ratio_to_first_median": [round(float(np.median(x / m[0])), 3) for x in m],
        "twin_against_each": [ape(x, tw) for x in m], "twin_against_mean": ape(mean, tw),
        "starvation_flags_agree_in_all": round(float(np.mean((flags == flags[0]).all(axis=0))), 4),
        "twin_flag_accuracy_each": [flag_accuracy(twin, runs) for runs in files],
        "rows": [{"run_id": twin[i]["run_id"], "measured_tok_s": m[:, j].tolist(), "twin_tok_s": round(tw[j], 3),
                  "ideal_tok_s": round(twin[i]["ideal_tok_s"], 3), "starved": flags[:, j].tolist(),
                  "twin_starved": twin[i]["predicted_starved"],
                  "adapter_loads": [runs[i].get("adapter_loads", int) for runs in files],
                  "twin_adapter_loads": twin[i]["predicted_adapter_loads"]} for j, i in enumerate(keep)],
    }
    measured = ~np.isnan(loads).all(axis=0)  # runs whose loads some file records (runs files before 2026-11-29 have none)
    if measured.any():
        report["adapter_loads_median_ratio_measured_to_twin"] = round(float(np.median(
            np.nanmean(loads[:, measured], axis=0)
            / np.maximum([twin[i]["predicted_adapter_loads"] for i in np.array(keep)[measured]], 1))), 3)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
