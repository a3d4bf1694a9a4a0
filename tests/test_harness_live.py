"""Against a live vLLM (skipped where vllm is not installed): a tiny model served, a short measured
run, and the probe's counters consistent with what the client saw."""

import importlib.util
import socket

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tiny_server_measured_run(tmp_path):
    from loraplace.harness.adapters import build_adapters
    from loraplace.harness.loadgen import Request
    from loraplace.harness.observe import observe
    from loraplace.harness.server import ServerConfig, start_server
    from loraplace.harness.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    adapters = build_adapters(model, tmp_path / "adapters", [8, 16, 8, 16])
    cfg = ServerConfig(model, "tiny", [(n, p) for n, p, _ in adapters], max_loras=2, max_lora_rank=16, port=free_port())
    with start_server(cfg, tmp_path / "server.log", probe=tmp_path / "probe") as s:
        assert s.kv_cache_tokens and s.vllm_version
        reqs = [Request(0.05 * i, adapters[i % 4][0], 20 + i, 8) for i in range(40)]
        o = observe(s.url, s.probe, reqs, 60.0, drain=True)
    assert o.errors == 0 and o.completed == 40
    assert o.prompt_tokens == sum(r.prompt_tokens for r in reqs) and o.output_tokens == 40 * 8
    assert o.steps > 8 and 0 < o.mean_loras <= 2  # never more adapters in a batch than max_loras
    assert o.activations >= 2 and o.busy_step_ms > 0
