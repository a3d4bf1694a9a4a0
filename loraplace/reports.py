"""Rich terminal reports for the loraplace commands."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)  # pipes and logs get wide tables, not wrapped cells


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


@contextlib.contextmanager
def progress(label: str, total: int, quiet: bool = False):
    """A progress bar on stderr; yields a callable that advances it (by one unless told), past `total` if need be."""
    if quiet:
        yield lambda k=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(k: int = 1) -> None:  # work found on the way (a re-check) grows the total
            done = bar.tasks[0].completed + k
            bar.update(task, completed=done, total=max(done, bar.tasks[0].total or 0))

        yield advance


def _lengths(d: dict) -> str:
    if d["form"] == "trace":
        return f"replayed from {d['file']}"
    means = f"means {_fmt(d['mean_input'])} / {_fmt(d['mean_output'])}"
    if d["form"] == "sample":
        return f"drawn from {d['pairs']:,} (prompt, output) pairs, {means}"
    return f"log-normal, sigma {d['sigma']:g}, {means}"


def simulation(r: dict) -> None:
    title = f"{r['profile']}: {r['adapters']} adapters, max_loras {r['max_loras']}, max_lora_rank {r['max_lora_rank']}"
    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    if r["status"] != "ok":
        t.add_row("server start-up", f"[red]fails: {r['status']}[/red]")
    t.add_row("throughput (tok/s)", _fmt(r["throughput_tok_s"]))
    t.add_row("ideal (tok/s)", _fmt(r["ideal_tok_s"]))
    t.add_row("starved", "[red]yes[/red]" if r["starved"] else "[green]no[/green]")
    t.add_row("arrivals / completed", f"{r['arrivals']:,} / {r['completed']:,}")
    t.add_row("request lengths", _lengths(r["lengths"]))
    if r.get("dropped"):
        t.add_row("dropped by the client (no port)", f"[yellow]{r['dropped']:,}[/yellow]")
    t.add_row("TTFT mean / p99 (ms)", f"{_fmt(r['mean_ttft_ms'])} / {_fmt(r['p99_ttft_ms'])}")
    t.add_row("ITL mean / p99 (ms)", f"{_fmt(r['mean_itl_ms'])} / {_fmt(r['p99_itl_ms'])}")
    t.add_row("preemptions", _fmt(r["preemptions"]))
    t.add_row("adapter loads", _fmt(r["adapter_loads"]))
    t.add_row("KV cache (tokens)", _fmt(r["kv_cache_tokens"]))
    t.add_row("engine steps", _fmt(r["steps"]))
    t.add_row("simulated / wall (s)", f"{_fmt(r['duration_s'])} / {r['wall_s']:.2f}")
    console.print(t)


def calibration(profile, out: Path) -> None:
    t = Table(title=f"profile {profile.name} -> {out}")
    t.add_column("fit")
    t.add_column("detail")
    for part, res in profile.provenance["fit"].items():
        t.add_row(part, ", ".join(f"{k}={v}" for k, v in res.items()) if not isinstance(next(iter(res.values())), dict)
                  else "; ".join(f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in res.items()))
    console.print(t)


def validation(rows: list[dict], s: dict) -> None:
    t = Table(title=f"twin vs measured runs ({s['runs_file']}, profile {s['profile']})")
    loads = any(r.get("measured_adapter_loads") is not None for r in rows)  # runs measured by `loraplace measure`
    for col in ("run", "status meas/pred", "meas tok/s", "twin tok/s", "err %", "ref twin tok/s", "starved meas/pred",
                *(("adapter loads meas/pred",) if loads else ())):
        t.add_column(col, justify="right" if "tok" in col or "%" in col else "left")
    for r in rows:
        served = r["predicted_status"] == "ok" and r["measured_status"] == "ok"
        err = (r["predicted_tok_s"] / r["measured_tok_s"] - 1) * 100 if served and r["measured_tok_s"] else None
        t.add_row(r["run_id"], f"{r['measured_status']}/{r['predicted_status']}", _fmt(r["measured_tok_s"]),
                  _fmt(r["predicted_tok_s"]) if served else "-", _fmt(err), _fmt(r["reference_twin_tok_s"]),
                  f"{_fmt(r['measured_starved'])}/{_fmt(r['predicted_starved'])}",
                  *((f"{_fmt(r['measured_adapter_loads'])}/{_fmt(r['predicted_adapter_loads'])}",) if loads else ()))
    console.print(t)
    zero = s.get("n_zero_throughput_runs", 0)
    sm = Table(title="summary (throughput errors over runs that served"
               + (f"; {zero} that completed nothing have no percentage error)" if zero else ")"))
    sm.add_column("subset")
    for col in ("runs", "MAPE %", "median APE %", "max APE %", "bias %"):
        sm.add_column(col, justify="right")
    sm.add_row("all", _fmt(s["n_ok_runs"]), _fmt(s["throughput_mape_pct"], 2), _fmt(s["throughput_median_ape_pct"], 2),
               _fmt(s["throughput_max_ape_pct"], 2), _fmt(s["throughput_bias_pct"], 2))
    labels = {"starved_subset": "starved subset", "unstarved_subset": "unstarved subset",
              "reference_twin": "reference twin", "itl_errors": "mean ITL (not throughput)",
              "ttft_errors": "mean TTFT (not throughput)"}
    for name, label in labels.items():
        if s.get(name) and s[name]["n"]:
            e = s[name]
            sm.add_row(label, _fmt(e["n"]), _fmt(e["mape_pct"], 2), _fmt(e["median_ape_pct"], 2),
                       _fmt(e["max_ape_pct"], 2), _fmt(e["bias_pct"], 2))
    console.print(sm)
    console.print(f"starvation flag accuracy: {_fmt(s['starved_accuracy'], 4)}   "
                  f"start-up accuracy: {_fmt(s['startup_accuracy'], 4)}   runs: {s['n_runs']}   "
                  f"off by more than 10 %: {s['throughput_runs_over_10pct']}")
    ports = s.get("client_ports")
    console.print(f"client: {f'{ports:,} local ports, one per request in flight' if ports else 'every arrival sent'}")


def validation_seeds(out: dict) -> None:
    """`twin validate --seeds`: one summary row per arrival seed, then each metric's mean and range."""
    from loraplace.twin.validate import SEED_METRICS

    # column label and digits per metric; a count's mean gets two digits
    cols = dict(zip(SEED_METRICS, (("MAPE %", 2), ("median APE %", 2), ("max APE %", 2), ("bias %", 2),
                                   ("runs > 10 %", 0), ("flag accuracy", 4), ("start-up accuracy", 4))))
    t = Table(title=f"twin vs measured runs by arrival seed ({out['runs_file']}, profile {out['profile']})")
    t.add_column("seed")
    for name, _ in cols.values():
        t.add_column(name, justify="right")
    for s in out["per_seed"]:
        t.add_row(str(s["seed"]), *(_fmt(s[k], d) for k, (_, d) in cols.items()))
    a = out["across_seeds"]
    for stat in ("mean", "min", "max"):
        t.add_row(stat, *(_fmt(a[k][stat], max(d, 2) if stat == "mean" else d) if k in a else "-"
                          for k, (_, d) in cols.items()))
    console.print(t)
    unstable = a["flag_unstable_runs"]
    console.print(f"runs whose predicted starvation flag changes with the seed: {len(unstable)}"
                  + (f" ({', '.join(unstable)})" if unstable else ""))


