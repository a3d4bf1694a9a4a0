"""A design refined near the starvation boundary: candidates a trained model places close to the line.

Active learning in one round: draw a large space-filling design, keep the points that start and that a
model trained on the space-filling data predicts near the threshold (throughput share within a band
around it, or an uncertain classifier), and simulate a seeded random draw of them. The classifier is
then trained where its decisions are made, not only on the easy interior. The selecting model is named
in the data file (its training data's hash and files, settings and seed), so the file can be rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loraplace.twin.errors import ConfigError
from loraplace.twin.oracle import GpuQuery
from loraplace.twin.profile import Profile

from .features import feature_matrix
from .model import SurrogateModel

RATIO_BAND = (-0.10, 0.08)  # predicted throughput share, relative to the threshold
PROBABILITY_BAND = (0.1, 0.9)  # predicted starvation probability


@dataclass(frozen=True)
class BoundarySelection:
    """How a near-boundary file's points were chosen from `candidates` design points."""

    model: SurrogateModel
    candidates: int

    def header(self) -> dict:
        """The selecting model named by what determines it (training data, settings, seed, CatBoost version): a
        retrained model predicts the same, though CatBoost's files differ byte for byte."""
        meta = self.model.metadata
        return {"kind": "near-boundary", "candidates": self.candidates, "ratio_band": list(RATIO_BAND),
                "probability_band": list(PROBABILITY_BAND),
                "selector": {"data_sha256": meta.get("data", {}).get("sha256"),
                             "data_files": [f["file"] for f in meta.get("data", {}).get("files", [])],
                             "params": meta.get("params"), "seed": meta.get("seed"),
                             "catboost_version": meta.get("catboost_version")}}

    def pick(self, points: list[GpuQuery], profile: Profile, picks: int, threshold: float, seed: int) -> list[int]:
        """Indices of `picks` points drawn (seeded) among those that start and lie near the boundary."""
        starts = np.array([profile.memory.startup_status(q.max_loras, q.max_lora_rank, profile.max_model_len) == "ok"
                           for q in points])
        pred = self.model.predict(feature_matrix(points, profile), ("ratio", "starved"))
        ratio, prob = pred["ratio"] - threshold, pred["starved_probability"]
        near = starts & (((ratio > RATIO_BAND[0]) & (ratio < RATIO_BAND[1]))
                         | ((prob > PROBABILITY_BAND[0]) & (prob < PROBABILITY_BAND[1])))
        pool = np.flatnonzero(near)
        if len(pool) < picks:
            raise ConfigError(f"only {len(pool)} of {len(points)} candidates lie near the boundary, fewer than the "
                              f"{picks} asked for; raise --candidates")
        return sorted(int(i) for i in np.random.default_rng(seed).choice(pool, size=picks, replace=False))
