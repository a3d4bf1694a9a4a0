"""Build a small random-weight Llama-architecture model directory that vLLM serves offline.

The tokenizer is a word-level one over the words `w0 .. w{V-4}`, so a prompt of n words is exactly
n tokens: the harness controls prompt lengths precisely without a model hub.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL = ("<unk>", "<s>", "</s>")


@dataclass(frozen=True)
class TinySpec:
    """Shape of the synthetic model (small enough to serve on a laptop CPU)."""

    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    vocab_size: int = 2048
    max_position_embeddings: int = 4096
    seed: int = 0


def word(i: int) -> str:
    """The i-th ordinary token of the tiny tokenizer."""
    return f"w{i}"


def llama_config(spec: TinySpec) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers, "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads, "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_position_embeddings, "hidden_act": "silu",
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }


def build_tokenizer(spec: TinySpec, out: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for i in range(spec.vocab_size - len(SPECIAL)):
        vocab[word(i)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "model_max_length": spec.max_position_embeddings, "add_bos_token": False,
    }, indent=1))
    (out / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))


def llama_weights(spec: TinySpec) -> dict:
    """Random weights with the Hugging Face Llama tensor names (seeded)."""
    import torch

    g = torch.Generator().manual_seed(spec.seed)
    h, f, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    kv = h // spec.num_attention_heads * spec.num_key_value_heads

    def rand(*shape: int):
        return torch.randn(*shape, generator=g) * 0.02

    w = {"model.embed_tokens.weight": rand(v, h), "model.norm.weight": torch.ones(h), "lm_head.weight": rand(v, h)}
    for i in range(spec.num_hidden_layers):
        p = f"model.layers.{i}."
        w |= {p + "self_attn.q_proj.weight": rand(h, h), p + "self_attn.k_proj.weight": rand(kv, h),
              p + "self_attn.v_proj.weight": rand(kv, h), p + "self_attn.o_proj.weight": rand(h, h),
              p + "mlp.gate_proj.weight": rand(f, h), p + "mlp.up_proj.weight": rand(f, h),
              p + "mlp.down_proj.weight": rand(h, f),
              p + "input_layernorm.weight": torch.ones(h), p + "post_attention_layernorm.weight": torch.ones(h)}
    return w


def build_tiny_model(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write config, weights (safetensors) and tokenizer to `out`; returns `out`."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(llama_config(spec), indent=1))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    save_file(llama_weights(spec), str(out / "model.safetensors"))
    build_tokenizer(spec, out)
    (out / "loraplace-tiny.json").write_text(json.dumps({"tiny_spec": asdict(spec)}, indent=1))
    return out
