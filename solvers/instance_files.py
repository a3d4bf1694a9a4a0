"""Placement instances on disk (the JSON format of instances/placement-instance.schema.json, or an adapters CSV)
and placements written back out: a placement JSON plus one `vllm serve` command per GPU."""

from __future__ import annotations

import json
import math
import shlex
from importlib import resources
from pathlib import Path

from loraplace.twin.entities import Adapter, LengthSpec
from loraplace.twin.errors import InputFileError, LoraplaceError
from loraplace.twin.instances import read_adapters_csv

from .placement import Placement, PlacementInstance

FORMAT = "loraplace-instance/1"
REQUIRED = ("format", "name", "profile", "adapters")
OPTIONAL = ("mean_input_tokens", "mean_output_tokens", "length_sigma", "gpus", "starvation_threshold", "generator")
ADAPTER_FIELDS = ("id", "rank", "rate")


def _number(d: dict, key: str, where: str, default=None):
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputFileError(f"{where}: {key} must be a finite number, got {v!r}")
    return v


def instance_from_dict(d: dict, where: str) -> PlacementInstance:
    """Check a parsed instance against the format and build it; errors name the file and the field."""
    if not isinstance(d, dict):
        raise InputFileError(f"{where}: an instance must be a JSON object")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise InputFileError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(d) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise InputFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    if d["format"] != FORMAT:
        raise InputFileError(f"{where}: format must be {FORMAT!r}, got {d['format']!r}")
    if not isinstance(d["adapters"], list) or not d["adapters"]:
        raise InputFileError(f"{where}: adapters must be a non-empty list")
    adapters = []
    for i, a in enumerate(d["adapters"]):
        if not isinstance(a, dict) or set(a) != set(ADAPTER_FIELDS):
            raise InputFileError(f"{where}: adapters[{i}] needs exactly the fields id, rank and rate")
        if not isinstance(a["rank"], int) or isinstance(a["rank"], bool):
            raise InputFileError(f"{where}: adapters[{i}].rank must be an integer")
        try:
            adapters.append(Adapter(str(a["id"]), a["rank"], _number(a, "rate", f"{where}: adapters[{i}]")))
        except LoraplaceError as e:
            raise InputFileError(f"{where}: adapters[{i}]: {e}") from None
    gpus = d.get("gpus")
    if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool)):
        raise InputFileError(f"{where}: gpus must be an integer or null")
    try:
        return PlacementInstance(
            name=str(d["name"]), profile=str(d["profile"]), adapters=tuple(adapters),
            lengths=LengthSpec(mean_input=_number(d, "mean_input_tokens", where, LengthSpec.mean_input),
                               mean_output=_number(d, "mean_output_tokens", where, LengthSpec.mean_output),
                               sigma=_number(d, "length_sigma", where, LengthSpec.sigma)),
            gpus=gpus, starvation_threshold=_number(d, "starvation_threshold", where, 0.9),
            generator=dict(d.get("generator") or {}))
    except LoraplaceError as e:
        raise InputFileError(f"{where}: {e}") from None


def instance_to_dict(inst: PlacementInstance) -> dict:
    return {"format": FORMAT, "name": inst.name, "profile": inst.profile,
            "mean_input_tokens": inst.lengths.mean_input, "mean_output_tokens": inst.lengths.mean_output,
            **({"length_sigma": inst.lengths.sigma} if inst.lengths.sigma != LengthSpec.sigma else {}),
            "gpus": inst.gpus, "starvation_threshold": inst.starvation_threshold, "generator": inst.generator,
            "adapters": [{"id": a.id, "rank": a.rank, "rate": a.rate} for a in inst.adapters]}


def shipped_instance(name: str):
    """A shipped instance file by name (instances/NAME.json, installed as loraplace.instances)."""
    return resources.files("loraplace.instances") / f"{name}.json"


def shipped_instances() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("loraplace.instances").iterdir()
                  if p.name.endswith(".json") and not p.name.endswith(".schema.json"))


def read_instance(path: Path, profile: str | None = None, lengths: dict | None = None,
                  gpus: int | None = None, threshold: float | None = None) -> PlacementInstance:
    """An instance from JSON (a path, or the name of a shipped instance), or from an adapters CSV plus options;
    options given override the file (`lengths`: any of the fields mean_input_tokens, mean_output_tokens and
    length_sigma)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and (shipped_instance(str(path))).is_file():
        path = Path(str(shipped_instance(str(path))))
    if path.suffix.lower() == ".csv":
        d = {"format": FORMAT, "name": path.stem, "profile": profile or "llama-3.1-8b-instruct_h100-64gb",
             "adapters": [{"id": a.id, "rank": a.rank, "rate": a.rate} for a in read_adapters_csv(path)]}
    else:
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputFileError(f"instance not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputFileError(f"{path}: not valid JSON ({e})") from None
        if isinstance(d, dict) and profile:
            d["profile"] = profile
    if isinstance(d, dict):
        d.update({k: v for k, v in (lengths or {}).items() if v is not None})
        if gpus is not None:
            d["gpus"] = gpus
        if threshold is not None:
            d["starvation_threshold"] = threshold
    return instance_from_dict(d, str(path))


def serve_command(model: str, plan, adapter_dir: str) -> str:
    """The `vllm serve` line for one GPU: LoRA enabled, its slots, CPU cache, rank limit and adapters."""
    modules = [f"{s.adapter.id}={adapter_dir.rstrip('/')}/{s.adapter.id}" for s in plan.shares]
    args = ["vllm", "serve", model, "--enable-lora", "--max-loras", str(plan.max_loras),
            "--max-cpu-loras", str(max(plan.max_cpu_loras, plan.max_loras)), "--max-lora-rank", str(plan.max_lora_rank),
            "--lora-modules", *modules]
    return " ".join(shlex.quote(a) for a in args)


def export(out: Path, inst: PlacementInstance, placement: Placement, model: str, adapter_dir: str = "adapters") -> list[Path]:
    """Write placement.json and gpu-NN.sh (one `vllm serve` per GPU) under `out`; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "placement.json"]
    body = {"instance": inst.name, "profile": inst.profile, "model": model, **placement.to_dict()}
    files[0].write_text(json.dumps(body, indent=2) + "\n")
    for g, plan in enumerate(placement.plans):
        f = out / f"gpu-{g:02d}.sh"
        f.write_text("#!/bin/sh\n# loraplace placement, strategy " + placement.strategy + f", GPU {g}\n"
                     + serve_command(model, plan, adapter_dir) + "\n")
        files.append(f)
    return files
