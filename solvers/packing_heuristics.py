"""First-fit and best-fit decreasing for bins with one or more dimensions."""

from __future__ import annotations

import numpy as np

from .bpp_instances import BinPackingInstance


def _order(inst: BinPackingInstance) -> np.ndarray:
    """Largest first: by size in one dimension, by summed relative size in several."""
    key = (inst.sizes / inst.capacity).sum(axis=1)
    return np.argsort(-key, kind="stable")


def _pack(inst: BinPackingInstance, best: bool) -> list[list[int]]:
    residual = np.empty((0, inst.dims), dtype=np.int64)
    bins: list[list[int]] = []
    for j in _order(inst):
        fits = np.flatnonzero((residual >= inst.sizes[j]).all(axis=1))
        if len(fits):
            if best:  # the bin left fullest (smallest summed relative residual) after the item goes in
                slack = ((residual[fits] - inst.sizes[j]) / inst.capacity).sum(axis=1)
                b = int(fits[np.argmin(slack)])
            else:
                b = int(fits[0])
            residual[b] -= inst.sizes[j]
            bins[b].append(int(j))
        else:
            residual = np.vstack([residual, inst.capacity - inst.sizes[j]])
            bins.append([int(j)])
    return bins


def first_fit_decreasing(inst: BinPackingInstance) -> list[list[int]]:
    return _pack(inst, best=False)


def best_fit_decreasing(inst: BinPackingInstance) -> list[list[int]]:
    return _pack(inst, best=True)


def check_packing(inst: BinPackingInstance, bins: list[list[int]]) -> None:
    """Raise ValueError unless every item is packed once and no bin overflows (checked independently of any solver)."""
    items = sorted(j for b in bins for j in b)
    if items != list(range(inst.n)):
        raise ValueError("packing does not hold every item exactly once")
    for b in bins:
        if (inst.sizes[b].sum(axis=0) > inst.capacity).any():
            raise ValueError("a bin overflows")
