"""The recorded live-vLLM loops (benchmarks/results/vllm-cpu/DATE/): each profile is what `loraplace calibrate`
makes of its micro-benchmarks, and `twin validate` on each measured runs file gives the recorded summary."""

import json
from pathlib import Path

import pytest

from loraplace.harness.measure import read_plan, sized_plan
from loraplace.twin.calibrate import calibrate
from loraplace.twin.profile import Profile
from loraplace.twin.validate import read_runs, validate

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "vllm-cpu"
LOOPS = sorted(p.parent for p in RESULTS.glob("*/tiny-llama_cpu.json"))
# every runs file of a loop beside the validation it recorded (runs.csv -> validation.json, runs-X.csv -> validation-X.json)
RUNS = [(loop, runs, loop / runs.name.replace("runs", "validation").replace(".csv", ".json"))
        for loop in LOOPS for runs in sorted(loop.glob("runs*.csv"))]


def test_every_recorded_loop_has_its_files():
    assert len(LOOPS) >= 2
    for loop in LOOPS:
        assert (loop / "calibration" / "profile-meta.json").exists() and (loop / "runs.csv").exists()
    assert all(validation.exists() for _, _, validation in RUNS)


@pytest.mark.parametrize("loop", LOOPS, ids=lambda p: p.name)
def test_recorded_profile_is_reproduced_from_its_benchmarks(loop):
    meta = json.loads((loop / "calibration" / "profile-meta.json").read_text())
    shipped = json.loads((loop / "tiny-llama_cpu.json").read_text())
    made = calibrate(loop / "calibration", meta["model"], "cpu", meta["vllm_version"], 2048)
    assert json.loads(made.to_json()) | {"provenance": None} == shipped | {"provenance": None}
    assert made.provenance["inputs_sha256"] == shipped["provenance"]["inputs_sha256"]
    assert made.engine.preallocate_blocks == 0  # vLLM 0.32: no preallocated KV blocks
    assert made.step.lora_ms_per_prefill_token is not None  # the harness measures prompts with LoRA
    fit = made.provenance["fit"]["lora_overhead"]  # every token-cost form scored, the best in held-out time kept
    scores = fit["token_form_cv_time_error_pct"]
    assert set(scores) == {"prompt_sq_rank_power_1", "prompt_sq_rank_power_2", "working_set"}
    assert scores[fit["token_form"]] == min(scores.values())


@pytest.mark.parametrize("loop, runs, validation", RUNS, ids=lambda p: f"{p.parent.name}/{p.name}" if p.suffix else "")
def test_recorded_validation_is_reproduced(loop, runs, validation):
    profile = Profile.from_dict(json.loads((loop / "tiny-llama_cpu.json").read_text()))
    recorded = json.loads(validation.read_text())
    rows, summary = validate(profile, read_runs(runs), seed=0)
    for key in ("n_ok_runs", "throughput_mape_pct", "throughput_max_ape_pct", "starved_accuracy", "startup_accuracy"):
        assert summary[key] == recorded[key]


@pytest.mark.parametrize("loop", [p for p in LOOPS if "load" in (p / "plan.csv").read_text().splitlines()[0].split(",")],
                         ids=lambda p: p.name)
def test_recorded_rates_are_the_plans_loads_sized_by_the_recorded_profile(loop):
    """A plan of loads: every runs file of the loop sent the rates that sizing its plan with its profile gives."""
    profile = Profile.from_dict(json.loads((loop / "tiny-llama_cpu.json").read_text()))
    sized = {r.run_id: r.row for r in sized_plan(read_plan(loop / "plan.csv"), profile)}
    for runs in sorted(loop.glob("runs*.csv")):
        for run in read_runs(runs):
            row = sized[run.row["run_id"]]
            assert (run.row["adapter_rates"], run.row["load"], run.row["saturation_scale"]) == \
                (row["adapter_rates"], row["load"], row["saturation_scale"])
