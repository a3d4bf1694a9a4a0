"""Arrivals and lengths: means matched exactly in expectation, counts conditioned, traces read."""

import numpy as np
import pytest

from loraplace.twin.arrivals import Burst, poisson_workload, read_length_sample, read_trace, trace_workload
from loraplace.twin.entities import Adapter, LengthSpec
from loraplace.twin.errors import ConfigError, InputFileError
from loraplace.twin.lengths import _clipped_lognormal_mean, sample_lengths, solve_mu


@pytest.mark.parametrize("mean,lo,hi,sigma", [(223.0, 4, 1024, 0.8), (196.0, 1, 1024, 1.2), (900.0, 4, 1024, 0.5)])
def test_clipped_mean_is_solved_exactly(mean, lo, hi, sigma):
    assert _clipped_lognormal_mean(solve_mu(mean, sigma, lo, hi), sigma, lo, hi) == pytest.approx(mean, rel=1e-9)


def test_sampled_lengths_keep_the_means_and_bounds():
    spec = LengthSpec(mean_input=223.0, mean_output=196.0)
    p, o = sample_lengths(spec, 400_000, np.random.default_rng(3))
    assert p.mean() == pytest.approx(223.0, rel=0.005) and o.mean() == pytest.approx(196.0, rel=0.005)
    assert p.min() >= spec.min_input and p.max() <= spec.max_input
    assert (p + o).max() <= spec.max_total


def test_poisson_counts_rates_and_conditioning():
    adapters = [Adapter("a", 8, 2.0), Adapter("b", 8, 1.0), Adapter("c", 8, 0.0)]
    wl = poisson_workload(adapters, 2000.0, LengthSpec(), np.random.default_rng(1))
    counts = np.bincount(wl.adapter, minlength=3)
    assert counts[2] == 0
    assert counts[0] == pytest.approx(4000, rel=0.05) and counts[1] == pytest.approx(2000, rel=0.07)
    assert (np.diff(wl.arrival) >= 0).all() and wl.arrival.max() < 2000.0
    exact = poisson_workload(adapters, 2000.0, LengthSpec(), np.random.default_rng(1), count=5555)
    assert len(exact) == 5555


def test_bursts_switch_rates():
    adapters = [Adapter("a", 8, 1.0)]
    wl = poisson_workload(adapters, 2000.0, LengthSpec(), np.random.default_rng(2), burst=Burst.parse("100:4,100:0"))
    phase = (wl.arrival // 100).astype(int) % 2
    assert (phase == 1).sum() == 0 and (phase == 0).sum() == pytest.approx(4000, rel=0.06)
    with pytest.raises(ConfigError):
        Burst.parse("10-2")
    with pytest.raises(ConfigError):
        Burst.parse("0:1")


def test_bad_rates_and_durations():
    with pytest.raises(ConfigError, match="rate"):
        Adapter("a", 8, -0.1)
    with pytest.raises(ConfigError, match="rank"):
        Adapter("a", 0, 1.0)
    with pytest.raises(ConfigError, match="duration"):
        poisson_workload([Adapter("a", 8, 1.0)], 0, LengthSpec(), np.random.default_rng(0))


def test_azure_trace_replay(shared):
    path = shared / "workloads-public" / "AzureLLMInferenceTrace_conv.csv"
    t, pin, pout = read_trace(path)
    assert len(t) == 19366 and t[0] == 0 and (np.diff(t) >= 0).all()
    assert pin.mean() == pytest.approx(1154.7, rel=0.01) and pout.mean() == pytest.approx(211.1, rel=0.01)
    wl = trace_workload(path, [Adapter("a", 8, 1.0), Adapter("b", 8, 3.0)], 600.0, np.random.default_rng(0), 131072)
    assert wl.arrival.max() < 600.0 and np.bincount(wl.adapter)[1] > np.bincount(wl.adapter)[0]


def test_malformed_trace(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match="unknown request-file columns"):
        read_trace(f)
    f.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\nx,1,2\n")
    with pytest.raises(InputFileError, match="malformed"):
        read_trace(f)


def test_length_sample_files(tmp_path):
    """A length sample replaces the log-normal: requests draw its pairs, and pairs past max_model_len are dropped."""
    f = tmp_path / "l.csv"
    f.write_text("prompt_tokens,output_tokens\n100,50\n300,20\n5000,10\n")
    spec = read_length_sample(f, max_model_len=4096)
    assert spec.sample == ((100, 50), (300, 20)) and (spec.mean_input, spec.mean_output) == (200.0, 35.0)
    wl = poisson_workload([Adapter("a", 8, 5.0)], 200.0, spec, np.random.default_rng(0))
    assert set(zip(wl.prompt.tolist(), wl.output.tolist())) == {(100, 50), (300, 20)}
    with pytest.raises(ConfigError, match="empty"):
        LengthSpec.from_sample([])


def test_sharegpt_length_sample(shared):
    """Vidur's ShareGPT length file (no arrival times): its means as the README of workloads-public gives them."""
    sharegpt = read_length_sample(shared / "workloads-public" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv", 131072)
    assert len(sharegpt.sample) == 30731
    assert sharegpt.mean_input == pytest.approx(2340.0, abs=0.05) and sharegpt.mean_output == pytest.approx(438.7, abs=0.05)
    with pytest.raises(InputFileError, match="no arrival times"):
        read_trace(shared / "workloads-public" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
