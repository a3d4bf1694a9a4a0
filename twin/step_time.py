"""Execution-time predictor: how long one engine step takes, from the profile's fitted model."""

from __future__ import annotations

from dataclasses import dataclass

from .profile import Profile


@dataclass(frozen=True)
class StepShape:
    """What the step-time model needs to know about one batch."""

    decode_seqs: int
    prefill_tokens: int
    decode_context: int  # summed context length of the decode sequences
    distinct_adapters: int
    waiting: int  # requests in the waiting queue (the scheduler walks it every step)
    adapter_loads: int


class StepTimePredictor:
    """Step time in seconds for one server; replaceable (Vidur-style) by any object with the same two methods."""

    def __init__(self, profile: Profile, max_loras: int, max_lora_rank: int):
        self.s = profile.step
        self.lora_decode_ms, self.lora_prefill_ms, self.lora_prefill_sq_ms = profile.step.lora_token_ms(max_lora_rank)
        self.load_ms = profile.engine.load_ms
        self.waiting_s = self.s.sched_ms_per_waiting / 1000.0  # seconds each waiting request adds to a step
        self.lora_fixed_ms = self.s.lora_ms + self.s.lora_ms_per_slot * max_loras

    def seconds(self, shape: StepShape) -> float:
        s = self.s
        base = (s.intercept_ms + s.decode_ms_per_seq * shape.decode_seqs + s.prefill_ms_per_token * shape.prefill_tokens
                + s.attn_ms_per_ctx_token * shape.decode_context)
        lora = (self.lora_fixed_ms + self.lora_decode_ms * shape.decode_seqs + self.lora_prefill_ms * shape.prefill_tokens
                + self.lora_prefill_sq_ms * shape.prefill_tokens**2
                + s.lora_ms_per_adapter * shape.distinct_adapters)
        return (base + lora + s.sched_ms_per_waiting * shape.waiting + self.load_ms * shape.adapter_loads) / 1000.0

    def decode_run(self, shape: StepShape) -> tuple[float, float]:
        """(first step seconds, increase per step) for consecutive pure-decode steps: each adds one context token per sequence."""
        return self.seconds(shape), self.s.attn_ms_per_ctx_token * shape.decode_seqs / 1000.0
