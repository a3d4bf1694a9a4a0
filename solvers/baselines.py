"""The source paper's comparison baselines, re-implemented from their descriptions.

`loraserve`: GPUs per rank class by largest-remainder apportionment of token load against a per-GPU
operating point; adapters fill each class's GPUs up to an even share, split across GPUs by routing
fractions where they cross a boundary; `--max-loras` equals the adapters on a GPU (as far as memory
allows). `dlora`: adapters on a fixed number of GPUs, then replicas added greedily where they raise the
smallest burst tolerance (operating point over offered load), requests spread evenly over replicas;
GPUs are added until the oracle accepts every one.
"""

from __future__ import annotations

import math

from loraplace.twin.entities import vllm_max_lora_rank
from loraplace.twin.oracle import Oracle

from .capacity import CapacityTable
from .gpu_fit import fewest_passing, finish
from .placement import GpuPlan, PlacementInstance, Share


def operating_point(inst: PlacementInstance, table: CapacityTable, rank_class: int, adapters: list) -> float:
    """Tokens/s one GPU of this class is planned to carry: 90 % of the largest load the oracle accepted on
    GPUs holding as many of these adapters as an even split over the fewest GPUs would give."""
    gpus = max(1, math.ceil(sum(inst.load(a) for a in adapters) / table.load_bound(rank_class)))
    return 0.9 * table.load_bound(rank_class, max(1, len(adapters) // gpus))


def largest_remainder(quotas: dict[int, float]) -> dict[int, int]:
    """Whole GPUs per class summing to ceil(sum of quotas), every class with load getting at least one."""
    total = math.ceil(sum(quotas.values()) - 1e-9)
    seats = {r: max(1, math.floor(q)) for r, q in quotas.items()}
    for r in sorted(quotas, key=lambda r: quotas[r] - math.floor(quotas[r]), reverse=True):
        if sum(seats.values()) >= total:
            break
        seats[r] += 1
    return seats


def _split_fill(inst: PlacementInstance, adapters: list, gpus: int) -> list[list[Share]]:
    """Adapters (heaviest first) poured into `gpus` GPUs of equal target load, splitting at the boundaries."""
    target = sum(inst.load(a) for a in adapters) / gpus
    out: list[list[Share]] = [[] for _ in range(gpus)]
    g, room = 0, target
    for a in sorted(adapters, key=lambda a: (-inst.load(a), a.id)):
        left = 1.0
        while left > 1e-9:
            take = left if g == gpus - 1 else min(left, room / inst.load(a) if inst.load(a) > 0 else left)
            if take > 1e-9:
                out[g].append(Share(a, take))
                left -= take
                room -= take * inst.load(a)
            if left > 1e-9 or room <= 1e-9:
                g, room = min(g + 1, gpus - 1), target
    return [s for s in out if s]


def loraserve(inst: PlacementInstance, oracle: Oracle, table: CapacityTable) -> tuple[list[GpuPlan], str]:
    by_class = {r: [a for a in inst.adapters if a.rank == r] for r in table.classes}
    quotas = {r: sum(inst.load(a) for a in ads) / operating_point(inst, table, r, ads)
              for r, ads in by_class.items() if ads}
    plans = []
    for r, seats in largest_remainder(quotas).items():
        for shares in _split_fill(inst, by_class[r], seats):
            limit = oracle.profile.memory.max_slots(vllm_max_lora_rank(r), oracle.profile.max_model_len)
            plans.append(GpuPlan(shares, max(1, min(len(shares), limit))))
    splits = sum(1 for p in plans for s in p.shares if s.fraction < 1)
    return finish(inst, oracle, plans), f"{splits} adapter shares split across GPUs" if splits else ""


def _tolerances(loads: list[float], op: float) -> list[float]:
    return [op / x if x > 0 else math.inf for x in loads]


def _dlora_on(inst: PlacementInstance, k: int, op: float) -> list[list[Share]]:
    """Least-loaded assignment on k GPUs, then replicas while they raise the smallest burst tolerance."""
    hosts: dict[str, list[int]] = {}
    loads = [0.0] * k
    for a in sorted(inst.adapters, key=lambda a: (-inst.load(a), a.id)):
        g = min(range(k), key=lambda i: (loads[i], i))
        hosts[a.id] = [g]
        loads[g] += inst.load(a)
    by_id = {a.id: a for a in inst.adapters}
    for _ in range(len(inst.adapters)):
        tolerance = _tolerances(loads, op)
        worst = min(range(k), key=tolerance.__getitem__)
        on_worst = [i for i, h in hosts.items() if worst in h]
        a = max(on_worst, key=lambda i: (inst.load(by_id[i]) / len(hosts[i]), i))
        free = [g for g in range(k) if g not in hosts[a]]
        if not free:
            break
        best = min(free, key=lambda g: (loads[g], g))
        per_old, per_new = inst.load(by_id[a]) / len(hosts[a]), inst.load(by_id[a]) / (len(hosts[a]) + 1)
        trial = list(loads)
        for g in hosts[a]:
            trial[g] -= per_old - per_new
        trial[best] += per_new
        if min(_tolerances(trial, op)) <= min(tolerance) + 1e-12:
            break
        hosts[a].append(best)
        loads = trial
    gpus: list[list[Share]] = [[] for _ in range(k)]
    for aid, hs in hosts.items():
        for g in hs:
            gpus[g].append(Share(by_id[aid], 1.0 / len(hs)))
    return [g for g in gpus if g]


def dlora(inst: PlacementInstance, oracle: Oracle, table: CapacityTable, start: int) -> tuple[list[GpuPlan], str]:
    op = operating_point(inst, table, max(table.classes), list(inst.adapters))
    plans = finish(inst, oracle, fewest_passing(inst, oracle, start, lambda k: _dlora_on(inst, k, op), "dlora"))
    replicas = sum(len(p.shares) for p in plans) - len(inst.adapters)
    return plans, f"{replicas} replicas added" if replicas else ""
