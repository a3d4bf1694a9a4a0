"""The command line: JSON output, determinism under a seed, and one-line errors on bad input."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check=False):
    # Run outside the checkout so the installed package, not the source folder, is imported.
    p = subprocess.run([sys.executable, "-m", "loraplace.cli", *args], capture_output=True, text=True, timeout=600,
                       cwd=tempfile.gettempdir())
    if check:
        assert p.returncode == 0, p.stderr
    return p


def sim_json(*extra):
    p = run("simulate", "--adapters", "16", "--max-loras", "8", "--duration", "300", "--json", *extra, check=True)
    return json.loads(p.stdout)


def test_simulate_json_has_the_documented_keys():
    out = sim_json("--seed", "1")
    for key in ("throughput_tok_s", "ideal_tok_s", "starved", "completed", "wall_s", "mean_ttft_ms", "p99_itl_ms",
                "preemptions", "adapter_loads"):
        assert key in out
    assert 0 < out["throughput_tok_s"] <= out["ideal_tok_s"]


def test_same_seed_same_answer_other_seed_other_answer():
    a, b, c = sim_json("--seed", "7"), sim_json("--seed", "7"), sim_json("--seed", "8")
    for d in (a, b, c):
        d.pop("wall_s")
    assert a == b
    assert a != c


def test_queue_trace_on_request():
    out = sim_json("--queue-sample", "60")
    assert len(out["queue"]) >= 4 and all(len(row) == 4 for row in out["queue"])


def test_port_limited_client_drops_what_it_cannot_send():
    """--client-ports: an overloaded server behind a 30-port client; the open client (0) drops nothing."""
    heavy = ("--rates", "4", "--adapters", "8", "--max-loras", "8", "--duration", "120")
    limited = json.loads(run("simulate", *heavy, "--client-ports", "30", "--json", check=True).stdout)
    open_client = json.loads(run("simulate", *heavy, "--client-ports", "0", "--json", check=True).stdout)
    assert limited["dropped"] > 0 and open_client["dropped"] == 0
    assert limited["arrivals"] == open_client["arrivals"] and limited["ideal_tok_s"] == open_client["ideal_tok_s"]


def test_adapters_file(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("id,rank,rate\nx,8,0.5\ny,16,0.25\n")
    out = sim_json("--adapters-file", str(f))
    assert out["adapters"] == 2 and out["max_lora_rank"] == 16


def test_length_options(tmp_path):
    """--length-sigma shapes the log-normal around the means; --lengths draws (prompt, output) pairs from a file."""
    narrow, wide = sim_json("--length-sigma", "0"), sim_json("--length-sigma", "1.5")
    assert narrow["lengths"] == {"form": "lognormal", "sigma": 0.0, "mean_input": 223.0, "mean_output": 196.0}
    assert wide["lengths"]["sigma"] == 1.5 and narrow["arrivals"] == wide["arrivals"]
    assert narrow["ideal_tok_s"] != wide["ideal_tok_s"]
    f = tmp_path / "lengths.csv"
    f.write_text("prompt_tokens,output_tokens\n100,50\n300,20\n")
    out = sim_json("--lengths", str(f))
    assert out["lengths"] == {"form": "sample", "pairs": 2, "mean_input": 200.0, "mean_output": 35.0}
    f.write_text("prompt_tokens,output_tokens\n100,50\n")
    out = sim_json("--lengths", str(f))
    assert out["ideal_tok_s"] * 300 == pytest.approx(150 * out["arrivals"])  # every request is the one pair's 150 tokens


def error_of(p):
    assert p.returncode != 0
    lines = [line for line in p.stderr.strip().splitlines() if line]
    assert "Traceback" not in p.stderr
    return lines


@pytest.mark.parametrize("args,message", [
    (("simulate", "--profile", "nope"), "unknown profile"),
    (("simulate", "--rates", "0.1,-2"), "rates"),
    (("simulate", "--ranks", "8,64", "--max-lora-rank", "32"), "above max_lora_rank"),
    (("simulate", "--ranks", "32", "--max-loras", "300"), "would not start"),
    (("simulate", "--ranks", "12", "--max-lora-rank", "12"), "max_lora_rank 12 is not a value vLLM accepts"),
    (("simulate", "--ranks", "8,1024"), "above the largest --max-lora-rank vLLM accepts (512)"),
    (("profile", "--tiny", "--out", "/tmp/unused", "--ranks", "8,12"), "each rank is also a server's --max-lora-rank"),
    (("simulate", "--burst", "fast"), "burst"),
    (("simulate", "--duration", "-5"), "positive"),
    (("simulate", "--client-ports", "-1"), ">= 0"),
    (("simulate", "--adapters-file", "/no/such.csv"), "not found"),
    (("simulate", "--length-sigma", "-1"), ">= 0"),
    (("simulate", "--lengths", "/no/such.csv"), "not found"),
    (("simulate", "--lengths", str(ROOT / "instances" / "README.md"), "--mean-input", "100"), "drop --mean-input"),
    (("simulate", "--trace", "/no/such.csv", "--length-sigma", "1"), "drop --length-sigma"),
    (("twin", "validate", "/no/such/runs.csv"), "not found"),
    (("twin", "validate", "/no/such/runs.csv", "--seeds", "1,1"), "distinct seeds"),
    (("twin", "validate", "/no/such/runs.csv", "--seeds", "0,-2"), ">= 0"),
    (("surrogate", "train", "--profile", "qwen-2.5-7b-instruct_h100-64gb", "--depth", "17", "--out", "/tmp/unused",
      "--data", str(ROOT / "surrogate/data/qwen-2.5-7b-instruct_h100-64gb.jsonl.gz")), "depth must be 1 to 16"),
    (("surrogate", "generate", "--profile", "qwen-2.5-7b-instruct_h100-64gb", "--samples", "5", "--out", "/tmp/unused",
      "--model", "/no/such/model"), "give both or neither"),
    (("surrogate", "generate", "--profile", "qwen-2.5-7b-instruct_h100-64gb", "--samples", "5", "--out", "/tmp/unused",
      "--near-boundary", "--model", "/no/such/model"), "no surrogate model"),
    (("surrogate", "generate", "--profile", "qwen-2.5-7b-instruct_h100-64gb", "--samples", "5", "--out", "/tmp/unused",
      "--near-boundary", "--model", str(ROOT / "surrogate/models/llama-3.1-8b-instruct_h100-64gb")), "trained for llama"),
    (("calibrate", "/no/such/dir", "--model", "m", "--gpu", "g", "--vllm-version", "0.8.5", "--max-model-len", "10"), "not found"),
])
def test_bad_input_is_one_line(args, message):
    lines = error_of(run(*args))
    assert len(lines) == 1 or lines[0].startswith("usage:"), lines
    assert message in lines[-1]


def test_malformed_files(tmp_path):
    bad_csv = tmp_path / "runs.csv"
    bad_csv.write_text("run_id,foo\n1,2\n")
    assert "missing column" in error_of(run("twin", "validate", str(bad_csv)))[-1]
    bad_json = tmp_path / "p.json"
    bad_json.write_text("[1, 2")
    assert "not valid JSON" in error_of(run("simulate", "--profile", str(bad_json)))[-1]
    adapters = tmp_path / "a.csv"
    adapters.write_text("id,rank,rate\nx,8,-1\n")
    assert "rate" in error_of(run("simulate", "--adapters-file", str(adapters)))[-1]
    lengths = tmp_path / "l.csv"
    for text, message in (("prompt_tokens,output_tokens\n-1,5\n", "negative token counts"),
                          ("prompt_tokens,output_tokens\n", "no requests"),
                          ("prompt_tokens,output_tokens\n200000,5\n", "no request fits max_model_len"),
                          ("prompt,output\n1,5\n", "unknown request-file columns")):
        lengths.write_text(text)
        assert message in error_of(run("simulate", "--lengths", str(lengths)))[-1]
    lengths.write_text("prompt_tokens,output_tokens\n10,5\n")
    assert "no arrival times" in error_of(run("simulate", "--trace", str(lengths)))[-1]


def test_calibrate_writes_a_loadable_profile(tmp_path, shared):
    out = tmp_path / "p.json"
    run("calibrate", str(shared / "reference" / "calibration"), "--model", "qwen-2.5-7b-instruct", "--gpu", "h100-64gb",
        "--vllm-version", "0.8.5", "--max-model-len", "32768", "--out", str(out), check=True)
    p = run("simulate", "--profile", str(out), "--duration", "120", "--json", check=True)
    assert json.loads(p.stdout)["profile"] == "qwen-2.5-7b-instruct_h100-64gb"


def test_validate_summary_on_a_slice(shared, tmp_path):
    """A small slice of the measured runs: the summary's keys, start-up prediction, and accuracy on light runs."""
    import csv

    src = shared / "reference" / "runs" / "llama-3.1-8b-instruct_h100-64gb.csv"
    rows = list(csv.DictReader(open(src)))
    light = [r for r in rows if r["adapter_rates"] == "0.1;0.05;0.025" and r["n_adapters"] in ("8", "16", "32")]
    failed = [r for r in rows if r["status"] != "ok"][:3]
    sl = tmp_path / "slice.csv"
    with open(sl, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(light + failed)
    s = json.loads(run("twin", "validate", str(sl), "--json", check=True).stdout)
    assert s["n_runs"] == len(light) + len(failed)
    assert s["client_ports"] == 28232  # the reference harness's client by default
    assert s["length_sigma"] == 0.8
    for key in ("throughput_mape_pct", "throughput_max_ape_pct", "starved_accuracy", "startup_accuracy", "reference_twin"):
        assert key in s
    assert s["itl_errors"]["n"] == s["ttft_errors"]["n"] == len(light)  # latency beside throughput, every light run
    assert s["itl_errors"]["median_ape_pct"] <= s["itl_errors"]["max_ape_pct"]
    assert s["startup_accuracy"] == 1.0
    assert s["starved_accuracy"] == 1.0
    assert s["throughput_mape_pct"] <= 3.0 and s["throughput_max_ape_pct"] <= 5.0
    fixed = json.loads(run("twin", "validate", str(sl), "--json", "--length-sigma", "0", check=True).stdout)
    assert fixed["length_sigma"] == 0.0 and fixed["throughput_mape_pct"] != s["throughput_mape_pct"]
    # several seeds: a summary each (the first the one-seed summary), each metric's range, the flags that move
    many = json.loads(run("twin", "validate", str(sl), "--json", "--seeds", "0,5", "--rows", check=True).stdout)
    assert many["seeds"] == [0, 5] and [p["seed"] for p in many["per_seed"]] == [0, 5]
    assert {k: v for k, v in many["per_seed"][0].items() if k != "seed"} == {k: v for k, v in s.items() if k not in (
        "seed", "profile", "runs_file", "client_ports", "length_sigma")}
    mape = many["across_seeds"]["throughput_mape_pct"]
    assert mape["min"] <= mape["mean"] <= mape["max"] and mape["min"] != mape["max"]
    assert isinstance(many["across_seeds"]["flag_unstable_runs"], list) and set(many["rows"]) == {"0", "5"}


def test_across_seeds_names_the_runs_whose_flag_moves():
    from loraplace.twin.validate import across_seeds

    def row(run_id, flag):
        return {"run_id": run_id, "predicted_starved": flag}

    a = across_seeds([([row("a", 1), row("b", 0), row("c", None)], {"throughput_mape_pct": 2.0, "starved_accuracy": 1.0}),
                      ([row("a", 1), row("b", 1), row("c", None)], {"throughput_mape_pct": 4.0, "starved_accuracy": 0.5})])
    assert a["flag_unstable_runs"] == ["b"]
    assert a["throughput_mape_pct"] == {"mean": 3.0, "min": 2.0, "max": 4.0}
    assert a["starved_accuracy"] == {"mean": 0.75, "min": 0.5, "max": 1.0} and "throughput_max_ape_pct" not in a


def test_bpp_solve_and_bench(tmp_path):
    (tmp_path / "s").mkdir()
    inst = tmp_path / "s" / "a.txt"
    inst.write_text("9\n10\n6\n5\n4\n4\n3\n2\n2\n2\n2\n")
    out = json.loads(run("bpp", "solve", str(inst), "--solvers", "ffd,cpsat", "--json", check=True).stdout)
    by = {r["solver"]: r for r in out["results"]}
    assert by["ffd"]["bins"] == 4 and by["cpsat"]["bins"] == 3 and by["cpsat"]["status"] == "optimal"
    (tmp_path / "optima.csv").write_text("set,instance,file,n_items,capacity,optimum,optimum_kind,source,lower_bound,dims\n"
                                         "s,a,s/a.txt,9,10,3,proven,test,3,1\n")
    bench = json.loads(run("bpp", "bench", str(tmp_path), "--optima", str(tmp_path / "optima.csv"), "--solvers", "ffd,cbc",
                           "--json", check=True).stdout)
    rows = {r["solver"]: r for r in bench["sets"]}
    for key in ("name", "instances", "proven_optimal", "matched_known", "contradictions", "max_time_s"):
        assert key in rows["cbc"]
    assert rows["cbc"]["proven_optimal"] == 1 and rows["ffd"]["matched_known"] == 0 and rows["cbc"]["contradictions"] == 0


@pytest.mark.parametrize("args,message", [
    (("bpp", "solve", "/no/such.txt"), "not found"),
    (("bpp", "solve", "/no/such.txt", "--solvers", "magic"), "unknown solver"),
    (("bpp", "bench", "/tmp", "--optima", "/no/optima.csv"), "not found"),
])
def test_bpp_bad_input_is_one_line(args, message):
    lines = error_of(run(*args))
    assert len(lines) == 1 and message in lines[0]
