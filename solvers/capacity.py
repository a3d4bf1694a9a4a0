"""What one GPU can hold at most, per rank class and adapter count, read off the oracle; and the bound it implies.

Assumptions (true of the twin: more adapters or more load never make a GPU serve better): a GPU that
starves keeps starving when an adapter is added or a rate grows. Under them, `max_adapters[r]` (the
most adapters of the instance's smallest rate one GPU of rank class r can serve) is an upper bound, and
so is `max_load[r][i]`, the largest feasible offered load with at least `brackets[i]` adapters, found
on two mixes of rates (equal, and one adapter carrying half the load), no rate above the instance's
largest, with the oracle's margin for other mixes: an assumption, stated here because the exact
strategies' optimality claims rest on it. Probes hold adapters all of the class's rank; the oracle's
rank margin covers GPUs with smaller ranks among them (the twin only sees --max-lora-rank; a surrogate
may not). A bracket's bound never exceeds what the instance's heaviest adapters could offer at that
count. The exact strategies' master problem uses the whole table; the simple bound below uses its first
column. `mix_table` reads a finer table off the instance's own mixes of rates where they are few.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from loraplace.twin.oracle import Oracle

from .bounds import l2
from .bpp_instances import BinPackingInstance
from .gpu_fit import accepted
from .placement import PlacementInstance

SHAPES = ("equal", "one-heavy")
MIX_SEARCHES = 10_000  # most mixes `mix_table` may look at (each a binary search: about 1 s per 3,000 here)
MIX_RATES = 6  # most distinct rates `mix_table` tries (the mixes of more outnumber MIX_SEARCHES at a few adapters)
# Adapter counts where a load bound starts: fine for a cheap oracle, coarse for the twin (each probe a simulation).
BRACKETS_FINE = (*range(1, 17), 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)
BRACKETS_COARSE = (1, 8, 32, 128)
LOAD_STEPS = tuple(50.0 * 1.005 ** k for k in range(1500))  # 50 to about 87,000 tokens/s, 0.5 % apart


@dataclass(frozen=True)
class CapacityTable:
    classes: tuple[int, ...]  # rank classes (max_lora_rank values), ascending
    max_adapters: dict[int, int]
    brackets: dict[int, tuple[int, ...]]  # per class: adapter counts where a load bound starts
    max_load: dict[int, tuple[float, ...]]  # per class and bracket: tokens/s bound for that many adapters or more

    def load_bound(self, r: int, adapters: int | None = None) -> float:
        """The load bound of a class for GPUs holding `adapters` adapters (any number when None)."""
        if adapters is None:
            return max(self.max_load[r])
        i = max(i for i, b in enumerate(self.brackets[r]) if b <= max(adapters, self.brackets[r][0]))
        return self.max_load[r][i]

    def envelope(self) -> list[tuple[int, int, int]]:
        """Lines (dn, dl, c0) with dn * load <= dl * n + c0 above every class's bound at every adapter count n it
        may hold (the bounds rounded up, as in the master problem): the upper concave hull of those points."""
        top: dict[int, int] = {}
        for r in self.classes:
            for n in range(1, self.max_adapters[r] + 1):
                top[n] = max(top.get(n, 0), math.ceil(self.load_bound(r, n)))
        hull: list[tuple[int, int]] = []
        for p in sorted(top.items()):
            # drop the last point while it lies on or under the line from the one before it to p
            while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1])
                                      >= (p[0] - hull[-2][0]) * (hull[-1][1] - hull[-2][1])):
                hull.pop()
            hull.append(p)
        return [(n2 - n1, l2 - l1, l1 * n2 - l2 * n1) for (n1, l1), (n2, l2) in zip(hull, hull[1:])]

    def lower_bound(self, inst: PlacementInstance) -> float:
        """GPUs any feasible placement needs: adapters of rank >= r only fit GPUs of class >= r. Infinite when the
        classes that could hold some adapter hold nothing."""
        ranks = np.array([a.rank for a in inst.adapters])
        loads = np.array([inst.load(a) for a in inst.adapters])
        best = 1
        for r in self.classes:
            sel = ranks >= r
            if not sel.any():
                continue
            higher = [k for k in self.classes if k >= r]
            most, load = max(self.max_adapters[k] for k in higher), max(self.load_bound(k) for k in higher)
            if most == 0 or load <= 0:
                return math.inf
            # Loads rounded down and bounds up, as in the master problem: a bound equal to the load (the heaviest
            # adapters' sum, added in another order) must not round up to one GPU more.
            best = max(best, math.ceil(sel.sum() / most), math.ceil(int(np.floor(loads[sel]).sum()) / math.ceil(load)))
        cap = max(self.load_bound(r) for r in self.classes)
        if loads.max() > cap:
            return math.inf
        bpp = BinPackingInstance("loads", np.array([int(math.ceil(cap))]), np.floor(loads).astype(np.int64)[:, None])
        return max(best, l2(bpp))


def _largest(feasible, lo: int, hi: int) -> int:
    """Largest k in [lo, hi] with feasible(k), assuming feasibility is monotone; lo - 1 if none."""
    if not feasible(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def capacity_table(inst: PlacementInstance, oracle: Oracle) -> CapacityTable:
    brackets = BRACKETS_FINE if oracle.cheap else BRACKETS_COARSE
    classes = tuple(sorted({a.rank for a in inst.adapters}))
    rates = sorted((a.rate for a in inst.adapters), reverse=True)
    min_rate, max_rate = rates[-1] or 1e-6, rates[0]
    tok = inst.tokens_per_request
    heaviest = np.cumsum(rates) * tok  # heaviest[k - 1]: the most load any k of these adapters offer
    max_adapters, starts, loads = {}, {}, {}
    for r in classes:
        def holds(rs: list[float]) -> bool:
            return accepted(oracle, [([r] * len(rs), rs)], inst.lengths)[0]

        def mix(shape: str, n: int, load: float) -> list[float] | None:
            """n rates offering `load`, none above the instance's largest rate (None if impossible)."""
            total = load / tok
            if total > n * max_rate:
                return None
            if shape == "equal" or n == 1:
                return [total / n] * n
            heavy = min(total / 2, max_rate)
            rest = (total - heavy) / (n - 1)
            return [heavy] + [rest] * (n - 1) if rest <= max_rate else None

        def probe(shape: str, b: int) -> float:
            """Largest load b adapters of this shape carry (inf: all the load they can offer)."""
            ok = [i for i in range(len(LOAD_STEPS)) if mix(shape, b, LOAD_STEPS[i]) is not None]
            if not ok:
                return math.inf
            k = _largest(lambda i: holds(mix(shape, b, LOAD_STEPS[i])), 0, ok[-1])
            return LOAD_STEPS[k + 1] if k < ok[-1] else math.inf

        max_adapters[r] = max(0, _largest(lambda n: holds([min_rate] * n), 1, len(inst.adapters)))
        starts[r] = tuple(b for b in brackets if b <= max_adapters[r]) or (1,)
        ends = [*(b - 1 for b in starts[r][1:]), max(max_adapters[r], 1)]
        # Capacity falls with the adapter count, so a bracket's bound is the probe at its smallest count, times the
        # margin for other mixes over its counts...
        probed = np.minimum.accumulate([oracle.shape_margin(b, e) * oracle.rank_margin * max(probe(s, b) for s in SHAPES)
                                        for b, e in zip(starts[r], ends)])
        # ...and never more than the heaviest adapters of the instance can offer at the bracket's largest count.
        loads[r] = tuple(float(min(p, heaviest[min(e, len(rates)) - 1])) for p, e in zip(probed, ends))
    return CapacityTable(classes, max_adapters, starts, loads)


