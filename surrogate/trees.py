"""CatBoost's oblivious trees as numpy arrays: predictions for a few rows without CatBoost's per-call cost.

A CatBoost call costs about 0.2 ms before it looks at a tree, which dominates the solvers' calls of one or
two rows. An oblivious tree asks the same question at every node of a level, so it is a list of (feature,
border) splits and a table of 2^depth leaves: the leaf is the number whose bit i says whether split i
holds (the feature, rounded to float32 as CatBoost stores it, above the border). Large batches stay with
CatBoost, which is faster there. The sum over the trees runs in C (surrogate/_trees.c) where the package was
built with a compiler, in numpy otherwise; the two agree to rounding (tests/test_surrogate.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

try:
    from . import _trees
except ImportError:  # installed without a C compiler
    _trees = None


class ObliviousTrees:
    """The raw formula value (sum of one leaf per tree, scaled and shifted) of a CatBoost model, in C or numpy."""

    def __init__(self, features: np.ndarray, borders: np.ndarray, leaves: np.ndarray, scale: float, bias: float):
        if features.shape[1] > 8:
            raise ValueError("trees deeper than 8 levels are not supported")
        if features.max() > 255:
            raise ValueError("trees over more than 256 features are not supported")
        self.features = np.ascontiguousarray(features, np.uint8)  # (trees, depth): a feature index fits a byte
        self.borders = np.ascontiguousarray(borders, np.float32)  # (trees, depth)
        self.leaves = np.ascontiguousarray(leaves, np.float64)  # (trees, 2^depth)
        self.n_features = int(self.features.max()) + 1  # the fewest columns a row needs
        self.scale, self.bias = scale, bias
        self.bits = (1 << np.arange(features.shape[1])).astype(np.uint8)  # a leaf number fits a byte
        self.first_leaf = np.arange(len(leaves)) * leaves.shape[1]  # each tree's offset in the flat leaf table

    @classmethod
    def from_catboost(cls, model) -> "ObliviousTrees":
        """Read the trees from CatBoost's JSON export (the documented, exact form of its float32 borders)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.json"
            model.save_model(str(path), format="json")
            spec = json.loads(path.read_text())
        trees = spec["oblivious_trees"]
        depth = max(len(t["splits"]) for t in trees)
        features = np.zeros((len(trees), depth), np.int64)
        borders = np.full((len(trees), depth), np.inf, np.float32)  # padding splits never hold: their bit stays 0
        leaves = np.zeros((len(trees), 2**depth))
        for i, t in enumerate(trees):
            if any(s["split_type"] != "FloatFeature" for s in t["splits"]):
                raise ValueError("only float-feature splits are supported")
            for j, s in enumerate(t["splits"]):
                features[i, j], borders[i, j] = s["float_feature_index"], s["border"]
            leaves[i, : len(t["leaf_values"])] = t["leaf_values"]
        scale, (bias,) = spec["scale_and_bias"]
        return cls(features, borders, leaves, float(scale), float(bias))

    def raw(self, X: np.ndarray) -> np.ndarray:
        """One value per row of X: what CatBoost's predict gives a regressor, the log-odds of a classifier."""
        X = np.ascontiguousarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] < self.n_features:
            raise ValueError(f"rows of {self.n_features} features or more expected, got shape {X.shape}")
        if _trees is None:
            return self.raw_numpy(X)
        out = np.empty(len(X))
        _trees.leaf_sums(X, X.shape[1], self.features, self.borders, self.leaves, self.features.shape[1], out)
        return self.scale * out + self.bias

    def raw_numpy(self, X: np.ndarray) -> np.ndarray:
        """`raw` in numpy alone (the fallback without the compiled loop)."""
        holds = np.take(X.astype(np.float32), self.features, axis=1) > self.borders  # (rows, trees, depth)
        leaf = holds.view(np.uint8) @ self.bits
        return self.scale * self.leaves.ravel()[self.first_leaf + leaf].sum(axis=1) + self.bias
