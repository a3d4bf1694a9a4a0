"""The recorded live-vLLM loop (benchmarks/results/vllm-cpu/): its profile is what `loraplace calibrate`
makes of its micro-benchmarks, and `twin validate` on its measured runs gives the recorded summary."""

import json
from pathlib import Path

import pytest

from loraplace.twin.calibrate import calibrate
from loraplace.twin.profile import Profile
from loraplace.twin.validate import read_runs, validate

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "vllm-cpu"


@pytest.fixture(scope="module")
def meta():
    return json.loads((RESULTS / "calibration" / "profile-meta.json").read_text())


def test_recorded_profile_is_reproduced_from_its_benchmarks(meta):
    shipped = json.loads((RESULTS / "tiny-llama_cpu.json").read_text())
    made = calibrate(RESULTS / "calibration", meta["model"], "cpu", meta["vllm_version"], 2048)
    assert json.loads(made.to_json()) | {"provenance": None} == shipped | {"provenance": None}
    assert made.provenance["inputs_sha256"] == shipped["provenance"]["inputs_sha256"]
    assert made.engine.preallocate_blocks == 0  # vLLM 0.32: no preallocated KV blocks
    assert made.step.lora_ms_per_prefill_token is not None  # the harness measures prompts with LoRA
    scores = made.provenance["fit"]["lora_overhead"]["sq_rank_power_cv_mape_pct"]  # both rank powers scored
    assert set(scores) == {"1", "2"} and scores[f"{made.step.lora_sq_rank_power:g}"] == min(scores.values())


def test_recorded_validation_is_reproduced():
    profile = Profile.from_dict(json.loads((RESULTS / "tiny-llama_cpu.json").read_text()))
    recorded = json.loads((RESULTS / "validation.json").read_text())
    rows, summary = validate(profile, read_runs(RESULTS / "runs.csv"), seed=0)
    for key in ("n_ok_runs", "throughput_mape_pct", "throughput_max_ape_pct", "starved_accuracy", "startup_accuracy"):
        assert summary[key] == recorded[key]
