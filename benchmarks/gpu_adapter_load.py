"""GPU check of the profiles' adapter load cost: how long copying one LoRA adapter into GPU slots takes.

vLLM keeps one GPU slot per `max_loras`, sized for `max_lora_rank`, and loads an adapter by copying
each layer's A and B matrices into its slot. This times that copy with torch alone (no vLLM), for a
Llama-3.1-8B-shaped adapter, so the calibrated `cpu_to_gpu_mean_ms` can be split into the transfer
itself and the engine's own overhead. Needs a CUDA GPU and torch; writes one JSON object.

    python benchmarks/gpu_adapter_load.py --json gpu_adapter_load.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HIDDEN, INTERMEDIATE, LAYERS, KV_OUT = 4096, 14336, 32, 1024  # Llama-3.1-8B
MODULES = {  # name: (in features, out features)
    "q_proj": (HIDDEN, HIDDEN), "k_proj": (HIDDEN, KV_OUT), "v_proj": (HIDDEN, KV_OUT), "o_proj": (HIDDEN, HIDDEN),
    "gate_proj": (HIDDEN, INTERMEDIATE), "up_proj": (HIDDEN, INTERMEDIATE), "down_proj": (INTERMEDIATE, HIDDEN),
}
TARGETS = {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "all-linear": list(MODULES)}


def time_ms(torch, fn, repeat: int) -> float:
    """Median wall time of `fn` in ms, the GPU synchronised around each call (two warm-up calls first)."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def measure(torch, rank: int, max_rank: int, modules: list[str], pinned: bool, repeat: int) -> dict:
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator().manual_seed(0)
    host, slots = [], []
    for _ in range(LAYERS):
        for m in modules:
            fin, fout = MODULES[m]
            a, b = torch.randn(rank, fin, generator=g).to(dt), torch.randn(fout, rank, generator=g).to(dt)
            host += [a.pin_memory(), b.pin_memory()] if pinned else [a, b]
            slots += [torch.zeros(max_rank, fin, device=dev, dtype=dt), torch.zeros(fout, max_rank, device=dev, dtype=dt)]

    def per_tensor():  # what an engine does: one slice copy per matrix into its padded slot
        for i in range(0, len(host), 2):
            slots[i][:rank].copy_(host[i], non_blocking=pinned)
            slots[i + 1][:, :rank].copy_(host[i + 1], non_blocking=pinned)

    flat_host = torch.cat([t.flatten() for t in host])
    flat_host = flat_host.pin_memory() if pinned else flat_host
    flat_dev = torch.empty_like(flat_host, device=dev)
    nbytes = flat_host.numel() * flat_host.element_size()
    per_tensor_ms = time_ms(torch, per_tensor, repeat)
    one_copy_ms = time_ms(torch, lambda: flat_dev.copy_(flat_host, non_blocking=pinned), repeat)
    return {"rank": rank, "max_lora_rank": max_rank, "targets": len(modules), "pinned": pinned,
            "adapter_mib": round(nbytes / 2**20, 2), "copies": len(host),
            "per_tensor_ms": round(per_tensor_ms, 3), "one_copy_ms": round(one_copy_ms, 3),
            "one_copy_gb_s": round(nbytes / one_copy_ms / 1e6, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="8:16,8:32,16:16,16:32,32:32,32:64", help="rank:max_lora_rank pairs")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("error: this benchmark needs torch", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = []
    for pair in args.ranks.split(","):
        rank, max_rank = (int(x) for x in pair.split(":"))
        for name, modules in TARGETS.items():
            for pinned in (True, False):
                row = {"target_modules": name, **measure(torch, rank, max_rank, modules, pinned, args.repeat)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "repeat": args.repeat,
           "model_shape": "llama-3.1-8b (32 layers, hidden 4096, intermediate 14336, kv 1024), bf16", "rows": rows}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
