"""Domain objects of the twin: adapters, request lengths, a serving configuration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

# The --max-lora-rank values vLLM accepts (LoRAConfig, 0.8 to 0.32; 0.32 also takes 1). Its LoRA buffers are sized
# for one of them, so an adapter of another rank is served padded to the next one up.
VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that can serve an adapter of `rank`."""
    for r in VLLM_MAX_LORA_RANKS:
        if rank <= r:
            return r
    raise ConfigError(f"rank {rank} is above the largest --max-lora-rank vLLM accepts ({VLLM_MAX_LORA_RANKS[-1]})")


def check_max_lora_rank(value: int) -> None:
    """Reject a --max-lora-rank vLLM would refuse to start with."""
    if value not in VLLM_MAX_LORA_RANKS:
        raise ConfigError(f"max_lora_rank {value} is not a value vLLM accepts ({', '.join(map(str, VLLM_MAX_LORA_RANKS))})")


@dataclass(frozen=True)
class LengthSpec:
    """Request-length distribution: the means are matched exactly in expectation.

    `sigma` is the log-normal sigma of prompt and output lengths before clipping to
    [min, max]; `sample` (optional, see `from_sample`) replaces the parametric form with empirical
    (prompt, output) pairs drawn with replacement, and the means are then the sample's.
    """

    mean_input: float = 223.0
    mean_output: float = 196.0
    sigma: float = 0.8
    min_input: int = 4
    max_input: int = 1024
    min_output: int = 1
    max_total: int = 2048
    sample: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if self.sample is not None:
            if not self.sample:
                raise ConfigError("empty length sample")
            return
        if not self.min_input <= self.mean_input <= self.max_input:
            raise ConfigError(f"mean input length {self.mean_input} outside [{self.min_input}, {self.max_input}]")
        if not self.min_output <= self.mean_output <= self.max_total - self.mean_input:
            raise ConfigError(f"mean output length {self.mean_output} is not feasible with max_total {self.max_total}")
        if self.sigma < 0:
            raise ConfigError(f"length sigma must be >= 0, got {self.sigma}")

    @classmethod
    def from_sample(cls, pairs) -> LengthSpec:
        """Lengths drawn from (prompt, output) token pairs, each at least 1."""
        a = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if not len(a):
            raise ConfigError("empty length sample")
        if a.min() < 1:
            raise ConfigError("length sample: every prompt and output needs at least 1 token")
        return cls(mean_input=float(a[:, 0].mean()), mean_output=float(a[:, 1].mean()), sample=tuple(map(tuple, a.tolist())))

    def describe(self) -> dict:
        """What a report needs to say about these lengths."""
        if self.sample is not None:
            return {"form": "sample", "pairs": len(self.sample), "mean_input": round(self.mean_input, 1),
                    "mean_output": round(self.mean_output, 1)}
        return {"form": "lognormal", "sigma": self.sigma, "mean_input": self.mean_input, "mean_output": self.mean_output}


@dataclass(frozen=True)
class Adapter:
    """One LoRA adapter: its rank and its request stream (requests/s)."""

    id: str
    rank: int
    rate: float

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ConfigError(f"adapter {self.id}: rank must be positive, got {self.rank}")
        try:
            vllm_max_lora_rank(self.rank)
        except ConfigError as e:
            raise ConfigError(f"adapter {self.id}: {e}") from None
        if not self.rate >= 0:
            raise ConfigError(f"adapter {self.id}: rate must be >= 0 requests/s, got {self.rate}")


@dataclass(frozen=True)
class ServingConfig:
    """The `vllm serve` options that matter to the twin, for one GPU instance."""

    max_loras: int
    max_lora_rank: int
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 2048
    block_size: int = 16
    max_model_len: int = 131072

    def __post_init__(self) -> None:
        for name in ("max_loras", "max_lora_rank", "max_num_batched_tokens", "max_num_seqs", "block_size", "max_model_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        check_max_lora_rank(self.max_lora_rank)

    def check_adapters(self, adapters: list[Adapter]) -> None:
        """Reject adapters this server could not load (rank above --max-lora-rank)."""
        for a in adapters:
            if a.rank > self.max_lora_rank:
                raise ConfigError(f"adapter {a.id} has rank {a.rank} above max_lora_rank {self.max_lora_rank}")
