"""Property tests: the emulated vLLM V1 scheduler keeps its invariants on random busy workloads."""

import numpy as np
import pytest
from conftest import small_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loraplace.twin.engine as engine
from loraplace.twin.client import PortLimitedClient
from loraplace.twin.scheduler import ADAPTER, BLOCKS, V1Scheduler


class CheckedScheduler(V1Scheduler):
    """Checks every plan as it is made and records the first admission order."""

    admissions: list = []

    def schedule(self):
        plan = super().schedule()
        cfg = self.cfg
        rid, _, _, computed, _, blocks, adapter = self.rows(plan.k)
        held = int(self.rows()[BLOCKS].sum())
        assert 0 <= self.free and held + self.free == self.num_blocks, "KV blocks over capacity or leaked"
        assert int(plan.tokens.sum()) <= cfg.max_num_batched_tokens, "token budget exceeded"
        assert self.n <= cfg.max_num_seqs
        assert np.unique(adapter).size <= cfg.max_loras, "more distinct adapters than max_loras in a batch"
        assert (plan.tokens > 0).all()
        need = -(-(computed + plan.tokens) // self.bs)
        assert (blocks >= need).all(), "a scheduled request lacks KV blocks for its tokens"
        assert (self.run_count == np.bincount(self.rows()[ADAPTER], minlength=len(self.run_count))).all()
        if plan.admitted:
            CheckedScheduler.admissions.extend(rid[-plan.admitted:].tolist())
        return plan


@pytest.fixture
def checked(monkeypatch):
    monkeypatch.setattr(engine, "V1Scheduler", CheckedScheduler)
    CheckedScheduler.admissions = []
    return CheckedScheduler


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 24), slots=st.integers(1, 24), kv=st.integers(6000, 60000), seed=st.integers(0, 10_000),
       seqs=st.integers(4, 256), budget=st.integers(512, 4096))
def test_invariants_hold_under_pressure(checked, llama, n, slots, kv, seed, seqs, budget):
    sim = small_sim(llama, n_adapters=n, max_loras=slots, kv_tokens=kv, seed=seed, duration=60.0,
                    max_num_seqs=seqs, budget=budget)
    res = sim.run()
    assert res.completed <= res.arrivals
    # tokens conserved: a completed request produced exactly its output tokens
    assert res.throughput_tok_s <= res.ideal_tok_s + 1e-9


def test_tokens_conserved_and_fcfs_without_adapter_limit(checked, llama):
    """With slots for every adapter, first admissions follow arrival order (only preemption reorders)."""
    sim = small_sim(llama, n_adapters=8, max_loras=8, duration=90.0)
    from loraplace.twin.requests import RequestTable

    seen = []
    orig = RequestTable.__init__

    def keep(self, wl):
        orig(self, wl)
        seen.append(self)

    RequestTable.__init__ = keep
    try:
        sim.run()
    finally:
        RequestTable.__init__ = orig
    table = seen[0]
    first = list(dict.fromkeys(checked.admissions))
    assert first == sorted(first), "first admissions out of arrival order"
    done = np.isfinite(table.finish)
    assert done.any()
    assert (table.generated[done] == table.output[done]).all()
    assert (table.first_token[done] <= table.finish[done]).all() and (table.arrival[done] <= table.first_token[done]).all()


def test_preemption_happens_and_keeps_invariants(checked, llama):
    sim = small_sim(llama, n_adapters=6, max_loras=6, rates=(4.0,), kv_tokens=8000, duration=60.0)
    res = sim.run()
    assert res.preemptions > 0
    assert res.completed > 0


def test_adapter_limit_skips_but_serves(checked, llama):
    sim = small_sim(llama, n_adapters=16, max_loras=2, rates=(0.2,), duration=120.0)
    res = sim.run()
    assert res.adapter_loads > 2  # slots were reused by other adapters
    assert res.completed > 0


