"""Exact placement with respect to the oracle: logic-based Benders decomposition.

Starting from the best heuristic placement with U GPUs, the master asks: can the adapters go on U - 1
GPUs under a relaxation that never cuts off an oracle-feasible GPU (the capacity table: offered load
per rank class and adapter count)? Each GPU of its answer is checked with the oracle; a GPU that fails
yields a no-good cut on a small subset of its adapters that still fails (more adapters never help, so
every GPU holding that subset fails too), and the master is asked again. An answer whose GPUs all pass
becomes the new best (and U - 2 is asked next); a master proven infeasible proves the best optimal.

Adapters of one (rank, rate) class are interchangeable to the oracle, which sees a multiset, and to the
relaxation, so the master counts adapters per class instead of placing each one: n[g,c] of the N_c
adapters of class c (rank k_c, offered load l_c) go on GPU g. Paper-style instances have a handful of
classes, so the master stays small however many adapters there are.

    find n, z, w, y  on G = U - 1 GPUs, all used
    s.t. sum_g n[g,c] = N_c                                 every adapter on one GPU
         sum_r z[g,r] = 1                                   each GPU has one rank class
         n[g,c] <= N_c sum_{r >= k_c} z[g,r]                an adapter needs a class at least its rank
         sum_i w[g,r,i] = z[g,r]                            a GPU of class r picks one adapter-count bracket
         sum_i b_i w <= sum_c n[g,c] <= sum_i e_i w         its adapters lie within that bracket
         sum_c l_c n[g,c] <= sum_{r,i} L[r,i] w[g,r,i]      offered tokens/s within the bracket's bound
         a_k sum_c l_c n[g,c] <= b_k sum_c n[g,c] + c_k     load under the table's concave envelope (redundant)
         sum_c l_c n[g,c] >= sum_c l_c n[g+1,c]             identical GPUs ordered by load
         sum_{(k,t) in T} y[g,k,t,m] <= |T| - 1             no-good cuts from the oracle, on counts
         (U - m + 1) y[g,k,t,m] >= n[g,k,>=t] - m + 1       y = 1 once g holds m adapters of rank k, rate >= t

A failing subset S has, for each rank k and each of its rates t, m adapters of rank k and rate >= t.
A GPU meeting all those counts holds S with some rates grown (match S's heaviest adapters first), which
fails too under the capacity table's assumption that a growing rate never helps. So one failing subset
cuts every such GPU, not only S itself (n[g,k,>=t] sums the classes of rank k and rate >= t; U is how
many the instance has); a cut with one (k, t) is a plain count limit.
"""

from __future__ import annotations

import math
import time
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


@dataclass(frozen=True)
class AdapterClasses:
    """The instance's adapters grouped by (rank, rate): what the oracle and the relaxation tell apart."""

    members: tuple[tuple[int, ...], ...]  # adapter indices per class, in order of first appearance

    @classmethod
    def of_instance(cls, inst: PlacementInstance) -> "AdapterClasses":
        groups: dict[tuple[int, float], list[int]] = {}
        for i, a in enumerate(inst.adapters):
            groups.setdefault((a.rank, a.rate), []).append(i)
        return cls(tuple(tuple(m) for m in groups.values()))


