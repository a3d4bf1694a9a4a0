"""Gilmore-Gomory column generation for one-dimensional bin packing, and a diving heuristic on its LP.

The master LP chooses bin patterns (how many items of each size a bin holds) to cover every size's
demand with as few bins as possible; a bounded knapsack prices new patterns. Its optimum, rounded up,
is the classical bound that equals the optimum on almost every standard instance, and it needs no
graph over the capacity (a capacity of 100,000 costs about 10 ms a pricing round). The dive fixes
patterns the LP uses and re-solves the rest until every item is packed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .arcflow import item_pool, quiet_native_output

EPS = 1e-9


def price(weights: np.ndarray, capacity: int, limit: np.ndarray, values: np.ndarray) -> tuple[float, np.ndarray]:
    """Bounded knapsack: the most valuable pattern (at most `limit[i]` items of size `weights[i]`), by dynamic programming.

    Each size is split into binary pieces (1, 2, 4, ... items) so that the 0/1 recursion covers every count.
    """
    pieces = []  # (type, count)
    for i in np.flatnonzero((values > EPS) & (limit > 0) & (weights <= capacity)):
        left, k = int(min(limit[i], capacity // weights[i])), 1
        while left > 0:
            take = min(k, left)
            pieces.append((int(i), take))
            left -= take
            k *= 2
    best = np.zeros(capacity + 1)
    took = np.zeros((len(pieces), capacity + 1), bool)
    for p, (i, count) in enumerate(pieces):
        w, v = int(weights[i]) * count, float(values[i]) * count
        cand = best[: capacity + 1 - w] + v
        better = cand > best[w:] + EPS
        best[w:][better] = cand[better]
        took[p, w:] = better
    counts = np.zeros(len(weights), np.int64)
    room = int(np.argmax(best))
    for p in range(len(pieces) - 1, -1, -1):
        if took[p, room]:
            i, count = pieces[p]
            counts[i] += count
            room -= int(weights[i]) * count
    return float(best.max()), counts


@dataclass
class LPState:
    value: float  # the master LP's optimum over the patterns so far
    bound: float  # a proven lower bound on the full LP (equals value once no pattern prices out)
    x: np.ndarray  # pattern usage
    converged: bool


class PatternLP:
    """The master LP over bin patterns, solved by HiGHS's simplex and grown by pricing."""

    def __init__(self, weights: np.ndarray, capacity: int, demand: np.ndarray, start: list[np.ndarray]):
        import highspy

        self.weights, self.capacity = weights, int(capacity)
        self.demand = demand.astype(np.int64).copy()
        self.patterns: list[np.ndarray] = []
        with quiet_native_output():
            self.h = highspy.Highs()
            self.h.setOptionValue("output_flag", False)
            self.h.setOptionValue("solver", "simplex")
        m = len(weights)
        # Cover constraints: every size's (remaining) demand is met.
        self.h.addRows(m, self.demand.astype(float), np.full(m, highspy.kHighsInf), 0, np.zeros(0, np.int32),
                       np.zeros(0, np.int32), np.zeros(0))
        for counts in start:
            self.add(counts)

    def add(self, counts: np.ndarray) -> None:
        import highspy

        nz = np.flatnonzero(counts)
        self.h.addCol(1.0, 0.0, highspy.kHighsInf, len(nz), nz.astype(np.int32), counts[nz].astype(float))
        self.patterns.append(counts.copy())

    def set_demand(self, demand: np.ndarray) -> None:
        import highspy

        self.demand = demand.astype(np.int64).copy()
        for i, d in enumerate(self.demand):
            self.h.changeRowBounds(i, float(d), highspy.kHighsInf)

    def solve(self, deadline: float) -> LPState:
        """Price patterns in until none improves the LP (or time runs out); Farley's bound holds at every round."""
        bound = 0.0
        while True:
            with quiet_native_output():
                self.h.run()
            sol = self.h.getSolution()
            value = float(self.h.getInfo().objective_function_value)
            x = np.asarray(sol.col_value)
            best, counts = price(self.weights, self.capacity, self.demand, np.maximum(np.asarray(sol.row_dual), 0.0))
            bound = max(bound, value / max(best, 1.0))  # no pattern is worth more than `best` bins of duals
            if best <= 1 + 1e-9:
                return LPState(value, value, x, True)
            if time.perf_counter() > deadline:
                return LPState(value, bound, x, False)
            self.add(counts)


