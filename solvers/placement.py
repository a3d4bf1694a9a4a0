"""Domain objects of adapter placement: the instance, one GPU's plan, and a whole placement."""

from __future__ import annotations

from dataclasses import dataclass, field

from loraplace.twin.entities import Adapter, LengthSpec, vllm_max_lora_rank
from loraplace.twin.errors import ConfigError
from loraplace.twin.oracle import GpuQuery


@dataclass(frozen=True)
class PlacementInstance:
    """Adapters to place on GPUs of one profile, with the workload's length means."""

    name: str
    profile: str
    adapters: tuple[Adapter, ...]
    lengths: LengthSpec = LengthSpec()
    gpus: int | None = None  # GPUs available (None: as many as needed)
    starvation_threshold: float = 0.9
    generator: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.adapters:
            raise ConfigError(f"instance {self.name}: no adapters")
        ids = [a.id for a in self.adapters]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"instance {self.name}: duplicate adapter ids")
        if self.gpus is not None and self.gpus <= 0:
            raise ConfigError(f"instance {self.name}: gpus must be positive, got {self.gpus}")
        if not 0 < self.starvation_threshold <= 1:
            raise ConfigError(f"instance {self.name}: starvation threshold must be in (0, 1]")

    @property
    def tokens_per_request(self) -> float:
        return self.lengths.mean_input + self.lengths.mean_output

    def load(self, a: Adapter) -> float:
        """Offered tokens/s of one adapter."""
        return a.rate * self.tokens_per_request


def starves_alone(inst: PlacementInstance, a: Adapter) -> ConfigError:
    """The error for a workload no number of GPUs can serve."""
    return ConfigError(f"adapter {a.id} (rank {a.rank}, {a.rate:g} requests/s, {inst.load(a):,.0f} tokens/s) starves "
                       "a GPU on its own: no number of GPUs can serve this workload")


@dataclass(frozen=True)
class Share:
    """An adapter served on a GPU, with the fraction of its requests routed there (1 unless split)."""

    adapter: Adapter
    fraction: float = 1.0

    @property
    def rate(self) -> float:
        return self.adapter.rate * self.fraction


@dataclass
class GpuPlan:
    """One GPU: its adapters, its vLLM LoRA options and what the oracle predicts for it."""

    shares: list[Share]
    max_loras: int
    predicted_tok_s: float = 0.0
    ideal_tok_s: float = 0.0
    oracle_ok: bool = True  # the oracle predicts this GPU starts and does not starve
    twin: dict | None = None  # the twin's check: throughput_tok_s, ideal_tok_s, starved, status

    @property
    def max_lora_rank(self) -> int:
        """What vLLM is started with: the smallest value it accepts that serves the largest adapter rank."""
        return vllm_max_lora_rank(max(s.adapter.rank for s in self.shares))

    @property
    def twin_rejected(self) -> bool:
        """The twin's check found this GPU starved or failing to start."""
        return self.twin is not None and (self.twin["starved"] or self.twin["status"] != "ok")

    @property
    def max_cpu_loras(self) -> int:
        return len(self.shares)

    def query(self, lengths: LengthSpec) -> GpuQuery:
        return GpuQuery.of([s.adapter.rank for s in self.shares], [s.rate for s in self.shares], self.max_loras, lengths)

    def to_dict(self) -> dict:
        return {"adapters": [s.adapter.id for s in self.shares],
                "fractions": [round(s.fraction, 6) for s in self.shares] if any(s.fraction < 1 for s in self.shares) else None,
                "ranks": [s.adapter.rank for s in self.shares], "max_loras": self.max_loras,
                "max_lora_rank": self.max_lora_rank, "max_cpu_loras": self.max_cpu_loras,
                "predicted_tok_s": round(self.predicted_tok_s, 1), "ideal_tok_s": round(self.ideal_tok_s, 1),
                "oracle_ok": self.oracle_ok, "twin": self.twin}


@dataclass
class Placement:
    """A strategy's answer: GPU plans plus what is proven about them."""

    strategy: str
    plans: list[GpuPlan]
    lower_bound: int
    status: str  # optimal, feasible, time_limit, infeasible
    solve_time_s: float = 0.0
    reason: str = ""  # why infeasible, or what the strategy did unusually (splits, replicas)
    oracle_calls: int = 0
    twin_replanned_gpus: int = 0  # GPUs the twin rejected in earlier rounds, re-planned since

    @property
    def gpus(self) -> int:
        return len(self.plans)

    @property
    def twin_starved_gpus(self) -> int | None:
        """GPUs the twin finds starved or failing to start (None before the twin has checked)."""
        if not self.plans or any(p.twin is None for p in self.plans):
            return None
        return sum(p.twin_rejected for p in self.plans)

    def to_dict(self, with_plans: bool = True) -> dict:
        d = {"name": self.strategy, "gpus": self.gpus, "lower_bound": self.lower_bound,
             "gap": self.gpus - self.lower_bound if self.plans else None, "status": self.status,
             "solve_time_s": round(self.solve_time_s, 3), "twin_starved_gpus": self.twin_starved_gpus,
             "twin_replanned_gpus": self.twin_replanned_gpus, "oracle_calls": self.oracle_calls,
             "reason": self.reason}
        if with_plans:
            d["placement"] = [p.to_dict() for p in self.plans]
        return d

    def check_covers(self, inst: PlacementInstance) -> None:
        """Every adapter's requests routed in full, each adapter once per GPU (an independent check)."""
        routed: dict[str, float] = {}
        for p in self.plans:
            ids = [s.adapter.id for s in p.shares]
            if len(set(ids)) != len(ids):
                raise AssertionError(f"{self.strategy}: an adapter appears twice on one GPU")
            for s in p.shares:
                routed[s.adapter.id] = routed.get(s.adapter.id, 0.0) + s.fraction
        missing = [a.id for a in inst.adapters if abs(routed.get(a.id, 0.0) - 1.0) > 1e-6]
        if missing:
            raise AssertionError(f"{self.strategy}: adapters not routed in full: {missing[:5]}")
