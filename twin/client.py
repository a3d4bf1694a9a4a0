"""The load generator's side of a run: a client that opens one TCP connection per request can run out of ports.

The reference measurements' client (one aiohttp session per request, to a server on localhost) holds a
local port for every request in flight and, once a request completes, for the kernel's TIME_WAIT. When
no port is free, connect() fails (errno 99, "Cannot assign requested address", which the reference logs
show in every overloaded run) and the request never reaches the server. So an overloaded server sees a
waiting queue capped at about the port range, not one that grows for the whole window; its mean TTFT
plateaus (about 983 s median against 997 s p99 in the 64-adapter, 64-slot run of the reference).
Defaults are Linux's: ports 32768-60999 and a 60-s TIME_WAIT.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

LINUX_EPHEMERAL_PORTS = 60999 - 32768 + 1
LINUX_TIME_WAIT_S = 60.0


@dataclass(frozen=True)
class PortLimitedClient:
    """A client with `ports` local ports, one per request in flight, each held `time_wait_s` after its request ends."""

    ports: int = LINUX_EPHEMERAL_PORTS
    time_wait_s: float = LINUX_TIME_WAIT_S

    def __post_init__(self) -> None:
        if self.ports <= 0:
            raise ConfigError(f"client ports must be positive, got {self.ports}")
        if not self.time_wait_s >= 0:
            raise ConfigError(f"client TIME_WAIT must be >= 0 s, got {self.time_wait_s}")


def client_with_ports(ports: int) -> PortLimitedClient | None:
    """The `--client-ports` convention: 0 sends every arrival, otherwise a client with that many ports."""
    return PortLimitedClient(ports=ports) if ports else None


class PortPool:
    """Ports in use during a run: requests delivered and not yet closed for longer than TIME_WAIT."""

    def __init__(self, client: PortLimitedClient):
        self.client = client
        self.closed_at: list[float] = [float("-inf")]  # completion times, and how many had completed by each
        self.closed_by: list[int] = [0]

    def close(self, times: np.ndarray) -> None:
        """Requests completed at `times` (sorted, never before an earlier call's)."""
        for t in times.tolist():
            if t == self.closed_at[-1]:
                self.closed_by[-1] += 1
            else:
                self.closed_at.append(t)
                self.closed_by.append(self.closed_by[-1] + 1)

    def free(self, sched, now: float) -> int:
        """Ports free at `now` for the arrivals not yet delivered (negative: more are held than exist)."""
        released = self.closed_by[bisect.bisect_right(self.closed_at, now - self.client.time_wait_s) - 1]
        return self.client.ports - (sched.arrived - sched.n_dropped - released)

    def next_release(self, now: float) -> float:
        """When a port next comes free after `now`: the end of the earliest TIME_WAIT still running, or TIME_WAIT
        after `now` (a request that completes later releases its port later)."""
        j = bisect.bisect_right(self.closed_at, now - self.client.time_wait_s)
        return (self.closed_at[j] if j < len(self.closed_at) else now) + self.client.time_wait_s

    def deliver(self, sched, upto: int, now: float) -> None:
        """Arrivals up to id `upto` reach the scheduler as far as ports allow, in arrival order; the rest are dropped."""
        free = self.free(sched, now)
        if upto - sched.arrived > free:
            sched.drop(np.arange(sched.arrived + max(free, 0), upto))
