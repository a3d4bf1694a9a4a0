"""The vLLM harness without vLLM: metrics and log parsing on recorded samples, the probe's counters,
runs plans, and the promise that `twin validate` replays exactly the requests `measure` sends."""

import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from loraplace.harness import probe
from loraplace.harness.measure import read_plan, sized_plan, workload_requests
from loraplace.harness.prometheus import parse_metrics, summarize
from loraplace.harness.server import ServerConfig, parse_startup, startup_status
from loraplace.twin.arrivals import poisson_workload
from loraplace.twin.entities import LengthSpec
from loraplace.twin.errors import ConfigError, LoraplaceError
from loraplace.twin.profile import load_profile
from loraplace.twin.sizing import saturation_scale, served_share
from loraplace.twin.validate import make_adapters

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_metrics_sample_from_vllm_0_32_parses():
    text = (DATA / "vllm-0.32.0-metrics.txt").read_text()
    samples = parse_metrics(text)
    assert len(samples) > 100 and all(isinstance(v, float) for _, _, v in samples)
    s = summarize(text)
    for key in ("running", "waiting", "deferred", "preemptions", "prompt_tokens", "generation_tokens"):
        assert key in s
    assert s["running"] == 1.0 and s["waiting"] == 26.0 and s["deferred"] == 0.0  # waiting for capacity, none deferred by adapters
    assert s["prompt_tokens"] > 0 and s["generation_tokens"] > 0


def test_metrics_parser_skips_junk_and_reads_labels():
    text = '# HELP x\nvllm:num_requests_running{engine="0",model_name="m"} 4.0\nnot a metric\nvllm:num_requests_waiting 2\n'
    assert summarize(text) == {"running": 4.0, "waiting": 2.0}
    assert parse_metrics(text)[0][1] == {"engine": "0", "model_name": "m"}


def test_startup_log_sample_gives_kv_tokens_and_version():
    log = (DATA / "vllm-0.32.0-startup.log").read_text()
    assert parse_startup(log) == (262144, "0.32.0")


