"""Error measures shared by training, evaluation and the benchmarks."""

from __future__ import annotations

import numpy as np


def ape_summary(measured: np.ndarray, predicted: np.ndarray) -> dict:
    """Throughput MAPE, median and max absolute percentage error (rows with measured > 0)."""
    keep = measured > 0
    if not keep.any():
        return {"throughput_mape_pct": None, "throughput_median_ape_pct": None, "throughput_max_ape_pct": None}
    ape = np.abs(predicted[keep] - measured[keep]) / measured[keep] * 100
    return {"throughput_mape_pct": round(float(ape.mean()), 3), "throughput_median_ape_pct": round(float(np.median(ape)), 3),
            "throughput_max_ape_pct": round(float(ape.max()), 3)}


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the F1 scores of both classes (a class absent from both sides scores 1)."""
    scores = []
    for c in (False, True):
        tp = np.sum((predicted == c) & (truth == c))
        fp = np.sum((predicted == c) & (truth != c))
        fn = np.sum((predicted != c) & (truth == c))
        scores.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def classification_summary(truth: np.ndarray, predicted: np.ndarray) -> dict:
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    return {"starvation_accuracy": round(float(np.mean(truth == predicted)), 4) if len(truth) else None,
            "starvation_f1": round(macro_f1(truth, predicted), 4) if len(truth) else None}
