"""The compiled step loop (twin/_core.c) against the Python engine stepping one step at a time: bit for bit."""

import dataclasses

import numpy as np
import pytest
from conftest import small_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loraplace.twin.engine as engine
from loraplace.twin import native
from loraplace.twin.client import PortLimitedClient

pytestmark = pytest.mark.skipif(not native.available(), reason="the twin's C core was not built (no C compiler)")


def _run_keeping_table(sim):
    """Run `sim`; returns its result and request table (first token, finish, generated and preemptions per request)."""
    tables = []

    class Table(engine.RequestTable):
        def __init__(self, workload):
            super().__init__(workload)
            tables.append(self)

    orig, engine.RequestTable = engine.RequestTable, Table
    try:
        return sim.run(), tables[0]
    finally:
        engine.RequestTable = orig


def _assert_same(case: dict, duration: float) -> None:
    fast, fast_table = _run_keeping_table(small_sim(duration=duration, engine="auto", **case))
    slow, slow_table = _run_keeping_table(small_sim(duration=duration, engine="python", exact=True, **case))
    a, b = dataclasses.asdict(fast), dataclasses.asdict(slow)
    for key in a.keys() - {"wall_s"}:
        assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), key  # NaN equals NaN
    for field in ("generated", "first_token", "finish", "preemptions"):
        assert np.array_equal(getattr(fast_table, field), getattr(slow_table, field), equal_nan=True), field


@pytest.mark.parametrize("case", [
    {},  # busy
    {"kv_tokens": 9000},  # preemption
    {"n_adapters": 64, "max_loras": 2, "rates": (0.2,)},  # a full batch skips most waiting requests
    {"n_adapters": 100, "max_loras": 4, "rates": (0.05,)},  # light load
    {"n_adapters": 30, "max_loras": 8, "rates": (1.0,), "client": PortLimitedClient(ports=60, time_wait_s=5.0)},
    {"n_adapters": 16, "max_loras": 16, "rates": (0.5,), "max_num_seqs": 8},
])
def test_native_core_matches_the_python_engine(llama, case):
    _assert_same({"profile": llama, **case}, duration=90.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 80), slots=st.integers(1, 32), kv=st.integers(5000, 80000), seed=st.integers(0, 1000),
       seqs=st.integers(2, 300), budget=st.integers(256, 4096), rate=st.floats(0.02, 3.0),
       ports=st.one_of(st.none(), st.integers(10, 300)), time_wait=st.floats(0.0, 10.0))
def test_native_core_matches_on_random_servers(llama, n, slots, kv, seed, seqs, budget, rate, ports, time_wait):
    client = PortLimitedClient(ports=ports, time_wait_s=time_wait) if ports else None
    _assert_same({"profile": llama, "n_adapters": n, "max_loras": slots, "rates": (rate, rate / 2, rate / 4),
                  "kv_tokens": kv, "seed": seed, "max_num_seqs": seqs, "budget": budget, "client": client},
                 duration=60.0)


def test_native_core_rejects_arrays_of_other_lengths():
    f, i = np.zeros(3), np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="one 8-byte value per request"):
        native._core.simulate(f, i, i, np.zeros(2, np.int64), i.copy(), f.copy(), f.copy(), i.copy(),
                              (1, 1, 8, 2048, 16, 256, 4, 100), (0.0,) * 12 + (1.0,), 0, 0.0, 10.0)


def test_native_core_matches_with_a_working_set_lora_term(llama):
    """A profile whose LoRA tokens cost what their working set sets (profile.StepTimeModel), knees inside the steps."""
    step = dataclasses.replace(llama.step, lora_ms_per_token=0.0, lora_ms_per_prefill_token=0.0, lora_ref_rank=32.0,
                               lora_ws_ms_lo=0.02, lora_ws_ms_hi=0.08, lora_ws_knee_lo=100.0, lora_ws_knee_hi=1500.0)
    _assert_same({"profile": dataclasses.replace(llama, step=step)}, duration=90.0)
