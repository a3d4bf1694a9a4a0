"""The scheduler's CPU time per engine step in the loaded micro-benchmarks, split by GPU slots, and two forms fitted to it.

vLLM 0.8's admission loop walks the waiting queue from the front, passing over requests whose adapter is outside a
full set of `max_loras`, and stops at the first request it cannot place: with few slots it crosses most of the
queue every step, with many almost none of it. This benchmark reads `calibration/scheduler_overhead.csv` alone
(no simulation) and reports:

- by_slots: per GPU-slot count, the median scheduler time per waiting request (us) over runs with a queue above
  `--min-queue`, and the mean distinct adapters per batch;
- per_waiting: the profile's form and fit (twin/calibrate.py), a + b x running + c x waiting, least squares over
  every run (the profile keeps c; a and b sit in its step-time model);
- walk: a + b x running from the runs with as many adapters as slots (no request is ever passed over), then the
  cost per examined request from the runs with at least 4 adapters per slot on at most 64 slots and a queue
  above 100 (the set is full, so the walk examines about the whole queue);

with each form's MAPE on those two subsets. Usage:

    python benchmarks/twin_scheduler_cost.py ../shared/reference/calibration/scheduler_overhead.csv --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from loraplace.twin.calibrate import lstsq
from loraplace.twin.csvfiles import read_csv
from loraplace.twin.errors import InputFileError

COLUMNS = ("gpu_loras", "cpu_loras", "avg_batch_size", "avg_waiting_queue", "sched_time_per_step_ms", "mean_loras_by_batch")


def relative_lstsq(X: np.ndarray, y: np.ndarray, offset: np.ndarray | float = 0.0) -> np.ndarray:
    """Coefficients c of offset + X c fitted to y in relative error (the twin is judged in percent)."""
    return np.linalg.lstsq(X / y[:, None], (y - offset) / y, rcond=None)[0]


def mape(pred: np.ndarray, y: np.ndarray) -> float:
    return round(float(np.mean(np.abs(pred - y) / y) * 100), 2)


def analyse(rows: list[dict], min_queue: float) -> dict:
    col = {k: np.array([float(r[k]) for r in rows]) for k in COLUMNS}
    slots, served, B, q = col["gpu_loras"], col["cpu_loras"], col["avg_batch_size"], col["avg_waiting_queue"]
    y = col["sched_time_per_step_ms"]
    by_slots = []
    for s in np.unique(slots):
        m = (slots == s) & (q > min_queue)
        if m.any():
            by_slots.append({"slots": int(s), "runs": int(m.sum()),
                             "median_us_per_waiting": round(float(np.median(y[m] / q[m])) * 1000, 3),
                             "mean_distinct_adapters": round(float(col["mean_loras_by_batch"][m].mean()), 1)})
    equal = served == slots  # every adapter can be in the batch: the walk never passes a request over
    rotation = (served >= 4 * slots) & (slots <= 64) & (q > 100)  # the set is full: the walk crosses the queue
    if not equal.any() or not rotation.any():
        raise InputFileError("the walk form needs runs with as many adapters as slots and runs with at least 4 "
                             "adapters per slot on at most 64 slots with a queue above 100")
    one = np.ones_like(y)
    (a, b, c), _ = lstsq(np.c_[one, B, q], y, "scheduler overhead")  # as calibrate.fit_scheduler fits it
    per_waiting = a + b * B + c * q
    wa, wb = relative_lstsq(np.c_[one, B][equal], y[equal])
    fixed = wa + wb * B
    (wc,) = relative_lstsq(q[rotation][:, None], y[rotation], fixed[rotation])  # per examined, on top of the fixed part
    walk_rotation = fixed[rotation] + wc * q[rotation]
    return {
        "runs": len(rows), "min_queue_for_by_slots": min_queue, "by_slots": by_slots,
        "subsets": {"as_many_adapters_as_slots": int(equal.sum()), "rotation_up_to_64_slots": int(rotation.sum())},
        "per_waiting": {"ms": round(float(a), 5), "ms_per_running": round(float(b), 6), "us_per_waiting": round(float(c) * 1000, 4),
                        "mape_pct_all": mape(per_waiting, y), "mape_pct_equal": mape(per_waiting[equal], y[equal]),
                        "mape_pct_rotation": mape(per_waiting[rotation], y[rotation])},
        "walk": {"ms": round(float(wa), 5), "ms_per_running": round(float(wb), 6), "us_per_examined": round(float(wc) * 1000, 4),
                 "mape_pct_equal": mape(fixed[equal], y[equal]), "mape_pct_rotation": mape(walk_rotation, y[rotation])},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scheduler_csv", type=Path)
    ap.add_argument("--min-queue", type=float, default=2000.0, help="queue above which runs enter by_slots (default 2000)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    try:
        result = analyse(read_csv(args.scheduler_csv, COLUMNS), args.min_queue)
    except InputFileError as e:
        print(f"{e}{'' if args.scheduler_csv.is_file() else ' (the benchmark needs ../shared)'}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"slots  runs  us/waiting  distinct adapters   (queue > {args.min_queue:g})")
    for s in result["by_slots"]:
        print(f"{s['slots']:>5} {s['runs']:>5} {s['median_us_per_waiting']:>11} {s['mean_distinct_adapters']:>18}")
    for form in ("per_waiting", "walk"):
        print(form, json.dumps(result[form]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
