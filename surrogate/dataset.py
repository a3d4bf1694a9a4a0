"""Twin data as model inputs: queries, feature rows, targets, and the seeded train/validation/test split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loraplace.twin.entities import LengthSpec
from loraplace.twin.errors import InputFileError
from loraplace.twin.oracle import GpuQuery
from loraplace.twin.profile import Profile

from .features import feature_matrix
from .generate import read_data
from .model import SATURATED

SPLIT = (0.70, 0.15, 0.15)  # train, validation (early stopping), test (held out for evaluation)


@dataclass
class Dataset:
    header: dict  # the first file's (every file shares its profile, window and threshold)
    queries: list[GpuQuery]
    X: np.ndarray
    y: dict[str, np.ndarray]
    sources: list[dict]  # per file: name, sha256, records used, seed

    @property
    def sha256(self) -> str:
        """One hash for the whole set of files, in order."""
        return hashlib.sha256("".join(f["sha256"] for f in self.sources).encode()).hexdigest()

    def subset(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.X[rows], {k: v[rows] for k, v in self.y.items()}

    def designs(self) -> np.ndarray:
        """Per row, the kind of design its file holds ('space-filling' or 'near-boundary')."""
        return np.repeat([f["design"] for f in self.sources], [f["records"] for f in self.sources])


def _log(values: list) -> np.ndarray:
    a = np.array([np.nan if v is None else float(v) for v in values])
    return np.log(np.where(a > 0, a, np.nan))


SHARED_SETTINGS = ("format", "profile", "profile_sha256", "window_s", "starvation_threshold", "client_ports")


def load_dataset(paths: list[Path], profile: Profile) -> Dataset:
    """Records of one or more data files whose server started (start-up failures are decided exactly by the
    profile, not learnt). Files must share the profile, window, threshold and client; their designs may differ."""
    head, ok, sources = None, [], []
    for path in paths:
        h, records = read_data(path)
        if h["profile"] != profile.name:
            raise InputFileError(f"{path} was generated for profile {h['profile']}, not {profile.name}")
        if head is not None and any(h.get(k) != head.get(k) for k in SHARED_SETTINGS):
            raise InputFileError(f"{path} was generated with other settings than {paths[0]}")
        head = head or h
        used = [r for r in records if r["status"] == "ok" and r["ideal_tok_s"] > 0]
        ok += used
        sources.append({"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                        "records": len(used), "seed": h["seed"], "samples": h["samples"],
                        "design": h.get("selection", {}).get("kind", "space-filling")})
    if len(ok) < 20:
        raise InputFileError(f"only {len(ok)} usable records in {', '.join(map(str, paths))}; generate more samples")
    queries = [GpuQuery.of(r["ranks"], r["rates"], r["max_loras"], LengthSpec(r["mean_input"], r["mean_output"]),
                           r["max_lora_rank"]) for r in ok]
    ratio = np.array([r["throughput_tok_s"] / r["ideal_tok_s"] for r in ok])
    thr = np.array([r["throughput_tok_s"] for r in ok])
    y = {"ratio": ratio,
         "log_saturated_tok_s": np.where((ratio < SATURATED) & (thr > 0), np.log(np.maximum(thr, 1e-9)), np.nan),
         "starved": np.array([float(r["starved"]) for r in ok]),
         "log_itl_ms": _log([r["mean_itl_ms"] for r in ok]),
         "log_ttft_ms": _log([r["mean_ttft_ms"] for r in ok])}
    return Dataset(head, queries, feature_matrix(queries, profile), y, sources)


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded row indices for training, validation and test."""
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(SPLIT[0] * n), int((SPLIT[0] + SPLIT[1]) * n)
    return np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])
