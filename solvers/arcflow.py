"""Exact one-dimensional bin packing: Valério de Carvalho's arc-flow model, solved by CP-SAT, PuLP/CBC or HiGHS.

A bin is a path from 0 to the capacity in a graph whose nodes are partial fillings; an arc adds one
item (sizes non-increasing along a path, which removes symmetric paths) or wastes the rest of the
bin. The model sends one unit of flow per bin and covers every item's demand.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import networkx as nx
import numpy as np

LOSS = -1  # item type of a loss arc


@dataclass(frozen=True)
class ArcFlowGraph:
    graph: nx.MultiDiGraph  # edges carry item=type index or LOSS
    weights: np.ndarray  # distinct sizes, decreasing
    demand: np.ndarray  # items of each size
    capacity: int


def build_graph(sizes: np.ndarray, capacity: int, max_work: int = 4_000_000) -> ArcFlowGraph | None:
    """The symmetry-reduced arc-flow graph, or None when building it would exceed `max_work` node-type pairs."""
    weights, demand = np.unique(sizes, return_counts=True)
    weights, demand = weights[::-1], demand[::-1]
    m = len(weights)
    if (capacity + 1) * m > max_work:
        return None
    lowest = np.full(capacity + 1, m, dtype=np.int64)  # smallest type index allowed next from each node
    lowest[0] = 0
    g = nx.MultiDiGraph()
    for u in range(capacity):
        if lowest[u] == m:
            continue
        for i in range(int(lowest[u]), m):
            v = u + int(weights[i])
            if v <= capacity:
                g.add_edge(u, v, item=i)
                lowest[v] = min(lowest[v], i)
        if u > 0:
            g.add_edge(u, capacity, item=LOSS)  # the rest of the bin stays empty
    return ArcFlowGraph(g, weights, demand, capacity)


@contextlib.contextmanager
def quiet_native_output():
    """Silence C-level stdout and stderr around a solver call (HiGHS prints a banner whatever msg says, CP-SAT its LNS notes)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, target in zip(saved, (1, 2)):
                os.dup2(fd, target)
                os.close(fd)


def _highs_model(afg: ArcFlowGraph, lb: float = 0.0, ub: float | None = None):
    """The arc-flow model as a column-wise sparse HiGHS LP: inner-node conservation rows, demand rows, a bins row."""
    import highspy

    g = afg.graph
    inner = {v: r for r, v in enumerate(v for v in g.nodes if v not in (0, afg.capacity))}
    bins_row = len(inner) + len(afg.demand)
    start, index, value, cost, upper = [0], [], [], [], []
    for u, v, d in g.edges(data=True):
        entries = []
        if v in inner:
            entries.append((inner[v], 1.0))  # flow into v
        if u in inner:
            entries.append((inner[u], -1.0))  # flow out of u
        if d["item"] != LOSS:
            entries.append((len(inner) + d["item"], 1.0))  # covers one item of this size
        if u == 0:
            entries.append((bins_row, 1.0))  # opens a bin
        for r, a in sorted(entries):
            index.append(r)
            value.append(a)
        start.append(len(index))
        cost.append(1.0 if u == 0 else 0.0)
        upper.append(float(afg.demand[d["item"]]) if d["item"] != LOSS else highspy.kHighsInf)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), bins_row + 1
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, [0.0] * len(cost), upper
    # Conservation (= 0), demand (>= items of each size), and the number of bins within known bounds.
    lp.row_lower_ = [0.0] * len(inner) + [float(b) for b in afg.demand] + [float(lb)]
    lp.row_upper_ = [0.0] * len(inner) + [highspy.kHighsInf] * len(afg.demand) + [highspy.kHighsInf if ub is None else float(ub)]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = start, index, value
    return lp


def _run_highs(lp, time_limit: float, **options):
    import highspy

    with quiet_native_output():
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", max(float(time_limit), 0.01))
        for k, v in options.items():
            h.setOptionValue(k, v)
        h.passModel(lp)
        h.run()
    return h


