"""Lower bounds on the number of bins: the continuous bound L1 and Martello and Toth's L2."""

from __future__ import annotations

import math

import numpy as np

from .bpp_instances import BinPackingInstance


def l1(inst: BinPackingInstance) -> int:
    """Every dimension's total size over its capacity, rounded up."""
    return max(math.ceil(int(inst.sizes[:, k].sum()) / int(inst.capacity[k])) for k in range(inst.dims))


def l2(inst: BinPackingInstance) -> int:
    """Martello-Toth L2 for one dimension: max over alpha of |J1|+|J2|+ceil((sum J3 - free space in J2 bins)/c)."""
    if inst.dims != 1:
        return l1(inst)
    c = int(inst.capacity[0])
    w = np.sort(inst.sizes[:, 0])[::-1]
    best = l1(inst)
    for alpha in np.unique(np.concatenate(([0], w[w <= c // 2]))):
        j1 = w > c - alpha
        j2 = (w > c / 2) & ~j1
        j3 = (w >= alpha) & (w <= c / 2)
        spare = int(j2.sum()) * c - int(w[j2].sum())
        extra = max(0, math.ceil((int(w[j3].sum()) - spare) / c))
        best = max(best, int(j1.sum() + j2.sum()) + extra)
    return best


def lower_bound(inst: BinPackingInstance) -> int:
    return l2(inst) if inst.dims == 1 else l1(inst)
