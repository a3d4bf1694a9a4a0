"""Shared fixtures: the reference data beside the checkout (tests needing it skip cleanly without it)."""

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "reference").is_dir():
        pytest.skip("../shared/reference is not present")
    return SHARED


@pytest.fixture(scope="session")
def llama():
    from loraplace.twin.profile import load_profile

    return load_profile("llama-3.1-8b-instruct_h100-64gb")


def small_sim(profile, n_adapters=12, max_loras=4, rates=(2.0, 1.0, 0.5), ranks=(8, 16), duration=120.0, seed=0,
              kv_tokens=None, exact=False, max_num_seqs=2048, budget=2048, client=None, engine="python"):
    """A short, busy simulation (with an optional KV cap to force preemption); by default on the Python engine, whose
    scheduler tests inspect (engine="auto": the compiled loop where built)."""
    import dataclasses

    from loraplace.twin.arrivals import poisson_workload
    from loraplace.twin.engine import SimOptions, Simulator
    from loraplace.twin.entities import LengthSpec, ServingConfig
    from loraplace.twin.validate import make_adapters

    adapters = make_adapters(n_adapters, list(ranks), list(rates), seed)
    config = ServingConfig(max_loras=max_loras, max_lora_rank=max(ranks), max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=budget, max_model_len=4096)
    if kv_tokens is not None:  # shrink the KV cache: same slope, intercept moved so capacity is kv_tokens here
        mem = profile.memory
        shift = kv_tokens - mem.kv_tokens(max_loras, max(ranks))
        profile = dataclasses.replace(profile, memory=dataclasses.replace(mem, kv_tokens_intercept=mem.kv_tokens_intercept + shift))
    wl = poisson_workload(adapters, duration, LengthSpec(), np.random.default_rng(seed))
    return Simulator(profile, config, adapters, wl, SimOptions(duration=duration, exact_steps=exact, client=client,
                                                                engine=engine))
