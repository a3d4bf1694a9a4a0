"""GPU adapter slots: `max_loras` slots, least-recently-used eviction, a load per miss (served adapters sit in CPU memory)."""

from __future__ import annotations

import numpy as np


class LoraSlots:
    def __init__(self, n_adapters: int, n_slots: int):
        self.n_slots = n_slots
        self.resident = np.zeros(n_adapters, bool)
        self.last_used = np.full(n_adapters, -1, np.int64)
        self.clock = 0

    def activate(self, batch_adapters: np.ndarray, new_adapters: np.ndarray | None) -> int:
        """Make the batch's adapters resident; returns how many had to be loaded.

        Only `new_adapters` (those of requests admitted this step; None when there are none) can be missing:
        every running request's adapter stays resident, since eviction spares the batch and only admissions load.
        """
        self.clock += 1
        loads = 0
        if new_adapters is not None:
            missing = new_adapters[~self.resident[new_adapters]]
            if len(missing):
                missing = np.unique(missing)
                self.last_used[batch_adapters] = self.clock  # the batch's own adapters are never evicted
                for a in missing:
                    if self.resident.sum() >= self.n_slots:
                        cand = np.flatnonzero(self.resident)
                        self.resident[cand[np.argmin(self.last_used[cand])]] = False
                    self.resident[a] = True
                    loads += 1
        self.last_used[batch_adapters] = self.clock
        return loads

    def ran(self, adapters: np.ndarray, last_step: np.ndarray, steps: int) -> None:
        """`steps` more steps followed the last `activate`; `adapters` were last in the batch at `last_step` (1 = the
        first of them, 0 = none), which orders them for eviction as activating at every step would."""
        self.last_used[adapters] = self.clock + last_step
        self.clock += steps