def _build(backend, inst: PlacementInstance, table: CapacityTable, classes: AdapterClasses, gpus: int,
           cuts: list[list[int]]):
    C, G, R = range(len(classes.members)), range(gpus), table.classes
    size = [len(m) for m in classes.members]
    rank = [inst.adapters[m[0]].rank for m in classes.members]
    rate = [inst.adapters[m[0]].rate for m in classes.members]
    load = [math.floor(inst.load(inst.adapters[m[0]])) for m in classes.members]  # rounded down: stays valid
    n = {(g, c): backend.int_var(f"n_{g}_{c}", 0, size[c]) for g in G for c in C}
    z = {(g, r): backend.bool_var(f"z_{g}_{r}") for g in G for r in R}
    # Every adapter on exactly one GPU.
    for c in C:
        backend.add(backend.total(n[g, c] for g in G) == size[c])
    # Each GPU has exactly one rank class (its --max-lora-rank).
    for g in G:
        backend.add(backend.total(z[g, r] for r in R) == 1)
    # An adapter needs a rank class at least its own rank.
    for (g, c), v in n.items():
        backend.add(v <= size[c] * backend.total(z[g, r] for r in R if r >= rank[c]))
    # Capacity table: a used GPU of class r picks one adapter-count bracket i (counts b_i .. b_{i+1} - 1).
    w = {(g, r, i): backend.bool_var(f"w_{g}_{r}_{i}") for g in G for r in R for i in range(len(table.brackets[r]))}
    for g in G:
        for r in R:
            backend.add(backend.total(w[g, r, i] for i in range(len(table.brackets[r]))) == z[g, r])
    # Adapters per GPU within its bracket, and at most the class's maximum.
    for g in G:
        count = backend.total(n[g, c] for c in C)
        backend.add(count >= backend.total(b * w[g, r, i] for r in R for i, b in enumerate(table.brackets[r])))
        backend.add(count <= backend.total(_bracket_end(table, r, i) * w[g, r, i]
                                           for r in R for i in range(len(table.brackets[r]))))
    # Offered tokens/s per GPU within the bound of its bracket.
    offered = {g: backend.total(load[c] * n[g, c] for c in C) for g in G}
    for g in G:
        backend.add(offered[g] <= backend.total(math.ceil(table.max_load[r][i]) * w[g, r, i]
                                                for r in R for i in range(len(table.brackets[r]))))
    # Redundant: offered load under the concave envelope of the table's bounds over adapter counts, one line per
    # segment, so a solver's linear relaxation sees that GPUs holding few or many adapters carry less.
    for dn, dl, c0 in table.envelope():
        for g in G:
            backend.add(dn * offered[g] <= dl * backend.total(n[g, c] for c in C) + c0)
    # Identical GPUs ordered by offered load.
    for g in G[:-1]:
        backend.add(offered[g] >= offered[g + 1])
    # No-good cuts: no GPU holds, per rank and for each rate of a subset the oracle rejected, at least as many
    # adapters of that rank and that rate or more as the subset (it would hold the subset with rates grown).
    reached = {}  # (g, k, t, m) -> y, true once GPU g holds m adapters of rank k and rate >= t
    for subset in cuts:
        need = _heavier_counts([inst.adapters[a] for a in subset])
        heavier = {(k, t): [c for c in C if rank[c] == k and rate[c] >= t] for k, t, _ in need}
        for g in G:
            held = {kt: backend.total(n[g, c] for c in cs) for kt, cs in heavier.items()}
            if len(need) == 1:
                (k, t, m), = need
                backend.add(held[k, t] <= m - 1)
                continue
            for k, t, m in need:
                if (g, k, t, m) not in reached:
                    y = reached[g, k, t, m] = backend.bool_var(f"y_{g}_{len(reached)}")
                    most = sum(size[c] for c in heavier[k, t])
                    backend.add((most - m + 1) * y >= held[k, t] - (m - 1))
            backend.add(backend.total(reached[g, k, t, m] for k, t, m in need) <= len(need) - 1)


def _heavier_counts(adapters) -> list[tuple[int, float, int]]:
    """(rank, rate, m) per rank and distinct rate of `adapters`: m of them have that rank and that rate or more.
    A GPU meeting every count holds a copy of the set with some rates grown (match the heaviest first)."""
    out = []
    for k in sorted({a.rank for a in adapters}):
        rates = sorted((a.rate for a in adapters if a.rank == k), reverse=True)
        out += [(k, t, sum(r >= t for r in rates)) for t in sorted(set(rates), reverse=True)]
    return out


def _contents(values: dict, classes: AdapterClasses, inst: PlacementInstance, gpus: int) -> list[list[Share]]:
    """The master's counts turned into adapters: each class's members dealt out to the GPUs in order."""
    left = [list(m) for m in classes.members]
    out = []
    for g in range(gpus):
        shares = []
        for c, members in enumerate(left):
            take = values[f"n_{g}_{c}"]
            shares += [Share(inst.adapters[a]) for a in members[:take]]
            del members[:take]
        out.append(shares)
    return out


def make_backend(name: str):
    return CpSatBackend() if name == "cpsat" else PulpBackend(name.split("-", 1)[1])


def benders(inst: PlacementInstance, oracle: Oracle, table: CapacityTable, start: list[GpuPlan], lower: int,
            backend_name: str, time_limit: float) -> BendersResult:
    """Improve on `start` (oracle-feasible) until a master proves it optimal or time runs out."""
    t0 = time.perf_counter()
    best, lb, cuts, it = start, lower, [], 0
    index = {a.id: i for i, a in enumerate(inst.adapters)}
    classes = AdapterClasses.of_instance(inst)
    while lb < len(best):
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0.5:
            break
        it += 1
        backend = make_backend(backend_name)
        _build(backend, inst, table, classes, len(best) - 1, cuts)
        answer = backend.solve(left)
        if answer.infeasible:  # no placement on one GPU fewer passes even the relaxation and the cuts
            lb = len(best)
            break
        if answer.values is None:  # time ran out
            break
        contents = _contents(answer.values, classes, inst, len(best) - 1)
        plans = fit_many(oracle, contents, inst.lengths)
        failed = [c for c, p in zip(contents, plans) if p is None]
        if not failed:
            best = plans
            continue
        for c in failed:
            cuts.append(sorted(index[s.adapter.id] for s in minimal_failing(oracle, c, inst)))
    return BendersResult(best, lb, lb >= len(best), it, cuts)
