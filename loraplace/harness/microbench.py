"""`loraplace profile`: the micro-benchmarks `loraplace calibrate` fits, run against a live vLLM.

Writes the five files of the calibration schema (shared/reference/calibration/README): base
decode and prefill step time, LoRA overhead against distinct adapters per batch, adapter load
time, KV capacity and start-up per (max_loras, max_lora_rank), and scheduler CPU time per step,
plus `profile-meta.json` (vLLM version, device, command lines). Engine-side quantities (batch
size, distinct adapters per step, scheduler time, load times, weight memory, and `step_ms`, the
mean wall time of an engine step) come from the loraplace probe plugin inside the engine; ITL and
TTFT from the streaming client.
"""

from __future__ import annotations

import csv
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from functools import partial
from typing import Callable

import numpy as np

from .adapters import build_adapters
from .loadgen import Request
from .observe import Observation, observe
from .probe import read_snapshot
from .server import ServerConfig, ServerError, StartedServer, start_server, startup_status


PREFILL_CONCURRENCY = 64  # prompts in flight in the prefill benchmarks: steps filled up to the token budget


@dataclass(frozen=True)
class ProfilePlan:
    """How much to measure; `quick()` is the smaller plan used by the CPU loop and tests."""

    ranks: tuple[int, ...] = (8, 16, 32)
    decode_concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    decode_outputs: tuple[int, ...] = (50, 100, 200)
    decode_requests_per_seq: int = 4
    prefill_lengths: tuple[int, ...] = (50, 100, 200, 400)
    prefill_requests: int = 200
    lora_slots: int = 16
    lora_distinct: tuple[int, ...] = (1, 2, 4, 8, 16)
    lora_concurrency: tuple[int, ...] = (4, 16, 48)
    lora_prefill: tuple[tuple[int, int], ...] = ((1, 100), (4, 100), (8, 100), (16, 100), (32, 100), (64, 100), (64, 400))
    lora_output: int = 100
    load_swaps: int = 40
    sched_slots: tuple[int, ...] = (4, 8, 16, 32)
    sched_rates: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0)
    sched_window_s: float = 20.0
    sched_lengths: tuple[int, int] = (100, 50)
    start_only: tuple[tuple[int, int], ...] = ((64, 32),)
    max_model_len: int = 2048
    max_num_batched_tokens: int = 2048

    @classmethod
    def quick(cls) -> "ProfilePlan":
        return cls(decode_concurrency=(1, 4, 16, 48), decode_outputs=(50, 100), prefill_lengths=(50, 200, 400),
                   prefill_requests=120, lora_distinct=(1, 4, 16), lora_concurrency=(4, 32),
                   load_swaps=20, sched_slots=(4, 16),
                   sched_rates=(3.0, 10.0, 20.0), sched_window_s=15.0)


@dataclass
class CalibrationWriter:
    """Accumulates rows per calibration file and writes them in the reference schema."""

    out: Path
    rows: dict[str, list[dict]] = field(default_factory=dict)

    def add(self, fname: str, row: dict) -> None:
        self.rows.setdefault(fname, []).append(row)

    def write(self) -> list[Path]:
        self.out.mkdir(parents=True, exist_ok=True)
        paths = []
        for fname, rows in self.rows.items():
            cols = list(dict.fromkeys(k for r in rows for k in r))
            path = self.out / fname
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                w.writerows(rows)
            paths.append(path)
        return paths