def solve_highs(afg: ArcFlowGraph, sizes: np.ndarray, lb: int, start: list[list[int]], time_limit: float) -> ExactResult:
    """The integer arc-flow model in HiGHS through highspy, built column-wise as a sparse matrix."""
    import highspy

    lp = _highs_model(afg, lb, len(start))
    lp.integrality_ = [highspy.HighsVarType.kInteger] * lp.num_col_
    h = _run_highs(lp, time_limit, threads=2)
    status, info = h.getModelStatus(), h.getInfo()
    if info.primal_solution_status != 2:  # 2 = feasible
        return ExactResult(None, lb, False)
    values = h.getSolution().col_value
    flow = {e: values[k] for k, e in enumerate(afg.graph.edges(keys=True))}
    if any(abs(f - round(f)) > 1e-6 or f < -1e-6 for f in flow.values()):
        return ExactResult(None, lb, False)
    bound = max(lb, int(np.ceil(info.mip_dual_bound - 1e-6))) if np.isfinite(info.mip_dual_bound) else lb
    return _result(afg, flow, sizes, bound, status == highspy.HighsModelStatus.kOptimal)


def packing_flow(afg: ArcFlowGraph, sizes: np.ndarray, bins: list[list[int]]) -> dict:
    """The flow of a packing: each bin's items in non-increasing size order form a path (a start for the solvers)."""
    type_of = {int(w): i for i, w in enumerate(afg.weights)}
    flow: dict = {}
    for b in bins:
        u = 0
        for w in sorted((int(sizes[j]) for j in b), reverse=True):
            e = next(e for e in afg.graph.out_edges(u, keys=True) if afg.graph.edges[e]["item"] == type_of[w])
            flow[e] = flow.get(e, 0) + 1
            u = e[1]
        if u != afg.capacity:
            e = next(e for e in afg.graph.out_edges(u, keys=True) if afg.graph.edges[e]["item"] == LOSS)
            flow[e] = flow.get(e, 0) + 1
    return flow


@dataclass
class ExactResult:
    bins: list[list[int]] | None  # item indices per bin, or None when no solution was found
    bound: int  # proven lower bound on the number of bins
    proven: bool  # the solver proved its solution optimal


def item_pool(weights: np.ndarray, sizes: np.ndarray) -> dict[int, list]:
    """Indices of the items of each size, to hand out one by one as packings name sizes."""
    return {int(w): list(np.flatnonzero(sizes == w)) for w in weights}


def _paths_to_bins(afg: ArcFlowGraph, flow: dict, sizes: np.ndarray) -> list[list[int]]:
    """Decompose an integer flow into bins and hand out concrete items by size."""
    remaining = {e: int(round(v)) for e, v in flow.items() if round(v) > 0}
    out_edges: dict[int, list] = {}
    for (u, v, k) in remaining:
        out_edges.setdefault(u, []).append((u, v, k))
    pool = item_pool(afg.weights, sizes)
    bins = []
    while any(remaining.get(e, 0) > 0 for e in out_edges.get(0, [])):
        node, items = 0, []
        while node != afg.capacity:
            e = next((e for e in out_edges.get(node, []) if remaining[e] > 0), None)
            if e is None:
                raise ValueError("solver flow is not conserved")
            remaining[e] -= 1
            item = afg.graph.edges[e]["item"]
            if item != LOSS and pool[int(afg.weights[item])]:
                items.append(int(pool[int(afg.weights[item])].pop()))
            node = e[1]
        if items:
            bins.append(items)
    return bins


def _result(afg: ArcFlowGraph, flow: dict, sizes: np.ndarray, bound: int, proven: bool) -> ExactResult:
    """Bins from a solver's flow; a flow that does not decompose counts as no solution."""
    try:
        return ExactResult(_paths_to_bins(afg, flow, sizes), bound, proven)
    except ValueError:
        return ExactResult(None, bound, False)


