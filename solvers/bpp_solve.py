"""Solve one bin-packing instance with a named solver: bounds, a heuristic start, an exact model, an independent check."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from loraplace.twin.errors import ConfigError

from . import arcflow, colgen
from .bounds import lower_bound
from .bpp_instances import BinPackingInstance
from .packing_heuristics import best_fit_decreasing, check_packing, first_fit_decreasing

SOLVERS = ("ffd", "bfd", "cg", "cpsat", "cbc", "highs")
EXACT = ("cg", "cpsat", "cbc", "highs")  # prove bounds; all but cg finish with an integer model
DIVE_SHARE = 0.5  # of the time left after the LP bound, what the MIP back ends leave to the dive


@dataclass
class BppResult:
    instance: str
    solver: str
    bins: int
    lower_bound: int
    status: str  # optimal (bins == proven bound), feasible, time_limit
    time_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def _assignment_cpsat(inst: BinPackingInstance, lb: int, start: list[list[int]], time_limit: float) -> arcflow.ExactResult:
    """Vector packing: item-to-bin assignment with bins used in order, started from the heuristic packing."""
    from ortools.sat.python import cp_model

    n, ub = inst.n, len(start)
    model = cp_model.CpModel()
    x = [[model.NewBoolVar(f"x{j}_{b}") for b in range(ub)] for j in range(n)]
    y = [model.NewBoolVar(f"y{b}") for b in range(ub)]
    # Each item in exactly one bin.
    for j in range(n):
        model.AddExactlyOne(x[j])
    # Capacity in every dimension of every used bin.
    for b in range(ub):
        for k in range(inst.dims):
            model.Add(sum(int(inst.sizes[j, k]) * x[j][b] for j in range(n)) <= int(inst.capacity[k]) * y[b])
    # Bins are opened in order (breaks the symmetry between identical bins).
    for b in range(ub - 1):
        model.Add(y[b] >= y[b + 1])
    model.Add(sum(y) >= lb)
    model.Minimize(sum(y))
    for b, items in enumerate(start):
        for j in items:
            model.AddHint(x[j][b], 1)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit, 0.01)
    solver.parameters.num_workers = 2
    with arcflow.quiet_native_output():
        status = solver.Solve(model)
    bound = max(lb, int(np.ceil(solver.BestObjectiveBound() - 1e-6)))
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return arcflow.ExactResult(None, bound, False)
    bins = [[j for j in range(n) if solver.Value(x[j][b])] for b in range(ub)]
    return arcflow.ExactResult([b for b in bins if b], bound, status == cp_model.OPTIMAL)


def _one_dimension(inst: BinPackingInstance, solver: str, lb: int, best: list[list[int]],
                   deadline: float) -> tuple[list[list[int]], int]:
    """Column generation (LP bound and dive), then, for the MIP back ends, the arc-flow model on what is still open."""
    sizes = inst.sizes[:, 0]
    weights, demand = np.unique(sizes, return_counts=True)
    weights, demand = weights[::-1], demand[::-1]
    left = deadline - time.perf_counter()
    cg = colgen.solve(weights, demand, int(inst.capacity[0]), lb, len(best), left,
                      dive_share=1.0 if solver == "cg" else DIVE_SHARE)
    lb = max(lb, cg.bound)
    if cg.patterns is not None:
        bins = colgen.patterns_to_bins(cg.patterns, weights, sizes)
        check_packing(inst, bins)  # never trust a solver's packing unchecked
        best = bins if len(bins) < len(best) else best
    left = deadline - time.perf_counter()
    if solver == "cg" or len(best) <= lb or left < 0.5:
        return best, lb
    afg = arcflow.build_graph(sizes, int(inst.capacity[0]))
    if afg is None:
        return best, lb
    exact = {"cpsat": arcflow.solve_cpsat, "cbc": arcflow.solve_cbc, "highs": arcflow.solve_highs}[solver]
    return _adopt(inst, exact(afg, sizes, lb, best, deadline - time.perf_counter()), best, lb)


def _adopt(inst: BinPackingInstance, res: arcflow.ExactResult, best: list[list[int]], lb: int) -> tuple[list[list[int]], int]:
    """A model's packing (checked independently: never trust a solver's assignment) if no worse, and its bound."""
    if res.bins is not None:
        check_packing(inst, res.bins)
        if len(res.bins) <= len(best):
            best = res.bins
    return best, max(lb, len(res.bins) if res.proven and res.bins is not None else res.bound)


def solve(inst: BinPackingInstance, solver: str, time_limit: float = 10.0) -> BppResult:
    """Best packing found by `solver` within `time_limit` seconds, with the best lower bound proven."""
    if solver not in SOLVERS:
        raise ConfigError(f"unknown bin-packing solver '{solver}'; choose from {', '.join(SOLVERS)}")
    t0 = time.perf_counter()
    lb = lower_bound(inst)
    best = best_fit_decreasing(inst) if solver == "bfd" else first_fit_decreasing(inst)
    status = "feasible"  # a packing without a matching proven bound
    if solver in EXACT and len(best) > lb:
        if inst.dims == 1:
            best, lb = _one_dimension(inst, solver, lb, best, t0 + time_limit)
        elif solver == "cpsat":  # vectors: CBC, HiGHS and column generation model one dimension only
            best, lb = _adopt(inst, _assignment_cpsat(inst, lb, best, time_limit - (time.perf_counter() - t0)), best, lb)
        status = "time_limit"
    check_packing(inst, best)
    if len(best) == lb:
        status = "optimal"
    return BppResult(inst.name, solver, len(best), lb, status, round(time.perf_counter() - t0, 4))
