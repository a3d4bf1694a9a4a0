"""Choosing one GPU's `--max-loras` with the oracle: the memory-feasible slot count with the best prediction."""

from __future__ import annotations

from loraplace.twin.entities import LengthSpec
from loraplace.twin.errors import ConfigError
from loraplace.twin.oracle import GpuQuery, Oracle, Verdict, slot_candidates

from .placement import GpuPlan, PlacementInstance, Share


def slot_queries(ranks: list[int], rates: list[float], lengths: LengthSpec) -> list[GpuQuery]:
    """One GPU content asked with each `--max-loras` worth trying."""
    first = GpuQuery.of(ranks, rates, 1, lengths)
    return [first.with_slots(m) for m in slot_candidates(len(ranks))]


def pick(queries: list[GpuQuery], verdicts: list[Verdict]) -> tuple[GpuQuery, Verdict] | None:
    """The feasible candidate with the highest predicted throughput, ties to more slots; None if none is feasible."""
    ok = [(v.throughput_tok_s, q.max_loras, q, v) for q, v in zip(queries, verdicts) if v.feasible]
    if not ok:
        return None
    _, _, q, v = max(ok, key=lambda t: (t[0], t[1]))
    return q, v


def best_slots(oracle: Oracle, contents: list[tuple[list[int], list[float]]], lengths: LengthSpec):
    """For each GPU content (ranks, rates), the best (query, verdict) over its slot counts, or None; one oracle call."""
    per_group = [slot_queries(ranks, rates, lengths) for ranks, rates in contents]
    verdicts = oracle.evaluate([q for qs in per_group for q in qs])
    out, at = [], 0
    for qs in per_group:
        out.append(pick(qs, verdicts[at:at + len(qs)]))
        at += len(qs)
    return out


def accepted(oracle: Oracle, contents: list[tuple[list[int], list[float]]], lengths: LengthSpec) -> list[bool]:
    """Whether the oracle serves each GPU content (ranks, rates) on some `--max-loras`; one oracle call."""
    return [b is not None for b in best_slots(oracle, contents, lengths)]


def fit_many(oracle: Oracle, groups: list[list[Share]], lengths: LengthSpec) -> list[GpuPlan | None]:
    """For each candidate GPU content, its best plan or None, asking the oracle once for all of them."""
    best = best_slots(oracle, [([s.adapter.rank for s in g], [s.rate for s in g]) for g in groups], lengths)
    return [None if b is None else GpuPlan(list(g), b[0].max_loras, b[1].throughput_tok_s, b[0].offered_tok_s)
            for g, b in zip(groups, best)]


def fit(oracle: Oracle, shares: list[Share], lengths: LengthSpec) -> GpuPlan | None:
    return fit_many(oracle, [shares], lengths)[0]


def fewest_passing(inst: PlacementInstance, oracle: Oracle, start: int, groups_for, strategy: str) -> list[GpuPlan]:
    """The plans of `groups_for(k)` for the smallest k from `start` (or exactly the GPUs available) that the
    oracle accepts on every GPU."""
    for k in ([inst.gpus] if inst.gpus else range(max(start, 1), len(inst.adapters) + 1)):
        plans = fit_many(oracle, groups_for(k), inst.lengths)
        if all(p is not None for p in plans):
            return plans
    raise ConfigError(f"{strategy}: no plan on {inst.gpus or len(inst.adapters)} GPUs passes the oracle")


def finish(inst: PlacementInstance, oracle: Oracle, plans: list[GpuPlan]) -> list[GpuPlan]:
    """Fill in each plan's predicted and ideal throughput for its real (unpadded) content."""
    queries = [p.query(inst.lengths) for p in plans]
    for p, q, v in zip(plans, queries, oracle.evaluate(queries)):
        p.predicted_tok_s, p.ideal_tok_s, p.oracle_ok = v.throughput_tok_s, q.offered_tok_s, v.feasible
    return plans
