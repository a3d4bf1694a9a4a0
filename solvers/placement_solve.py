"""Run placement strategies by name on one instance, with a shared oracle, bound and twin check."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from loraplace.twin.errors import ConfigError, LoraplaceError
from loraplace.twin.client import PortLimitedClient
from loraplace.twin.entities import vllm_max_lora_rank
from loraplace.twin.oracle import CHECK_SEEDS, PLANNING_CLIENT, WINDOW_S, GpuQuery, Oracle, TwinOracle, Verdict
from loraplace.twin.profile import Profile

from .baselines import dlora, loraserve
from .benders import benders
from .capacity import CapacityTable, capacity_table, mix_table
from .fit_decreasing import fit_decreasing
from .greedy import greedy, greedy_latency
from .gpu_fit import fit
from .placement import GpuPlan, Placement, PlacementInstance, Share, starves_alone

HEURISTICS = ("greedy", "ffd", "bfd", "greedy-lat")
EXACT = ("cpsat", "ilp-cbc", "ilp-highs")
STRATEGIES = ("greedy", "ffd", "bfd", *EXACT, "loraserve", "dlora", "greedy-lat")
ALIASES = {"ilp": "ilp-cbc"}


def strategy_list(text: str) -> list[str]:
    """Names from a comma-separated list, or every strategy for 'all'; unknown names are an error."""
    names = [ALIASES.get(s.strip(), s.strip()) for s in text.split(",") if s.strip()]
    if names == ["all"]:
        return list(STRATEGIES)
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise ConfigError(f"unknown strategy {', '.join(unknown) or '(none given)'}; choose from "
                          f"{', '.join(STRATEGIES)}, ilp (= ilp-cbc) or all")
    return list(dict.fromkeys(names))


class Solver:
    """Shares one oracle, one capacity table and the greedy start between the strategies of one run."""

    def __init__(self, inst: PlacementInstance, oracle: Oracle, time_limit: float = 60.0):
        if time_limit <= 0:
            raise ConfigError(f"time limit must be positive, got {time_limit}")
        self.inst, self.oracle, self.time_limit = inst, oracle, time_limit
        self._check_ranks()
        self.table: CapacityTable = capacity_table(inst, oracle)
        self.lower = self.table.lower_bound(inst)
        self.infeasible_reason = self._why_infeasible() if not math.isfinite(self.lower) else ""
        self._heuristic: dict[str, list[GpuPlan]] = {}
        self._exact_table: CapacityTable | None = None

    def _check_ranks(self) -> None:
        p = self.oracle.profile
        for a in self.inst.adapters:
            if p.memory.max_slots(vllm_max_lora_rank(a.rank), p.max_model_len) < 1:
                raise ConfigError(f"adapter {a.id} has rank {a.rank}: no --max-loras fits in memory on {p.name} at "
                                  f"--max-lora-rank {vllm_max_lora_rank(a.rank)}")

    def _why_infeasible(self) -> str:
        """Name the adapter no GPU can serve, when the capacity table says some cannot be served."""
        heaviest = max(self.inst.adapters, key=self.inst.load)
        if fit(self.oracle, [Share(heaviest)], self.inst.lengths) is None:
            return str(starves_alone(self.inst, heaviest))
        return "the capacity table shows some rank class of these adapters cannot be served by any GPU of this profile"

    def heuristic(self, name: str) -> list[GpuPlan]:
        """A heuristic's plans, computed once per run (the exact strategies start from the best of them)."""
        inst, oracle = self.inst, self.oracle
        heuristics: dict[str, Callable[[], list[GpuPlan]]] = {
            "greedy": lambda: greedy(inst, oracle),
            "ffd": lambda: fit_decreasing(inst, oracle, best=False),
            "bfd": lambda: fit_decreasing(inst, oracle, best=True),
            "greedy-lat": lambda: greedy_latency(inst, oracle, int(self.lower)),
        }
        if name not in self._heuristic:
            self._heuristic[name] = heuristics[name]()
        return self._heuristic[name]

    def forget_heuristics(self) -> None:
        """Drop the cached heuristic placements (the oracle has been overruled since they were made)."""
        self._heuristic.clear()

    def best_start(self) -> list[GpuPlan]:
        """The fewest GPUs among the greedy, first-fit and best-fit placements."""
        return min((self.heuristic(h) for h in ("greedy", "ffd", "bfd")), key=len)

    def exact_table(self) -> CapacityTable:
        """The table the exact strategies use: where the capacity table's bound falls short of the heuristics' best
        and the oracle is cheap, the one read off the instance's own mixes of rates (solvers.capacity.mix_table,
        when the instance has few distinct rates), whose bound then raises the solver's."""
        if self._exact_table is None:
            self._exact_table = self.table
            found = len(self.best_start())
            if self.oracle.cheap and self.lower < found:
                mixed = mix_table(self.inst, self.oracle, self.table)
                bound = mixed.lower_bound(self.inst) if mixed is not None else math.inf
                if bound <= found:  # above a placement the oracle accepts, the table's assumption failed: not used
                    self._exact_table, self.lower = mixed, max(self.lower, bound)
        return self._exact_table

    def _run(self, name: str, time_limit: float) -> tuple[list[GpuPlan], int, bool | None, str]:
        """(plans, lower bound, proven optimal or None for heuristics, note)."""
        inst, oracle = self.inst, self.oracle
        if name in HEURISTICS:
            return self.heuristic(name), self.lower, None, ""
        if name in EXACT:
            t0 = time.perf_counter()
            table, start = self.exact_table(), self.best_start()  # built once per run, within the first one's limit
            res = benders(inst, oracle, table, start, self.lower, name, time_limit - (time.perf_counter() - t0))
            note = f"{res.iterations} master solves, {len(res.cuts)} cuts"
            if table is not self.table:
                note += "; capacity read off the instance's own mixes of rates"
            return res.plans, res.lower_bound, res.optimal, note
        plans, note = loraserve(inst, oracle, self.table) if name == "loraserve" else dlora(inst, oracle, self.table, int(self.lower))
        return plans, self.lower, None, note

    def solve(self, name: str, time_limit: float | None = None) -> Placement:
        """One strategy's placement; an exact strategy gets `time_limit` seconds (default the solver's)."""
        t0, calls0 = time.perf_counter(), self.oracle.calls
        if not math.isfinite(self.lower):
            return Placement(name, [], 0, "infeasible", 0.0, self.infeasible_reason)
        try:
            plans, lb, proven, note = self._run(name, self.time_limit if time_limit is None else time_limit)
        except LoraplaceError as e:
            return Placement(name, [], int(self.lower), "infeasible", time.perf_counter() - t0, str(e))
        if lb > len(plans):  # its own placement beats its bound: the capacity table's assumptions failed here
            lb, note = 1, _with(note, withdrawn(len(plans)))
        starved = sum(1 for p in plans if not p.oracle_ok)
        if starved:
            status, note = "infeasible", _with(f"{starved} GPU(s) starve per the oracle", note)
        elif self.inst.gpus is not None and len(plans) > self.inst.gpus:
            status, note = "infeasible", f"needs {len(plans)} GPUs, {self.inst.gpus} available"
        elif len(plans) == lb:
            status = "optimal"
        else:
            status = "time_limit" if proven is False else "feasible"
        out = Placement(name, plans, lb, status, time.perf_counter() - t0, note, self.oracle.calls - calls0)
        out.check_covers(self.inst)
        return out

    def solve_all(self, names: list[str], progress=None) -> list[Placement]:
        """Every strategy in turn; then each reports the best bound any of them proved, and bounds that another
        strategy's placement contradicts are withdrawn."""
        placements = []
        for name in names:
            placements.append(self.solve(name))
            if progress:
                progress()
        return reconcile(share_bound(placements, self.bound()))

    def bound(self) -> int:
        """The solver's lower bound on the GPUs (1 when it found the instance infeasible)."""
        return int(self.lower) if math.isfinite(self.lower) else 1


