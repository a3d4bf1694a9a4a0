"""Per-request record as arrays (struct of arrays): workload, first-token and finish times; running state lives in the scheduler."""

from __future__ import annotations

import numpy as np

from .arrivals import Workload


class RequestTable:
    """State of every request of a workload, indexed by request id (its position in the workload)."""

    def __init__(self, workload: Workload):
        n = len(workload)
        self.arrival = workload.arrival
        self.adapter = workload.adapter
        self.prompt = workload.prompt
        self.output = workload.output
        self.generated = np.zeros(n, np.int64)  # output tokens produced, as of the last preemption or the finish
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.preemptions = np.zeros(n, np.int64)
