"""The engine: advance one vLLM instance step by step, taking runs of pure decode steps in one go, exactly.

After each scheduled step, the steps that follow can be computed without the scheduler while every
running request decodes and nothing can be admitted, preempted or loaded. Such a run ends at the
first of: a completion after which a waiting or arriving request could be admitted (any completion
while the cache or `max_num_seqs` holds the queue back; the last request of an adapter while the batch
is full or requests wait), the first block allocation that free blocks could not grant in full, the
next arrival that could be admitted (any arrival while the batch has room for its adapter, else one of
the batch's adapters), the first arrival a port-limited client might drop, and the window's end.
Inside it, completions only shrink the batch: each step's duration follows from the sequences,
context and adapters still running, plus the scheduler's cost of the requests waiting.

Where the C core was built (twin/native.py), `run` hands the whole window to it instead: the same
scheduler, slots, client and step-time model stepped one step at a time, bit for bit what this loop
gives with `exact_steps=True`, tens of times faster. This module stays the reference, the
fallback without a compiler, and the loop the scheduler tests inspect (`engine="python"`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import native
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
    exact_steps: bool = False  # True: the Python loop never skips decode runs (for checking that skipping is exact)
    client: PortLimitedClient | None = None  # a client that runs out of ports (twin/client.py); None: every arrival is sent
    engine: str = "auto"  # 'auto': the compiled loop where built and no queue samples are asked for; 'python'

    def __post_init__(self) -> None:
        if self.engine not in ("auto", "python"):
            raise ConfigError(f"unknown engine {self.engine!r} (auto or python)")


def decode_run_blocks(sched: V1Scheduler, steps: np.ndarray) -> np.ndarray:
    """Blocks each (decoding) running request takes over its next `steps` steps (one count per request), every
    allocation granted in full.

    A request first needs a block when its context passes its last block; each allocation then adds
    1 + preallocate blocks, which last (1 + preallocate) x block_size more steps.
    """
    _, _, _, computed, _, blocks, _ = sched.rows()
    per_allocation = 1 + sched.prealloc
    first = sched.bs * blocks - computed + 1  # the step that first needs a block
    due = first <= steps
    out = np.zeros(sched.n, np.int64)
    out[due] = ((steps[due] - first[due]) // (sched.bs * per_allocation) + 1) * per_allocation
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
        num_blocks, preallocate = self.kv_tokens // cfg.block_size, self.profile.engine.preallocate_blocks
        predictor = StepTimePredictor(self.profile, cfg.max_loras, cfg.max_lora_rank)
        if opt.engine == "auto" and native.available() and not opt.queue_sample_s:
            return summarise(self, table, native.run(self, table, predictor, num_blocks, preallocate), wall0)
        sched = V1Scheduler(table, cfg, num_blocks, len(self.adapters), preallocate)
        slots = LoraSlots(len(self.adapters), cfg.max_loras)
        arrival, n = table.arrival, len(table.arrival)
        # itl_d, itl_w: the duration of each step that decodes, and its decode tokens
        stats = {"steps": 0, "loads": 0, "preemptions": 0, "itl_d": [], "itl_w": [], "queue": []}
        now, next_arr, next_sample = 0.0, 0, 0.0
        ports = PortPool(opt.client) if opt.client else None
        while now < opt.duration:
            next_arr = self._arrive(sched, ports, arrival, now)
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
            dt = predictor.seconds(shape)
            done_at = self._advance(sched, k, take, now + dt)
            self._record(stats, ports, done_at, [dt], [n_decode])
            now += dt
            if (not opt.exact_steps and not plan.preempted and plan.blocked in ("kv", "max_seqs", "empty")
                    and (plan.blocked == "empty" or not len(done_at)) and self._all_decoding(sched)):
                durations, decoding = self._decode_run(sched, predictor, slots, plan.blocked, now, arrival, next_arr,
                                                       ports)
                if len(durations):
                    ends = now + np.cumsum(durations)
                    self._record(stats, ports, self._advance_run(sched, len(durations), ends), durations.tolist(),
                                 decoding.tolist())
                    if ports:  # the arrivals before the last step's start reached the client then
                        self._arrive(sched, ports, arrival, float(ends[-2]) if len(ends) > 1 else now)
                    now = float(ends[-1])
        stats["dropped"] = sched.n_dropped
        return summarise(self, table, stats, wall0)

    @staticmethod
    def _arrive(sched: V1Scheduler, ports: PortPool | None, arrival: np.ndarray, t: float) -> int:
        """Requests that arrived by `t` reach the scheduler (a port-limited client drops what it cannot send);
        returns how many have arrived."""
        upto = int(np.searchsorted(arrival, t, side="right"))
        if ports and upto > sched.arrived:
            ports.deliver(sched, upto, t)
        sched.arrived = upto
        return upto

    @staticmethod
    def _record(stats: dict, ports: PortPool | None, done_at: np.ndarray, durations: list, decoding: list) -> None:
        """Count steps that ran (their durations, with the sequences each decoded) and the requests they finished."""
        if ports and len(done_at):
            ports.close(done_at)
        stats["steps"] += len(durations)
        if decoding[0]:  # a run's steps all decode; a scheduled step may only prefill
            stats["itl_d"].extend(durations)
            stats["itl_w"].extend(decoding)

    @staticmethod
    def _all_decoding(sched: V1Scheduler) -> bool:
        """Every running request has all but its newest token in the cache: the next step only decodes."""
        _, prompt, _, computed, generated, _, _ = sched.rows()
        return sched.n > 0 and bool(np.array_equal(computed + 1, prompt + generated))

    def _decode_run(self, sched: V1Scheduler, predictor: StepTimePredictor, slots: LoraSlots, blocked: str,
                    now: float, arrival: np.ndarray, next_arr: int, ports: PortPool | None):
        """Durations and decoding sequences of the pure-decode steps that follow a step (none when the next step
        could admit), starting at `now`; `blocked` says why the last scheduled step stopped admitting.

        Step s (1 = the first) runs the requests whose last token comes at step s or later; it also pays the
        scheduler's cost of the requests that arrived before it started. The adapter slots learn when each batch
        adapter last ran, for their eviction order.
        """
        none = np.zeros(0), np.zeros(0, np.int64)
        batch = np.flatnonzero(sched.run_count)
        full = len(batch) >= self.cfg.max_loras
        if blocked == "empty" and sched.n_waiting and not full:
            return none  # an adapter left the batch: the waiting may join
        # the first arrival that could be admitted, or dropped by a client out of ports; a client with no port
        # free drops every arrival until one is released (they never wait)
        n = len(arrival)
        first = n if blocked != "empty" else min(int(sched.head[batch].min()), n) if full else next_arr
        free = ports.free(sched, now) if ports else n
        if free > 0:
            first = min(first, next_arr + free)
            bound = min(float(arrival[first]) if first < n else np.inf, self.opt.duration)
        else:
            first = next_arr  # no arrival waits before the bound
            bound = min(ports.next_release(now), self.opt.duration)
        if bound <= now:
            return none
        _, _, output, computed, generated, _, adapter = sched.rows()
        left = output - generated  # the step producing each request's last token
        left_of = np.zeros(len(sched.run_count), np.int64)
        np.maximum.at(left_of, adapter, left)
        adapter_left = left_of[batch]  # the last step each batch adapter runs
        # the first completion after which a request could be admitted
        if blocked != "empty":
            m = int(left.min())
        elif sched.n_waiting or full:
            m = int(adapter_left.min())
        else:
            m = int(left.max())
        m = self._granted_steps(sched, left, m)
        if not m:
            return none
        by_left = np.argsort(left, kind="stable")
        left_sorted, adapter_left_sorted = left[by_left], np.sort(adapter_left)
        context_left = int(computed.sum()) - np.concatenate(([0], np.cumsum(computed[by_left])))  # of the unfinished
        for length in (min(m, 16), m):  # most runs end at an arrival within a few steps
            step = np.arange(1, length + 1)
            ended = np.searchsorted(left_sorted, step, side="left")  # requests finished before each step
            seqs = len(left) - ended
            context = context_left[ended] + (step - 1) * seqs
            distinct = len(batch) - np.searchsorted(adapter_left_sorted, step, side="left")
            base = predictor.decode_steps(seqs, context, distinct, sched.n_waiting)
            durations = self._with_arrivals(base, now, arrival, next_arr, first, predictor.waiting_s)
            start = now + np.concatenate(([0.0], np.cumsum(durations)[:-1]))
            keep = int(np.searchsorted(start, bound, side="left"))
            if keep < length or length == m:
                break
        slots.ran(batch, np.minimum(adapter_left, keep), keep)
        return durations[:keep], seqs[:keep]

    @staticmethod
    def _granted_steps(sched: V1Scheduler, left: np.ndarray, m: int) -> int:
        """The most steps (at most `m`) whose block allocations free blocks grant in full; `left`: each request's steps.

        Blocks freed by completions inside the run are not counted, which can only end a run early."""
        def blocks_needed(steps: int) -> int:
            return int(decode_run_blocks(sched, np.minimum(steps, left)).sum())

        per_allocation = 1 + sched.prealloc
        if sched.n * (m // (sched.bs * per_allocation) + 1) * per_allocation <= sched.free or blocks_needed(m) <= sched.free:
            return m  # (the first test bounds what any request can take in m steps)
        lo, hi = 0, m
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if blocks_needed(mid) <= sched.free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    @staticmethod
    def _with_arrivals(base: np.ndarray, now: float, arrival: np.ndarray, next_arr: int, first: int,
                       waiting_s: float) -> np.ndarray:
        """Step durations once each pays for the requests that arrived (and wait) before it started."""
        if first == next_arr or np.searchsorted(arrival, now + base.sum(), side="right") == next_arr:
            return base  # no arrival before the run ends
        arrived = np.zeros(len(base), np.int64)
        while True:
            durations = base + waiting_s * arrived
            start = now + np.concatenate(([0.0], np.cumsum(durations)[:-1]))
            counted = np.searchsorted(arrival, start, side="right") - next_arr
            if np.array_equal(counted, arrived):
                return durations
            arrived = counted

    @staticmethod
    def _advance(sched: V1Scheduler, k: int, take: np.ndarray, end: float) -> np.ndarray:
        """Apply one step ending at `end` to the first `k` running requests: tokens, first tokens, finishes; returns
        the finish times."""
        rid, prompt, output, computed, generated, _, _ = sched.rows(k)
        computed += take
        produced = (computed == prompt + generated).nonzero()[0]
        generated[produced] += 1
        newly = produced[generated[produced] == 1]
        sched.t.first_token[rid[newly]] = end
        done = (generated >= output).nonzero()[0]
        done_at = np.full(len(done), end)
        sched.finish(done, done_at)
        return done_at

    @staticmethod
    def _advance_run(sched: V1Scheduler, steps: int, ends: np.ndarray) -> np.ndarray:
        """Apply `steps` pure-decode steps ending at `ends` to every running request: tokens, blocks, finishes;
        returns the finish times, in order."""
        _, _, output, computed, generated, blocks, _ = sched.rows()
        left = output - generated
        ran = np.minimum(steps, left)
        extra = decode_run_blocks(sched, ran)
        blocks += extra
        sched.free -= int(extra.sum())
        computed += ran
        generated += ran
        done = (left <= steps).nonzero()[0]
        done_at = ends[left[done] - 1]
        sched.finish(done, done_at)
        return np.sort(done_at)
