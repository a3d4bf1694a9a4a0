"""One small interface over CP-SAT and PuLP (CBC, HiGHS), so a feasibility model is written once, as mathematics.

Both libraries overload +, * and <= on their variables, so a constraint written with `total` and
Python operators means the same in either; only variable creation and solving differ.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .arcflow import quiet_native_output


@dataclass
class MipAnswer:
    values: dict | None  # variable name -> integer value, None when no solution was found
    infeasible: bool  # proven to have no solution


class CpSatBackend:
    name = "cpsat"

    def __init__(self, workers: int = 2):
        from ortools.sat.python import cp_model

        self.cp, self.model, self.vars, self.workers = cp_model, cp_model.CpModel(), {}, workers

    def bool_var(self, name: str):
        v = self.vars[name] = self.model.NewBoolVar(name)
        return v

    def int_var(self, name: str, lo: int, hi: int):
        v = self.vars[name] = self.model.NewIntVar(lo, hi, name)
        return v

    def total(self, terms):
        return self.cp.LinearExpr.Sum(list(terms))

    def add(self, constraint) -> None:
        self.model.Add(constraint)

    def solve(self, time_limit: float) -> MipAnswer:
        solver = self.cp.CpSolver()
        solver.parameters.max_time_in_seconds = max(time_limit, 0.01)
        solver.parameters.num_workers = self.workers  # one worker was up to 30x slower here
        with quiet_native_output():
            status = solver.Solve(self.model)
        if status not in (self.cp.OPTIMAL, self.cp.FEASIBLE):
            return MipAnswer(None, status == self.cp.INFEASIBLE)
        return MipAnswer({n: int(solver.Value(v)) for n, v in self.vars.items()}, False)


class PulpBackend:
    """PuLP with CBC (bundled) or HiGHS (through highspy)."""

    def __init__(self, solver: str = "cbc"):
        import pulp

        self.pulp, self.solver_name, self.vars = pulp, solver, {}
        self.name = f"ilp-{solver}"
        self.prob = pulp.LpProblem("placement", pulp.LpMinimize)

    def bool_var(self, name: str):
        v = self.vars[name] = self.prob.add_variable(name, 0, 1, cat="Binary")
        return v

    def int_var(self, name: str, lo: int, hi: int):
        v = self.vars[name] = self.prob.add_variable(name, lo, hi, cat="Integer")
        return v

    def total(self, terms):
        return self.pulp.lpSum(terms)

    def add(self, constraint) -> None:
        self.prob += constraint

    def _solver(self, time_limit: float):
        limit = max(time_limit, 1.0)
        if self.solver_name == "highs":
            return self.pulp.HiGHS(msg=False, timeLimit=limit, threads=2)
        with warnings.catch_warnings():  # the bundled CBC binary is deprecated in PuLP 3.3, still the one that ships
            warnings.simplefilter("ignore", DeprecationWarning)
            return self.pulp.PULP_CBC_CMD(msg=False, timeLimit=limit, threads=2)

    def solve(self, time_limit: float) -> MipAnswer:
        with quiet_native_output():  # HiGHS prints a banner even with msg=False
            self.prob.solve(self._solver(time_limit))
        if self.prob.status == self.pulp.LpStatusInfeasible:
            return MipAnswer(None, True)
        # PuLP says "Optimal" after a time limit whenever it holds a solution; only sol_status says what it holds.
        if self.prob.sol_status not in (self.pulp.LpSolutionOptimal, self.pulp.LpSolutionIntegerFeasible):
            return MipAnswer(None, False)
        values = {n: v.value() for n, v in self.vars.items()}
        if any(x is None or abs(x - round(x)) > 1e-6 for x in values.values()):
            return MipAnswer(None, False)  # CBC can return the bound with an invalid assignment
        return MipAnswer({n: int(round(x)) for n, x in values.items()}, False)
