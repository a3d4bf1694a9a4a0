"""A profile: what the twin knows about one (model, GPU, vLLM version), fitted from micro-benchmarks."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InputFileError, UnknownProfileError


OPTIONAL_STEP_KEYS = ("lora_ms_per_prefill_token", "lora_ms_per_prefill_token_sq", "lora_ref_rank", "lora_sq_rank_power",
                      "lora_ws_ms_lo", "lora_ws_ms_hi", "lora_ws_knee_lo", "lora_ws_knee_hi")


@dataclass(frozen=True)
class StepTimeModel:
    """Engine step time in ms: base model + LoRA kernels + scheduler queue work.

    base: intercept + decode_ms_per_seq * decode seqs + prefill_ms_per_token * prefill tokens
    + attn_ms_per_ctx_token * summed context of the decode seqs.
    LoRA (when enabled): lora_ms + lora_ms_per_token * decode tokens + lora_ms_per_prefill_token * prompt
    tokens + lora_ms_per_adapter * distinct adapters in the batch + lora_ms_per_slot * max_loras (vLLM 0.8's
    Triton kernels launch over every slot). lora_ms_per_prefill_token is absent (None) where the
    benchmarks had no LoRA prefill runs: prompt tokens then cost lora_ms_per_token, like decode tokens.
    lora_ms_per_prefill_token_sq (absent: 0) adds a cost in the square of a step's prompt tokens, where the
    benchmarks show prompt tokens costing more per token in bigger steps. lora_ref_rank is absent where the
    benchmarks used one max_lora_rank; where they varied it, the
    per-token LoRA costs are those at lora_ref_rank and scale in proportion to the server's max_lora_rank
    (LoRA buffers are padded to it), the squared prompt term with its power lora_sq_rank_power (absent: 1),
    which the calibration picks by cross-validation.
    Working set (lora_ws_*, absent where unused): LoRA kernels that gather each token's adapter weights (vLLM's
    CPU path) cost per token of the step, decode or prompt alike, what their working set W = tokens x
    max_lora_rank / lora_ref_rank dictates: lora_ws_ms_lo per token of W up to lora_ws_knee_lo, lora_ws_ms_hi from
    lora_ws_knee_hi on (caches outgrown), linear in log W between; the per-token terms above are then zero.
    scheduler: sched_ms_per_waiting * waiting requests (CPU time of the admission loop, which walks the queue).
    """

    intercept_ms: float
    decode_ms_per_seq: float
    attn_ms_per_ctx_token: float
    prefill_ms_per_token: float
    lora_ms: float
    lora_ms_per_token: float
    lora_ms_per_adapter: float
    lora_ms_per_slot: float
    sched_ms_per_waiting: float
    lora_ms_per_prefill_token: float | None = None
    lora_ms_per_prefill_token_sq: float | None = None
    lora_ref_rank: float | None = None
    lora_sq_rank_power: float | None = None
    lora_ws_ms_lo: float | None = None
    lora_ws_ms_hi: float | None = None
    lora_ws_knee_lo: float | None = None
    lora_ws_knee_hi: float | None = None

    def lora_working_set(self, max_lora_rank: int) -> tuple[float, float, float, float, float]:
        """(tokens-to-W factor, ms per W token below and above the knees, log of the lower knee, log of the knees'
        ratio) at this max_lora_rank; all zero (span 1) where the profile has no working-set term."""
        if self.lora_ws_knee_lo is None:
            return 0.0, 0.0, 0.0, 0.0, 1.0
        scale = 1.0 if self.lora_ref_rank is None else max_lora_rank / self.lora_ref_rank
        return (scale, self.lora_ws_ms_lo, self.lora_ws_ms_hi, math.log(self.lora_ws_knee_lo),
                math.log(self.lora_ws_knee_hi / self.lora_ws_knee_lo))

    def lora_token_ms(self, max_lora_rank: int) -> tuple[float, float, float]:
        """LoRA ms per decode token, per prompt token and per squared prompt tokens of a step, at this max_lora_rank."""
        prefill = self.lora_ms_per_token if self.lora_ms_per_prefill_token is None else self.lora_ms_per_prefill_token
        scale = 1.0 if self.lora_ref_rank is None else max_lora_rank / self.lora_ref_rank
        sq_scale = scale ** (self.lora_sq_rank_power or 1.0)
        return self.lora_ms_per_token * scale, prefill * scale, (self.lora_ms_per_prefill_token_sq or 0.0) * sq_scale


@dataclass(frozen=True)
class MemoryModel:
    """KV capacity and start-up limits as linear functions of slots x rank (vLLM reserves every slot at max rank)."""

    kv_tokens_intercept: float
    kv_tokens_per_slot: float
    kv_tokens_per_slot_rank: float
    weights_gib_intercept: float
    weights_gib_per_slot: float
    weights_gib_per_slot_rank: float
    oom_weights_gib: float

    def kv_tokens(self, max_loras, max_lora_rank):
        """KV-cache capacity in tokens that vLLM would report at start-up (an int; for numpy arrays of settings,
        an array of the same whole numbers)."""
        per_slot = self.kv_tokens_per_slot + self.kv_tokens_per_slot_rank * max_lora_rank
        tokens = self.kv_tokens_intercept - max_loras * per_slot
        return np.trunc(tokens) if isinstance(tokens, np.ndarray) else int(tokens)

    def weights_gib(self, max_loras: int, max_lora_rank: int) -> float:
        per_slot = self.weights_gib_per_slot + self.weights_gib_per_slot_rank * max_lora_rank
        return self.weights_gib_intercept + max_loras * per_slot

    def startup_status(self, max_loras: int, max_lora_rank: int, max_model_len: int) -> str:
        """'ok' or why the server would fail to start, in the runs files' vocabulary."""
        if self.weights_gib(max_loras, max_lora_rank) > self.oom_weights_gib:
            return "cuda_oom"
        kv = self.kv_tokens(max_loras, max_lora_rank)
        if kv <= 0:
            return "no_kv_memory"
        if kv < max_model_len:
            return "kv_below_max_model_len"
        return "ok"

    def max_slots(self, max_lora_rank: int, max_model_len: int) -> int:
        """Largest max_loras that still starts at this rank (0 if none)."""
        hi = 1
        while self.startup_status(hi, max_lora_rank, max_model_len) == "ok" and hi < 1 << 16:
            hi *= 2
        lo = 0
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if self.startup_status(mid, max_lora_rank, max_model_len) == "ok":
                lo = mid
            else:
                hi = mid
        return lo


