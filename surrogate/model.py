"""The surrogate estimator: CatBoost models for throughput ratio, starvation, ITL and TTFT, with fit/predict/save/load.

Saved as native CatBoost files (`<target>.cbm`) with `metadata.json` beside them (features, data hash,
training settings, metrics), so a model can be reloaded and its provenance read without CatBoost.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loraplace.twin.errors import ConfigError, InputFileError

from .features import FEATURES
from .trees import ObliviousTrees

# throughput / offered; log of the throughput of saturated GPUs (fitted on them alone); starvation; log latencies
TARGETS = ("ratio", "log_saturated_tok_s", "starved", "log_itl_ms", "log_ttft_ms")
SATURATED = 0.95  # below this share of its offered load a GPU is saturated: its throughput is its capacity
DEFAULT_PARAMS = {"iterations": 3000, "learning_rate": 0.05, "depth": 6, "early_stopping_rounds": 200}
SMALL_ROWS = 16  # calls of up to this many rows may be answered by the trees' copy (surrogate/trees.py): in C it beats
# CatBoost's fixed cost per call up to 16 to 32 rows (the shipped ratio models, 2026-11-29)


def starved_rule(pred: dict[str, np.ndarray], threshold: float, classifier: bool = True) -> np.ndarray:
    """The oracle's starvation decision: the classifier (when asked at its own threshold) or a predicted
    throughput below the threshold."""
    out = pred["ratio"] < threshold
    return out | (pred["starved_probability"] >= 0.5) if classifier else out


class SurrogateModel:
    """Five CatBoost models over the same feature rows; `predict` returns plain arrays keyed by output.

    Throughput is modelled in two regimes, because trees cannot extrapolate a ratio that falls as
    1/offered load: below saturation it is the predicted share of the offered load; once that share
    falls below SATURATED, it is the saturated throughput, learnt on saturated configurations only
    (a capacity, which stays flat however far the load goes past it), and never more than the share says."""

    def __init__(self, params: dict | None = None, seed: int = 0, threads: int = 2):
        self.params, self.seed, self.threads = {**DEFAULT_PARAMS, **(params or {})}, seed, threads
        if not 1 <= self.params["depth"] <= 16:
            raise ConfigError(f"CatBoost tree depth must be 1 to 16, got {self.params['depth']}")
        self.models: dict = {}
        self.trees: dict[str, ObliviousTrees] = {}
        self.small_calls: dict[str, int] = {}  # small calls CatBoost answered, per target, before the copy
        self.metadata: dict = {}

    def _estimator(self, target: str):
        from catboost import CatBoostClassifier, CatBoostRegressor

        common = dict(self.params, random_seed=self.seed, thread_count=self.threads, verbose=False,
                      allow_writing_files=False)  # otherwise CatBoost litters catboost_info/ in the working directory
        return CatBoostClassifier(**common) if target == "starved" else CatBoostRegressor(**common)

    def fit(self, X: np.ndarray, y: dict[str, np.ndarray], X_val: np.ndarray, y_val: dict[str, np.ndarray]) -> "SurrogateModel":
        """Fit every target; rows where a target is NaN (no request finished, or not saturated) are left out of it."""
        for target in TARGETS:
            tr, va = np.isfinite(y[target]), np.isfinite(y_val[target])
            model = self._estimator(target)
            model.fit(X[tr], y[target][tr], eval_set=(X_val[va], y_val[target][va]), use_best_model=True)
            self.models[target] = model
        self.trees, self.small_calls = {}, {}
        return self

    def predict(self, X: np.ndarray, which: tuple[str, ...] = ("ratio", "starved", "itl", "ttft")) -> dict[str, np.ndarray]:
        """Per row: throughput (tokens/s) and its ratio to the offered load, starvation probability, mean ITL and
        TTFT (ms); only the outputs asked for."""
        out = {}
        if "ratio" in which:
            offered = X[:, FEATURES.index("offered_tok_s")]
            safe = np.where(offered > 0, offered, 1.0)
            share = self._raw("ratio", X)
            low = share < SATURATED  # only these rows need the saturated model
            if low.any():
                saturated = np.exp(self._raw("log_saturated_tok_s", X[low]))
                share[low] = np.minimum(saturated / safe[low], share[low])
            out["throughput_tok_s"] = share * offered
            out["ratio"] = out["throughput_tok_s"] / safe
        if "starved" in which:
            out["starved_probability"] = 1.0 / (1.0 + np.exp(-self._raw("starved", X)))
        if "itl" in which:
            out["itl_ms"] = np.exp(self._raw("log_itl_ms", X))
        if "ttft" in which:
            out["ttft_ms"] = np.exp(self._raw("log_ttft_ms", X))
        return out

    def _raw(self, target: str, X: np.ndarray) -> np.ndarray:
        """A model's raw value per row (log-odds for the classifier): the copy of its trees for a few rows once it
        pays for itself, CatBoost otherwise.

        Building the copy costs 0.15 to 0.21 ms per tree, and each one-row call it then answers saves 0.25 to 0.75
        ms (CatBoost 0.26 to 0.79 ms, the copy 0.013 to 0.062 ms in C, 0.04 to 0.12 ms in numpy: the shipped ratio
        and starvation models, 2026-11-29), so the copy pays for itself after about half as many calls as the
        model has trees. As in ski rental, CatBoost answers that
        many first: a short job never builds it, a long one spends at most about twice the best choice."""
        if len(X) <= SMALL_ROWS:
            if target not in self.trees:
                self.small_calls[target] = self.small_calls.get(target, 0) + 1
                if self.small_calls[target] > self.models[target].tree_count_ // 2:
                    self.trees[target] = ObliviousTrees.from_catboost(self.models[target])
            if target in self.trees:
                return self.trees[target].raw(X)
        return self.models[target].predict(X, prediction_type="RawFormulaVal")

    def prepare_small_calls(self) -> None:
        """Build the copy of every model's trees now (for a job known to make many small calls)."""
        for target, model in self.models.items():
            if target not in self.trees:
                self.trees[target] = ObliviousTrees.from_catboost(model)

    def save(self, folder: Path, metadata: dict) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for target, model in self.models.items():
            model.save_model(str(folder / f"{target}.cbm"))
        self.metadata = {**metadata, "features": list(FEATURES), "targets": list(TARGETS), "params": self.params,
                         "seed": self.seed, "best_iterations": {t: int(m.get_best_iteration() or 0) for t, m in self.models.items()}}
        (folder / "metadata.json").write_text(json.dumps(self.metadata, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder) -> "SurrogateModel":
        """Reload from a folder (a path or an importlib resource) written by `save`."""
        from catboost import CatBoostClassifier, CatBoostRegressor

        folder = Path(str(folder))
        try:
            meta = json.loads((folder / "metadata.json").read_text())
        except FileNotFoundError:
            raise InputFileError(f"no surrogate model in {folder} (metadata.json missing)") from None
        if meta.get("features") != list(FEATURES):
            raise InputFileError(f"{folder}: model features {meta.get('features')} differ from this version's")
        self = cls(meta.get("params"), meta.get("seed", 0))
        for target in TARGETS:
            model = CatBoostClassifier() if target == "starved" else CatBoostRegressor()
            model.load_model(str(folder / f"{target}.cbm"))
            self.models[target] = model
        self.metadata = meta
        return self
