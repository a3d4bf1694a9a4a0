"""Placement quality on the shipped instances: exact proofs, the greedy's gap to them, the twin's verdict.

For every shipped instance up to --max-adapters, runs the strategies with the shipped surrogate as the
oracle, then (unless --no-twin-check) simulates every GPU of every placement with the twin and re-plans
those it rejects, as `loraplace solve` does (--repair-rounds). Reports per instance GPUs, lower bound,
status and time, and the targets of the solvers issue: exact strategies proving optimality within the
time limit, the greedy's hit rate and largest excess over the proven optimum, GPUs the twin finds
starved, and (--recheck-seeds) how many final GPUs the twin rejects under other arrival seeds. Usage:

    python benchmarks/placement_quality.py --max-adapters 256 --strategies greedy,cpsat --json quality.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from loraplace.solvers.instance_files import read_instance, shipped_instances
from loraplace.solvers.placement_solve import EXACT, Solver, TwinCheck, check_and_repair, make_oracle, strategy_list
from loraplace.twin.oracle import CHECK_SEEDS, WINDOW_S
from loraplace.twin.profile import load_profile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-adapters", type=int, default=256)
    ap.add_argument("--strategies", default="greedy,cpsat")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--no-twin-check", action="store_true")
    ap.add_argument("--repair-rounds", type=int, default=3)
    ap.add_argument("--check-seeds", type=int, default=CHECK_SEEDS, help="arrival seeds of the twin's check (from 0)")
    ap.add_argument("--recheck-seeds", default="", help="comma-separated arrival seeds to re-simulate final GPUs with, "
                                                         "one at a time (choose seeds the check did not use)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    names = strategy_list(args.strategies)
    rows = []
    for name in shipped_instances():
        inst = read_instance(name)
        if len(inst.adapters) > args.max_adapters:
            continue
        profile = load_profile(inst.profile)
        oracle = make_oracle("surrogate", profile, inst.starvation_threshold, WINDOW_S, 0, 2)
        t = time.perf_counter()
        solver = Solver(inst, oracle, args.time_limit)
        setup = time.perf_counter() - t
        placements = solver.solve_all(names)
        if not args.no_twin_check:
            check = TwinCheck.simulating(inst, profile, seeds=args.check_seeds)
            try:
                placements = check_and_repair(solver, placements, check, args.repair_rounds)
            finally:
                check.close()
        row = {"instance": name, "adapters": len(inst.adapters), "setup_s": round(setup, 2),
               "strategies": [p.to_dict(with_plans=False) for p in placements]}
        for seed in (int(s) for s in args.recheck_seeds.split(",") if s):
            for d, rejected in zip(row["strategies"], recheck(placements, inst, profile, seed)):
                d[f"twin_starved_gpus_seed{seed}"] = rejected
        rows.append(row)
        print(name, " ".join(f"{p.strategy}={p.gpus}/{p.lower_bound}/{p.status}/{p.solve_time_s:.1f}s"
                             f"/starved={p.twin_starved_gpus}" for p in placements), flush=True)
    summary = summarise(rows, names, args.time_limit)
    out = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}",
           "command": "python benchmarks/placement_quality.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)),
           "summary": summary, "instances": rows}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def recheck(placements, inst, profile, seed: int) -> list[int]:
    """Per placement, the GPUs the twin rejects when arrivals come from another seed (shared GPUs simulated once)."""
    judge = TwinCheck.simulating(inst, profile, seed=seed, seeds=1).judge
    try:
        verdicts = judge.evaluate([p.query(inst.lengths) for pl in placements for p in pl.plans])
    finally:
        judge.close()
    counts, at = [], 0
    for pl in placements:
        counts.append(sum(not v.feasible for v in verdicts[at:at + pl.gpus]))
        at += pl.gpus
    return counts


def summarise(rows: list[dict], names: list[str], limit: float) -> dict:
    by = [{s["name"]: s for s in r["strategies"]} for r in rows]
    exact = [n for n in names if n in EXACT]
    proven = [b for b in by if any(b[n]["status"] == "optimal" for n in names)]
    optimum = [min(b[n]["gpus"] for n in names if b[n]["status"] == "optimal") for b in proven]
    out = {"instances": len(rows), "time_limit_s": limit, "optimum_known": len(proven)}
    for n in exact:
        out[f"{n}_proven_within_limit"] = sum(b[n]["status"] == "optimal" and b[n]["solve_time_s"] <= limit for b in by)
    if "greedy" in names and proven:
        excess = [b["greedy"]["gpus"] - opt for b, opt in zip(proven, optimum)]
        out["greedy_optimal"] = sum(e == 0 for e in excess)
        out["greedy_max_excess"] = max(excess)
    starved = [s["twin_starved_gpus"] for r in rows for s in r["strategies"] if s["twin_starved_gpus"] is not None]
    out["twin_starved_gpus_total"] = sum(starved) if starved else None
    out["twin_replanned_gpus_total"] = sum(s["twin_replanned_gpus"] for r in rows for s in r["strategies"])
    for key in sorted({k for r in rows for s in r["strategies"] for k in s if k.startswith("twin_starved_gpus_seed")}):
        out[f"{key}_total"] = sum(s[key] for r in rows for s in r["strategies"])
    return out


if __name__ == "__main__":
    raise SystemExit(main())
