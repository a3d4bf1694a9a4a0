"""The LoRA token-cost form that calibration picks from micro-benchmarks made by a known law: a working-set law
(per-token cost rising with the step's tokens x rank, then flat) and a squared-prompt law are each recovered."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from loraplace.twin.calibrate import base_decode_ms, fit_lora
from loraplace.twin.profile import StepTimeModel
from loraplace.twin.step_time import StepShape, StepTimePredictor

BASE = {"intercept_ms": 1.0, "decode_ms_per_seq": 0.13, "attn_ms_per_ctx_token": 0.0, "prefill_ms_per_token": 0.03}
KNEES, LO, HI = (150.0, 1200.0), 0.3, 1.1  # the working-set law: knees in tokens at rank 32, ms per token


def working_set_law(tokens: np.ndarray, rank: float) -> np.ndarray:
    w = tokens * rank / 32
    ramp = np.clip(np.log(np.maximum(w, 1e-300) / KNEES[0]) / np.log(KNEES[1] / KNEES[0]), 0, 1)
    return w * (LO + (HI - LO) * ramp)


def squared_prompt_law(decode: np.ndarray, prompt: np.ndarray, rank: float) -> np.ndarray:
    return 0.3 * (decode + prompt) * rank / 32 + 4e-4 * prompt**2 * (rank / 32) ** 2


def benchmark_rows(law) -> list[dict]:
    """lora_overhead rows as `loraplace profile` writes them: decode, prompt and mixed steps at three ranks, each step
    time the base model plus 3 ms plus the law, times a seeded noise of 2 %."""
    rng = np.random.default_rng(0)
    shapes = [(b, 0, 1, 100) for b in (4, 32, 128)] + [(0, p, p, 1) for p in (100, 200, 400, 750, 1200, 1700, 2000)]
    shapes += [(120, 640, 100, 20), (250, 100, 20, 50)]
    rows = []
    for rank in (8, 16, 32):
        for decode, prompt, in_len, out_len in shapes:
            ctx = in_len + out_len / 2
            base = base_decode_ms(BASE, np.array(decode), np.array(ctx)) + BASE["prefill_ms_per_token"] * prompt
            ms = (base + 3.0 + law(np.array(decode, float), np.array(prompt, float), rank)) * (1 + 0.02 * rng.standard_normal())
            rows.append({"kind": "lora", "status": "ok", "mean_loras_by_batch": "4", "input_len": str(in_len),
                         "output_len": str(out_len), "max_loras": "16", "max_lora_rank": str(rank), "step_ms": str(ms),
                         "mean_tokens_per_step": str(decode + prompt), "mean_decode_seqs_per_step": str(decode),
                         "mean_prefill_sq_per_step": str(prompt**2), "mean_batch_size": str(decode)})
    return rows


def fit(rows):
    return fit_lora(rows, [], BASE, 0.5, Path("lora_overhead.csv"), Path("scheduler_overhead.csv"))


def test_calibration_recovers_a_working_set_law(llama):
    coef, res = fit(benchmark_rows(lambda d, p, r: working_set_law(d + p, r)))
    assert res["token_form"] == "working_set"
    scores = res["token_form_cv_time_error_pct"]
    assert scores["working_set"] < min(v for f, v in scores.items() if f != "working_set")
    assert coef["lora_ms_per_token"] == 0.0 and "lora_ms_per_prefill_token_sq" not in coef
    model = StepTimeModel(**BASE, sched_ms_per_waiting=0.0, **coef)
    predictor = StepTimePredictor(dataclasses.replace(llama, step=model), 16, 32)
    for tokens in (50, 500, 1000, 2000):  # the fitted law against the true one, prompt-only steps at rank 32
        fitted = predictor.seconds(StepShape(0, tokens, 0, 4, 0, 0)) * 1000
        true = 1.0 + BASE["prefill_ms_per_token"] * tokens + 3.0 + working_set_law(np.array(tokens, float), 32)
        assert fitted == pytest.approx(true, rel=0.1), tokens


def test_calibration_keeps_a_squared_prompt_law():
    coef, res = fit(benchmark_rows(squared_prompt_law))
    assert res["token_form"] == "prompt_sq_rank_power_2" and coef["lora_sq_rank_power"] == 2.0
    assert "lora_ws_knee_lo" not in coef
