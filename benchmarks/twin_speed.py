"""Twin speed: wall time to simulate the window of every configuration in a runs file, on one core.

Reports the median and slowest wall time over configurations (each the median of --repeat runs),
simulated seconds per wall second, and peak memory. Usage:

    python benchmarks/twin_speed.py ../shared/reference/runs/llama-3.1-8b-instruct_h100-64gb.csv --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

from loraplace.twin import native
from loraplace.twin.client import client_with_ports
from loraplace.twin.entities import LengthSpec
from loraplace.twin.profile import load_profile
from loraplace.twin.validate import read_runs, simulate_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is kept")
    ap.add_argument("--limit", type=int, help="only the first N configurations")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--client-ports", type=int, default=0,
                    help="replay with the reference harness's port-limited client (0, the default: an open client)")
    ap.add_argument("--engine", choices=("auto", "python"), default="auto",
                    help="python: the Python loop, as on a machine without a C compiler (default: the C core if built)")
    args = ap.parse_args()
    if args.engine == "python":
        native._core = None
    if not args.runs.is_file():
        print(f"runs file not found: {args.runs} (the benchmark needs ../shared)", file=sys.stderr)
        return 2
    runs = [r for r in read_runs(args.runs) if r.row["status"] == "ok" and r.row["n_adapters"]]
    runs = runs[: args.limit] if args.limit else runs
    profile = load_profile(args.profile or f"{runs[0].row['model']}_{runs[0].row['gpu']}")
    rows = []
    for i, run in enumerate(runs):
        walls = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            simulate_run((profile, run, 0, client_with_ports(args.client_ports), LengthSpec.sigma))
            walls.append(time.perf_counter() - t0)
        wall = statistics.median(walls)
        duration = float(run.row["duration_s"] or 3600)
        rows.append({"run_id": run.row["run_id"], "wall_s": round(wall, 4), "sim_s_per_wall_s": round(duration / wall, 1)})
        print(f"[{i + 1}/{len(runs)}] {run.row['run_id']}: {wall:.2f} s", file=sys.stderr)
    walls = [r["wall_s"] for r in rows]
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_implementation()} {platform.python_version()}, one process",
        "engine": "C core" if native.available() else "Python",
        "twin_version": version("loraplace"),
        "configurations": len(rows),
        "repeat": args.repeat,
        "client_ports": args.client_ports,
        "median_wall_s": round(statistics.median(walls), 3),
        "max_wall_s": round(max(walls), 3),
        "mean_wall_s": round(statistics.fmean(walls), 3),
        "median_sim_s_per_wall_s": round(statistics.median(r["sim_s_per_wall_s"] for r in rows), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "slowest": sorted(rows, key=lambda r: -r["wall_s"])[:5],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**out, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
