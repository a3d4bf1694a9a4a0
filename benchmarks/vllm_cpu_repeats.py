"""Live vLLM against itself: the same plan measured twice, and the twin against each measurement and their mean.

The twin is judged against one live measurement per run, but a live engine on two shared cores does not
repeat itself: the same requests, sent at the same times to the same server configuration, can settle
in different regimes when a run is overloaded. This reports how far two measurements of each run are
from each other (the engine's own noise floor for the twin's error) beside the twin's error against
each and against their mean. The runs files must come from the same plan and seed. Usage:

    python benchmarks/vllm_cpu_repeats.py RUNS_A.csv RUNS_B.csv --profile PROFILE.json --json out.json
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
from loraplace.twin.validate import read_runs, summarise_validation, validate


def ape(measured: np.ndarray, predicted: np.ndarray) -> dict:
    return summary(np.abs(predicted - measured) / measured * 100)


def summary(e: np.ndarray) -> dict:
    """Mean, median and max of absolute percentage errors, and how many exceed 10 %."""
    return {"mape_pct": round(float(e.mean()), 3), "median_ape_pct": round(float(np.median(e)), 3),
            "max_ape_pct": round(float(e.max()), 3), "runs_over_10pct": int((e > 10).sum())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs=2, help="two runs files of the same plan and seed")
    ap.add_argument("--profile", required=True, help="the profile the twin uses (the one calibrated that day)")
    ap.add_argument("--seed", type=int, default=0, help="the seed both runs files were measured with")
    ap.add_argument("--json", type=Path, help="write the report here too")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    a, b = (read_runs(p) for p in args.runs)
    key = ("run_id", "n_adapters", "max_loras", "max_lora_rank", "adapter_ranks", "adapter_rates", "arrivals")
    if [tuple(r.row[k] for k in key) for r in a] != [tuple(r.row[k] for k in key) for r in b]:
        sys.exit("vllm_cpu_repeats: the two runs files differ in their runs or arrivals (not the same plan and seed)")
    twin, summary_a = validate(profile, a, seed=args.seed)  # the twin replays the same requests for both files
    summary_b = summarise_validation(validate(profile, b, seed=args.seed)[0])
    rows = [{"run_id": t["run_id"], "measured_a_tok_s": ra.get("throughput_tok_s"), "measured_b_tok_s": rb.get("throughput_tok_s"),
             "twin_tok_s": round(t["predicted_tok_s"], 3), "ideal_tok_s": round(t["ideal_tok_s"], 3),
             "starved_a": ra.get("starved", int), "starved_b": rb.get("starved", int), "twin_starved": t["predicted_starved"]}
            for t, ra, rb in zip(twin, a, b) if t["predicted_status"] == "ok"]
    both = [r for r in rows if r["measured_a_tok_s"] and r["measured_b_tok_s"]]
    ma, mb = (np.array([r[k] for r in both]) for k in ("measured_a_tok_s", "measured_b_tok_s"))
    mean, tw = (ma + mb) / 2, np.array([r["twin_tok_s"] for r in both])
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "profile": profile.name, "runs_files": [str(p) for p in args.runs], "n_runs": len(rows), "n_both_served": len(both),
        "repeat_difference": {**summary(np.abs(ma - mb) / 2 / mean * 100),
                              "note": "|a - b| / 2 over the mean of a and b: either measurement's error against their mean"},
        "a_against_b": ape(mb, ma),
        "twin_against_a": ape(ma, tw), "twin_against_b": ape(mb, tw), "twin_against_mean": ape(mean, tw),
        "starvation_flag_agreement_a_b": round(float(np.mean([r["starved_a"] == r["starved_b"] for r in rows])), 4),
        "twin_flag_accuracy_a": summary_a["starved_accuracy"], "twin_flag_accuracy_b": summary_b["starved_accuracy"],
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
