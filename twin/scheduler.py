"""vLLM V1 scheduler (0.8 series): running requests first, then FCFS waiting requests under a token budget.

Emulated rules: chunked prefill within `max_num_batched_tokens`; `max_num_seqs`; a paged KV cache
with block preallocation; recompute preemption of the newest running request when blocks run out
(no admissions in a step that preempted); waiting requests of adapters outside a full set of
`max_loras` scheduled adapters are skipped and keep their place. The waiting queue is kept per adapter
ordered by a global key, which makes the skip scan cost O(adapters), not O(queue). Arrivals are never
queued one by one: request ids are arrival order, so an adapter's fresh requests are a slice of one
array sorted by adapter, and a request waits once its id is below the arrived count. Only preempted
requests are queued explicitly, in front, with ever smaller negative keys. Running requests live in
one small matrix (a row per field, a column per request, in running order), so a step's arithmetic
runs on contiguous rows instead of gathering from the whole request table.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .entities import ServingConfig
from .requests import RequestTable

INF_KEY = np.iinfo(np.int64).max


# rows of the running-state matrix
RID, PROMPT, OUTPUT, COMPUTED, GENERATED, BLOCKS, ADAPTER = range(7)


@dataclass
class StepPlan:
    """What one step runs: the first `k` running requests and their new tokens, and why waiting requests stopped."""

    k: int
    tokens: np.ndarray
    preempted: int
    admitted: int  # the last `admitted` of the k were admitted this step
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
        self.state = np.zeros((7, 64), np.int64)  # running requests, columns 0..n-1 in running order
        self.n = 0
        small = np.uint16 if n_adapters <= np.iinfo(np.uint16).max else np.int64  # radix sort for small ids
        self.by_adapter = np.argsort(table.adapter.astype(small), kind="stable")  # fresh requests, per adapter in order
        counts = np.bincount(table.adapter, minlength=n_adapters)
        ends = np.cumsum(counts)
        self.next_fresh = (ends - counts).tolist()  # cursor into by_adapter, per adapter
        self.fresh_end = ends.tolist()
        self.front: list[deque] = [deque() for _ in range(n_adapters)]  # preempted (key, request id), keys ascending
        self.head = np.full(n_adapters, INF_KEY, np.int64)  # key of each adapter's first queued request
        self.head[counts > 0] = self.by_adapter[(ends - counts)[counts > 0]]
        self.arrived = 0  # requests with ids below this have arrived
        self.fresh_taken = 0  # fresh requests admitted so far
        self.dropped = np.zeros(len(table.adapter), bool)  # arrivals the client never delivered (see drop)
        self.n_dropped = 0
        self.n_front = 0
        self.next_front_key = -1
        self.run_count = np.zeros(n_adapters, np.int64)  # running requests per adapter

    @property
    def running(self) -> np.ndarray:
        """Request ids of the running requests, in running order."""
        return self.state[RID, : self.n]

    def rows(self, k: int | None = None) -> np.ndarray:
        """The running-state matrix of the first `k` (default all) running requests; rows are views."""
        return self.state[:, : self.n if k is None else k]

    # -- waiting queue -------------------------------------------------------------------------
    @property
    def n_waiting(self) -> int:
        return self.arrived - self.fresh_taken - self.n_dropped + self.n_front

    def _skip_dropped(self, a: int) -> None:
        i, end, by, dropped = self.next_fresh[a], self.fresh_end[a], self.by_adapter, self.dropped
        while i < end and dropped[by[i]]:
            i += 1
        self.next_fresh[a] = i

    def drop(self, ids: np.ndarray) -> None:
        """Arrived requests that never reach the server (the client could not connect): they never wait."""
        self.dropped[ids] = True
        self.n_dropped += len(ids)
        for a in np.unique(self.t.adapter[ids]).tolist():
            self._skip_dropped(a)
            self._update_head(a)

    def _update_head(self, a: int) -> None:
        q = self.front[a]
        i = self.next_fresh[a]
        self.head[a] = q[0][0] if q else (self.by_adapter[i] if i < self.fresh_end[a] else INF_KEY)

    def requeue_front(self, rid: int) -> None:
        """A preempted request waits again, ahead of every other waiting request."""
        a = self.t.adapter[rid]
        self.front[a].appendleft((self.next_front_key, rid))
        self.next_front_key -= 1
        self.n_front += 1
        self._update_head(a)

    def _peek_waiting(self, a: int) -> int:
        q = self.front[a]
        return q[0][1] if q else int(self.by_adapter[self.next_fresh[a]])

    def _pop_waiting(self, a: int) -> None:
        q = self.front[a]
        if q:
            q.popleft()
            self.n_front -= 1
        else:
            self.next_fresh[a] += 1
            self.fresh_taken += 1
            if self.n_dropped:  # only a port-limited client drops arrivals; the open client's pops stay one step
                self._skip_dropped(a)
        self._update_head(a)

    # -- one step -----------------------------------------------------------------------------
    def _tokens_within_budget(self, budget: int) -> np.ndarray:
        """New tokens of the running requests, in order, until the step's token budget runs out (chunked prefill)."""
        _, prompt, _, comp, gen, _, _ = self.rows()
        rem = prompt + gen - comp
        if int(rem.sum()) <= budget:  # every running request gets all its tokens (the usual case)
            return rem
        avail = budget - (np.cumsum(rem) - rem)
        k = int(np.count_nonzero(avail > 0))
        return np.minimum(rem[:k], avail[:k])

    def schedule(self) -> StepPlan:
        bs = self.bs
        budget = self.cfg.max_num_batched_tokens
        comp, blocks = self.state[COMPUTED, : self.n], self.state[BLOCKS, : self.n]
        take = self._tokens_within_budget(budget)
        k = len(take)
        target = comp[:k] + take  # tokens in the KV cache after this step
        held = blocks[:k]
        grow = (target > bs * held).nonzero()[0]
        need = (target[grow] + bs - 1) // bs - held[grow]
        ask = np.minimum(need + self.prealloc, self.max_blocks_per_req - held[grow])
        preempted = 0
        total = int(ask.sum())
        if total <= self.free:  # every running request gets its blocks: no preemption this step
            held[grow] += ask
            self.free -= total
            budget -= int(take.sum())
        else:
            take, preempted, budget = self._schedule_running_sequential(take, budget)
            k = len(take)
        admitted, blocked = 0, "preempted" if preempted else "empty"
        if not preempted and self.n_waiting:
            new_take, blocked, budget = self._admit(k, budget)
            admitted = len(new_take)
            if admitted:
                take = np.concatenate([take, np.array(new_take, np.int64)])
                k += admitted
        if budget <= 0 and blocked == "empty":
            blocked = "budget"
        return StepPlan(k, take, preempted, admitted, blocked)

    def _schedule_running_sequential(self, take: np.ndarray, budget: int):
        """vLLM's running loop when blocks run short: preempt from the tail until the request at hand fits.

        `take`: the new tokens within the budget (_tokens_within_budget). Requests are granted their blocks
        in order; between two shortfalls the grants are one cumulative sum, so the Python loop runs once
        per shortfall, not once per running request.
        """
        bs, prealloc = self.bs, self.prealloc
        comp, blocks = self.state[COMPUTED, : self.n], self.state[BLOCKS, : self.n]
        kb = len(take)  # the token budget reaches this far, preemption aside
        need = -(-(comp[:kb] + take) // bs) - blocks[:kb]
        full = np.where(need > 0, np.minimum(need + prealloc, self.max_blocks_per_req - blocks[:kb]), 0)
        free, n, i = self.free, self.n, 0
        while i < min(kb, n):
            end = min(kb, n)
            cum = np.cumsum(full[i:end])
            j = i + int(np.searchsorted(cum, free, side="right"))  # first request whose full grant exceeds what is free
            blocks[i:j] += full[i:j]
            free -= int(cum[j - i - 1]) if j > i else 0
            if j == end:
                i = end
                break
            need_j = int(need[j])
            while need_j > free and n > j:  # preempt the newest running request
                n -= 1
                free += int(blocks[n])
            if n == j:  # the request itself was preempted
                i = j
                break
            g = min(need_j + prealloc, free, self.max_blocks_per_req - int(blocks[j]))
            blocks[j] += g
            free -= g
            i = j + 1
        victims = self.n - n
        self._preempt_tail(n)
        self.free = free
        take = take[:i]
        return take, victims, budget - int(take.sum())

    def _preempt_tail(self, keep: int) -> None:
        """Preempt running requests from position `keep` on, newest first (recompute: their KV is dropped)."""
        t = self.t
        rid, _, _, _, gen, _, adapter = self.rows()
        for j in range(self.n - 1, keep - 1, -1):
            r = int(rid[j])
            t.generated[r] = gen[j]
            t.preemptions[r] += 1
            self.run_count[adapter[j]] -= 1
            self.requeue_front(r)
        self.n = keep

    def _admit(self, k: int, budget: int):
        """FCFS admission with vLLM's max_loras skip; returns (tokens per admitted request, why it stopped, budget left)."""
        t, cfg, head = self.t, self.cfg, self.head
        if k == self.n:  # every running request scheduled: its adapters are the running ones
            in_batch = self.run_count > 0
        else:
            in_batch = np.zeros(len(self.run_count), bool)
            in_batch[self.state[ADAPTER, :k]] = True
        batch = in_batch.nonzero()[0]
        cols, take = [], []
        why = "empty"
        waiting = self.n_waiting
        while waiting and budget > 0:
            if self.n + len(cols) >= cfg.max_num_seqs:
                why = "max_seqs"
                break
            if len(batch) >= cfg.max_loras:  # only the batch's adapters may join it
                a = int(batch[np.argmin(head[batch])])
                if head[a] >= self.arrived:
                    break  # every waiting request belongs to a skipped adapter
            else:
                a = int(np.argmin(head))
            rid = self._peek_waiting(a)
            gen = int(t.generated[rid])
            prompt = int(t.prompt[rid])
            n = min(prompt + gen, budget)
            need = -(-n // self.bs)
            if need > self.free:
                why = "kv"
                break
            self._pop_waiting(a)
            waiting -= 1
            granted = min(need + self.prealloc, self.free, self.max_blocks_per_req)
            self.free -= granted
            self.run_count[a] += 1
            if not in_batch[a]:
                in_batch[a] = True
                batch = in_batch.nonzero()[0]
            cols.append((rid, prompt, int(t.output[rid]), 0, gen, granted, a))
            take.append(n)
            budget -= n
        if cols:
            self._append(np.array(cols, np.int64).T)
        return take, why, budget

    def _append(self, cols: np.ndarray) -> None:
        m = cols.shape[1]
        if self.n + m > self.state.shape[1]:
            self.state = np.concatenate([self.state, np.zeros((7, max(self.n + m, 2 * self.state.shape[1])), np.int64)],
                                        axis=1)
        self.state[:, self.n : self.n + m] = cols
        self.n += m

    def finish(self, done: np.ndarray, end: float) -> None:
        """Finish the running requests at positions `done` at time `end`, keeping order; free their blocks."""
        if not len(done):
            return
        t = self.t
        rid, _, _, _, gen, blocks, adapter = self.rows()
        ids = rid[done]
        t.finish[ids] = end
        t.generated[ids] = gen[done]
        self.free += int(blocks[done].sum())
        for a in adapter[done].tolist():
            self.run_count[a] -= 1
        n = self.n
        if len(done) == 1:  # the usual case: close the gap with one shift
            j = int(done[0])
            self.state[:, j : n - 1] = self.state[:, j + 1 : n]
        else:
            keep = np.ones(n, bool)
            keep[done] = False
            self.state[:, : n - len(done)] = self.state[:, :n][:, keep]
        self.n = n - len(done)
