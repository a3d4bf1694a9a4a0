"""Synthetic LoRA adapters in PEFT format (random weights), one directory per adapter."""

from __future__ import annotations

import json
from pathlib import Path

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def read_model_shape(model_dir: Path) -> tuple[int, int, int, int]:
    """(hidden, kv projection width, layers, heads) from a Hugging Face config.json."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = h // heads * cfg.get("num_key_value_heads", heads)
    return h, kv, cfg["num_hidden_layers"], heads


def build_adapter(model_dir: Path, out: Path, rank: int, seed: int) -> Path:
    """One PEFT adapter of `rank` on the attention projections of the model in `model_dir`."""
    import torch
    from safetensors.torch import save_file

    h, kv, layers, _ = read_model_shape(model_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    width = {"q_proj": h, "k_proj": kv, "v_proj": kv, "o_proj": h}
    w = {}
    for i in range(layers):
        for m in TARGET_MODULES:
            p = f"base_model.model.model.layers.{i}.self_attn.{m}."
            w[p + "lora_A.weight"] = torch.randn(rank, h, generator=g) * 0.01
            w[p + "lora_B.weight"] = torch.randn(width[m], rank, generator=g) * 0.01
    save_file(w, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
        "target_modules": list(TARGET_MODULES), "bias": "none", "base_model_name_or_path": str(model_dir),
        "fan_in_fan_out": False, "inference_mode": True,
    }, indent=1))
    return out


def build_adapters(model_dir: Path, root: Path, ranks: list[int], seed: int = 0) -> list[tuple[str, Path, int]]:
    """Adapters `a000`, `a001`, ... with the given ranks; returns (name, path, rank) for each."""
    out = []
    for i, r in enumerate(ranks):
        name = f"a{i:03d}-r{r}"
        path = Path(root) / name
        if not (path / "adapter_config.json").exists():
            build_adapter(model_dir, path, r, seed * 100_003 + i)
        out.append((name, path, r))
    return out
