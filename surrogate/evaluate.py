"""`loraplace surrogate evaluate`: errors on held-out twin data and on measured runs, and prediction latency."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from loraplace.twin.entities import LengthSpec
from loraplace.twin.oracle import GpuQuery
from loraplace.twin.profile import Profile
from loraplace.twin.validate import Run, make_adapters, pattern

from .dataset import load_dataset, split
from .design import design
from .features import PER_GPU, feature_matrix, feature_matrix_arrays
from .metrics import ape_summary, classification_summary
from .model import SurrogateModel, starved_rule
from .train import holdout_metrics

LATENCY_ROWS = 10_000


def evaluate_holdout(model: SurrogateModel, data: list[Path], profile: Profile) -> dict:
    """The test split of the data the model was trained on (same seed, so the same rows)."""
    ds = load_dataset(data, profile)
    if ds.sha256 != model.metadata.get("data", {}).get("sha256"):
        note = "data differs from the training data: every row is scored"
        rows = np.arange(len(ds.queries))
    else:
        note = "held-out test split of the training data"
        rows = split(len(ds.queries), model.metadata["split"]["seed"])[2]
    return {**holdout_metrics(model, ds, rows), "note": note}


def run_query(run: Run, seed: int) -> GpuQuery | None:
    """The GPU configuration of a measured run, as `loraplace twin validate` rebuilds it (None if it did not serve).

    Where the run records how many requests arrived, the rates are scaled to that count, as the twin's
    replay conditions its arrivals on it: in the overloaded runs the client sent fewer than the nominal
    rates ask for (8-16/1.6-0.8-0.4/32_384: 91,000 tokens/s measured ideal against 150,000 nominal)."""
    n, ml, rank = run.get("n_adapters", int), run.get("max_loras", int), run.get("max_lora_rank", int)
    if run.row.get("status") != "ok" or not n or not ml or not rank or not run.get("throughput_tok_s"):
        return None
    adapters = make_adapters(n, pattern(run.row["adapter_ranks"], int, "adapter_ranks"),
                             pattern(run.row["adapter_rates"], float, "adapter_rates"), seed)
    lengths = LengthSpec(mean_input=run.get("mean_input_tokens") or 223.0, mean_output=run.get("mean_output_tokens") or 196.0)
    rates = np.array([a.rate for a in adapters])
    arrivals = run.get("arrivals", int)
    if arrivals:
        rates = rates * arrivals / (rates.sum() * (run.get("duration_s") or 3600.0))
    return GpuQuery.of([a.rank for a in adapters], rates.tolist(), ml, lengths, rank)


def evaluate_runs(model: SurrogateModel, runs: list[Run], profile: Profile, seed: int = 0) -> dict:
    """Measured throughput and starvation flag (the runs' 90 % rule) against the surrogate, on runs that started."""
    pairs = [(r, q) for r in runs if (q := run_query(r, seed)) is not None]
    if not pairs:
        return {"n_runs": 0}
    pred = model.predict(feature_matrix([q for _, q in pairs], profile))
    ideal = np.array([r.get("ideal_tok_s") or q.offered_tok_s for r, q in pairs])
    measured = np.array([r.get("throughput_tok_s") for r, _ in pairs])
    starved = np.array([bool(r.get("starved", int)) for r, _ in pairs])
    predicted = pred["ratio"] * ideal
    return {"n_runs": len(pairs), **ape_summary(measured, predicted),
            # unstarved runs: every request was served, so how the measuring client queued does not matter
            "unstarved_subset": {"n": int((~starved).sum()), **ape_summary(measured[~starved], predicted[~starved])},
            "starved_subset": {"n": int(starved.sum()), **ape_summary(measured[starved], predicted[starved])},
            **classification_summary(starved, starved_rule(pred, 0.9)),
            "classifier_alone_starvation_f1": classification_summary(starved, pred["starved_probability"] >= 0.5)["starvation_f1"]}


def latency(model: SurrogateModel, profile: Profile, repeats: int = 200) -> dict:
    """Median time of one single-row oracle call (features, throughput and starvation) through the copy of the
    trees, and per row of a 10,000-row batch (median of three): from plain arrays (the estimator's batch interface), from GpuQuery
    objects (the solvers' path, which also converts Python tuples) and the models alone; building the copy of the
    trees is reported apart."""
    queries = design(profile, LATENCY_ROWS, seed=12345)
    t = time.perf_counter()
    model.prepare_small_calls()  # what a long job's small calls use (a short job's stay with CatBoost)
    warm_up = time.perf_counter() - t
    singles = []
    for q in queries[:repeats]:
        t = time.perf_counter()
        model.predict(feature_matrix([q], profile), ("ratio", "starved"))
        singles.append(time.perf_counter() - t)
    arrays = ([len(q.ranks) for q in queries], [r for q in queries for r in q.ranks], [r for q in queries for r in q.rates],
              *([getattr(q, f) for q in queries] for f in PER_GPU))
    arrays = tuple(np.array(a) for a in arrays)
    t_arrays = _median_time(lambda: feature_matrix_arrays(*arrays, profile))
    t_queries = _median_time(lambda: feature_matrix(queries, profile))
    X = feature_matrix_arrays(*arrays, profile)
    t_model = _median_time(lambda: model.predict(X, ("ratio", "starved")))
    per_row = 1e6 / LATENCY_ROWS
    return {"latency_ms_single": round(float(np.median(singles)) * 1000, 4),
            "latency_us_per_row_batch": round((t_arrays + t_model) * per_row, 3),
            "latency_us_per_row_batch_from_queries": round((t_queries + t_model) * per_row, 3),
            "latency_us_per_row_batch_model_only": round(t_model * per_row, 3),
            "numpy_trees_build_s": round(warm_up, 3)}


def _median_time(call, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times))
