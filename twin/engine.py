"""The engine: advance one vLLM instance step by step, skipping runs of identical decode steps exactly.

A run of steps can be skipped in one go when every running request decodes, nothing is admitted,
preempted or loaded, and the next step to differ is known in advance: the first completion, the
first block allocation that free blocks could not satisfy in full, or (when a new arrival could be
admitted) the next arrival. Context growth makes step times an arithmetic series, summed exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .arrivals import Workload
from .client import PortLimitedClient, PortPool
from .entities import Adapter, ServingConfig
from .errors import ConfigError
from .lora_slots import LoraSlots
from .profile import Profile
from .requests import RequestTable
from .results import SimResult, summarise
from .scheduler import V1Scheduler
from .step_time import StepShape, StepTimePredictor


@dataclass(frozen=True)
class SimOptions:
    duration: float = 3600.0
    starvation_threshold: float = 0.9
    queue_sample_s: float = 0.0  # > 0: record (time, waiting, running, free blocks) at this interval
    exact_steps: bool = False  # True: never skip decode runs (slow; for checking that skipping is exact)
    client: PortLimitedClient | None = None  # a client that runs out of ports (twin/client.py); None: every arrival is sent


def decode_run_blocks(sched: V1Scheduler, m: int) -> np.ndarray:
    """Blocks each (decoding) running request takes over the next `m` extra steps, every allocation granted in full.

    A request first needs a block when its context passes its last block; each allocation then adds
    1 + preallocate blocks, which last (1 + preallocate) x block_size more steps.
    """
    _, _, _, computed, _, blocks, _ = sched.rows()
    per_allocation = 1 + sched.prealloc
    first = sched.bs * blocks - computed  # extra step that first needs a block
    due = first <= m
    out = np.zeros(sched.n, np.int64)
    out[due] = ((m - first[due]) // (sched.bs * per_allocation) + 1) * per_allocation
    return out


class Simulator:
    """One GPU serving `adapters` under `config`, driven by `workload`."""

    def __init__(self, profile: Profile, config: ServingConfig, adapters: list[Adapter], workload: Workload,
                 options: SimOptions = SimOptions()):
        if not adapters:
            raise ConfigError("no adapters to serve")
        if not 0 < options.starvation_threshold <= 1:
            raise ConfigError(f"starvation threshold must be in (0, 1], got {options.starvation_threshold}")
        config.check_adapters(adapters)
        self.profile, self.cfg, self.adapters, self.workload, self.opt = profile, config, adapters, workload, options
        self.status = profile.memory.startup_status(config.max_loras, config.max_lora_rank, config.max_model_len)
        self.kv_tokens = profile.memory.kv_tokens(config.max_loras, config.max_lora_rank)

    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        table = RequestTable(self.workload)
        if self.status != "ok":
            return summarise(self, table, {}, wall0)
        cfg, opt = self.cfg, self.opt
        sched = V1Scheduler(table, cfg, self.kv_tokens // cfg.block_size, len(self.adapters),
                            self.profile.engine.preallocate_blocks)
        predictor = StepTimePredictor(self.profile, cfg.max_loras, cfg.max_lora_rank)
        slots = LoraSlots(len(self.adapters), cfg.max_loras)
        arrival, n = table.arrival, len(table.arrival)
        stats = {"steps": 0, "loads": 0, "preemptions": 0, "itl_d": [], "itl_w": [], "queue": []}
        itl_d, itl_w = stats["itl_d"], stats["itl_w"]  # mean step time of each decode run, and its decode tokens
        now, next_arr, next_sample = 0.0, 0, 0.0
        ports = PortPool(opt.client) if opt.client else None
        while now < opt.duration:
            next_arr = int(np.searchsorted(arrival, now, side="right"))
            if ports and next_arr > sched.arrived:
                ports.deliver(sched, next_arr, now)
            sched.arrived = next_arr
            if opt.queue_sample_s > 0 and now >= next_sample:
                stats["queue"].append((round(now, 3), sched.n_waiting, len(sched.running), sched.free))
                next_sample = now + opt.queue_sample_s
            if not len(sched.running) and not sched.n_waiting:
                if next_arr >= n:
                    break
                now = float(arrival[next_arr])
                continue
            plan = sched.schedule()
            stats["preemptions"] += plan.preempted
            k, take = plan.k, plan.tokens
            if not k:  # nothing fits (a request longer than the whole KV cache waits forever, as in vLLM)
                if next_arr >= n:
                    break
                now = max(now, float(arrival[next_arr]))
                continue
            _, _, _, comp, gen, _, batch = sched.rows(k)
            decode = (take == 1) & (gen >= 1)
            n_decode = int(np.count_nonzero(decode))
            all_scheduled = k == sched.n
            distinct = int(np.count_nonzero(sched.run_count)) if all_scheduled else int(np.unique(batch).size)
            loads = slots.activate(batch, batch[k - plan.admitted:] if plan.admitted else None)
            stats["loads"] += loads
            shape = StepShape(n_decode, int(take.sum()) - n_decode, int(comp[decode].sum()), distinct,
                              sched.n_waiting, loads)
            dt, growth = predictor.decode_run(shape)
            steps, elapsed = 1, dt
            if (not opt.exact_steps and n_decode == k and all_scheduled and not plan.preempted and not plan.admitted
                    and not loads and plan.blocked in ("kv", "max_seqs", "empty")):
                arrival_ends_run = plan.blocked == "empty" and next_arr < n  # a new arrival could be admitted
                bound = float(arrival[next_arr]) if arrival_ends_run else np.inf
                extra = self._extra_decode_steps(sched)
                if extra:
                    durations = self._decode_run(dt, growth, extra, now, min(bound, opt.duration), arrival, next_arr,
                                                 predictor.waiting_s, arrival_ends_run)
                    steps, elapsed = len(durations), float(durations.sum())
            done = self._advance(sched, k, take, steps, now + elapsed)
            if ports and done:
                ports.close(now + elapsed, done)
            stats["steps"] += steps
            if n_decode:
                itl_d.append(elapsed / steps)
                itl_w.append(n_decode * steps)
            now += elapsed
        stats["dropped"] = sched.n_dropped
        return summarise(self, table, stats, wall0)

    @staticmethod
    def _extra_decode_steps(sched: V1Scheduler) -> int:
        """How many more identical decode steps can follow this one: none may finish a request early or run out of blocks."""
        _, _, output, _, generated, _, _ = sched.rows()
        m_max = int((output - generated).min()) - 1  # the step producing the first last token ends the run
        if m_max <= 0:
            return 0
        def blocks_needed(m: int) -> int:
            return int(decode_run_blocks(sched, m).sum())

        if blocks_needed(m_max) <= sched.free:
            return m_max
        lo, hi = 0, m_max  # largest m whose allocations are all granted in full
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if blocks_needed(mid) <= sched.free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    @staticmethod
    def _decode_run(dt: float, growth: float, extra: int, now: float, bound: float, arrival: np.ndarray,
                    next_arr: int, waiting_s: float, arrival_ends_run: bool) -> np.ndarray:
        """Durations of this step and up to `extra` identical ones, each starting before `bound`.

        Step j lasts dt + j * growth plus the scheduler's cost of the requests that arrived before it
        started; start times and arrival counts are solved together (a few rounds: counts only grow).
        When the next arrival is the bound, no step kept has an arrival before it starts.
        """
        j = np.arange(extra + 1)
        base = dt + j * growth
        arrived = np.zeros(extra + 1, np.int64)
        if arrival_ends_run or np.searchsorted(arrival, now + base.sum(), side="right") == next_arr:
            start = now + np.concatenate(([0.0], np.cumsum(base)[:-1]))
            return base[: max(1, int(np.searchsorted(start, bound, side="left")))]
        while True:
            durations = base + waiting_s * arrived
            start = now + np.concatenate(([0.0], np.cumsum(durations)[:-1]))
            counted = np.searchsorted(arrival, start, side="right") - next_arr
            if np.array_equal(counted, arrived):
                break
            arrived = counted
        return durations[: max(1, int(np.searchsorted(start, bound, side="left")))]

    def _advance(self, sched: V1Scheduler, k: int, take: np.ndarray, steps: int, end: float) -> int:
        """Apply `steps` steps of this plan to the first `k` running requests: tokens, blocks, first tokens, finishes (returned)."""
        rid, prompt, output, computed, generated, blocks, _ = sched.rows(k)
        if steps > 1:
            extra = decode_run_blocks(sched, steps - 1)
            blocks += extra
            sched.free -= int(extra.sum())
            computed += steps
            generated += steps
        else:
            computed += take
            produced = (computed == prompt + generated).nonzero()[0]
            generated[produced] += 1
            newly = produced[generated[produced] == 1]
            sched.t.first_token[rid[newly]] = end
        done = (generated >= output).nonzero()[0]
        sched.finish(done, end)
        return len(done)