def profiles(items: list) -> None:
    t = Table(title="shipped profiles")
    for col in ("name", "model", "GPU", "vLLM", "max_model_len", "KV tokens (8 slots, rank 16)"):
        t.add_column(col)
    for p in items:
        t.add_row(p.name, p.model, p.gpu, p.vllm_version, str(p.max_model_len), f"{p.memory.kv_tokens(8, 16):,}")
    console.print(t)


def bpp_results(inst, results: list[dict]) -> None:
    t = Table(title=f"{inst.name}: {inst.n} items, {inst.dims} dimension(s), capacity {inst.capacity.tolist()}")
    for col in ("solver", "bins", "lower bound", "status", "time (s)"):
        t.add_column(col, justify="left" if col in ("solver", "status") else "right")
    for r in results:
        colour = "green" if r["status"] == "optimal" else "yellow"
        t.add_row(r["solver"], str(r["bins"]), str(r["lower_bound"]), f"[{colour}]{r['status']}[/{colour}]", f"{r['time_s']:.3f}")
    console.print(t)


def bpp_bench(rows: list[dict], time_limit: float) -> None:
    t = Table(title=f"bin-packing solvers against known optima (time limit {time_limit:g} s each)")
    for col in ("set", "solver", "instances", "unreadable", "proven optimal", "within limit", "matched known",
                "contradictions", "mean gap %", "mean time (s)", "max time (s)"):
        t.add_column(col, justify="left" if col in ("set", "solver") else "right")
    for r in rows:
        bad = "[red]" if r["contradictions"] else ""
        t.add_row(r["name"], r["solver"], str(r["instances"]), str(r["unreadable"]), str(r["proven_optimal"]),
                  str(r["proven_within_limit"]), str(r["matched_known"]), f"{bad}{r['contradictions']}",
                  f"{r['mean_gap_pct']:.2f}", f"{r['mean_time_s']:.2f}", f"{r['max_time_s']:.2f}")
    console.print(t)


