"""What one GPU can hold at most, per rank class and adapter count, read off the oracle; and the bound it implies.

Assumptions (true of the twin: more adapters or more load never make a GPU serve better): a GPU that
starves keeps starving when an adapter is added or a rate grows. Under them, `max_adapters[r]` (the
most adapters of the instance's smallest rate one GPU of rank class r can serve) is an upper bound, and
so is `max_load[r][i]`, the largest feasible offered load with at least `brackets[i]` adapters, found
on two mixes of rates (equal, and one adapter carrying half the load), no rate above the instance's
largest, with the oracle's margin for other mixes: an assumption, stated here because the exact
strategies' optimality claims rest on it. A bracket's bound never exceeds what the instance's heaviest
adapters could offer at that count. The exact strategies' master problem uses the
whole table; the simple bound below uses its first column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loraplace.twin.entities import Adapter
from loraplace.twin.oracle import Oracle

from .bounds import l2
from .bpp_instances import BinPackingInstance
from .gpu_fit import fit_many
from .placement import PlacementInstance, Share

SHAPES = ("equal", "one-heavy")
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

    def lower_bound(self, inst: PlacementInstance) -> float:
        """GPUs any feasible placement needs: adapters of rank >= r only fit GPUs of class >= r, which hold less.
        Infinite when some rank class can hold nothing."""
        ranks = np.array([a.rank for a in inst.adapters])
        loads = np.array([inst.load(a) for a in inst.adapters])
        best = 1
        for r in self.classes:
            sel = ranks >= r
            if not sel.any():
                continue
            if self.max_adapters[r] == 0 or self.load_bound(r) <= 0:
                return math.inf
            # Loads rounded down and bounds up, as in the master problem: a bound equal to the load (the heaviest
            # adapters' sum, added in another order) must not round up to one GPU more.
            best = max(best, math.ceil(sel.sum() / self.max_adapters[r]),
                       math.ceil(int(np.floor(loads[sel]).sum()) / math.ceil(self.load_bound(r))))
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
            shares = [Share(Adapter(f"probe{i}", r, x)) for i, x in enumerate(rs)]
            return fit_many(oracle, [shares], inst.lengths)[0] is not None

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
        probed = np.minimum.accumulate([oracle.shape_margin(b, e) * max(probe(s, b) for s in SHAPES)
                                        for b, e in zip(starts[r], ends)])
        # ...and never more than the heaviest adapters of the instance can offer at the bracket's largest count.
        loads[r] = tuple(float(min(p, heaviest[min(e, len(rates)) - 1])) for p, e in zip(probed, ends))
    return CapacityTable(classes, max_adapters, starts, loads)