@dataclass(frozen=True)
class EngineModel:
    """Version-dependent engine behaviour (vLLM V1 scheduler and KV manager)."""

    preallocate_blocks: int = 4
    load_ms: float = 7.0


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    gpu: str
    vllm_version: str
    max_model_len: int
    step: StepTimeModel
    memory: MemoryModel
    engine: EngineModel
    provenance: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        d = asdict(self)
        for key in OPTIONAL_STEP_KEYS:  # absent when unused: older profiles stay byte for byte
            if d["step"][key] is None:
                del d["step"][key]
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        try:
            return cls(
                name=str(d["name"]), model=str(d["model"]), gpu=str(d["gpu"]), vllm_version=str(d["vllm_version"]),
                max_model_len=int(d["max_model_len"]),
                step=StepTimeModel(**d["step"]), memory=MemoryModel(**d["memory"]), engine=EngineModel(**d["engine"]),
                provenance=dict(d.get("provenance", {})),
            )
        except (KeyError, TypeError) as e:
            raise InputFileError(f"profile is missing or has a malformed field: {e}") from None

    def check(self) -> None:
        """Reject profiles whose numbers cannot describe a GPU."""
        for k, v in {**asdict(self.step), **asdict(self.memory), **asdict(self.engine)}.items():
            if k in OPTIONAL_STEP_KEYS and v is None:
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputFileError(f"profile {self.name}: {k} is not a finite number")
        if self.step.intercept_ms <= 0 or self.step.decode_ms_per_seq < 0 or self.step.prefill_ms_per_token <= 0:
            raise InputFileError(f"profile {self.name}: step-time coefficients must be positive")
        st = self.step
        ws = (st.lora_ws_ms_lo, st.lora_ws_ms_hi, st.lora_ws_knee_lo, st.lora_ws_knee_hi)
        if any(v is None for v in ws) and any(v is not None for v in ws):
            raise InputFileError(f"profile {self.name}: the working-set LoRA term needs all four lora_ws_* fields")
        if ws[0] is not None and not (min(ws[:2]) >= 0 and 0 < ws[2] < ws[3]):
            raise InputFileError(f"profile {self.name}: working-set LoRA costs must be >= 0 and its knees 0 < lo < hi")


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped inside the package."""
    root = resources.files("loraplace.twin") / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name, or a profile JSON file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise UnknownProfileError(f"profile file not found: {name_or_path}")
        text = path.read_text()
    else:
        res = resources.files("loraplace.twin") / "profiles" / f"{name_or_path}.json"
        if not res.is_file():
            raise UnknownProfileError(
                f"unknown profile '{name_or_path}'; shipped profiles: {', '.join(shipped_profiles())}"
            )
        text = res.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(f"profile {name_or_path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InputFileError(f"profile {name_or_path} must be a JSON object")
    profile = Profile.from_dict(data)
    profile.check()
    return profile