def device_name() -> str:
    """The accelerator vLLM would use: a CUDA device name, else the CPU model."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}"


def engine_columns(o: Observation) -> dict:
    """What the probe saw per engine step; `loraplace calibrate` prefers these to client-side means."""
    return {"steps": o.steps, "step_ms": round(o.busy_step_ms, 4), "mean_tokens_per_step": round(o.mean_tokens_per_step, 4),
            "mean_decode_seqs_per_step": round(o.mean_decode_per_step, 4),
            "mean_prefill_sq_per_step": round(o.mean_prefill_sq_per_step, 2)}


def closed_loop(n: int, model: str | list[str], prompt: int, output: int) -> list[Request]:
    models = [model] * n if isinstance(model, str) else [model[i % len(model)] for i in range(n)]
    return [Request(0.0, m, prompt, output) for m in models]


def poisson(rate: float, window: float, models: list[str], lengths: tuple[int, int], rng: np.random.Generator) -> list[Request]:
    times = np.sort(rng.uniform(0, window, rng.poisson(rate * window)))
    return [Request(float(t), models[int(rng.integers(len(models)))], *lengths) for t in times]


class Profiler:
    """Runs the plan: one server at a time, every window observed through the probe."""

    def __init__(self, model_dir: Path, model_name: str, out: Path, work: Path, plan: ProfilePlan,
                 port: int = 8100, seed: int = 0, log: Callable[[str], None] = partial(print, flush=True)) -> None:
        self.model_dir, self.model_name, self.out, self.work = Path(model_dir), model_name, Path(out), Path(work)
        self.plan, self.port, self.seed, self.log = plan, port, seed, log
        self.writer = CalibrationWriter(self.out)
        self.commands: list[list[str]] = []
        self.versions: set[str] = set()
        self.rng = np.random.default_rng(seed)
        self.n_servers = 0

    def server(self, adapters: list[tuple[str, Path, int]], max_loras: int, max_lora_rank: int,
               max_num_seqs: int = 256) -> StartedServer:
        self.n_servers += 1
        cfg = ServerConfig(self.model_dir, self.model_name, [(n, p) for n, p, _ in adapters], max_loras=max_loras,
                           max_lora_rank=max_lora_rank, max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=self.plan.max_num_batched_tokens,
                           max_model_len=self.plan.max_model_len, port=self.port)
        self.commands.append(cfg.argv()[1:])
        probe = self.work / f"probe-{self.n_servers}"
        s = start_server(cfg, self.work / f"server-{self.n_servers}.log", probe=probe)
        if s.vllm_version:
            self.versions.add(s.vllm_version)
        self.log(f"server {self.n_servers} up in {s.startup_s:.0f} s (max_loras {max_loras}, rank {max_lora_rank}, "
                 f"{len(adapters)} adapters, KV {s.kv_cache_tokens} tokens)")
        return s

    def observe(self, s: StartedServer, requests: list[Request], window_s: float = 1e9, **kw) -> Observation:
        o = observe(s.url, s.probe, requests, window_s, seed=int(self.rng.integers(1 << 31)), **kw)
        if o.errors:
            raise ServerError(f"{o.errors} requests failed against {s.log_path}")
        return o

    def kv_row(self, s: StartedServer | None, max_loras: int, rank: int, status: str) -> None:
        weights = read_snapshot(s.probe, "worker").get("model_plus_lora_bytes") if s else None
        self.writer.add("kv_capacity.csv", {
            "source": "vllm_startup_log", "model": self.model_name, "max_loras": max_loras, "max_lora_rank": rank,
            "kv_cache_tokens": s.kv_cache_tokens if s else "",
            "model_plus_lora_weights_gib": round(weights / 2**30, 6) if weights else "", "status": status})

    # -- the micro-benchmarks ------------------------------------------------------------------
    def base(self) -> dict[int, float]:
        """Decode ITL against batch size and context; prefill time against prompt tokens. Returns ITL by concurrency."""
        p, itl = self.plan, {}
        with self.server([], 1, 8, max_num_seqs=max(p.decode_concurrency + p.lora_concurrency)) as s:
            self.observe(s, closed_loop(8, self.model_name, 16, 16), drain=True, concurrency=8)  # warm-up
            for out_len in p.decode_outputs:
                for c in sorted(set(p.decode_concurrency) | set(p.lora_concurrency)):
                    n = max(c * p.decode_requests_per_seq, 8)
                    o = self.observe(s, closed_loop(n, self.model_name, 1, out_len), drain=True, concurrency=c)
                    if out_len == p.lora_output:
                        itl[c] = o.mean_itl_ms
                    self.step_row("decode", c, 1, out_len, n, o)
            for L in p.prefill_lengths:
                n = p.prefill_requests
                o = self.observe(s, closed_loop(n, self.model_name, L, 1), drain=True, concurrency=PREFILL_CONCURRENCY)
                self.step_row("prefill", PREFILL_CONCURRENCY, L, 1, n, o)
        return itl

    def step_row(self, phase: str, max_num_seqs: int, input_len: int, output_len: int, n: int, o: Observation) -> None:
        self.writer.add("step_time_base.csv", {
            "model": self.model_name, "phase": phase, "max_num_seqs": max_num_seqs, "input_len": input_len,
            "output_len": output_len, "status": "ok", "num_prompts": n, "completed": o.completed,
            "duration": round(o.duration_s, 6), "total_input_tokens": o.prompt_tokens, "total_output_tokens": o.output_tokens,
            "mean_ttft_ms": round(o.mean_ttft_ms, 4), "mean_itl_ms": round(o.mean_itl_ms, 4) if output_len > 1 else 0.0,
            "mean_batch_size": round(o.mean_batch, 4), **engine_columns(o)})
        self.log(f"  {phase} c={max_num_seqs} in={input_len} out={output_len}: ITL {o.mean_itl_ms:.2f} ms, "
                 f"batch {o.mean_batch:.1f}, {o.duration_s:.1f} s")

    def lora_overhead(self, base_itl: dict[int, float]) -> None:
        """Decode and prompt steps with LoRA (prompt steps from one prompt to full token budgets), on a server at
        each max_lora_rank of the plan."""
        p = self.plan
        adapters = build_adapters(self.model_dir, self.work / "adapters", [min(p.ranks)] * p.lora_slots, self.seed)
        names = [a[0] for a in adapters]
        for rank in sorted(set(p.ranks)):
            with self.server(adapters, p.lora_slots, rank) as s:
                self.kv_row(s, p.lora_slots, rank, "ok")
                self.observe(s, closed_loop(len(names), names, 4, 4), drain=True, concurrency=len(names))  # warm-up
                for c in p.lora_concurrency:
                    for d in p.lora_distinct:
                        self.lora_row(s, names, rank, c, d, 1, p.lora_output, base_itl.get(c, float("nan")))
                for c, L in p.lora_prefill:  # prompts with LoRA, from one per step to full token budgets
                    self.lora_row(s, names, rank, c, len(names), L, 1, float("nan"))

    def lora_row(self, s: StartedServer, names: list[str], rank: int, c: int, d: int, input_len: int, output_len: int,
                 base: float) -> None:
        """`c` requests in flight spread over `d` adapters (rank: the smallest of the plan)."""
        p = self.plan
        n = c * 4 if output_len > 1 else p.prefill_requests
        o = self.observe(s, closed_loop(n, names[:d], input_len, output_len), drain=True, concurrency=c)
        self.writer.add("lora_overhead.csv", {
            "model": self.model_name, "kind": "lora", "max_num_seqs": c, "input_len": input_len,
            "output_len": output_len, "status": "ok", "num_prompts": n, "completed": o.completed,
            "duration": round(o.duration_s, 6), "mean_itl_ms": round(o.mean_itl_ms, 4),
            "mean_ttft_ms": round(o.mean_ttft_ms, 4), "mean_batch_size": round(o.mean_batch, 4),
            "mean_loras_by_batch": round(o.mean_loras, 4), "scheduler_time_total_s": round(o.sched_ms_per_step * o.steps / 1e3, 6),
            **engine_columns(o), "max_loras": p.lora_slots, "lora_rank": min(p.ranks),
            "max_lora_rank": rank, "distinct_adapters_used": d, "base_itl_ms": round(base, 4),
            "itl_overhead_pct": round(o.mean_itl_ms / base * 100, 3)})
        self.log(f"  LoRA rank {rank}, {c} x ({input_len} in, {output_len} out) over {d} adapters: step {o.busy_step_ms:.2f} ms, ITL {o.mean_itl_ms:.2f} ms "
                 f"(base {base:.2f}), batch {o.mean_batch:.1f}, {o.mean_loras:.2f} adapters per batch")

    def loading(self) -> None:
        """max_loras 1 and two adapters of each rank requested alternately: every request swaps."""
        p = self.plan
        rank = max(p.ranks)
        ranks = [r for r in p.ranks for _ in range(2)]
        adapters = build_adapters(self.model_dir, self.work / "adapters-load", ranks, self.seed + 1)
        with self.server(adapters, 1, rank) as s:
            self.kv_row(s, 1, rank, "ok")
            disk = read_snapshot(s.probe, "worker")  # vLLM reads the served adapters from disk at start-up
            disk_n, disk_s = int(disk.get("disk_loads_n", 0)), disk.get("disk_loads_s", 0.0)
            for i, r in enumerate(p.ranks):
                pair = [adapters[2 * i][0], adapters[2 * i + 1][0]]
                o = self.observe(s, closed_loop(p.load_swaps, pair, 4, 2), drain=True, concurrency=1)
                self.writer.add("loading.csv", {
                    "model": self.model_name, "adapter_rank": r, "max_lora_rank": rank, "max_cpu_loras": len(adapters),
                    "num_prompts": p.load_swaps, "disk_loads": disk_n, "memory_loads": o.activations,
                    "disk_load_total_s": round(disk_s, 6), "disk_load_mean_ms": round(disk_s / max(disk_n, 1) * 1e3, 4),
                    "cpu_to_gpu_mean_ms": round(o.activation_ms, 4)})
                self.log(f"  load rank {r}: {o.activation_ms:.3f} ms to device ({o.activations} loads)")

    def scheduler(self) -> None:
        """Open-loop Poisson runs over slots and rates: scheduler time per step, and clean decode ITL for the LoRA fit."""
        p = self.plan
        rank = max(p.ranks)
        for slots in p.sched_slots:
            ranks = [p.ranks[i % len(p.ranks)] for i in range(2 * slots)]
            adapters = build_adapters(self.model_dir, self.work / f"adapters-{slots}", ranks, self.seed + slots)
            names = [a[0] for a in adapters]
            with self.server(adapters, slots, rank) as s:
                self.kv_row(s, slots, rank, "ok")
                self.observe(s, closed_loop(len(names), names, 4, 4), drain=True, concurrency=len(names))
                for used, source in ((slots, "adapter_rates"), (2 * slots, "aggregated_rate")):
                    for rate in p.sched_rates:
                        reqs = poisson(rate, p.sched_window_s, names[:used], p.sched_lengths, self.rng)
                        o = self.observe(s, reqs, p.sched_window_s)
                        self.writer.add("scheduler_overhead.csv", {
                            "source": source, "gpu_loras": slots, "cpu_loras": used, "cpu_gpu_diff": used - slots,
                            "rank": rank, "max_lora_rank": rank, "rate": rate, "output_throughput": round(o.output_tokens / o.duration_s, 4),
                            "completed_requests": o.completed, "avg_batch_size": round(o.mean_batch, 4),
                            "avg_waiting_queue": round(o.mean_waiting, 4), "max_lora_loads_from_memory": o.activations,
                            "total_scheduling_time": round(o.sched_ms_per_step * o.steps / 1e3, 6),
                            "mean_itl_ms": round(o.mean_itl_ms, 4), "processed_tokens": o.output_tokens,
                            "mean_prompt_tokens": round(o.prompt_tokens / max(o.completed, 1), 3),
                            "duration": o.duration_s, "mean_loras_by_batch": round(o.mean_loras, 4), "steps": o.steps,
                            "sched_time_per_step_ms": round(o.sched_ms_per_step, 6), **engine_columns(o)})
                        self.log(f"  slots {slots}, {used} adapters, {rate} req/s: batch {o.mean_batch:.1f}, "
                                 f"waiting {o.mean_waiting:.1f}, sched {o.sched_ms_per_step:.3f} ms/step")

    def start_only(self) -> None:
        """Start-up and KV capacity of the largest configurations (does the server start at all?)."""
        for slots, rank in self.plan.start_only:
            adapters = build_adapters(self.model_dir, self.work / "adapters-start", [rank], self.seed + 7)
            try:
                with self.server(adapters, slots, rank) as s:
                    self.kv_row(s, slots, rank, "ok")
            except ServerError as e:
                log = (self.work / f"server-{self.n_servers}.log").read_text(errors="replace")
                self.kv_row(None, slots, rank, startup_status(log))
                self.log(f"  max_loras {slots}, rank {rank}: {e}")

    def run(self) -> list[Path]:
        self.work.mkdir(parents=True, exist_ok=True)
        base_itl = self.base()
        self.lora_overhead(base_itl)
        self.loading()
        self.scheduler()
        self.start_only()
        paths = self.writer.write()
        meta = {"model": self.model_name, "model_dir": str(self.model_dir), "device": device_name(),
                "vllm_version": sorted(self.versions)[0] if self.versions else None,
                "plan": asdict(self.plan), "seed": self.seed, "commands": [" ".join(c) for c in self.commands]}
        (self.out / "profile-meta.json").write_text(json.dumps(meta, indent=1))
        return paths + [self.out / "profile-meta.json"]