def mix_table(inst: PlacementInstance, oracle: Oracle, coarse: CapacityTable) -> CapacityTable | None:
    """The capacity table read off the oracle for this instance's own rates, one bracket per adapter count.

    Where the instance has few distinct rates (the paper's three-rate mixes), every mix of them can be asked
    for, so the margin for unprobed mixes of rates is not needed (the one for smaller ranks still is): per rank
    class and count n, the bound is the largest load of n adapters, drawn from the rates (and counts) of the
    adapters that class may hold, that the oracle accepts. Of `capacity_table`'s assumptions it needs one, that
    a rate that shrinks never hurts, which makes the accepted mixes a staircase: given the counts of all rates
    but the two smallest, a binary search over the count of the second smallest (the smallest takes the rest)
    finds the heaviest accepted mix. None when the instance has more than MIX_RATES distinct rates or that would
    look at more than MIX_SEARCHES mixes."""
    searches, left = {}, MIX_SEARCHES
    for r in coarse.classes:
        searches[r] = MixSearches.of(Counter(a.rate for a in inst.adapters if a.rank <= r), coarse.max_adapters[r], left)
        if searches[r] is None:
            return None
        left -= searches[r].looked_at
    starts, loads = {}, {}
    for r, s in searches.items():
        # the most load any n adapters this class may hold offer, as `capacity_table` caps its brackets
        offer = np.cumsum(sorted((a.rate for a in inst.adapters if a.rank <= r), reverse=True)) * inst.tokens_per_request
        heaviest: dict[int, float] = {}
        for n, mix in zip(s.counts, s.heaviest(lambda mixes: accepts_mixes(oracle, inst, r, s.rates, mixes))):
            if mix is not None:
                load = oracle.rank_margin * inst.tokens_per_request * float(mix @ s.rates)
                heaviest[n] = max(heaviest.get(n, 0.0), min(load, float(offer[n - 1])))
        starts[r] = tuple(range(1, max(heaviest, default=1) + 1))
        loads[r] = tuple(heaviest.get(n, 0.0) for n in starts[r])
    return CapacityTable(coarse.classes, {r: _heaviest_n(loads[r]) for r in coarse.classes}, starts, loads)


