"""`loraplace solve` end to end (the twin as oracle on a small instance), exports, and bad input."""

import json
from pathlib import Path

import pytest

from test_cli import run

TWIN_FAST = ("--oracle", "twin", "--oracle-window", "300", "--check-window", "300")


def write_instance(folder: Path, adapters, **extra) -> Path:
    d = {"format": "loraplace-instance/1", "name": "small", "profile": "llama-3.1-8b-instruct_h100-64gb",
         "adapters": adapters, **extra}
    path = folder / "small.json"
    path.write_text(json.dumps(d))
    return path


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("solve")
    ads = [{"id": f"a{i}", "rank": 8 if i % 2 else 16, "rate": 2.0 if i < 6 else 0.5} for i in range(12)]
    path = write_instance(folder, ads)
    p = run("solve", str(path), "--strategies", "greedy,ffd,cpsat,greedy-lat", "--time-limit", "20", *TWIN_FAST,
            "--export", str(folder / "out"), "--json", check=True)
    return json.loads(p.stdout), folder


def test_solve_json_reports_every_strategy_checked_by_the_twin(solved):
    out, _ = solved
    names = [s["name"] for s in out["strategies"]]
    assert names == ["greedy", "ffd", "cpsat", "greedy-lat"]
    for s in out["strategies"]:
        for key in ("name", "gpus", "lower_bound", "status", "solve_time_s", "twin_starved_gpus"):
            assert key in s
        assert s["gpus"] >= s["lower_bound"] >= 1
        assert s["twin_starved_gpus"] is not None
        ids = sorted(a for g in s["placement"] for a in g["adapters"])
        assert ids == sorted(f"a{i}" for i in range(12))
        for g in s["placement"]:
            assert g["max_cpu_loras"] >= g["max_loras"] >= 1
            assert g["twin"]["ideal_tok_s"] > 0


def test_export_writes_a_vllm_command_per_gpu(solved):
    out, folder = solved
    best = next(s for s in out["strategies"] if s["name"] == out["best"])
    scripts = sorted((folder / "out").glob("gpu-*.sh"))
    assert len(scripts) == best["gpus"]
    text = scripts[0].read_text()
    for flag in ("--enable-lora", "--max-loras", "--max-cpu-loras", "--max-lora-rank", "--lora-modules"):
        assert flag in text
    placement = json.loads((folder / "out" / "placement.json").read_text())
    assert placement["gpus"] == best["gpus"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "loraplace-instance/1", "name": "x", "profile": "llama-3.1-8b-instruct_h100-64gb"}', "missing field"),
    ('{"format": "loraplace-instance/1", "name": "x", "profile": "llama-3.1-8b-instruct_h100-64gb", '
     '"adapters": [{"id": "a", "rank": 8, "rate": -1}]}', "rate"),
    ('{"format": "loraplace-instance/1", "name": "x", "profile": "no-such-profile", '
     '"adapters": [{"id": "a", "rank": 8, "rate": 1}]}', "unknown profile"),
    ('{"format": "loraplace-instance/1", "name": "x", "profile": "llama-3.1-8b-instruct_h100-64gb", '
     '"adapters": [{"id": "a", "rank": 4096, "rate": 1}]}', "rank 4096"),
    ('{"format": "loraplace-instance/1", "name": "x", "profile": "llama-3.1-8b-instruct_h100-64gb", "length_sigma": -1, '
     '"adapters": [{"id": "a", "rank": 8, "rate": 1}]}', "sigma"),
])
def test_bad_instances_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    p = run("solve", str(path), "--strategies", "greedy", *TWIN_FAST)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr


def test_unknown_strategy_is_an_error(tmp_path):
    path = write_instance(tmp_path, [{"id": "a", "rank": 8, "rate": 0.1}])
    p = run("solve", str(path), "--strategies", "magic", *TWIN_FAST)
    assert p.returncode == 2 and "unknown strategy" in p.stderr


def test_an_adapter_no_gpu_can_serve_is_reported(tmp_path):
    path = write_instance(tmp_path, [{"id": "huge", "rank": 8, "rate": 80.0}, {"id": "a", "rank": 8, "rate": 0.1}])
    p = run("solve", str(path), "--strategies", "greedy", *TWIN_FAST)
    assert p.returncode == 2
    assert "no GPU" in p.stderr or "starves" in p.stderr, p.stderr


def test_a_client_the_surrogate_did_not_learn_is_warned_about(tmp_path):
    path = write_instance(tmp_path, [{"id": f"a{i}", "rank": 8, "rate": 0.1} for i in range(8)])
    p = run("solve", str(path), "--strategies", "greedy", "--no-twin-check", "--client-ports", "0", "--json", check=True)
    out = json.loads(p.stdout)
    assert len(out["warnings"]) == 1 and "--client-ports 0" in out["warnings"][0]
    assert "warning:" in p.stderr
    p = run("solve", str(path), "--strategies", "greedy", "--no-twin-check", "--json", check=True)
    assert json.loads(p.stdout)["warnings"] == []


def test_a_length_spread_the_surrogate_never_saw_needs_the_twin(tmp_path):
    """--length-sigma (or an instance's length_sigma) reaches the twin's queries; the surrogate refuses it."""
    path = write_instance(tmp_path, [{"id": f"a{i}", "rank": 8, "rate": 0.1} for i in range(8)], length_sigma=1.2)
    p = run("solve", str(path), "--strategies", "greedy", "--no-twin-check")
    assert p.returncode == 2 and "log-normal spread 0.8, not 1.2; use --oracle twin" in p.stderr.strip().splitlines()[-1]
    out = json.loads(run("solve", str(path), "--strategies", "greedy", "--length-sigma", "0.8", "--no-twin-check",
                         "--json", check=True).stdout)
    assert out["lengths"] == {"form": "lognormal", "sigma": 0.8, "mean_input": 223.0, "mean_output": 196.0}
    out = json.loads(run("solve", str(path), "--strategies", "greedy", *TWIN_FAST, "--json", check=True).stdout)
    assert out["lengths"]["sigma"] == 1.2 and out["strategies"][0]["twin_starved_gpus"] == 0