def share_bound(placements: list[Placement], lower: int) -> list[Placement]:
    """A lower bound is the instance's, whichever strategy proved it: raise every served placement's to the best
    (`lower`, the solver's, or a placement's own), never above that placement's GPUs."""
    best = max([lower, *(p.lower_bound for p in placements if p.plans and p.status != "infeasible")])
    for p in placements:
        if p.plans and p.status != "infeasible" and p.lower_bound < best <= p.gpus:
            p.lower_bound = best
            if p.gpus == best:
                p.status = "optimal"
    return placements


def reconcile(placements: list[Placement]) -> list[Placement]:
    """A bound above a placement the oracle accepts is wrong (the capacity table's assumptions failed): drop it
    to 1, the bound that assumes nothing, so no strategy claims an optimum another one beats."""
    passing = [p.gpus for p in placements if p.plans and all(g.oracle_ok for g in p.plans)]
    if not passing:
        return placements
    fewest = min(passing)
    for p in placements:
        if p.lower_bound > fewest:
            withdraw_bound(p, fewest)
    return placements


def withdrawn(beaten_by: int) -> str:
    return f"bound withdrawn: a {beaten_by}-GPU placement beats it"


def _with(note: str, more: str) -> str:
    return "; ".join(x for x in (note, more) if x)


