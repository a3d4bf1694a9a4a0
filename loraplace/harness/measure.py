"""`loraplace measure`: end-to-end serving runs against a live vLLM, written in the runs/ schema.

A runs plan is a CSV with the input columns of that schema (n_adapters, max_loras, max_lora_rank,
adapter_ranks, adapter_rates, duration_s, mean_input_tokens, mean_output_tokens, optional run_id
and max_num_batched_tokens). A row may give a `load` instead of absolute rates: its adapter_rates are
then a popularity pattern, scaled with a profile to that multiple of the point where the twin just
keeps up (`sized_plan`), so one plan means the same on any machine. Adapters and arrivals are drawn
with the twin's own functions and seed, so `loraplace twin validate --seed SEED` replays exactly the
workload that was sent.
Runs that share a server configuration share one start-up.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from functools import partial
from typing import Callable

import numpy as np

from loraplace.twin.arrivals import poisson_workload
from loraplace.twin.csvfiles import read_csv
from loraplace.twin.entities import LengthSpec, check_max_lora_rank
from loraplace.twin.errors import ConfigError, InputFileError
from loraplace.twin.profile import Profile
from loraplace.twin.sizing import sized_row
from loraplace.twin.validate import Run, make_adapters, pattern

from .adapters import build_adapters
from .loadgen import Request
from .observe import observe
from .server import ServerConfig, ServerError, start_server, startup_status

PLAN_COLUMNS = ("n_adapters", "max_loras", "max_lora_rank", "adapter_ranks", "adapter_rates", "duration_s",
                "mean_input_tokens", "mean_output_tokens")
MEASURED_COLUMNS = ("arrivals", "completed", "throughput_tok_s", "ideal_tok_s", "starved", "mean_itl_ms", "mean_ttft_ms",
                    "mean_batch", "mean_waiting", "preemptions", "engine_step_ms", "engine_tokens_per_step", "adapter_loads", "errors")
MAX_NUM_SEQS = 256  # vLLM's default; recorded in each row so the twin uses it too
STARVED_BELOW = 0.9
MAX_ERROR_SHARE = 0.01  # a few failed requests are recorded (column `errors`); more abort the measurement  # the source papers' rule: throughput below 90 % of the offered tokens


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    n_adapters: int
    max_loras: int
    max_lora_rank: int
    ranks: tuple[int, ...]
    rates: tuple[float, ...]
    duration_s: float
    mean_input: float
    mean_output: float
    max_num_batched_tokens: int
    row: dict
    load: float | None = None  # rates still to be sized: a multiple of the saturation point of their pattern

    @property
    def server_key(self) -> tuple:
        return (self.n_adapters, self.max_loras, self.max_lora_rank, self.ranks, self.max_num_batched_tokens)


def read_plan(path: Path) -> list[PlannedRun]:
    """Parse and check a runs plan; a bad value is named with its row."""
    runs = []
    for i, row in enumerate(read_csv(Path(path), PLAN_COLUMNS)):
        r = Run(row)
        rid = row.get("run_id") or f"run-{i:03d}"
        ints = {k: r.get(k, int) for k in ("n_adapters", "max_loras", "max_lora_rank")}
        for k, v in ints.items():
            if v is None or v <= 0:
                raise InputFileError(f"{path}: run {rid}: {k} must be a positive integer")
        try:
            check_max_lora_rank(ints["max_lora_rank"])
        except ConfigError as e:
            raise InputFileError(f"{path}: run {rid}: {e}") from None
        rates = tuple(pattern(row["adapter_rates"], float, f"run {rid} adapter_rates"))
        if any(x < 0 for x in rates):
            raise InputFileError(f"{path}: run {rid}: negative adapter rate")
        ranks = tuple(pattern(row["adapter_ranks"], int, f"run {rid} adapter_ranks"))
        if max(ranks) > ints["max_lora_rank"]:
            raise InputFileError(f"{path}: run {rid}: adapter rank {max(ranks)} above max_lora_rank {ints['max_lora_rank']}")
        nums = {k: r.get(k) for k in ("duration_s", "mean_input_tokens", "mean_output_tokens")}
        if any(v is None or v <= 0 for v in nums.values()):
            raise InputFileError(f"{path}: run {rid}: duration_s and mean token counts must be positive")
        load = r.get("load")
        if load is not None and not load > 0:
            raise InputFileError(f"{path}: run {rid}: load must be positive")
        runs.append(PlannedRun(rid, ints["n_adapters"], ints["max_loras"], ints["max_lora_rank"], ranks, rates,
                               nums["duration_s"], nums["mean_input_tokens"], nums["mean_output_tokens"],
                               r.get("max_num_batched_tokens", int) or 2048, row, load))
    return runs


def sized_plan(runs: list[PlannedRun], profile: Profile | None) -> list[PlannedRun]:
    """Runs that give a load get absolute rates from the profile; the others are kept as they are."""
    if profile is None and any(r.load is not None for r in runs):
        raise ConfigError("the runs plan gives loads (column load): pass --profile to size its rates")
    out = []
    for r in runs:
        if r.load is None:
            out.append(r)
            continue
        row = sized_row(profile, {**r.row, "run_id": r.run_id, "max_num_batched_tokens": r.max_num_batched_tokens,
                                  "max_num_seqs": MAX_NUM_SEQS}, r.load)
        out.append(replace(r, rates=tuple(pattern(row["adapter_rates"], float, "adapter_rates")), row=row, load=None))
    return out


def workload_requests(run: PlannedRun, seed: int) -> tuple[list[Request], list[tuple[str, int]]]:
    """The requests of one run and the (adapter name, rank) list.

    The arrival count is drawn first (Poisson); the rest is drawn exactly as `twin validate` draws a
    run with that many arrivals, so the twin replays the very requests that were sent.
    """
    adapters = make_adapters(run.n_adapters, list(run.ranks), list(run.rates), seed)
    count = int(np.random.default_rng([seed, 1]).poisson(sum(a.rate for a in adapters) * run.duration_s))
    lengths = LengthSpec(mean_input=run.mean_input, mean_output=run.mean_output)
    w = poisson_workload(adapters, run.duration_s, lengths, np.random.default_rng(seed), count=count)
    reqs = [Request(float(t), adapters[a].id, int(p), int(o)) for t, a, p, o in zip(w.arrival, w.adapter, w.prompt, w.output)]
    return reqs, [(a.id, a.rank) for a in adapters]


def result_row(run: PlannedRun, meta: dict, status: str, obs=None, reqs: list[Request] | None = None) -> dict:
    row = {"run_id": run.run_id, **meta, "n_adapters": run.n_adapters, "max_loras": run.max_loras,
           "max_lora_rank": run.max_lora_rank, "adapter_ranks": run.row["adapter_ranks"],
           "adapter_rates": run.row["adapter_rates"], "duration_s": run.duration_s,
           "mean_input_tokens": run.mean_input, "mean_output_tokens": run.mean_output,
           "max_num_batched_tokens": run.max_num_batched_tokens, "max_num_seqs": MAX_NUM_SEQS, "status": status,
           **{k: run.row[k] for k in ("load", "saturation_scale") if run.row.get(k)}}
    if obs is None:  # the server never started: nothing measured
        return row | dict.fromkeys(MEASURED_COLUMNS, "")
    ideal = sum(r.prompt_tokens + r.output_tokens for r in reqs if r.at < run.duration_s) / run.duration_s
    return row | {"arrivals": obs.sent, "completed": obs.completed, "throughput_tok_s": round(obs.throughput_tok_s, 3),
                  "ideal_tok_s": round(ideal, 3), "starved": int(obs.throughput_tok_s < STARVED_BELOW * ideal),
                  "mean_itl_ms": round(obs.mean_itl_ms, 3), "mean_ttft_ms": round(obs.mean_ttft_ms, 3),
                  "mean_batch": round(obs.mean_batch, 3), "mean_waiting": round(obs.mean_waiting, 3),
                  "preemptions": obs.preemptions, "engine_step_ms": round(obs.busy_step_ms, 3),
                  "engine_tokens_per_step": round(obs.mean_tokens_per_step, 3), "adapter_loads": obs.activations,
                  "errors": obs.errors}


def measure(model_dir: Path, model_name: str, runs: list[PlannedRun], out: Path, work: Path, gpu: str,
            port: int = 8100, seed: int = 0, max_model_len: int = LengthSpec.max_total,
            log: Callable[[str], None] = partial(print, flush=True)) -> list[dict]:
    """Serve every planned run and write the runs CSV (rewritten after each run, so a crash keeps what was measured)."""
    work = Path(work)
    rows: list[dict] = []
    groups: dict[tuple, list[PlannedRun]] = {}
    for r in runs:
        groups.setdefault(r.server_key, []).append(r)
    for gi, (key, group) in enumerate(groups.items()):
        first = group[0]
        _, names = workload_requests(first, seed)
        built = build_adapters(model_dir, work / "adapters", [rank for _, rank in names], seed)
        cfg = ServerConfig(Path(model_dir), model_name, [(n, p) for (n, _), (_, p, _) in zip(names, built)],
                           max_loras=first.max_loras, max_lora_rank=first.max_lora_rank,
                           max_num_batched_tokens=first.max_num_batched_tokens, max_model_len=max_model_len,
                           max_num_seqs=MAX_NUM_SEQS, port=port)
        log_path = work / f"measure-server-{gi}.log"
        try:
            server = start_server(cfg, log_path, probe=work / f"measure-probe-{gi}")
        except ServerError as e:
            status = startup_status(log_path.read_text(errors="replace"))
            log(f"runs {[r.run_id for r in group]}: {e}")
            rows += [result_row(r, {"model": model_name, "gpu": gpu, "vllm_version": ""}, status) for r in group]
            write_runs(out, rows)
            continue
        meta = {"model": model_name, "gpu": gpu, "vllm_version": server.vllm_version or ""}
        with server:
            log(f"server for {len(group)} run(s) up in {server.startup_s:.0f} s: {first.n_adapters} adapters, "
                f"max_loras {first.max_loras}, rank {first.max_lora_rank}")
            for r in group:
                reqs, _ = workload_requests(r, seed)
                obs = observe(server.url, server.probe, reqs, r.duration_s, seed=seed)
                if obs.errors > MAX_ERROR_SHARE * max(obs.sent, 1):
                    raise ServerError(f"run {r.run_id}: {obs.errors} of {obs.sent} requests failed ({obs.first_error}); "
                                      f"see {log_path}")
                if obs.errors:
                    log(f"  {r.run_id}: {obs.errors} request(s) failed, counted as not completed: {obs.first_error}")
                rows.append(result_row(r, meta, "ok", obs, reqs))
                x = rows[-1]
                log(f"  {r.run_id}: {x['throughput_tok_s']} of {x['ideal_tok_s']} tok/s, starved {x['starved']}, "
                    f"batch {x['mean_batch']}, waiting {x['mean_waiting']}")
                write_runs(out, rows)
    return rows


def write_runs(path: Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
