"""Adapter-slot rotation: the twin against the scheduler micro-benchmarks that served many more adapters than slots.

For each run of calibration/scheduler_overhead.csv with at least 4x more adapters than GPU slots and a
standing queue, simulate the same configuration (rank 8, uniform per-adapter rates, its duration, the
reference harness's port-limited client) and compare adapter loads, completed requests and mean ITL.
Request lengths are constant, as in these benchmarks: each of the file's 788 runs completed 231 output
tokens per request (processed tokens over completed requests; 786 exactly, two within 1e-4), so their
outputs did not vary; prompts, not recorded, are taken as long as the outputs, as calibrate assumes. This measures
the twin's known gap: the real engine changes the adapters in its slots more often than the twin does.
Usage:

    python benchmarks/twin_slot_rotation.py ../shared/reference/calibration/scheduler_overhead.csv --json out.json
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scheduler_csv", type=Path)
    ap.add_argument("--profile", default="llama-3.1-8b-instruct_h100-64gb")
    ap.add_argument("--limit", type=int, default=12, help="runs with the longest queues first (default 12)")
    ap.add_argument("--client-ports", type=int, default=LINUX_EPHEMERAL_PORTS,
                    help=f"the measuring client's local ports (default {LINUX_EPHEMERAL_PORTS}; 0: every arrival is sent)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.scheduler_csv.is_file():
        print(f"not found: {args.scheduler_csv} (the benchmark needs ../shared)", file=sys.stderr)
        return 2
    profile = load_profile(args.profile)
    rows = [r for r in read_csv(args.scheduler_csv, ("gpu_loras", "cpu_loras", "adapter_rates", "avg_waiting_queue"))
            if float(r["cpu_loras"]) >= 4 * float(r["gpu_loras"]) and float(r["avg_waiting_queue"]) > 1000]
    rows.sort(key=lambda r: -float(r["avg_waiting_queue"]))
    out = []
    for r in rows[: args.limit]:
        slots, n, rate = int(float(r["gpu_loras"])), int(float(r["cpu_loras"])), float(r["adapter_rates"])
        duration = float(r["duration"])
        adapters = [Adapter(f"a{i}", 8, rate) for i in range(n)]
        config = ServingConfig(max_loras=slots, max_lora_rank=8, max_model_len=profile.max_model_len)
        out_per_req = float(r["processed_tokens"]) / float(r["completed_requests"])
        lengths = LengthSpec(mean_input=out_per_req, mean_output=out_per_req, sigma=0.0)  # constant: see the docstring
        wl = poisson_workload(adapters, duration, lengths, np.random.default_rng(0))
        res = Simulator(profile, config, adapters, wl,
                        SimOptions(duration=duration, client=client_with_ports(args.client_ports))).run()
        row = {"slots": slots, "adapters": n, "rate_per_adapter": rate,
               "measured_loads": float(r["max_lora_loads_from_memory"]), "twin_loads": res.adapter_loads,
               "measured_completed": float(r["completed_requests"]), "twin_completed": res.completed,
               "measured_itl_ms": round(float(r["mean_itl_ms"]), 1), "twin_itl_ms": round(res.mean_itl_ms, 1)}
        out.append(row)
        print(json.dumps(row), file=sys.stderr)
    summary = {
        "runs": len(out),
        "median_loads_ratio_measured_over_twin": round(statistics.median(o["measured_loads"] / max(o["twin_loads"], 1) for o in out), 2),
        "median_completed_ratio_twin_over_measured": round(statistics.median(o["twin_completed"] / o["measured_completed"] for o in out), 3),
        "median_itl_ratio_twin_over_measured": round(statistics.median(o["twin_itl_ms"] / o["measured_itl_ms"] for o in out), 3),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**summary, "rows": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
