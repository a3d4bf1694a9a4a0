"""The port-limited client: an overloaded server never holds more requests than the client has ports."""

import numpy as np
import pytest
from conftest import small_sim

import loraplace.twin.engine as engine
from loraplace.twin.client import PortLimitedClient
from loraplace.twin.errors import ConfigError
from loraplace.twin.scheduler import RID, V1Scheduler


class PortCheckedScheduler(V1Scheduler):
    """Checks at every step that requests in flight fit the ports and that no dropped request runs."""

    ports = 0

    def schedule(self):
        plan = super().schedule()
        assert self.n_waiting + self.n <= PortCheckedScheduler.ports, "more requests in flight than client ports"
        assert not self.dropped[self.rows()[RID]].any(), "a dropped request was admitted"
        assert self.n_waiting >= 0
        return plan


@pytest.fixture
def port_checked(monkeypatch):
    monkeypatch.setattr(engine, "V1Scheduler", PortCheckedScheduler)
    return PortCheckedScheduler


@pytest.mark.parametrize("time_wait", [0.0, 5.0])
def test_requests_in_flight_never_exceed_ports(port_checked, llama, time_wait):
    port_checked.ports = 40
    res = small_sim(llama, n_adapters=8, max_loras=8, rates=(4.0,), duration=90.0,
                    client=PortLimitedClient(ports=40, time_wait_s=time_wait)).run()
    assert res.dropped > 0
    assert res.completed + res.dropped <= res.arrivals
    assert res.throughput_tok_s < res.ideal_tok_s


def test_time_wait_holds_ports_back(llama):
    """Ports held after each completion leave fewer for new requests: more arrivals are dropped."""
    fast = small_sim(llama, n_adapters=8, max_loras=8, rates=(4.0,), duration=90.0,
                     client=PortLimitedClient(ports=40, time_wait_s=0.0)).run()
    slow = small_sim(llama, n_adapters=8, max_loras=8, rates=(4.0,), duration=90.0,
                     client=PortLimitedClient(ports=40, time_wait_s=10.0)).run()
    assert slow.dropped > fast.dropped
    assert slow.completed < fast.completed


def test_enough_ports_change_nothing(llama):
    """A client with a port for every arrival sends them all: the run is the open client's, step for step."""
    open_run = small_sim(llama, duration=60.0).run()
    limited = small_sim(llama, duration=60.0, client=PortLimitedClient(ports=10**6)).run()
    assert limited.dropped == 0
    assert (limited.steps, limited.completed, limited.preemptions) == (open_run.steps, open_run.completed, open_run.preemptions)
    assert limited.throughput_tok_s == open_run.throughput_tok_s and limited.mean_ttft_ms == open_run.mean_ttft_ms


def test_dropped_requests_are_skipped_per_adapter(port_checked, llama):
    """The scheduler's per-adapter cursors pass over dropped requests, including ones behind waiting requests."""
    port_checked.ports = 25
    sim = small_sim(llama, n_adapters=3, max_loras=1, rates=(5.0,), duration=30.0,
                    client=PortLimitedClient(ports=25, time_wait_s=0.0))
    res = sim.run()
    assert res.dropped > 0 and res.completed > 0
    assert np.isfinite(res.mean_ttft_ms)


@pytest.mark.parametrize("ports, time_wait", [(0, 60.0), (-5, 60.0), (100, -1.0), (100, float("nan"))])
def test_bad_client_settings_are_refused(ports, time_wait):
    with pytest.raises(ConfigError):
        PortLimitedClient(ports=ports, time_wait_s=time_wait)
