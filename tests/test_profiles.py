"""Shipped profiles: loadable, sane, and exactly what `loraplace calibrate` makes from the recorded inputs."""

import hashlib
import json

import pytest

from loraplace.twin.calibrate import CALIBRATION_FILES, calibrate
from loraplace.twin.errors import InputFileError, UnknownProfileError
from loraplace.twin.profile import load_profile, shipped_profiles

SHIPPED = {
    "llama-3.1-8b-instruct_h100-64gb": ("llama-3.1-8b-instruct", "h100-64gb", "0.8.5", 131072),
    "qwen-2.5-7b-instruct_h100-64gb": ("qwen-2.5-7b-instruct", "h100-64gb", "0.8.5", 32768),
}


def test_both_profiles_ship():
    assert set(SHIPPED) <= set(shipped_profiles())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profile_regenerates_exactly(shared, name):
    """The shipped JSON is byte-for-byte what the documented calibrate command produces from ../shared."""
    model, gpu, version, mml = SHIPPED[name]
    caldir = shared / "reference" / "calibration"
    fresh = calibrate(caldir, model, gpu, version, mml)
    shipped = load_profile(name)
    recorded = shipped.provenance["inputs_sha256"]
    assert recorded == {f: hashlib.sha256((caldir / f).read_bytes()).hexdigest() for f in CALIBRATION_FILES}
    assert json.loads(fresh.to_json()) == json.loads(shipped.to_json())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_profile_reproduces_measured_kv_capacity_and_startup(shared, name):
    """KV capacity within 7 % of what vLLM reported, and start-up status right, on the calibration rows."""
    import csv

    p = load_profile(name)
    rows = [r for r in csv.DictReader(open(shared / "reference" / "calibration" / "kv_capacity.csv"))
            if r["model"] == p.model and r["source"] == "find_available_gpu_memory"]
    ok_status = 0
    for r in rows:
        ml, rk = int(r["max_loras"]), int(r["max_lora_rank"])
        predicted = p.memory.startup_status(ml, rk, p.max_model_len)
        ok_status += (predicted == "ok") == (r["status"] == "ok")
        if r["kv_cache_tokens"]:
            assert p.memory.kv_tokens(ml, rk) == pytest.approx(float(r["kv_cache_tokens"]), rel=0.07)
    assert ok_status == len(rows)


def test_unknown_profile_names_the_shipped_ones():
    with pytest.raises(UnknownProfileError, match="shipped profiles"):
        load_profile("no-such-model_h100")


def test_malformed_profile_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_profile(str(bad))
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(InputFileError, match="missing or has a malformed field"):
        load_profile(str(bad))
    good = json.loads(load_profile("llama-3.1-8b-instruct_h100-64gb").to_json())
    good["step"]["intercept_ms"] = -1
    bad.write_text(json.dumps(good))
    with pytest.raises(InputFileError, match="positive"):
        load_profile(str(bad))
    good["step"]["intercept_ms"] = 1.0
    for ws, message in (({"lora_ws_ms_lo": 0.1}, "all four"),
                        ({"lora_ws_ms_lo": 0.1, "lora_ws_ms_hi": 0.2, "lora_ws_knee_lo": 500.0, "lora_ws_knee_hi": 100.0},
                         "knees 0 < lo < hi")):
        bad.write_text(json.dumps(good | {"step": good["step"] | ws}))
        with pytest.raises(InputFileError, match=message):
            load_profile(str(bad))


def test_calibrate_rejects_bad_directories(tmp_path, shared):
    with pytest.raises(InputFileError, match="not found"):
        calibrate(tmp_path / "missing", "m", "g", "0.8.5", 1024)
    for f in CALIBRATION_FILES:
        (tmp_path / f).write_bytes((shared / "reference" / "calibration" / f).read_bytes())
    (tmp_path / "loading.csv").write_text("model,cpu_to_gpu_mean_ms\nllama-3.1-8b-instruct,abc\n")
    with pytest.raises(InputFileError, match="non-numeric"):
        calibrate(tmp_path, "llama-3.1-8b-instruct", "g", "0.8.5", 131072)
    with pytest.raises(InputFileError, match="no rows for model"):
        calibrate(shared / "reference" / "calibration", "gpt-9", "g", "0.8.5", 1024)


# (hidden, intermediate, layers, KV heads, vocab or 0 where vLLM 0.8.5 puts no LoRA on the embeddings and lm_head)
ARCHITECTURES = {"llama-3.1-8b-instruct_h100-64gb": (4096, 14336, 32, 8, 128256),
                 "qwen-2.5-7b-instruct_h100-64gb": (3584, 18944, 28, 4, 0)}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_slot_memory_matches_the_adapter_shapes(name):
    """The KV tokens one GPU adapter slot costs per unit of max_lora_rank, fitted from what vLLM reported, equal the
    bf16 bytes of one rank of the slot's LoRA buffers over the KV bytes of one token, from the model's shapes: the
    A and B rows of q, k, v, o, gate, up and down in every layer, plus, for Llama, the embedding and lm_head
    buffers (vocabulary + 256 extra tokens). Within 1 %: a check that the memory fit is physics, not curve."""
    hidden, inter, layers, kv_heads, vocab = ARCHITECTURES[name]
    kv_out = kv_heads * 128
    linear = sum(i + o for i, o in [(hidden, hidden), (hidden, kv_out), (hidden, kv_out), (hidden, hidden),
                                    (hidden, inter), (hidden, inter), (inter, hidden)]) * layers
    embeddings = 2 * (vocab + 256 + hidden) if vocab else 0
    tokens_per_slot_rank = (linear + embeddings) * 2 / (layers * kv_out * 2 * 2)
    assert load_profile(name).memory.kv_tokens_per_slot_rank == pytest.approx(tokens_per_slot_rank, rel=0.01)
