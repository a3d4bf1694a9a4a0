"""Per-request state as arrays (struct of arrays), so the scheduler can work on whole batches at once."""

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
        self.computed = np.zeros(n, np.int64)   # tokens whose KV is computed (vLLM num_computed_tokens)
        self.generated = np.zeros(n, np.int64)  # output tokens produced so far
        self.blocks = np.zeros(n, np.int64)     # KV blocks held
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.preemptions = np.zeros(n, np.int64)

    def num_tokens(self, ids: np.ndarray | int):
        """Prompt plus generated tokens: what must be in the KV cache before the next token."""
        return self.prompt[ids] + self.generated[ids]