def withdraw_bound(p: Placement, beaten_by: int) -> None:
    """Replace a bound that a `beaten_by`-GPU placement contradicts with 1, the bound that assumes nothing."""
    p.lower_bound, p.reason = 1, _with(p.reason, withdrawn(beaten_by))
    if p.status == "optimal" and p.gpus > 1:
        p.status = "feasible"


def make_oracle(kind: str, profile: Profile, threshold: float, window: float, seed: int, workers: int,
                client: PortLimitedClient | None = PLANNING_CLIENT) -> Oracle:
    """The surrogate shipped for this profile, or the twin itself (simulating arrivals sent by `client`)."""
    if kind == "twin":
        return TwinOracle(profile, threshold, window_s=window, seed=seed, workers=workers, client=client)
    from loraplace.surrogate.oracle import SurrogateOracle

    return SurrogateOracle.shipped(profile, threshold)


class TwinCheck:
    """The twin's verdict on every GPU of a placement: simulated in parallel, each distinct GPU once per run.
    The judge is any oracle (the twin unless a test says otherwise)."""

    def __init__(self, inst: PlacementInstance, judge: Oracle):
        self.inst, self.judge = inst, judge

    @classmethod
    def simulating(cls, inst: PlacementInstance, profile: Profile, window: float = WINDOW_S, workers: int = 2,
                   seed: int = 0, client: PortLimitedClient | None = PLANNING_CLIENT,
                   seeds: int = CHECK_SEEDS) -> "TwinCheck":
        """The twin as the judge: each GPU simulated under `seeds` arrival seeds from `seed`, the worst run counts."""
        return cls(inst, TwinOracle(profile, inst.starvation_threshold, window_s=window, seed=seed, workers=workers,
                                    client=client, seeds=seeds))

    def __call__(self, placements: list[Placement], progress=None) -> None:
        """Simulate the GPUs of `placements` and record each verdict on its plan."""
        plans = [p for pl in placements for p in pl.plans]
        queries = [p.query(self.inst.lengths) for p in plans]
        step = 2 * self.judge.workers  # small batches keep the progress bar moving
        for i in range(0, len(queries), step):
            self.judge.evaluate(queries[i:i + step])
            if progress:
                progress(len(queries[i:i + step]))
        for p, v in zip(plans, self.judge.evaluate(queries)):
            p.twin = {"status": v.status, "starved": v.starved, "throughput_tok_s": round(v.throughput_tok_s, 1),
                      "ideal_tok_s": round(v.ideal_tok_s, 1)}

    def rejected(self, placement: Placement) -> list[tuple[GpuQuery, Verdict]]:
        """The GPUs of a checked placement that the twin finds starved or failing to start, with its verdicts."""
        queries = [p.query(self.inst.lengths) for p in placement.plans if p.twin_rejected]
        return list(zip(queries, self.judge.evaluate(queries)))

    def close(self) -> None:
        self.judge.close()


def check_and_repair(solver: Solver, placements: list[Placement], check: TwinCheck, rounds: int = 3,
                     progress=None) -> list[Placement]:
    """Check every placement with the twin; a strategy whose placement has a GPU the twin rejects is run again
    with the twin's verdict overruling the oracle on exactly that GPU, up to `rounds` times, and re-checked."""
    check(placements, progress)
    for _ in range(rounds):
        redo = {i: check.rejected(p) for i, p in enumerate(placements) if p.twin_starved_gpus}
        if not redo:
            break
        for rejected in redo.values():
            for q, v in rejected:
                solver.oracle.overrule(q, v)
        solver.forget_heuristics()
        for i, rejected in redo.items():
            before = placements[i]
            after = solver.solve(before.strategy, solver.time_limit - before.solve_time_s)  # one time limit in all
            after.solve_time_s += before.solve_time_s
            after.oracle_calls += before.oracle_calls
            after.twin_replanned_gpus = before.twin_replanned_gpus + len(rejected)
            placements[i] = after
        check([placements[i] for i in redo], progress)  # one batch: GPUs shared by strategies simulated once
    for p in placements:
        if p.twin_replanned_gpus:
            p.reason = _with(p.reason, f"re-planned after the twin rejected {p.twin_replanned_gpus} GPU(s)")
        if p.twin_starved_gpus and rounds:
            p.reason = _with(p.reason, f"the twin still rejects {p.twin_starved_gpus} GPU(s) after {rounds} repair round(s)")
    return reconcile(share_bound(placements, solver.bound()))