def solve_cpsat(afg: ArcFlowGraph, sizes: np.ndarray, lb: int, start: list[list[int]], time_limit: float,
                workers: int = 2) -> ExactResult:
    from ortools.sat.python import cp_model

    g, model, ub = afg.graph, cp_model.CpModel(), len(start)
    x = {e: model.NewIntVar(0, int(afg.demand[d["item"]]) if d["item"] != LOSS else ub, f"x{e}")
         for e, d in ((e, g.edges[e]) for e in g.edges(keys=True))}
    bins = sum(x[e] for e in g.out_edges(0, keys=True))
    # Flow conservation at every inner node.
    for v in g.nodes:
        if v not in (0, afg.capacity):
            model.Add(sum(x[e] for e in g.in_edges(v, keys=True)) == sum(x[e] for e in g.out_edges(v, keys=True)))
    # Every item is packed: arcs of each size cover its demand.
    by_item: dict[int, list] = {}
    for e in g.edges(keys=True):
        by_item.setdefault(g.edges[e]["item"], []).append(x[e])
    for i, d in enumerate(afg.demand):
        model.Add(sum(by_item.get(i, [])) >= int(d))
    # The number of bins lies between the bounds we already know.
    model.Add(bins >= lb)
    model.Add(bins <= ub)
    model.Minimize(bins)
    hint = packing_flow(afg, sizes, start)
    for e, var in x.items():
        model.AddHint(var, hint.get(e, 0))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit, 0.01)
    solver.parameters.num_workers = workers
    solver.parameters.linearization_level = 2  # the arc-flow LP is what proves these models; let CP-SAT use all of it
    with quiet_native_output():
        status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ExactResult(None, max(lb, int(np.ceil(solver.BestObjectiveBound() - 1e-6))), False)
    return _result(afg, {e: solver.Value(v) for e, v in x.items()}, sizes,
                   max(lb, int(np.ceil(solver.BestObjectiveBound() - 1e-6))), status == cp_model.OPTIMAL)


def solve_cbc(afg: ArcFlowGraph, sizes: np.ndarray, lb: int, start: list[list[int]], time_limit: float) -> ExactResult:
    """The integer arc-flow model in PuLP, solved by the CBC that ships with PuLP."""
    import pulp

    g, ub = afg.graph, len(start)
    prob = pulp.LpProblem("arcflow", pulp.LpMinimize)
    x = {e: prob.add_variable(f"x_{e[0]}_{e[1]}_{e[2]}", 0, None, cat="Integer") for e in g.edges(keys=True)}
    bins = pulp.lpSum(x[e] for e in g.out_edges(0, keys=True))
    prob += bins
    # Flow conservation at every inner node.
    for v in g.nodes:
        if v not in (0, afg.capacity):
            prob += pulp.lpSum(x[e] for e in g.in_edges(v, keys=True)) == pulp.lpSum(x[e] for e in g.out_edges(v, keys=True))
    # Every item is packed.
    by_item: dict[int, list] = {}
    for e in g.edges(keys=True):
        by_item.setdefault(g.edges[e]["item"], []).append(x[e])
    for i, d in enumerate(afg.demand):
        prob += pulp.lpSum(by_item.get(i, [])) >= int(d)
    # Known bounds on the number of bins.
    prob += bins >= lb
    prob += bins <= ub
    limit = max(time_limit, 1.0)
    with warnings.catch_warnings():  # the bundled CBC binary is deprecated in PuLP 3.3, still the one that ships
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=limit, threads=2)
    with quiet_native_output():
        prob.solve(solver)
    # PuLP reports "Optimal" after a time limit whenever it holds a solution: only sol_status says proven.
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return ExactResult(None, lb, False)
    flow = {e: (v.value() or 0.0) for e, v in x.items()}
    if any(abs(f - round(f)) > 1e-6 or f < -1e-6 for f in flow.values()):
        return ExactResult(None, lb, False)
    return _result(afg, flow, sizes, lb, prob.sol_status == pulp.LpSolutionOptimal)
