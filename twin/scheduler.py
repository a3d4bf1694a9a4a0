"""vLLM V1 scheduler (0.8 series): running requests first, then FCFS waiting requests under a token budget.

Emulated rules: chunked prefill within `max_num_batched_tokens`; `max_num_seqs`; a paged KV cache
with block preallocation; recompute preemption of the newest running request when blocks run out
(no admissions in a step that preempted); waiting requests of adapters outside a full set of
`max_loras` scheduled adapters are skipped and keep their place. The waiting queue is kept as one
FIFO per adapter ordered by a global key, which makes the skip scan cost O(adapters), not O(queue).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .entities import ServingConfig
from .requests import RequestTable

INF_KEY = np.iinfo(np.int64).max


@dataclass
class StepPlan:
    """What one step runs: requests and their new tokens, and why waiting requests stopped."""

    ids: np.ndarray
    tokens: np.ndarray
    preempted: int
    admitted: int
    blocked: str  # 'kv', 'max_seqs', 'budget', 'preempted', 'empty' (nothing admissible waits)


class V1Scheduler:
    def __init__(self, table: RequestTable, config: ServingConfig, num_blocks: int, n_adapters: int,
                 preallocate_blocks: int):
        self.t = table
        self.cfg = config
        self.bs = config.block_size
        self.free = int(num_blocks)
        self.num_blocks = int(num_blocks)
        self.prealloc = int(preallocate_blocks)
        self.max_blocks_per_req = -(-config.max_model_len // self.bs)
        self.running = np.empty(0, np.int64)
        self.queues: list[deque] = [deque() for _ in range(n_adapters)]  # (key, request id), keys ascending
        self.head = np.full(n_adapters, INF_KEY, np.int64)  # key of each adapter's first waiting request
        self.n_waiting = 0
        self.next_front_key = -1  # preempted requests go to the front: ever smaller keys
        self.run_count = np.zeros(n_adapters, np.int64)  # running requests per adapter

    # -- waiting queue -------------------------------------------------------------------------
    def add_waiting(self, rid: int, key: int) -> None:
        a = self.t.adapter[rid]
        q = self.queues[a]
        if key < 0:
            q.appendleft((key, rid))
        else:
            q.append((key, rid))
        self.head[a] = q[0][0]
        self.n_waiting += 1

    def _pop_waiting(self, a: int) -> int:
        q = self.queues[a]
        _, rid = q.popleft()
        self.head[a] = q[0][0] if q else INF_KEY
        self.n_waiting -= 1
        return rid

    # -- KV blocks ----------------------------------------------------------------------------
    def _grant(self, rid: int, need: int) -> None:
        """Allocate `need` blocks plus preallocation, as far as free blocks and the per-request cap allow."""
        n = min(need + self.prealloc, self.free, self.max_blocks_per_req - int(self.t.blocks[rid]))
        self.t.blocks[rid] += n
        self.free -= n

    def release(self, rid: int) -> None:
        self.free += int(self.t.blocks[rid])
        self.t.blocks[rid] = 0

    # -- one step -----------------------------------------------------------------------------
    def schedule(self) -> StepPlan:
        t, bs = self.t, self.bs
        R = self.running
        budget = self.cfg.max_num_batched_tokens
        comp = t.computed[R]
        rem = t.num_tokens(R) - comp
        if int(rem.sum()) <= budget:  # every running request gets all its tokens (the usual case)
            ids, take = R, rem
        else:
            avail = budget - (np.cumsum(rem) - rem)
            n_sched = int(np.count_nonzero(avail > 0))
            ids, take, comp = R[:n_sched], np.minimum(rem[:n_sched], avail[:n_sched]), comp[:n_sched]
        held = t.blocks[ids]
        need = (comp + take + bs - 1) // bs - held
        grow = need > 0
        ask = np.minimum(need[grow] + self.prealloc, self.max_blocks_per_req - held[grow])
        preempted = 0
        if ask.sum() <= self.free:  # every running request gets its blocks: no preemption this step
            t.blocks[ids[grow]] += ask
            self.free -= int(ask.sum())
            budget -= int(take.sum())
        else:
            ids, take, preempted, budget = self._schedule_running_sequential(budget)
        sched_ids, sched_take = [ids], [take]
        admitted, blocked = 0, "preempted" if preempted else "empty"
        if not preempted and self.n_waiting:
            new_ids, new_take, blocked, budget = self._admit(ids, budget)
            admitted = len(new_ids)
            if admitted:
                sched_ids.append(np.array(new_ids, np.int64))
                sched_take.append(np.array(new_take, np.int64))
                self.running = np.concatenate([self.running, sched_ids[-1]])
        if budget <= 0 and blocked == "empty":
            blocked = "budget"
        ids = np.concatenate(sched_ids) if len(sched_ids) > 1 else sched_ids[0]
        take = np.concatenate(sched_take) if len(sched_take) > 1 else sched_take[0]
        return StepPlan(ids, take, preempted, admitted, blocked)

    def _schedule_running_sequential(self, budget: int):
        """vLLM's running loop one request at a time: preempt from the tail until the request fits.

        Works on plain lists taken once (the loop is Python either way); the arrays are written back at the end.
        """
        t, bs, R = self.t, self.bs, self.running
        comp = t.computed[R].tolist()
        todo = (t.num_tokens(R) - t.computed[R]).tolist()
        blocks = t.blocks[R].tolist()
        free, n, i = self.free, len(R), 0
        take: list[int] = []
        while i < n and budget > 0:
            k = min(todo[i], budget)
            need = -(-(comp[i] + k) // bs) - blocks[i]
            while need > free and n > i:  # preempt the newest running request
                n -= 1
                free += blocks[n]
            if n == i:  # the request itself was preempted
                break
            if need > 0:
                g = min(need + self.prealloc, free, self.max_blocks_per_req - blocks[i])
                blocks[i] += g
                free -= g
            take.append(k)
            budget -= k
            i += 1
        victims = R[n:][::-1]  # in the order they were preempted
        t.blocks[R[:n]] = blocks[:n]
        self.free = free - int(t.blocks[victims].sum())  # _preempt gives the victims' blocks back
        self.running = R[:n]
        for rid in victims.tolist():
            self._preempt(rid)
        return R[:i], np.array(take, np.int64), len(victims), budget

    def _preempt(self, rid: int) -> None:
        t = self.t
        self.release(rid)
        t.computed[rid] = 0
        t.preemptions[rid] += 1
        self.run_count[t.adapter[rid]] -= 1
        self.add_waiting(rid, self.next_front_key)
        self.next_front_key -= 1

    def _admit(self, scheduled_running: np.ndarray, budget: int):
        """FCFS admission with vLLM's max_loras skip; returns (ids, tokens, why it stopped, budget left)."""
        t, cfg = self.t, self.cfg
        if len(scheduled_running) == len(self.running):  # every running request scheduled: its adapters are the running ones
            in_batch = self.run_count > 0
        else:
            in_batch = np.zeros(len(self.run_count), bool)
            in_batch[t.adapter[scheduled_running]] = True
        n_loras = int(np.count_nonzero(in_batch))
        ids, take = [], []
        n_running = len(self.running)
        while self.n_waiting and budget > 0:
            if n_running + len(ids) >= cfg.max_num_seqs:
                return ids, take, "max_seqs", budget
            if n_loras >= cfg.max_loras:
                a = int(np.argmin(np.where(in_batch, self.head, INF_KEY)))
                if self.head[a] == INF_KEY or not in_batch[a]:
                    return ids, take, "empty", budget  # every waiting request belongs to a skipped adapter
            else:
                a = int(np.argmin(self.head))
            rid = self.queues[a][0][1]
            n = min(int(t.num_tokens(rid)), budget)
            need = -(-n // self.bs)
            if need > self.free:
                return ids, take, "kv", budget
            self._pop_waiting(a)
            self._grant(rid, need)
            t.computed[rid] = 0
            self.run_count[a] += 1
            if not in_batch[a]:
                in_batch[a] = True
                n_loras += 1
            ids.append(rid)
            take.append(n)
            budget -= n
        return ids, take, "empty", budget

    def finish(self, done: np.ndarray) -> None:
        """Drop finished requests (their finish time already set) from the running list, keeping order; free their blocks."""
        if not len(done):
            return
        t = self.t
        self.free += int(t.blocks[done].sum())
        t.blocks[done] = 0
        np.subtract.at(self.run_count, t.adapter[done], 1)
        self.running = self.running[~np.isfinite(t.finish[self.running])]
