"""Check the twin against measured runs (the schema of shared/reference/runs/)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrivals import poisson_workload
from .client import PortLimitedClient
from .csvfiles import read_csv
from .engine import SimOptions, Simulator
from .entities import Adapter, LengthSpec, ServingConfig
from .errors import ConfigError, InputFileError
from .profile import Profile

RUN_COLUMNS = ("run_id", "n_adapters", "max_loras", "max_lora_rank", "adapter_ranks", "adapter_rates", "duration_s",
               "mean_input_tokens", "mean_output_tokens", "max_num_batched_tokens", "status", "arrivals",
               "throughput_tok_s", "starved")


def cycled(pattern: list, n: int, rng: np.random.Generator) -> list:
    """A pattern assigned round-robin over n adapters, then shuffled (as the runs files describe)."""
    values = [pattern[i % len(pattern)] for i in range(n)]
    return [values[i] for i in rng.permutation(n)]


def pattern(text: str, kind, what: str) -> list:
    try:
        values = [kind(x) for x in str(text).replace(",", ";").split(";") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: cannot parse {text!r}") from None
    if not values:
        raise ConfigError(f"{what}: empty pattern")
    return values


def make_adapters(n: int, ranks: list[int], rates: list[float], seed: int) -> list[Adapter]:
    rng = np.random.default_rng(seed)
    rk, rt = cycled(ranks, n, rng), cycled(rates, n, rng)
    return [Adapter(f"lora-{i}", int(rk[i]), float(rt[i])) for i in range(n)]


@dataclass(frozen=True)
class Run:
    """One measured run and what the twin needs to replay it."""

    row: dict

    def get(self, key: str, kind=float):
        v = self.row.get(key)
        if v in (None, ""):
            return None
        try:
            return kind(v)
        except ValueError:
            raise InputFileError(f"run {self.row.get('run_id')}: column {key} has a non-numeric value {v!r}") from None


def read_runs(path: Path) -> list[Run]:
    rows = read_csv(Path(path), RUN_COLUMNS)
    return [Run(r) for r in rows]


def simulate_run(args: tuple[Profile, Run, int, PortLimitedClient | None, float]) -> dict:
    """Simulate one measured run (profile, run, seed, client, log-normal sigma of the lengths around the run's
    means); returns the measured and predicted values side by side."""
    profile, run, seed, client, sigma = args
    n = run.get("n_adapters", int)
    ml = run.get("max_loras", int)
    rank = run.get("max_lora_rank", int)
    out = {"run_id": run.row["run_id"], "measured_status": run.row["status"]}
    if ml is None or rank is None:
        raise InputFileError(f"run {run.row['run_id']}: max_loras and max_lora_rank are required")
    status = profile.memory.startup_status(ml, rank, profile.max_model_len)
    if n is None or status != "ok":  # nothing to serve, or a server that never starts: only start-up is checked
        out.update(predicted_status=status, measured_tok_s=run.get("throughput_tok_s"), predicted_tok_s=0.0,
                   measured_starved=run.get("starved", int), predicted_starved=None, reference_twin_tok_s=None,
                   wall_s=0.0, ideal_tok_s=None, measured_itl_ms=None, predicted_itl_ms=None, measured_ttft_ms=None,
                   predicted_ttft_ms=None, preemptions=0, dropped=0, measured_adapter_loads=None,
                   predicted_adapter_loads=None)
        if n is None and status == "ok":
            out["predicted_status"] = "ok (not simulated: n_adapters missing)"
        return out
    try:
        adapters = make_adapters(n, pattern(run.row["adapter_ranks"], int, "adapter_ranks"),
                                 pattern(run.row["adapter_rates"], float, "adapter_rates"), seed)
        config = ServingConfig(max_loras=ml, max_lora_rank=rank,
                               max_num_batched_tokens=run.get("max_num_batched_tokens", int) or 2048,
                               max_num_seqs=run.get("max_num_seqs", int) or ServingConfig.max_num_seqs,
                               max_model_len=profile.max_model_len)
    except ConfigError as e:
        raise InputFileError(f"run {run.row['run_id']}: {e}") from None
    mean_in, mean_out = run.get("mean_input_tokens"), run.get("mean_output_tokens")
    lengths = LengthSpec(mean_input=mean_in or LengthSpec.mean_input, mean_output=mean_out or LengthSpec.mean_output,
                         sigma=sigma)
    duration = run.get("duration_s") or 3600.0
    rng = np.random.default_rng(seed)
    workload = poisson_workload(adapters, duration, lengths, rng, count=run.get("arrivals", int))
    res = Simulator(profile, config, adapters, workload, SimOptions(duration=duration, client=client)).run()
    out.update(predicted_status=res.status, measured_tok_s=run.get("throughput_tok_s"), predicted_tok_s=res.throughput_tok_s,
               measured_starved=run.get("starved", int), predicted_starved=int(res.starved),
               reference_twin_tok_s=run.get("reference_twin_tok_s"), wall_s=res.wall_s, ideal_tok_s=res.ideal_tok_s,
               measured_itl_ms=run.get("mean_itl_ms"), predicted_itl_ms=res.mean_itl_ms,
               measured_ttft_ms=run.get("mean_ttft_ms"), predicted_ttft_ms=res.mean_ttft_ms, preemptions=res.preemptions,
               dropped=res.dropped, measured_adapter_loads=run.get("adapter_loads", int),
               predicted_adapter_loads=res.adapter_loads)
    return out


def _errors(measured: np.ndarray, predicted: np.ndarray) -> dict:
    if not len(measured):
        return {"n": 0, "mape_pct": None, "median_ape_pct": None, "max_ape_pct": None, "bias_pct": None}
    pe = (predicted - measured) / measured * 100
    ape = np.abs(pe)
    return {"n": int(len(measured)), "mape_pct": round(float(ape.mean()), 3), "median_ape_pct": round(float(np.median(ape)), 3),
            "max_ape_pct": round(float(ape.max()), 3), "bias_pct": round(float(pe.mean()), 3)}


def summarise_validation(rows: list[dict]) -> dict:
    """The fidelity summary: throughput errors over runs that served (a percentage error needs a measured
    throughput above zero), starvation accuracy over every run that served, start-up accuracy over all."""
    served = [r for r in rows if r["measured_status"] == "ok" and r["predicted_status"] == "ok"]
    ok = [r for r in served if r["measured_tok_s"]]
    m = np.array([r["measured_tok_s"] for r in ok], float)
    p = np.array([r["predicted_tok_s"] for r in ok], float)
    starved = np.array([r["measured_starved"] == 1 for r in ok], bool)
    all_err = _errors(m, p)
    summary = {
        "n_runs": len(rows),
        "n_ok_runs": len(ok),
        "n_zero_throughput_runs": len(served) - len(ok),  # served, completed nothing in the window: no percentage error
        "throughput_mape_pct": all_err["mape_pct"],
        "throughput_median_ape_pct": all_err["median_ape_pct"],
        "throughput_max_ape_pct": all_err["max_ape_pct"],
        "throughput_bias_pct": all_err["bias_pct"],
        "throughput_runs_over_10pct": int((np.abs(p - m) > 0.1 * m).sum()),
        "starved_subset": _errors(m[starved], p[starved]),
        "unstarved_subset": _errors(m[~starved], p[~starved]),
        "starved_accuracy": round(float(np.mean([r["measured_starved"] == r["predicted_starved"] for r in served])), 4) if served else None,
        "startup_accuracy": round(float(np.mean([(r["measured_status"] == "ok") == (r["predicted_status"] == "ok") for r in rows])), 4) if rows else None,
    }
    for key in ("itl", "ttft"):  # latency: a second observable, where the runs file records it
        lat = [r for r in ok if r[f"measured_{key}_ms"] and r[f"predicted_{key}_ms"] is not None
               and np.isfinite(r[f"predicted_{key}_ms"])]
        summary[f"{key}_errors"] = _errors(np.array([r[f"measured_{key}_ms"] for r in lat], float),
                                           np.array([r[f"predicted_{key}_ms"] for r in lat], float))
    ref = [r for r in ok if r["reference_twin_tok_s"] is not None]
    if ref:
        summary["reference_twin"] = _errors(np.array([r["measured_tok_s"] for r in ref], float),
                                            np.array([r["reference_twin_tok_s"] for r in ref], float))
    return summary


def validate(profile: Profile, runs: list[Run], seed: int = 0, workers: int = 1, progress=None,
             client: PortLimitedClient | None = PortLimitedClient(),
             length_sigma: float = LengthSpec.sigma) -> tuple[list[dict], dict]:
    """Simulate every run (in parallel when workers > 1) and summarise the errors.

    By default the runs are replayed with the reference harness's port-limited client (twin/client.py);
    `client=None` sends every arrival. The runs give only the means of their lengths; `length_sigma` sets the
    spread the twin draws around them.
    """
    args = [(profile, r, seed, client, length_sigma) for r in runs]
    rows: list[dict] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for row in pool.map(simulate_run, args):
                rows.append(row)
                if progress:
                    progress()
    else:
        for a in args:
            rows.append(simulate_run(a))
            if progress:
                progress()
    return rows, summarise_validation(rows)


SEED_METRICS = ("throughput_mape_pct", "throughput_median_ape_pct", "throughput_max_ape_pct", "throughput_bias_pct",
                "throughput_runs_over_10pct", "starved_accuracy", "startup_accuracy")


def across_seeds(per_seed: list[tuple[list[dict], dict]]) -> dict:
    """How the fidelity moves with the arrival seed, from (rows, summary) per seed: each summary metric's mean, min
    and max, and the runs whose predicted starvation flag differs between seeds (those near the line, where one
    draw of arrivals decides)."""
    out: dict = {}
    for k in SEED_METRICS:
        v = [s[k] for _, s in per_seed if s.get(k) is not None]
        if v:
            out[k] = {"mean": round(float(np.mean(v)), 4), "min": min(v), "max": max(v)}
    flags: dict[str, set] = {}
    for rows, _ in per_seed:
        for r in rows:
            if r["predicted_starved"] is not None:
                flags.setdefault(r["run_id"], set()).add(r["predicted_starved"])
    out["flag_unstable_runs"] = sorted(k for k, v in flags.items() if len(v) > 1)
    return out