def _heaviest_n(loads: tuple[float, ...]) -> int:
    """The largest adapter count with an accepted mix (0 if none)."""
    return max((n for n, x in enumerate(loads, 1) if x > 0), default=0)


@dataclass
class MixSearches:
    """One binary search per adapter count n and counts of the rates above the two smallest: over the count of
    the second smallest rate, between lo and hi (the smallest rate takes the rest of the n)."""

    rates: np.ndarray  # distinct rates, decreasing
    counts: np.ndarray  # n per search
    prefixes: np.ndarray  # (searches, rates - 2): counts of the larger rates
    lo: np.ndarray
    hi: np.ndarray
    looked_at: int  # mixes of the larger rates enumerated, with or without a search

    @classmethod
    def of(cls, available: Counter, most: int, limit: int) -> "MixSearches | None":
        """The searches for counts 1 to `most`; None when more than `limit` mixes would have to be looked at."""
        if len(available) > MIX_RATES:
            return None
        rates = sorted(available, reverse=True) + [0.0] * (len(available) < 2)  # one rate: a second of no adapters
        have = [available.get(x, 0) for x in rates]
        rows, looked_at = [], 0
        for n in range(1, most + 1):
            for prefix in _prefix_counts(have[:-2], n):
                looked_at += 1
                if looked_at > limit:
                    return None
                rest = n - sum(prefix)
                lo, hi = max(0, rest - have[-1]), min(rest, have[-2])
                if lo <= hi:
                    rows.append((n, prefix, lo, hi))
        return cls(np.array(rates), np.array([r[0] for r in rows], int),
                   np.array([r[1] for r in rows], int).reshape(len(rows), len(rates) - 2),
                   np.array([r[2] for r in rows], int), np.array([r[3] for r in rows], int), looked_at)

    def mix(self, i: int, second: int) -> np.ndarray:
        """Counts per rate of search i's mix with `second` adapters of the second smallest rate."""
        rest = self.counts[i] - self.prefixes[i].sum()
        return np.array([*self.prefixes[i], second, rest - second])

    def heaviest(self, accepts) -> list[np.ndarray | None]:
        """Per search, the counts per rate of the heaviest mix `accepts` takes, or None when it refuses even the
        lightest; the searches advance together, one call of `accepts` (a list of mixes) per step."""
        lo, hi = self.lo.copy(), self.hi.copy()
        alive = np.array(accepts([self.mix(i, x) for i, x in enumerate(lo)]), dtype=bool)
        hi[~alive] = lo[~alive]
        while (open_ := np.flatnonzero(lo < hi)).size:
            mid = (lo[open_] + hi[open_] + 1) // 2
            ok = np.array(accepts([self.mix(i, x) for i, x in zip(open_, mid)]), dtype=bool)
            lo[open_] = np.where(ok, mid, lo[open_])
            hi[open_] = np.where(ok, hi[open_], mid - 1)
        return [self.mix(i, x) if a else None for i, (x, a) in enumerate(zip(lo, alive))]


def _prefix_counts(have: list[int], n: int):
    """Every tuple of counts, each within what the instance has, summing to at most n."""
    if not have:
        yield ()
        return
    for k in range(min(have[0], n) + 1):
        for rest in _prefix_counts(have[1:], n - k):
            yield (k, *rest)


def accepts_mixes(oracle: Oracle, inst: PlacementInstance, rank: int, rates: np.ndarray, mixes) -> list[bool]:
    """Whether the oracle serves each mix (counts per rate) of adapters of rank `rank`, on some --max-loras."""
    return accepted(oracle, [([rank] * int(m.sum()), np.repeat(rates, m).tolist()) for m in mixes], inst.lengths)
