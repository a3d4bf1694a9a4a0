"""`loraplace surrogate train`: fit the CatBoost models on twin data and save them with their provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loraplace.twin.profile import Profile

from .dataset import SPLIT, Dataset, load_dataset, split
from .generate import profile_hash
from .metrics import ape_summary, classification_summary
from .model import SurrogateModel, starved_rule


def holdout_metrics(model: SurrogateModel, ds: Dataset, rows: np.ndarray) -> dict:
    """Errors on rows the model never saw: throughput and the oracle's starvation decision (and the classifier's
    alone); where the data mixes designs, also per design (near-boundary rows are the hardest by construction)."""
    kinds = ds.designs()[rows]
    by_design = {k: _metrics(model, ds, rows[kinds == k]) for k in sorted(set(kinds))} if len(set(kinds)) > 1 else {}
    return {**_metrics(model, ds, rows), **({"by_design": by_design} if by_design else {})}


def _metrics(model: SurrogateModel, ds: Dataset, rows: np.ndarray) -> dict:
    X, y = ds.subset(rows)
    pred = model.predict(X)
    ideal = np.array([ds.queries[i].offered_tok_s for i in rows])
    threshold = ds.header.get("starvation_threshold", 0.9)
    return {"n_rows": int(len(rows)), **ape_summary(y["ratio"] * ideal, pred["throughput_tok_s"]),
            **classification_summary(y["starved"] > 0.5, starved_rule(pred, threshold)),
            "classifier_alone_starvation_f1": classification_summary(y["starved"] > 0.5,
                                                                     pred["starved_probability"] >= 0.5)["starvation_f1"]}


def train(data: list[Path], profile: Profile, out: Path, seed: int = 0, params: dict | None = None,
          command: str = "") -> dict:
    """Fit on the training split (early stopping on validation), report the test split, save to `out`."""
    ds = load_dataset(data, profile)
    tr, va, te = split(len(ds.queries), seed)
    model = SurrogateModel(params, seed).fit(*ds.subset(tr), *ds.subset(va))
    metrics = holdout_metrics(model, ds, te)
    from catboost import __version__ as catboost_version

    model.save(out, {"profile": profile.name, "profile_sha256": profile_hash(profile),
                     "data": {"files": ds.sources, "sha256": ds.sha256, "records": len(ds.queries),
                              **{k: ds.header[k] for k in ("format", "profile_sha256", "window_s", "starvation_threshold",
                                                           "twin_version")},
                              "client_ports": ds.header.get("client_ports", 0)},
                     "split": {"seed": seed, "fractions": list(SPLIT)}, "test_metrics": metrics,
                     "catboost_version": catboost_version, "command": command})
    return metrics
