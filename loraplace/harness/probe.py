"""A vLLM general plugin that counts what the engine does, for the micro-benchmarks.

Registered as the `vllm.general_plugins` entry point `loraplace_probe`; inert unless the
environment names an output file in LORAPLACE_PROBE. The engine-core process then wraps the V1
scheduler (steps, scheduling CPU time, batch size, tokens, decode sequences, distinct adapters per
batch, waiting queue, wall time per step without idle gaps) and the worker process wraps the
LoRA managers (disk-to-CPU loads and CPU-to-device activations with their times). Each process rewrites `<file>.<role>.json` with its
cumulative counters every PERIOD_S while they change, so a reader takes differences between two snapshots.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

ENV = "LORAPLACE_PROBE"
ROLES = ("sched", "worker")  # the engine-core process and the worker process
PERIOD_S = 0.2


class Counters:
    """Cumulative counters of one process; a daemon thread rewrites the JSON file while they change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, float] = {}
        self.lock = threading.Lock()
        self.dirty = False
        self.thread: threading.Thread | None = None

    def add(self, **kv: float) -> None:
        with self.lock:
            for k, v in kv.items():
                self.values[k] = self.values.get(k, 0.0) + v
            self.dirty = True
        if self.thread is None:  # started on first use, in the process that uses it
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def set(self, **kv: float) -> None:
        with self.lock:
            self.values.update(kv)
        self.flush()

    def _run(self) -> None:
        while True:
            time.sleep(PERIOD_S)
            if self.dirty:
                self.flush()

    def flush(self) -> None:
        with self.lock:
            text = json.dumps({"time": time.time(), "pid": os.getpid(), **self.values})
            self.dirty = False
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)


def read_snapshot(base: Path, role: str) -> dict:
    """The latest counters one role wrote ({} before its first flush)."""
    p = Path(f"{base}.{role}.json")
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wrap_scheduler(counters: Counters) -> None:
    """Time each engine step: start to next start while work remains (the loop's own overhead included),
    start to the end of output processing for the last step before the engine idles (idle time excluded)."""
    from vllm.v1.core.sched.scheduler import Scheduler

    schedule_original, update_original = Scheduler.schedule, Scheduler.update_from_output
    state = {"start": None, "continues": False}

    def schedule(self, *args, **kwargs):
        t0 = time.perf_counter()
        if state["start"] is not None and state["continues"]:
            counters.add(busy_steps=1, busy_step_s=t0 - state["start"])
        out = schedule_original(self, *args, **kwargs)
        t1 = time.perf_counter()
        batch = len(out.num_scheduled_tokens)
        state["start"], state["continues"] = (t0 if batch else None), False
        if batch == 0:
            return out
        loras = {r.lora_request.lora_int_id for rid in out.num_scheduled_tokens
                 if (r := self.requests.get(rid)) is not None and r.lora_request is not None}
        decode = sum(1 for n in out.num_scheduled_tokens.values() if n == 1)
        prefill = out.total_num_scheduled_tokens - decode
        _, waiting = self.get_request_counts()
        counters.add(steps=1, sched_s=t1 - t0, batch=batch, tokens=out.total_num_scheduled_tokens,
                     decode_seqs=decode, prefill_sq=prefill * prefill, loras=len(loras), waiting=waiting,
                     preempted=len(out.preempted_req_ids or ()))
        return out

    def update_from_output(self, *args, **kwargs):
        result = update_original(self, *args, **kwargs)
        if state["start"] is not None:
            running, waiting = self.get_request_counts()
            state["continues"] = running + waiting > 0
            if not state["continues"]:
                counters.add(busy_steps=1, busy_step_s=time.perf_counter() - state["start"])
                state["start"] = None
        return result

    Scheduler.schedule, Scheduler.update_from_output = schedule, update_from_output


def tensor_bytes(model) -> int:
    """Bytes of every distinct tensor a model's modules hold: weights, buffers and LoRA slot stacks."""
    import torch

    seen, total = set(), 0
    for module in model.modules():
        values = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        for v in vars(module).values():
            values += list(v) if isinstance(v, (tuple, list)) else [v]
        for t in values:
            if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def _wrap_lora(counters: Counters) -> None:
    from vllm.lora.model_manager import LoRAModelManager
    from vllm.lora.worker_manager import LRUCacheWorkerLoRAManager, WorkerLoRAManager

    def measured(create):
        def create_lora_manager(self, *args, **kwargs):
            model = create(self, *args, **kwargs)
            counters.set(model_plus_lora_bytes=tensor_bytes(model))
            return model
        return create_lora_manager

    for cls in (WorkerLoRAManager, LRUCacheWorkerLoRAManager):
        if "create_lora_manager" in vars(cls):
            cls.create_lora_manager = measured(vars(cls)["create_lora_manager"])

    def timed(cls, name: str, key: str) -> None:
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            t0 = time.perf_counter()
            result = original(self, *args, **kwargs)
            if result is not False:  # activate_adapter returns False when already active
                counters.add(**{f"{key}_n": 1, f"{key}_s": time.perf_counter() - t0})
            return result

        setattr(cls, name, wrapper)

    timed(LoRAModelManager, "activate_adapter", "activations")
    timed(WorkerLoRAManager, "_load_adapter", "disk_loads")


def register() -> None:
    """Entry point vLLM calls in every process; does nothing without LORAPLACE_PROBE."""
    base = os.environ.get(ENV)
    if not base or getattr(register, "done", False):
        return
    register.done = True
    _wrap_scheduler(Counters(Path(f"{base}.sched.json")))
    _wrap_lora(Counters(Path(f"{base}.worker.json")))
