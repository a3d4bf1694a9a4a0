"""Execution-time predictor: how long one engine step takes, from the profile's fitted model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .profile import Profile


@dataclass(frozen=True)
class StepShape:
    """What the step-time model needs to know about one batch (or, as arrays, about each step of a run)."""

    decode_seqs: int
    prefill_tokens: int
    decode_context: int  # summed context length of the decode sequences
    distinct_adapters: int
    waiting: int  # requests in the waiting queue (the scheduler walks it every step)
    adapter_loads: int


def working_set_ramp(w, log_knee: float, log_span: float):
    """Where working sets `w` sit between the working-set term's knees (profile.StepTimeModel): 0 up to the lower,
    1 from the upper, linear in log w between."""
    return np.clip((np.log(np.maximum(w, 1e-300)) - log_knee) / log_span, 0.0, 1.0)


class StepTimePredictor:
    """Step time in seconds for one server; replaceable (Vidur-style) by any object with the same two methods."""

    def __init__(self, profile: Profile, max_loras: int, max_lora_rank: int):
        self.s = s = profile.step
        lora_decode_ms, lora_prefill_ms, self.lora_prefill_sq_ms = s.lora_token_ms(max_lora_rank)
        self.load_ms = profile.engine.load_ms
        self.waiting_s = s.sched_ms_per_waiting / 1000.0  # seconds each waiting request adds to a step
        # base and LoRA terms with the same factor, summed once
        self.fixed_ms = s.intercept_ms + s.lora_ms + s.lora_ms_per_slot * max_loras
        self.seq_ms = s.decode_ms_per_seq + lora_decode_ms
        self.prefill_ms = s.prefill_ms_per_token + lora_prefill_ms
        self.ws = s.lora_working_set(max_lora_rank)

    def working_set_ms(self, tokens):
        """The working-set LoRA term (profile.StepTimeModel) of steps computing `tokens` tokens; 0 where unused."""
        scale, lo, hi, log_knee, log_span = self.ws
        if not scale:
            return 0.0
        w = np.asarray(tokens, float) * scale
        return w * (lo + (hi - lo) * working_set_ramp(w, log_knee, log_span))

    def seconds(self, shape: StepShape) -> float:
        """The step's time; the fields may be arrays (one step each), scalars summed first."""
        s, p = self.s, shape.prefill_tokens
        scalar = (self.fixed_ms + (self.prefill_ms + self.lora_prefill_sq_ms * p) * p + s.sched_ms_per_waiting * shape.waiting
                  + self.load_ms * shape.adapter_loads)
        return (scalar + self.seq_ms * shape.decode_seqs + s.attn_ms_per_ctx_token * shape.decode_context
                + s.lora_ms_per_adapter * shape.distinct_adapters + self.working_set_ms(shape.decode_seqs + p)) / 1000.0

    def coefficients(self) -> tuple[float, ...]:
        """The terms of `seconds` in the order twin/_core.c's copy of it takes them: fixed, prefill per token and per
        token squared, per waiting request, per load (ms), per decode sequence, per context token, per adapter, then
        the working-set term's five numbers (StepTimeModel.lora_working_set)."""
        s = self.s
        return (self.fixed_ms, self.prefill_ms, self.lora_prefill_sq_ms, s.sched_ms_per_waiting, self.load_ms,
                self.seq_ms, s.attn_ms_per_ctx_token, s.lora_ms_per_adapter) + self.ws

    def decode_steps(self, seqs: np.ndarray, context: np.ndarray, distinct: np.ndarray, waiting: int) -> np.ndarray:
        """Seconds of consecutive pure-decode steps, from each step's sequences, summed context and distinct adapters."""
        return self.seconds(StepShape(seqs, 0, context, distinct, waiting, 0))