def _fill(weights: np.ndarray, capacity: int, demand: np.ndarray) -> list[np.ndarray]:
    """First-fit decreasing on counts: patterns that cover `demand` (the LP's first columns, so that it is feasible)."""
    loads: list[int] = []
    patterns: list[np.ndarray] = []
    for i in np.argsort(-weights, kind="stable"):
        for _ in range(int(demand[i])):
            b = next((b for b, load in enumerate(loads) if load + weights[i] <= capacity), None)
            if b is None:
                loads.append(0)
                patterns.append(np.zeros(len(weights), np.int64))
                b = len(loads) - 1
            loads[b] += int(weights[i])
            patterns[b][i] += 1
    return patterns


@dataclass
class ColGenResult:
    bound: int  # proven lower bound on the bins (the LP's optimum rounded up, or Farley's bound)
    patterns: list[np.ndarray] | None  # a packing with fewer than `upper` bins, as patterns, or None


class Dive:
    """Depth-first dive with limited discrepancy: fix the pattern the LP uses most, re-solve, go on.

    When a branch cannot reach fewer than `upper` bins (fixed bins plus the remaining LP bound), the dive
    backs up and tries the next most used pattern, at most `discrepancies` times along one path.
    """

    def __init__(self, lp: PatternLP, upper: int, deadline: float, discrepancies: int = 2, siblings: int = 3):
        self.lp, self.upper, self.deadline = lp, upper, deadline
        self.discrepancies, self.siblings = discrepancies, siblings

    def run(self, residual: np.ndarray, state: LPState) -> list[np.ndarray] | None:
        return self._node(residual, state, [], self.discrepancies)

    def _node(self, residual: np.ndarray, state: LPState, fixed: list, left: int) -> list[np.ndarray] | None:
        if not residual.any():
            return fixed
        if len(fixed) + int(np.ceil(state.bound - 1e-6)) >= self.upper or time.perf_counter() > self.deadline:
            return None
        order = [int(p) for p in np.argsort(-state.x, kind="stable") if state.x[p] > 1e-6]
        for rank, p in enumerate(order[: 1 + min(left, self.siblings - 1)]):
            used = np.minimum(self.lp.patterns[p], residual)
            if not used.any():
                continue
            rest = residual - used
            if rest.any():
                self.lp.set_demand(rest)
                child = self.lp.solve(self.deadline)
            else:
                child = state
            found = self._node(rest, child, fixed + [used], left - (rank > 0))
            if found is not None:
                return found
            if time.perf_counter() > self.deadline:
                return None
        return None


def solve(weights: np.ndarray, demand: np.ndarray, capacity: int, lower: int, upper: int, time_limit: float,
          dive_share: float = 1.0) -> ColGenResult:
    """LP bound by column generation, then a dive for a packing with fewer than `upper` bins.

    The dive stops at a packing that meets the bound, or when its share of the time left after the LP runs out.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    lp = PatternLP(weights, capacity, demand, _fill(weights, capacity, demand) + [
        np.eye(len(weights), dtype=np.int64)[i] * min(int(demand[i]), capacity // int(weights[i]))
        for i in range(len(weights))])
    root = lp.solve(deadline)
    bound = max(lower, int(np.ceil(root.bound - 1e-6)))
    if bound >= upper:
        return ColGenResult(bound, None)
    dive_end = time.perf_counter() + dive_share * max(0.0, deadline - time.perf_counter())
    target = upper
    best = None
    while target > bound and time.perf_counter() < dive_end:
        found = Dive(lp, target, dive_end).run(demand.astype(np.int64).copy(), root)
        if found is None:
            break
        best, target = found, len(found)  # then look for one bin fewer, down to the bound
    return ColGenResult(bound, best)


def patterns_to_bins(patterns: list[np.ndarray], weights: np.ndarray, sizes: np.ndarray) -> list[list[int]]:
    """Concrete item indices per bin: each pattern takes items of its sizes from a pool."""
    pool = item_pool(weights, sizes)
    bins = []
    for counts in patterns:
        items = [int(pool[int(weights[i])].pop()) for i in np.flatnonzero(counts) for _ in range(int(counts[i]))]
        if items:
            bins.append(items)
    return bins
