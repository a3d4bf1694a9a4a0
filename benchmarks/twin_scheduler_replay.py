"""The twin against the loaded scheduler micro-benchmarks: adapter-slot rotation, and a KV cache that binds.

Replays runs of calibration/scheduler_overhead.csv that kept a standing queue (rank 8, uniform per-adapter
rates, the run's duration, the reference harness's port-limited client) in two groups, and compares adapter
loads, completed requests and mean ITL:

- rotation: at least 4x more adapters than GPU slots (the engine must swap adapters), longest queues first;
- kv: as many adapters as slots, 128 slots or more (no swapping; the KV cache, not the token budget, bounds
  the batch), longest queues first.

Request lengths are constant, as in these benchmarks: each of the file's 788 runs completed 231 output
tokens per request (processed tokens over completed requests; 786 exactly, two within 1e-4), so their
outputs did not vary; prompts, not recorded, are taken as long as the outputs, as calibrate assumes.
Runs the profile says could not start (its KV model extrapolated past the slots it was measured at) are
left out and counted. Usage:

    python benchmarks/twin_scheduler_replay.py ../shared/reference/calibration/scheduler_overhead.csv --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from loraplace.twin.arrivals import poisson_workload
from loraplace.twin.client import LINUX_EPHEMERAL_PORTS, client_with_ports
from loraplace.twin.csvfiles import read_csv
from loraplace.twin.engine import SimOptions, Simulator
from loraplace.twin.entities import Adapter, LengthSpec, ServingConfig
from loraplace.twin.profile import load_profile

GROUPS = {
    "rotation": lambda slots, n: n >= 4 * slots,
    "kv": lambda slots, n: n == slots and slots >= 128,
}


def replay(profile, r: dict, client_ports: int) -> dict | None:
    """One benchmark run through the twin, beside what the engine measured; None if the twin says it fails to start."""
    slots, n, rate = int(float(r["gpu_loras"])), int(float(r["cpu_loras"])), float(r["adapter_rates"])
    if profile.memory.startup_status(slots, 8, profile.max_model_len) != "ok":
        return None
    duration = float(r["duration"])
    adapters = [Adapter(f"a{i}", 8, rate) for i in range(n)]
    config = ServingConfig(max_loras=slots, max_lora_rank=8, max_model_len=profile.max_model_len)
    out_per_req = float(r["processed_tokens"]) / float(r["completed_requests"])
    lengths = LengthSpec(mean_input=out_per_req, mean_output=out_per_req, sigma=0.0)  # constant: see the docstring
    wl = poisson_workload(adapters, duration, lengths, np.random.default_rng(0))
    res = Simulator(profile, config, adapters, wl, SimOptions(duration=duration, client=client_with_ports(client_ports))).run()
    return {"slots": slots, "adapters": n, "rate_per_adapter": rate,
            "measured_loads": float(r["max_lora_loads_from_memory"]), "twin_loads": res.adapter_loads,
            "measured_completed": float(r["completed_requests"]), "twin_completed": res.completed,
            "measured_itl_ms": round(float(r["mean_itl_ms"]), 1), "twin_itl_ms": round(res.mean_itl_ms, 1)}


def summarise(out: list[dict], skipped: int) -> dict:
    med = lambda xs: round(statistics.median(xs), 3) if out else None  # noqa: E731
    return {"runs": len(out), "not_started_in_twin": skipped,
            "median_loads_ratio_measured_over_twin": med(o["measured_loads"] / max(o["twin_loads"], 1) for o in out),
            "median_completed_ratio_twin_over_measured": med(o["twin_completed"] / o["measured_completed"] for o in out),
            "median_itl_ratio_twin_over_measured": med(o["twin_itl_ms"] / o["measured_itl_ms"] for o in out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scheduler_csv", type=Path)
    ap.add_argument("--profile", default="llama-3.1-8b-instruct_h100-64gb")
    ap.add_argument("--limit", type=int, default=12, help="runs per group, longest queues first (default 12)")
    ap.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {', '.join(GROUPS)} (default all)")
    ap.add_argument("--client-ports", type=int, default=LINUX_EPHEMERAL_PORTS,
                    help=f"the measuring client's local ports (default {LINUX_EPHEMERAL_PORTS}; 0: every arrival is sent)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.scheduler_csv.is_file():
        print(f"not found: {args.scheduler_csv} (the benchmark needs ../shared)", file=sys.stderr)
        return 2
    groups = [g for g in args.groups.split(",") if g]
    if unknown := [g for g in groups if g not in GROUPS]:
        print(f"unknown group(s): {', '.join(unknown)}; choose from {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    profile = load_profile(args.profile)
    rows = read_csv(args.scheduler_csv, ("gpu_loras", "cpu_loras", "adapter_rates", "avg_waiting_queue"))
    rows = sorted((r for r in rows if float(r["avg_waiting_queue"]) > 1000), key=lambda r: -float(r["avg_waiting_queue"]))
    result = {}
    for g in groups:
        chosen = [r for r in rows if GROUPS[g](int(float(r["gpu_loras"])), int(float(r["cpu_loras"])))][: args.limit]
        out, skipped = [], 0
        for r in chosen:
            row = replay(profile, r, args.client_ports)
            if row is None:
                skipped += 1
                continue
            out.append(row)
            print(json.dumps({"group": g, **row}), file=sys.stderr)
        result[g] = {**summarise(out, skipped), "rows": out}
    print(json.dumps({g: {k: v for k, v in s.items() if k != "rows"} for g, s in result.items()}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
