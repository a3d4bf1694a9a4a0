"""The surrogate-guided greedy of arXiv 2602.24044, and its latency variant.

`greedy`: adapters grouped by rank (largest first), rates zig-zagged within a group; a GPU is filled
and probed at fixed checkpoints, where `--max-loras` is kept or grown one grid value, whichever the
oracle predicts serves more; a step is accepted only if the GPU does not starve, otherwise its
pending adapters go back to the front of the queue and the next GPU opens.
"""

from __future__ import annotations

from collections import deque

from loraplace.twin.entities import Adapter
from loraplace.twin.oracle import MAX_LORAS_GRID, GpuQuery, Oracle

from .gpu_fit import fewest_passing, finish, fit_many, pick
from .placement import GpuPlan, PlacementInstance, Share, starves_alone

CHECKPOINTS = MAX_LORAS_GRID  # the paper probes a GPU at the same values it allows for --max-loras


def zigzag(values: list[Adapter]) -> list[Adapter]:
    """Highest rate, lowest, second highest, second lowest, ..."""
    s = sorted(values, key=lambda a: (-a.rate, a.id))
    out, lo, hi = [], 0, len(s) - 1
    while lo <= hi:
        out.append(s[lo])
        if lo != hi:
            out.append(s[hi])
        lo, hi = lo + 1, hi - 1
    return out


def paper_order(adapters: tuple[Adapter, ...]) -> list[Adapter]:
    """Rank groups, largest rank first, each in zig-zag rate order."""
    return [a for r in sorted({a.rank for a in adapters}, reverse=True)
            for a in zigzag([a for a in adapters if a.rank == r])]


def _next_slots(m: int) -> int | None:
    bigger = [g for g in MAX_LORAS_GRID if g > m]
    return bigger[0] if bigger else None


class _Filler:
    """Fills GPUs one after another from a queue of adapters, probing at checkpoints."""

    def __init__(self, inst: PlacementInstance, oracle: Oracle):
        self.inst, self.oracle = inst, oracle
        self.min_rank = min(a.rank for a in inst.adapters)

    def probe(self, shares: list[Share], size: int, slots: list[int]) -> tuple[GpuQuery, object] | None:
        """Best feasible slot choice for `shares` padded to `size` with average-rate, smallest-rank virtual adapters."""
        ranks, rates = [s.adapter.rank for s in shares], [s.rate for s in shares]
        pad = size - len(shares)
        if pad > 0:
            mean = sum(rates) / len(rates)
            ranks, rates = ranks + [self.min_rank] * pad, rates + [mean] * pad
        queries = [GpuQuery.of(ranks, rates, m, self.inst.lengths) for m in slots if m <= size]
        return pick(queries, self.oracle.evaluate(queries)) if queries else None

    def fill(self, queue: deque) -> GpuPlan:
        """One GPU's content, taken from the front of `queue` (pending adapters that fail go back)."""
        gpu: list[Share] = []
        slots = MAX_LORAS_GRID[0]
        for checkpoint in CHECKPOINTS:
            if not queue:
                break
            pending = [queue.popleft() for _ in range(min(checkpoint - len(gpu), len(queue)))]
            grow = _next_slots(slots)
            best = self.probe(gpu + pending, checkpoint, [slots] + ([grow] if grow else []))
            if best is None:
                queue.extendleft(reversed(pending))
                break
            gpu += pending
            slots = best[0].max_loras
        if not gpu:
            gpu, slots = self._below_first_checkpoint(queue)
        return GpuPlan(gpu, min(slots, len(gpu)))  # vLLM needs --max-cpu-loras (the adapters) >= --max-loras

    def _below_first_checkpoint(self, queue: deque) -> tuple[list[Share], int]:
        """Heavy adapters: fewer than the first checkpoint fit, so halve until the oracle accepts (one at least)."""
        size = MAX_LORAS_GRID[0] // 2
        while size >= 1:
            pending = list(queue)[:size]
            plan = fit_many(self.oracle, [pending], self.inst.lengths)[0]
            if plan is not None:
                for _ in pending:
                    queue.popleft()
                return pending, plan.max_loras
            size //= 2
        raise starves_alone(self.inst, queue[0].adapter)


def greedy(inst: PlacementInstance, oracle: Oracle) -> list[GpuPlan]:
    filler = _Filler(inst, oracle)
    queue = deque(Share(a) for a in paper_order(inst.adapters))
    plans = []
    while queue:
        plans.append(filler.fill(queue))
    return finish(inst, oracle, plans)


def spread(inst: PlacementInstance, k: int) -> list[list[Share]]:
    """Adapters, heaviest first, each to the GPU with the lowest summed rate so far."""
    gpus: list[list[Share]] = [[] for _ in range(k)]
    sums = [0.0] * k
    for a in sorted(inst.adapters, key=lambda a: (-a.rate, a.id)):
        g = min(range(k), key=lambda i: (sums[i], i))
        gpus[g].append(Share(a))
        sums[g] += a.rate
    return gpus


def greedy_latency(inst: PlacementInstance, oracle: Oracle, start: int) -> list[GpuPlan]:
    """Balance summed rates over k GPUs, from k = `start` (or exactly `inst.gpus`) up, until the oracle accepts every GPU."""
    return finish(inst, oracle, fewest_passing(inst, oracle, start, lambda k: spread(inst, k), "greedy-lat"))