@pytest.mark.parametrize("case", [
    {},  # busy: admissions at most steps
    {"kv_tokens": 9000},  # preemption
    {"n_adapters": 64, "max_loras": 2, "rates": (0.2,)},  # a full batch skips most waiting requests
    {"n_adapters": 100, "max_loras": 4, "rates": (0.05,)},  # light load: runs end at arrivals and completions
    {"n_adapters": 30, "max_loras": 8, "rates": (1.0,), "client": PortLimitedClient(ports=60, time_wait_s=5.0)},
    {"n_adapters": 16, "max_loras": 16, "rates": (0.5,), "max_num_seqs": 8},
])
def test_skipping_decode_runs_is_exact(llama, case):
    """Taking runs of decode steps in one go gives the same answer as stepping one at a time."""
    fast = small_sim(llama, duration=90.0, **case).run()
    slow = small_sim(llama, duration=90.0, exact=True, **case).run()
    assert (fast.steps, fast.completed, fast.preemptions, fast.adapter_loads, fast.dropped) == \
        (slow.steps, slow.completed, slow.preemptions, slow.adapter_loads, slow.dropped)
    assert fast.throughput_tok_s == pytest.approx(slow.throughput_tok_s, rel=1e-9)
    for metric in ("mean_ttft_ms", "p99_ttft_ms", "mean_itl_ms", "p99_itl_ms"):
        assert getattr(fast, metric) == pytest.approx(getattr(slow, metric), rel=1e-6), metric


def _running_loop_one_by_one(sched: V1Scheduler, budget: int):
    """vLLM's running loop as written there: each request in turn, preempting the newest until it fits."""
    bs = sched.bs
    _, prompt, _, comp_row, gen, blocks_row, _ = sched.rows()
    comp, todo, blocks = comp_row.tolist(), (prompt + gen - comp_row).tolist(), blocks_row.tolist()
    free, n, i, take = sched.free, sched.n, 0, []
    while i < n and budget > 0:
        k = min(todo[i], budget)
        need = -(-(comp[i] + k) // bs) - blocks[i]
        while need > free and n > i:
            n -= 1
            free += blocks[n]
        if n == i:
            break
        if need > 0:
            g = min(need + sched.prealloc, free, sched.max_blocks_per_req - blocks[i])
            blocks[i] += g
            free -= g
        take.append(k)
        budget -= k
        i += 1
    return take, sched.n - n, budget, free, blocks[:n]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000), n=st.integers(1, 60), budget=st.integers(1, 4096), spare=st.integers(0, 40))
def test_block_grants_match_vllms_running_loop(llama, seed, n, budget, spare):
    """The running loop of a step short of blocks grants and preempts exactly as vLLM's one-at-a-time loop."""
    import copy

    rng = np.random.default_rng(seed)
    sim = small_sim(llama, n_adapters=8, max_loras=8, duration=60.0, seed=seed % 7)
    table = engine.RequestTable(sim.workload)
    sched = V1Scheduler(table, sim.cfg, 0, len(sim.adapters), preallocate_blocks=4)
    n = min(n, len(table.arrival))
    prompt, output = table.prompt[:n], table.output[:n]
    gen = rng.integers(0, output)  # none finished
    # most requests decode (all but the newest token computed); some are part way through a prefill
    computed = np.where(rng.random(n) < 0.3, rng.integers(0, prompt + gen), prompt + gen - 1)
    blocks = -(-computed // sched.bs) + rng.integers(0, 5, n)  # plus what preallocation left over
    sched._append(np.array([np.arange(n), prompt, output, computed, gen, blocks, table.adapter[:n]]))
    sched.run_count[:] = np.bincount(table.adapter[:n], minlength=len(sim.adapters))
    sched.num_blocks, sched.free = int(blocks.sum()) + spare, spare
    reference = copy.deepcopy(sched)
    take, victims, left = sched._schedule_running_sequential(sched._tokens_within_budget(budget), budget)
    r_take, r_victims, r_left, r_free, r_blocks = _running_loop_one_by_one(reference, budget)
    assert take.tolist() == r_take and victims == r_victims and left == r_left
    assert sched.free == r_free and sched.rows()[BLOCKS].tolist() == r_blocks and sched.n == len(r_blocks)
