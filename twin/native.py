"""The engine's step loop compiled (twin/_core.c): the same scheduler, adapter slots, client and step-time model,
stepped one engine step at a time in C. Built when the package is installed with a C compiler; without one the
Python engine runs, to the same results (tests/test_native_core.py compares the two)."""

from __future__ import annotations

import numpy as np

try:
    from . import _core
except ImportError:  # installed without a C compiler
    _core = None


def available() -> bool:
    return _core is not None


def run(sim, table, predictor, num_blocks: int, preallocate: int) -> dict:
    """Simulate `sim`'s window on `table` (filled in place); returns the engine's step statistics."""
    cfg, client = sim.cfg, sim.opt.client
    server = (len(sim.adapters), cfg.max_loras, cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.block_size,
              -(-cfg.max_model_len // cfg.block_size), preallocate, num_blocks)
    out = _core.simulate(np.ascontiguousarray(table.arrival, np.float64), np.ascontiguousarray(table.adapter, np.int64),
                         np.ascontiguousarray(table.prompt, np.int64), np.ascontiguousarray(table.output, np.int64),
                         table.generated, table.first_token, table.finish, table.preemptions, server, predictor.coefficients(),
                         client.ports if client else 0, client.time_wait_s if client else 0.0, sim.opt.duration)
    out["itl_d"] = np.frombuffer(out["itl_d"] or b"", np.float64)
    out["itl_w"] = np.frombuffer(out["itl_w"] or b"", np.int64)
    return out
