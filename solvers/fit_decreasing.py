"""First-fit and best-fit decreasing on offered tokens/s, with the oracle as the fit test."""

from __future__ import annotations

from loraplace.twin.oracle import Oracle

from .gpu_fit import finish, fit, fit_many
from .placement import GpuPlan, PlacementInstance, Share, starves_alone

CHUNK = 8  # first fit asks about this many open GPUs per oracle call


def _first_fit(oracle: Oracle, plans: list[GpuPlan], share: Share, inst: PlacementInstance) -> int | None:
    for start in range(0, len(plans), CHUNK):
        chunk = plans[start:start + CHUNK]
        trials = fit_many(oracle, [p.shares + [share] for p in chunk], inst.lengths)
        for i, t in enumerate(trials):
            if t is not None:
                plans[start + i] = t
                return start + i
    return None


def _best_fit(oracle: Oracle, plans: list[GpuPlan], share: Share, inst: PlacementInstance) -> int | None:
    trials = fit_many(oracle, [p.shares + [share] for p in plans], inst.lengths)
    fits = [i for i, t in enumerate(trials) if t is not None]
    if not fits:
        return None
    i = max(fits, key=lambda i: (plans[i].ideal_tok_s, -i))  # the fullest GPU that still passes
    plans[i] = trials[i]
    return i


def fit_decreasing(inst: PlacementInstance, oracle: Oracle, best: bool) -> list[GpuPlan]:
    """Adapters by decreasing offered load; each joins an open GPU that still passes the oracle with it
    (the first such GPU, or with `best` the fullest), or opens a new one."""
    plans: list[GpuPlan] = []
    place = _best_fit if best else _first_fit
    for a in sorted(inst.adapters, key=lambda a: (-inst.load(a), a.id)):
        share = Share(a)
        if place(oracle, plans, share, inst) is None:
            alone = fit(oracle, [share], inst.lengths)
            if alone is None:
                raise starves_alone(inst, a)
            plans.append(alone)
    return finish(inst, oracle, plans)
