"""Bin packing: readers, bounds, heuristics and exact back ends; never a claim of optimality the known optima contradict."""

import numpy as np
import pytest

import itertools

from loraplace.solvers import colgen
from loraplace.solvers.bounds import l1, l2
from loraplace.solvers.bpp_bench import read_optima
from loraplace.solvers.bpp_instances import BinPackingInstance, read_bpp, read_instance, read_vbp
from loraplace.solvers.bpp_solve import SOLVERS, solve
from loraplace.solvers.packing_heuristics import best_fit_decreasing, check_packing, first_fit_decreasing
from loraplace.twin.errors import ConfigError, InputFileError


def inst(weights, c):
    return BinPackingInstance("t", np.array([c]), np.array(weights).reshape(-1, 1))


def test_l2_beats_l1_on_large_items():
    # six items just over half the bin: continuous bound 4, but no two share a bin
    i = inst([51] * 6, 100)
    assert l1(i) == 4 and l2(i) == 6


def test_heuristics_pack_validly():
    rng = np.random.default_rng(0)
    i = inst(rng.integers(1, 100, 200), 100)
    for pack in (first_fit_decreasing(i), best_fit_decreasing(i)):
        check_packing(i, pack)
        assert len(pack) >= l2(i)
    with pytest.raises(ValueError):
        check_packing(i, [[0, 0]])


@pytest.mark.parametrize("solver", ["cg", "cpsat", "cbc", "highs"])
def test_exact_solvers_find_the_optimum_ffd_misses(solver):
    # three full bins exist ({6,4}, {5,3,2}, {4,2,2,2}); FFD needs four
    j = inst([6, 5, 4, 4, 3, 2, 2, 2, 2], 10)
    assert len(first_fit_decreasing(j)) > 3
    res = solve(j, solver, time_limit=20)
    assert res.bins == 3 and res.status == "optimal" and res.lower_bound == 3


def test_pricing_finds_the_best_pattern():
    """The bounded knapsack that prices patterns against exhaustive enumeration."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        m = int(rng.integers(2, 5))
        weights = np.sort(rng.choice(np.arange(5, 40), m, replace=False))[::-1]
        limit = rng.integers(0, 4, m)
        values = rng.uniform(-0.2, 1.0, m)
        cap = int(rng.integers(30, 90))
        brute = max(sum(c * v for c, v in zip(counts, values))
                    for counts in itertools.product(*(range(int(d) + 1) for d in limit))
                    if sum(c * w for c, w in zip(counts, weights)) <= cap)
        best, counts = colgen.price(weights, cap, limit, values)
        assert best == pytest.approx(max(brute, 0.0))
        assert (counts <= limit).all() and int(counts @ weights) <= cap
        assert float(counts @ values) == pytest.approx(best)


def test_column_generation_bound_and_dive_against_the_exact_model():
    """On random instances: the LP bound never exceeds the optimum CP-SAT proves, and the dive's packing is valid."""
    rng = np.random.default_rng(5)
    for _ in range(6):
        i = inst(rng.integers(20, 60, 24), 100)
        exact = solve(i, "cpsat", time_limit=20)
        assert exact.status == "optimal"
        res = solve(i, "cg", time_limit=10)
        assert res.lower_bound <= exact.bins <= res.bins
        sizes = i.sizes[:, 0]
        weights, demand = np.unique(sizes, return_counts=True)
        cg = colgen.solve(weights[::-1], demand[::-1], 100, l2(i), len(first_fit_decreasing(i)) + 1, 10)
        if cg.patterns is not None:
            check_packing(i, colgen.patterns_to_bins(cg.patterns, weights[::-1], sizes))


def test_vector_packing_with_cpsat():
    v = BinPackingInstance("v", np.array([10, 10]), np.array([[6, 1], [5, 5], [4, 9], [1, 4], [5, 1]]))
    res = solve(v, "cpsat", time_limit=10)
    assert res.status == "optimal" and res.bins == 3


def test_unknown_solver():
    with pytest.raises(ConfigError, match="unknown bin-packing solver"):
        solve(inst([1], 2), "magic")


def test_malformed_instances(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("3\n10\n4\n5\n")
    with pytest.raises(InputFileError, match="header says 3 items"):
        read_bpp(f)
    f.write_text("2\n10\n4\n11\n")
    with pytest.raises(InputFileError, match="fit an empty bin"):
        read_bpp(f)
    f.write_text("x y")
    with pytest.raises(InputFileError, match="integers"):
        read_bpp(f)
    v = tmp_path / "a.vbp"
    v.write_text("2\n10 10\n3\n1 2 1\n")
    with pytest.raises(InputFileError, match="layout"):
        read_vbp(v)


def sample_of_every_set(shared, per_set=1):
    root = shared / "instances-public"
    optima = read_optima(root / "optima.csv")
    seen, picked = {}, []
    for rel, known in sorted(optima.items(), key=lambda kv: (kv[1].set, kv[0])):
        if seen.get(known.set, 0) < per_set:
            seen[known.set] = seen.get(known.set, 0) + 1
            picked.append((root / rel, known))
    return picked


def test_never_claims_optimality_the_known_optima_contradict(shared):
    """A sample of every set, every back end: a claimed optimum equals the known one; bounds never exceed it."""
    checked = 0
    for path, known in sample_of_every_set(shared):
        try:
            i = read_instance(path)
        except InputFileError:
            continue
        for solver in SOLVERS:
            res = solve(i, solver, time_limit=2)
            assert res.lower_bound <= known.optimum, (path.name, solver)
            if known.proven:
                assert res.bins >= known.optimum, (path.name, solver)
            if res.status == "optimal":
                assert res.bins == known.optimum or (not known.proven and res.bins < known.optimum), (path.name, solver)
            checked += 1
    assert checked >= 5 * 10
