"""The shipped family of placement instances, modelled on the experiments of arXiv 2602.24044.

Adapter counts 32 to 1280; rank mixes {8,16} and {8,16,32} cycled over the adapters; rates either
cycled from one of the paper's rate sets, or Dirichlet(0.5) popularity over an aggregate rate. Every
file records its generator, parameters and seed, so `loraplace instances generate` rebuilds it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loraplace.twin.entities import Adapter

from .placement import PlacementInstance

SIZES = (32, 64, 128, 256, 512, 1280)
RANK_MIXES = {"r8-16": (8, 16), "r8-16-32": (8, 16, 32)}
RATE_SETS = {"low": (0.1, 0.05, 0.025), "high": (1.6, 0.8, 0.4)}
RATE_KINDS = (*RATE_SETS, "dirichlet")
DIRICHLET_MEAN_RATE = 0.1  # requests/s per adapter on average: the aggregate rate is n x this
GENERATOR = "loraplace.solvers.instance_gen/1"


@dataclass(frozen=True)
class FamilyMember:
    n: int
    ranks: str  # key of RANK_MIXES
    rates: str  # key of RATE_SETS, or 'dirichlet'
    seed: int

    @property
    def name(self) -> str:
        return f"paper-{self.n}-{self.ranks}-{self.rates}"


def family(seed: int = 0) -> list[FamilyMember]:
    return [FamilyMember(n, r, x, seed) for n in SIZES for r in RANK_MIXES for x in RATE_KINDS]


def build(m: FamilyMember, profile: str) -> PlacementInstance:
    rng = np.random.default_rng([m.seed, m.n, list(RANK_MIXES).index(m.ranks), RATE_KINDS.index(m.rates)])
    mix = RANK_MIXES[m.ranks]
    ranks = rng.permutation([mix[i % len(mix)] for i in range(m.n)])
    if m.rates == "dirichlet":
        rates = rng.dirichlet(np.full(m.n, 0.5)) * DIRICHLET_MEAN_RATE * m.n
        rates = np.maximum(np.round(rates, 6), 1e-6)
    else:
        rs = RATE_SETS[m.rates]
        rates = rng.permutation([rs[i % len(rs)] for i in range(m.n)])
    adapters = tuple(Adapter(f"lora-{i:04d}", int(ranks[i]), float(rates[i])) for i in range(m.n))
    gen = {"generator": GENERATOR, "adapters": m.n, "rank_mix": list(mix), "rates": m.rates, "seed": m.seed,
           "command": f"loraplace instances generate --profile {profile} --seed {m.seed} --out instances/"}
    if m.rates == "dirichlet":
        gen["aggregate_rate"] = DIRICHLET_MEAN_RATE * m.n
    else:
        gen["rate_set"] = list(RATE_SETS[m.rates])
    return PlacementInstance(m.name, profile, adapters, generator=gen)