@pytest.mark.parametrize("text,status", [
    ("...(2.00 GiB KV cache is needed, which is larger than the available KV cache memory (1.00 GiB)...", "kv_below_max_model_len"),
    ("ValueError: No available memory for the cache blocks. Try increasing", "no_kv_memory"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", "cuda_oom"),
    ("Value error, max_cpu_loras (1) must be >= max_loras (32)", "failed"),
])
def test_startup_failures_are_classified(text, status):
    assert startup_status(text) == status


def test_server_command_line_has_the_lora_options():
    cfg = ServerConfig(Path("/m"), "m", [("a", Path("/a")), ("b", Path("/b"))], max_loras=4, max_lora_rank=16)
    argv = cfg.argv()
    assert argv[argv.index("--max-cpu-loras") + 1] == "4"  # never below max_loras, which vLLM refuses
    assert argv[argv.index("--max-loras") + 1] == "4" and "--enable-lora" in argv
    assert argv[-2:] == ["a=/a", "b=/b"] and "--no-enable-prefix-caching" in argv
    assert "--enable-lora" not in ServerConfig(Path("/m"), "m").argv()


def test_probe_counters_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(probe, "PERIOD_S", 0.01)
    c = probe.Counters(tmp_path / "p.sched.json")
    c.add(steps=2, sched_s=0.5)
    c.add(steps=1)
    c.flush()
    snap = probe.read_snapshot(tmp_path / "p", "sched")
    assert snap["steps"] == 3 and snap["sched_s"] == 0.5
    assert probe.read_snapshot(tmp_path / "absent", "sched") == {}


def test_probe_is_inert_without_its_variable(monkeypatch):
    monkeypatch.delenv(probe.ENV, raising=False)
    probe.register()  # must not import vllm
    assert "vllm" not in sys.modules or HAS_VLLM


def test_shipped_plan_parses_and_replays_exactly():
    runs = read_plan(ROOT / "benchmarks" / "vllm_cpu_plan.csv")
    assert len(runs) >= 10 and len({r.server_key for r in runs}) < len(runs)
    run = runs[2]
    reqs, names = workload_requests(run, seed=0)
    # What `twin validate --seed 0` draws for a run with len(reqs) arrivals:
    adapters = make_adapters(run.n_adapters, list(run.ranks), list(run.rates), 0)
    w = poisson_workload(adapters, run.duration_s, LengthSpec(mean_input=run.mean_input, mean_output=run.mean_output),
                         np.random.default_rng(0), count=len(reqs))
    assert [r.at for r in reqs] == list(w.arrival)
    assert [r.model for r in reqs] == [adapters[i].id for i in w.adapter]
    assert [r.prompt_tokens for r in reqs] == list(w.prompt) and [r.output_tokens for r in reqs] == list(w.output)
    assert names == [(a.id, a.rank) for a in adapters]


@pytest.mark.parametrize("bad,message", [
    ("n_adapters=-3", "n_adapters must be a positive integer"),
    ("adapter_rates=0.5;-1", "negative adapter rate"),
    ("adapter_ranks=64", "above max_lora_rank"),
    ("max_lora_rank=12", "not a value vLLM accepts"),
    ("duration_s=0", "must be positive"),
    ("load=-0.5", "load must be positive"),
])
def test_bad_plans_are_named(tmp_path, bad, message):
    cols = "run_id,n_adapters,max_loras,max_lora_rank,adapter_ranks,adapter_rates,load,duration_s,mean_input_tokens,mean_output_tokens"
    row = dict(zip(cols.split(","), "r1,8,4,16,8;16,0.5,,60,100,50".split(",")))
    key, value = bad.split("=")
    row[key] = value
    path = tmp_path / "plan.csv"
    path.write_text(cols + "\n" + ",".join(row[c] for c in cols.split(",")) + "\n")
    with pytest.raises(LoraplaceError, match=message):
        read_plan(path)


def test_loads_are_sized_at_the_twins_saturation_point():
    """A load of 1 is the largest rate scale at which the twin still serves 90 % of the ideal (to 1 %), and
    every load multiplies the same pattern; rows of absolute rates pass through; loads need a profile."""
    profile = load_profile(str(ROOT / "benchmarks" / "results" / "vllm-cpu" / "2026-11-28" / "tiny-llama_cpu.json"))
    plan = read_plan(ROOT / "benchmarks" / "vllm_cpu_plan.csv")
    mid = next(r for r in plan if r.run_id == "cpu-16-4-mid")  # pattern 1;2;3, load 0.8
    absolute = replace(plan[0], load=None)
    kept, sized = sized_plan([absolute, mid], profile)
    assert kept is absolute and sized.load is None and sized.row["max_num_seqs"] == 256  # vLLM's default, as measured
    pattern_row = {**sized.row, "adapter_rates": "1;2;3"}
    s = saturation_scale(profile, pattern_row)
    assert served_share(profile, pattern_row, s) >= 0.9 > served_share(profile, pattern_row, s * 1.02)
    assert sized.rates == pytest.approx(tuple(0.8 * s * x for x in (1, 2, 3)), rel=1e-5)
    assert float(sized.row["saturation_scale"]) == pytest.approx(s, rel=1e-5)
    with pytest.raises(ConfigError, match="pass --profile"):
        sized_plan(plan, None)


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown when vLLM is absent")
@pytest.mark.parametrize("cmd", [["profile", "--tiny", "--out", "x"],
                                 ["measure", "--tiny", "--runs-plan", str(ROOT / "benchmarks" / "vllm_cpu_plan.csv"), "--out", "r.csv",
                                  "--profile", str(ROOT / "benchmarks" / "results" / "vllm-cpu" / "2026-11-28" / "tiny-llama_cpu.json")]])
def test_live_commands_say_vllm_is_missing(cmd):
    p = subprocess.run([sys.executable, "-m", "loraplace.cli", *cmd], capture_output=True, text=True, cwd=tempfile.gettempdir())
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "vLLM is not installed" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_tiny_model_and_adapters_are_well_formed(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    from safetensors import safe_open
    from tokenizers import Tokenizer

    from loraplace.harness.adapters import build_adapters
    from loraplace.harness.tiny_model import TinySpec, build_tiny_model, word

    spec = TinySpec(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=256)
    model = build_tiny_model(tmp_path / "m", spec)
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert len(tok.encode(" ".join(word(i) for i in range(37))).ids) == 37  # one word, one token
    (name, path, rank), = build_adapters(model, tmp_path / "a", [16])
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["r"] == 16 and cfg["peft_type"] == "LORA"
    with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
        a = f.get_tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight")
        b = f.get_tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight")
    assert tuple(a.shape) == (16, 64) and tuple(b.shape) == (32, 16)  # 2 of 4 heads for k and v


def test_a_server_that_never_started_gives_a_row_without_measurements():
    from loraplace.harness.measure import MEASURED_COLUMNS, result_row

    run = read_plan(ROOT / "benchmarks" / "vllm_cpu_plan.csv")[0]
    row = result_row(run, {"model": "m", "gpu": "cpu", "vllm_version": ""}, "cuda_oom")
    assert row["status"] == "cuda_oom" and all(row[c] == "" for c in MEASURED_COLUMNS)
    assert row["n_adapters"] == run.n_adapters and row["max_num_seqs"] == 256


def test_a_measured_row_records_the_adapter_loads_and_validate_sets_the_twins_beside_them(tmp_path):
    """`measure` writes the engine's slot loads in the window; `twin validate` shows the twin's next to them."""
    import csv
    from dataclasses import fields

    from loraplace.harness.measure import result_row
    from loraplace.harness.observe import Observation

    run = read_plan(ROOT / "benchmarks" / "vllm_cpu_plan.csv")[0]
    obs = Observation(**{f.name: (17 if f.name == "activations" else 1) for f in fields(Observation) if f.name != "first_error"})
    reqs, _ = workload_requests(run, seed=0)
    assert result_row(run, {"model": "m", "gpu": "cpu", "vllm_version": ""}, "ok", obs, reqs)["adapter_loads"] == 17

    loop = ROOT / "benchmarks" / "results" / "vllm-cpu" / "2026-11-29-loads"
    rows = list(csv.DictReader(open(loop / "runs.csv")))[:2]
    rows[0]["adapter_loads"] = "17"
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    p = subprocess.run([sys.executable, "-m", "loraplace.cli", "twin", "validate", str(path), "--profile",
                        str(loop / "tiny-llama_cpu.json"), "--json", "--rows"], capture_output=True, text=True, check=True,
                       cwd=tmp_path)  # not the checkout, whose loraplace/ would shadow the installed package
    first, second = json.loads(p.stdout)["rows"]
    assert first["measured_adapter_loads"] == 17 and second["measured_adapter_loads"] is None
    assert isinstance(first["predicted_adapter_loads"], int) and first["predicted_adapter_loads"] >= 4  # 8 adapters, 4 slots
    table = subprocess.run([sys.executable, "-m", "loraplace.cli", "twin", "validate", str(path), "--profile",
                            str(loop / "tiny-llama_cpu.json")], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "adapter loads" in table and f"17/{first['predicted_adapter_loads']}" in table
