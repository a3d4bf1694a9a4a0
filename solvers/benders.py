"""Exact placement with respect to the oracle: logic-based Benders decomposition.

Starting from the best heuristic placement with U GPUs, the master asks: can the adapters go on U - 1
GPUs under a relaxation that never cuts off an oracle-feasible GPU (the capacity table: offered load
per rank class and adapter count)? Each GPU of its answer is checked with the oracle; a GPU that fails
yields a no-good cut on a small subset of its adapters that still fails (more adapters never help, so
every GPU holding that subset fails too), and the master is asked again. An answer whose GPUs all pass
becomes the new best (and U - 2 is asked next); a master proven infeasible proves the best optimal.

    find x, z, w  on G = U - 1 GPUs, all used
    s.t. sum_g x[a,g] = 1                                   every adapter on one GPU
         sum_r z[g,r] = 1                                   each GPU has one rank class
         x[a,g] <= sum_{r >= rank a} z[g,r]                 an adapter needs a class at least its rank
         sum_i w[g,r,i] = z[g,r]                            a GPU of class r picks one adapter-count bracket
         sum_i b_i w <= sum_a x[a,g] <= sum_i e_i w         its adapters lie within that bracket
         sum_a load_a x[a,g] <= sum_{r,i} L[r,i] w[g,r,i]   offered tokens/s within the bracket's bound
         x[a,g] = 0 for g > a                               identical GPUs ordered by their first adapter
         sum_{c in T} y[g,c,m_c] <= |T| - 1                 no-good cuts from the oracle, lifted to classes
         (N[g,c] - m + 1) y[g,c,m] >= n[g,c] - m + 1        y = 1 once GPU g holds m adapters of class c

Adapters of one (rank, rate) class are interchangeable to the oracle, which sees a multiset, so a failing
subset S cuts every GPU holding at least as many adapters of each of its classes c in T as S does (m_c of
N[g,c] that g may hold; n[g,c] of them on g), not only S itself: a cut on the adapters alone would let the
master swap in an identical adapter, once per adapter. A cut with one class is a plain count limit.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

from loraplace.twin.oracle import Oracle

from .capacity import CapacityTable
from .gpu_fit import fit, fit_many
from .mip_backends import CpSatBackend, PulpBackend
from .placement import GpuPlan, PlacementInstance, Share


@dataclass
class BendersResult:
    plans: list[GpuPlan]
    lower_bound: int
    optimal: bool
    iterations: int = 0
    cuts: list = field(default_factory=list)


def minimal_failing(oracle: Oracle, shares: list[Share], inst: PlacementInstance) -> list[Share]:
    """A smaller subset that still fails the oracle: drop chunks of the lightest adapters while it keeps failing."""
    core = sorted(shares, key=lambda s: s.rate)
    chunk = len(core) // 2
    while chunk >= 1:
        i = 0
        while i < len(core) and len(core) > 1:
            trial = core[:i] + core[i + chunk:]
            if trial and fit(oracle, trial, inst.lengths) is None:
                core = trial
            else:
                i += chunk
        chunk //= 2
    return core


def _bracket_end(table: CapacityTable, r: int, i: int) -> int:
    """Most adapters in bracket i of class r."""
    b = table.brackets[r]
    return b[i + 1] - 1 if i + 1 < len(b) else table.max_adapters[r]


def _build(backend, inst: PlacementInstance, table: CapacityTable, gpus: int, cuts: list[list[int]]):
    A, G, R = range(len(inst.adapters)), range(gpus), table.classes
    rank = [a.rank for a in inst.adapters]
    load = [math.floor(inst.load(a)) for a in inst.adapters]  # rounded down: the relaxation stays valid
    z = {(g, r): backend.bool_var(f"z_{g}_{r}") for g in G for r in R}
    x = {(a, g): backend.bool_var(f"x_{a}_{g}") for a in A for g in G if g <= a}
    # Every adapter on exactly one GPU.
    for a in A:
        backend.add(backend.total(x[a, g] for g in G if g <= a) == 1)
    # Each GPU has exactly one rank class (its --max-lora-rank).
    for g in G:
        backend.add(backend.total(z[g, r] for r in R) == 1)
    # An adapter needs a rank class at least its own rank.
    for (a, g), v in x.items():
        backend.add(v <= backend.total(z[g, r] for r in R if r >= rank[a]))
    # Capacity table: a used GPU of class r picks one adapter-count bracket i (counts b_i .. b_{i+1} - 1).
    w = {(g, r, i): backend.bool_var(f"w_{g}_{r}_{i}") for g in G for r in R for i in range(len(table.brackets[r]))}
    for g in G:
        for r in R:
            backend.add(backend.total(w[g, r, i] for i in range(len(table.brackets[r]))) == z[g, r])
    # Adapters per GPU within its bracket, and at most the class's maximum.
    for g in G:
        count = backend.total(x[a, g] for a in A if g <= a)
        backend.add(count >= backend.total(b * w[g, r, i] for r in R for i, b in enumerate(table.brackets[r])))
        backend.add(count <= backend.total(_bracket_end(table, r, i) * w[g, r, i]
                                           for r in R for i in range(len(table.brackets[r]))))
    # Offered tokens/s per GPU within the bound of its bracket.
    for g in G:
        backend.add(backend.total(load[a] * x[a, g] for a in A if g <= a)
                    <= backend.total(math.ceil(table.max_load[r][i]) * w[g, r, i]
                                     for r in R for i in range(len(table.brackets[r]))))
    # No-good cuts: no GPU holds as many adapters of each class as a subset the oracle rejected.
    kind: dict[tuple[int, float], int] = {}  # (rank, rate) -> class
    cls = [kind.setdefault((rank[a], inst.adapters[a].rate), len(kind)) for a in A]
    of_class: dict[int, list[int]] = {}
    for a in A:
        of_class.setdefault(cls[a], []).append(a)
    reached = {}  # (g, c, m) -> y, true once GPU g holds m adapters of class c
    for subset in cuts:
        need = Counter(cls[a] for a in subset)
        for g in G:
            held = {c: [x[a, g] for a in of_class[c] if g <= a] for c in need}
            if any(len(held[c]) < m for c, m in need.items()):
                continue  # g cannot hold that many of some class
            if len(need) == 1:
                (c, m), = need.items()
                backend.add(backend.total(held[c]) <= m - 1)
                continue
            for c, m in need.items():
                if (g, c, m) not in reached:
                    y = reached[g, c, m] = backend.bool_var(f"y_{g}_{c}_{m}")
                    backend.add((len(held[c]) - m + 1) * y >= backend.total(held[c]) - (m - 1))
            backend.add(backend.total(reached[g, c, m] for c, m in need.items()) <= len(need) - 1)
    return x


def make_backend(name: str):
    return CpSatBackend() if name == "cpsat" else PulpBackend(name.split("-", 1)[1])


def benders(inst: PlacementInstance, oracle: Oracle, table: CapacityTable, start: list[GpuPlan], lower: int,
            backend_name: str, time_limit: float) -> BendersResult:
    """Improve on `start` (oracle-feasible) until a master proves it optimal or time runs out."""
    t0 = time.perf_counter()
    best, lb, cuts, it = start, lower, [], 0
    index = {a.id: i for i, a in enumerate(inst.adapters)}
    while lb < len(best):
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0.5:
            break
        it += 1
        backend = make_backend(backend_name)
        x = _build(backend, inst, table, len(best) - 1, cuts)
        answer = backend.solve(left)
        if answer.infeasible:  # no placement on one GPU fewer passes even the relaxation and the cuts
            lb = len(best)
            break
        if answer.values is None:  # time ran out
            break
        groups: dict[int, list[Share]] = {}
        for (a, g), _ in x.items():
            if answer.values[f"x_{a}_{g}"]:
                groups.setdefault(g, []).append(Share(inst.adapters[a]))
        contents = list(groups.values())
        plans = fit_many(oracle, contents, inst.lengths)
        failed = [c for c, p in zip(contents, plans) if p is None]
        if not failed:
            best = plans
            continue
        for c in failed:
            cuts.append(sorted(index[s.adapter.id] for s in minimal_failing(oracle, c, inst)))
    return BendersResult(best, lb, lb >= len(best), it, cuts)