def solve(out: dict, inst, best) -> None:
    t = Table(title=f"{out['instance']}: {out['adapters']} adapters on {out['profile']} (oracle: {out['oracle']})",
              caption=f"request lengths: {_lengths(out['lengths'])}")
    for col in ("strategy", "GPUs", "lower bound", "gap", "status", "solve time (s)", "twin-starved GPUs", "note"):
        t.add_column(col, justify="left" if col in ("strategy", "status", "note") else "right")
    for s in out["strategies"]:
        colour = {"optimal": "green", "feasible": "cyan", "time_limit": "yellow"}.get(s["status"], "red")
        starved = s["twin_starved_gpus"]
        t.add_row(s["name"], _fmt(s["gpus"]) if s["gpus"] else "-", _fmt(s["lower_bound"]), _fmt(s["gap"]),
                  f"[{colour}]{s['status']}[/{colour}]", f"{s['solve_time_s']:.2f}",
                  "-" if starved is None else (f"[red]{starved}[/red]" if starved else "0"), s["reason"])
    console.print(t)
    if best is None:
        return
    g = Table(title=f"best placement: {best.strategy} ({best.gpus} GPU{'' if best.gpus == 1 else 's'})")
    for col in ("GPU", "adapters", "ranks", "max_loras", "max_lora_rank", "offered tok/s", "predicted tok/s", "twin tok/s",
                "twin"):
        g.add_column(col, justify="right" if col not in ("ranks", "twin") else "left")
    for i, p in enumerate(best.plans):
        ranks = {}
        for s in p.shares:
            ranks[s.adapter.rank] = ranks.get(s.adapter.rank, 0) + 1
        tw = p.twin or {}
        verdict = "-" if not tw else ("[red]starved[/red]" if p.twin_rejected else "[green]ok[/green]")
        g.add_row(str(i), str(len(p.shares)), " ".join(f"{k}x{v}" for k, v in sorted(ranks.items())), str(p.max_loras),
                  str(p.max_lora_rank), _fmt(p.ideal_tok_s), _fmt(p.predicted_tok_s), _fmt(tw.get("throughput_tok_s")), verdict)
    console.print(g)
    if "exported" in out:
        console.print(f"exported {len(out['exported'])} files to {Path(out['exported'][0]).parent}")


def surrogate_evaluation(out: dict) -> None:
    t = Table(title=f"surrogate for {out['profile']}")
    for col in ("against", "rows", "MAPE %", "median APE %", "max APE %", "starvation accuracy", "macro-F1"):
        t.add_column(col, justify="left" if col == "against" else "right")
    rows = [("twin (held out)", out.get("twin_holdout"))]
    rows += [(f"  {k} rows", e) for k, e in (out.get("twin_holdout") or {}).get("by_design", {}).items()]
    rows.append(("measured runs", out.get("measured_runs")))
    if "measured_runs" in out:
        rows += [(f"  {k} measured", out["measured_runs"].get(f"{k}_subset")) for k in ("unstarved", "starved")]
    for label, e in rows:
        if e:
            t.add_row(label, _fmt(e.get("n_rows", e.get("n_runs", e.get("n")))), _fmt(e.get("throughput_mape_pct"), 2),
                      _fmt(e.get("throughput_median_ape_pct"), 2), _fmt(e.get("throughput_max_ape_pct"), 2),
                      _fmt(e.get("starvation_accuracy"), 4), _fmt(e.get("starvation_f1"), 4))
    console.print(t)
    console.print(f"latency: {out['latency_ms_single']:.3f} ms for one call; {out['latency_us_per_row_batch']:.2f} us per row "
                  f"in a batch of 10,000 from arrays ({out['latency_us_per_row_batch_from_queries']:.2f} us from GpuQuery objects, "
                  f"model alone {out['latency_us_per_row_batch_model_only']:.2f} us); copying the "
                  f"trees to numpy for small calls {out['numpy_trees_build_s']:.2f} s")
