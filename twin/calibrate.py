"""Fit a Profile from calibration micro-benchmarks (the schema of shared/reference/calibration/).

Every coefficient comes from one least-squares fit on one micro-benchmark file; the residuals
are recorded in the profile's provenance so a user can judge the fit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .csvfiles import read_csv
from .errors import InputFileError
from .profile import EngineModel, MemoryModel, Profile, StepTimeModel
from .step_time import working_set_ramp

CALIBRATION_FILES = ("step_time_base.csv", "lora_overhead.csv", "loading.csv", "kv_capacity.csv", "scheduler_overhead.csv")
TWIN_VERSION = "0.1.0"
WS_GRID = 16  # candidate knees of the working-set LoRA form (log-spaced over the rows' working sets)

# kv_capacity rows read off vLLM's start-up (the reference's name, and `loraplace profile`'s); others are derived.
MEASURED_KV_SOURCES = ("find_available_gpu_memory", "vllm_startup_log")

# vLLM V1 KV-cache manager: blocks preallocated beyond need (num_preallocate_tokens=64 / block 16).
# Removed in later releases; versions before 0.9 keep it.
PREALLOCATE_BLOCKS_BY_VERSION = {"0.8": 4}


def num(row: dict, key: str, path: Path) -> float:
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise InputFileError(f"{path}: column {key} has a non-numeric value {row[key]!r}") from None


def has(row: dict, key: str) -> bool:
    return row.get(key) not in (None, "")


def decode_step_ms(row: dict, path: Path) -> float:
    """Mean engine step time of a decode benchmark: the engine's own `step_ms` where it was recorded
    (loraplace profile), else the client's mean ITL (the reference files). The step mean is what a
    model linear in the batch size predicts at the mean batch; a client mean weights big batches more."""
    return num(row, "step_ms", path) if has(row, "step_ms") else num(row, "mean_itl_ms", path)


def lstsq(X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, dict]:
    """Least squares with a residual summary; refuses under-determined fits."""
    if len(y) < X.shape[1] + 1:
        raise InputFileError(f"calibration: too few rows to fit {what} ({len(y)} rows, {X.shape[1]} parameters)")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    pred = X @ coef
    ape = np.abs(pred - y) / np.maximum(np.abs(y), 1e-12) * 100
    return coef, {"rows": int(len(y)), "mape_pct": round(float(ape.mean()), 3), "max_ape_pct": round(float(ape.max()), 3)}


def fit_step_base(rows: list[dict], path: Path) -> tuple[dict, dict]:
    """Decode ITL = a + b*B + c*B*ctx on decode rows; prefill cost per token from the prefill runs' durations."""
    dec = [r for r in rows if r["phase"] == "decode" and r["status"] == "ok"]
    B = np.array([num(r, "mean_batch_size", path) for r in dec])
    prompt = np.array([num(r, "total_input_tokens", path) / num(r, "num_prompts", path) for r in dec])
    ctx = prompt + np.array([num(r, "output_len", path) for r in dec]) / 2
    y = np.array([decode_step_ms(r, path) for r in dec])
    (a, b, c), dres = lstsq(np.c_[np.ones_like(B), B, B * ctx], y, "decode step time")
    pre = [r for r in rows if r["phase"] == "prefill" and r["status"] == "ok"]
    tokens = np.array([num(r, "total_input_tokens", path) for r in pre])
    dur_ms = np.array([num(r, "duration", path) * 1000 for r in pre])
    (_, p), pres = lstsq(np.c_[np.ones_like(tokens), tokens], dur_ms, "prefill cost")
    coef = {"intercept_ms": float(a), "decode_ms_per_seq": float(b), "attn_ms_per_ctx_token": float(c), "prefill_ms_per_token": float(p)}
    return coef, {"decode": dres, "prefill": pres}


def nnls(X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, dict]:
    """Non-negative least squares by trying every subset of columns (few columns): costs never go negative."""
    best = None
    k = X.shape[1]
    for mask in range(1, 1 << k):
        cols = [j for j in range(k) if mask >> j & 1]
        coef, res = lstsq(X[:, cols], y, what)
        if (coef < 0).any():
            continue
        sse = float(((X[:, cols] @ coef - y) ** 2).sum())
        if best is None or sse < best[0]:
            full = np.zeros(k)
            full[cols] = coef
            best = (sse, full, res)
    if best is None:
        raise InputFileError(f"calibration: no non-negative fit for {what}")
    return best[1], best[2]


def base_decode_ms(step: dict, B: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    return step["intercept_ms"] + step["decode_ms_per_seq"] * B + step["attn_ms_per_ctx_token"] * B * ctx


def step_mix(row: dict, path: Path, batch_key: str) -> tuple[float, float, float]:
    """(decode sequences, prompt tokens, mean square of prompt tokens) per step: recorded by `loraplace
    profile`'s engine probe (the square where it was recorded, else NaN), else the reference files' mean
    batch, all decoding."""
    if has(row, "mean_tokens_per_step") and has(row, "mean_decode_seqs_per_step"):
        decode = num(row, "mean_decode_seqs_per_step", path)
        sq = num(row, "mean_prefill_sq_per_step", path) if has(row, "mean_prefill_sq_per_step") else float("nan")
        return decode, num(row, "mean_tokens_per_step", path) - decode, sq
    return num(row, batch_key, path), 0.0, 0.0


def server_rank(row: dict, path: Path) -> float:
    """The server's max_lora_rank where the benchmark recorded it (NaN where it did not)."""
    return num(row, "max_lora_rank", path) if has(row, "max_lora_rank") else float("nan")


def loaded_step_rows(sched: list[dict], load_ms: float, path: Path) -> list[tuple]:
    """Scheduler runs with a standing queue: the engine never idled, so duration / steps is the mean step.

    What the step spent beyond compute is known per run: its measured scheduler time and its adapter
    loads at the profile's load cost; both are taken out. Prompt tokens per step come from the
    completed requests (ShareGPT's prompts are about as long as its outputs where not recorded).
    Rows as in fit_lora: (decode seqs, prompt tokens, NaN, mean context, distinct adapters, slots, step ms, rank).
    """
    need = ("steps", "duration", "total_scheduling_time", "max_lora_loads_from_memory_corrected", "mean_loras_by_batch")
    out = []
    for r in sched:
        if not all(has(r, k) for k in need) or num(r, "avg_waiting_queue", path) < 1 or num(r, "steps", path) <= 0:
            continue
        steps = num(r, "steps", path)
        done = max(num(r, "completed_requests", path), 1.0)
        generated = num(r, "processed_tokens", path)
        out_per_req = generated / done
        prompt = num(r, "mean_prompt_tokens", path) if has(r, "mean_prompt_tokens") else out_per_req
        busy_ms = (num(r, "duration", path) - num(r, "total_scheduling_time", path)) * 1000 / steps
        y = busy_ms - num(r, "max_lora_loads_from_memory_corrected", path) * load_ms / steps
        out.append((generated / steps, done * prompt / steps, float("nan"), prompt + out_per_req / 2,
                    num(r, "mean_loras_by_batch", path), num(r, "gpu_loras", path), y, server_rank(r, path)))
    return out


def fixed(X: np.ndarray):
    """A design with no parameters of its own (see choose_weighting)."""
    return lambda train, w: (X, {})


def working_set_design(W: np.ndarray, L: np.ndarray, S: np.ndarray, y: np.ndarray, base: np.ndarray):
    """The working-set form's design (profile.StepTimeModel): columns 1, W below and W above the knees' log-linear
    ramp, adapters, slots; the knees are fitted on the training rows (least weighted squares over a grid of
    WS_GRID log-spaced working sets, every pair) and returned with the matrix."""

    def columns(lo: float, hi: float) -> np.ndarray:
        ramp = working_set_ramp(W, np.log(lo), np.log(hi / lo))
        return np.c_[np.ones_like(W), W * (1 - ramp), W * ramp, L, S]

    def design(train: np.ndarray, w: np.ndarray):
        seen = W[train][W[train] > 0]
        grid = np.geomspace(seen.min(), seen.max(), WS_GRID)
        best = None
        for i, lo in enumerate(grid[:-1]):
            for hi in grid[i + 1:]:
                X = columns(lo, hi)
                coef, _ = nnls(X[train] * w[train, None], (y[train] - base[train]) * w[train], "LoRA working set")
                sse = float((((X[train] @ coef - (y[train] - base[train])) * w[train]) ** 2).sum())
                if best is None or sse < best[0]:
                    best = (sse, lo, hi)
        _, lo, hi = best
        return columns(lo, hi), {"lora_ws_knee_lo": float(lo), "lora_ws_knee_hi": float(hi)}

    return design


def choose_weighting(design, y: np.ndarray, base: np.ndarray, folds: int = 5) -> tuple[str, dict, float]:
    """Least squares in absolute or in relative error, whichever predicts held-out rows better (k-fold, seeded).

    Step times in one calibration set can span an order of magnitude; which weighting generalises is a
    property of the data, so the data decides, scored as the twin is judged: mean absolute percentage error.
    `design(train, weights)` gives the design matrix of every row, with any parameters of its own fitted on
    the training rows only. Returns the weighting, the MAPE of each, and the chosen one's held-out error in
    summed step time (absolute errors over summed times, %).
    """
    fold = np.random.default_rng(0).permutation(len(y)) % folds
    scores, time_err = {}, {}
    for name, w in (("absolute", np.ones_like(y)), ("relative", 1 / y)):
        pred = np.empty_like(y)
        for k in range(folds):
            tr, te = fold != k, fold == k
            X, _ = design(tr, w)
            coef, _ = nnls(X[tr] * w[tr, None], (y[tr] - base[tr]) * w[tr], "LoRA overhead")
            pred[te] = base[te] + X[te] @ coef
        scores[name] = round(float((np.abs(pred - y) / y).mean() * 100), 3)
        time_err[name] = round(float(np.abs(pred - y).sum() / y.sum() * 100), 3)
    best = min(scores, key=scores.get)
    return best, scores, time_err[best]


def fit_lora(overhead: list[dict], sched: list[dict], step: dict, load_ms: float, op: Path, sp: Path) -> tuple[dict, dict]:
    """LoRA cost per step = l0 + per token + per distinct adapter + per slot, on top of the fitted base model; where
    the benchmarks record a step's prompt tokens and their square (`loraplace profile`), the form of the token cost
    is picked by held-out error among a squared-prompt term and a working-set cost (profile.StepTimeModel).

    Rows: the LoRA micro-benchmark (about 200 sequences, 300 slots, 1..300 adapters; `loraplace profile`
    adds prefill runs), the scheduler runs without a waiting queue or adapter swapping (slots 8..448,
    batches 0..170), and the scheduler runs with a standing queue (batches up to about 1,000: the only
    micro-benchmarks where LoRA steps carry many tokens). The step time beyond the base model's
    prediction is what LoRA costs; every token a step computes, prompt or generated, counts.
    """
    lo = [r for r in overhead if r["kind"] == "lora" and r["status"] == "ok" and has(r, "mean_loras_by_batch")]
    rows = []  # (decode seqs, prompt tokens, their mean square, mean context, distinct adapters, slots, step ms, max_lora_rank)
    for r in lo:
        decode, prefill, sq = step_mix(r, op, "mean_batch_size")
        ctx = num(r, "input_len", op) + num(r, "output_len", op) / 2
        rows.append((decode, prefill, sq, ctx, num(r, "mean_loras_by_batch", op), num(r, "max_loras", op), decode_step_ms(r, op),
                     server_rank(r, op)))
    measured_prefill = any(p > 0 for _, p, *_ in rows)  # prompt tokens per step recorded apart (loraplace profile)
    clean = [r for r in sched if r.get("source") == "adapter_rates" and has(r, "mean_loras_by_batch")
             and num(r, "avg_waiting_queue", sp) < 1 and num(r, "gpu_loras", sp) == num(r, "cpu_loras", sp)]
    for r in clean:
        out_per_req = num(r, "processed_tokens", sp) / max(num(r, "completed_requests", sp), 1)
        # Mean context: prompt + output / 2; where the prompt length is not recorded, ShareGPT's prompts
        # are about as long as its outputs.
        prompt = num(r, "mean_prompt_tokens", sp) if has(r, "mean_prompt_tokens") else out_per_req
        decode, prefill, sq = step_mix(r, sp, "avg_batch_size")
        rows.append((decode, prefill, sq, prompt + out_per_req / 2, num(r, "mean_loras_by_batch", sp),
                     num(r, "gpu_loras", sp), decode_step_ms(r, sp), server_rank(r, sp)))
    loaded = loaded_step_rows(sched, load_ms, sp)
    rows += loaded
    B, P, Q, ctx, L, S, y, R = map(np.array, zip(*rows))
    base = base_decode_ms(step, B, ctx) + step["prefill_ms_per_token"] * P
    coef, res = {}, {}
    rank_varied = not np.isnan(R).any() and len(set(R)) > 1
    scale = R / R.max() if rank_varied else np.ones_like(y)  # per-token costs scale with max_lora_rank where it varied
    if rank_varied:
        coef["lora_ref_rank"] = float(R.max())
    B, P = B * scale, P * scale
    names = ["lora_ms", "lora_ms_per_token", "lora_ms_per_adapter", "lora_ms_per_slot"]
    X = np.c_[np.ones_like(B), B + P, L, S]
    if measured_prefill:  # prompt tokens measured apart: they get their own cost
        names.append("lora_ms_per_prefill_token")
        X = np.c_[np.ones_like(B), B, L, S, P]
    design = fixed(X)
    if measured_prefill and not np.isnan(Q).any():  # and the square of a step's prompt tokens, where recorded
        # How tokens cost, the data picks by held-out error in summed step time: a term in the square of a step's
        # prompt tokens scaling with rank or rank squared (padded LoRA buffers outgrowing caches), or every token
        # of the step, prompt or decode, at a cost its working set sets (kernels that gather each token's weights).
        # The forms part in big steps, where a loaded server spends its time; MAPE would weigh every benchmark
        # row alike, and most are small steps.
        powers = (1.0, 2.0) if rank_varied else (1.0,)
        forms = {f"prompt_sq_rank_power_{p:g}": (fixed(np.c_[X, Q * scale**p]), names + ["lora_ms_per_prefill_token_sq"],
                                                 {"lora_sq_rank_power": p} if rank_varied else {}) for p in powers}
        forms["working_set"] = (working_set_design(B + P, L, S, y, base),
                                ["lora_ms", "lora_ws_ms_lo", "lora_ws_ms_hi", "lora_ms_per_adapter", "lora_ms_per_slot"],
                                {"lora_ms_per_token": 0.0, "lora_ms_per_prefill_token": 0.0})
        tried = {f: choose_weighting(d, y, base) for f, (d, _, _) in forms.items()}
        form = min(forms, key=lambda f: tried[f][2])
        design, names, extra = forms[form]
        coef |= extra
        weighting, cv, _ = tried[form]
        res["token_form"] = form
        res["token_form_cv_time_error_pct"] = {f: t[2] for f, t in tried.items()}
        res["token_form_cv_mape_pct"] = {f: min(t[1].values()) for f, t in tried.items()}
    else:
        weighting, cv, _ = choose_weighting(design, y, base)
    w = 1 / y if weighting == "relative" else np.ones_like(y)
    X, knees = design(np.ones(len(y), bool), w)
    coef |= knees
    fitted, _ = nnls(X * w[:, None], (y - base) * w, "LoRA overhead")
    ape = np.abs(base + X @ fitted - y) / y * 100
    res = {"rows": int(len(y)), "loaded_scheduler_rows": len(loaded), "weighting": weighting, "cv_mape_pct": cv,
           "itl_mape_pct": round(float(ape.mean()), 3), "itl_max_ape_pct": round(float(ape.max()), 3)} | res
    return coef | {n: float(c) for n, c in zip(names, fitted)}, res


def fit_memory(rows: list[dict], path: Path) -> tuple[dict, dict]:
    """KV tokens and weight memory linear in slots and slots x rank; OOM threshold between the observed classes."""
    rows = [r for r in rows if r.get("source", MEASURED_KV_SOURCES[0]) in MEASURED_KV_SOURCES]
    ok = [r for r in rows if r["status"] == "ok" and has(r, "kv_cache_tokens")]
    ml = np.array([num(r, "max_loras", path) for r in ok])
    rk = np.array([num(r, "max_lora_rank", path) for r in ok])
    kv = np.array([num(r, "kv_cache_tokens", path) for r in ok])
    (k0, k1, k2), kres = lstsq(np.c_[np.ones_like(ml), -ml, -ml * rk], kv, "KV capacity")
    wrows = [r for r in rows if has(r, "model_plus_lora_weights_gib")]
    wml = np.array([num(r, "max_loras", path) for r in wrows])
    wrk = np.array([num(r, "max_lora_rank", path) for r in wrows])
    w = np.array([num(r, "model_plus_lora_weights_gib", path) for r in wrows])
    (w0, w1, w2), wres = lstsq(np.c_[np.ones_like(wml), wml, wml * wrk], w, "weight memory")

    def pred_w(r: dict) -> float:
        return w0 + num(r, "max_loras", path) * (w1 + w2 * num(r, "max_lora_rank", path))

    oom = [pred_w(r) for r in rows if "oom" in r["status"]]
    fine = [pred_w(r) for r in rows if "oom" not in r["status"]]
    if oom and fine:
        limit = (max(fine) + min(oom)) / 2
    else:  # no OOM observed: the largest configuration that started bounds what we know
        limit = max(fine) if fine else float(w0)
    coef = {
        "kv_tokens_intercept": float(k0), "kv_tokens_per_slot": float(k1), "kv_tokens_per_slot_rank": float(k2),
        "weights_gib_intercept": float(w0), "weights_gib_per_slot": float(w1), "weights_gib_per_slot_rank": float(w2),
        "oom_weights_gib": float(limit),
    }
    return coef, {"kv_tokens": kres, "weights_gib": wres}


def fit_scheduler(rows: list[dict], path: Path) -> tuple[float, dict]:
    """Scheduler CPU ms per step against waiting-queue length (its intercept and batch terms sit in the decode ITL)."""
    B = np.array([num(r, "avg_batch_size", path) for r in rows])
    Q = np.array([num(r, "avg_waiting_queue", path) for r in rows])
    y = np.array([num(r, "sched_time_per_step_ms", path) for r in rows])
    (_, _, q), res = lstsq(np.c_[np.ones_like(B), B, Q], y, "scheduler overhead")
    return max(float(q), 0.0), res


def fit_load_ms(rows: list[dict], path: Path) -> tuple[float, dict]:
    """Mean CPU-to-GPU adapter load time; the data shows no trend with rank."""
    v = np.array([num(r, "cpu_to_gpu_mean_ms", path) for r in rows])
    return float(v.mean()), {"rows": int(len(v)), "min_ms": round(float(v.min()), 3), "max_ms": round(float(v.max()), 3)}


def preallocate_blocks(vllm_version: str) -> int:
    major_minor = ".".join(vllm_version.split(".")[:2])
    return PREALLOCATE_BLOCKS_BY_VERSION.get(major_minor, 0)


def calibrate(caldir: Path, model: str, gpu: str, vllm_version: str, max_model_len: int, name: str | None = None) -> Profile:
    """Fit every part of a profile for `model` from the CSVs in `caldir`."""
    caldir = Path(caldir)
    if not caldir.is_dir():
        raise InputFileError(f"calibration directory not found: {caldir}")

    def rows_for(fname: str, required: tuple[str, ...], by_model: bool = True) -> list[dict]:
        rows = read_csv(caldir / fname, required + (("model",) if by_model else ()))
        if by_model:
            rows = [r for r in rows if r["model"] == model]
            if not rows:
                raise InputFileError(f"{caldir / fname}: no rows for model '{model}'")
        return rows

    step, step_res = fit_step_base(
        rows_for("step_time_base.csv", ("phase", "status", "mean_batch_size", "total_input_tokens", "num_prompts", "output_len", "mean_itl_ms", "duration")),
        caldir / "step_time_base.csv")
    sched_rows = rows_for("scheduler_overhead.csv", ("avg_batch_size", "avg_waiting_queue", "sched_time_per_step_ms", "source",
                                                     "gpu_loras", "cpu_loras", "mean_loras_by_batch", "mean_itl_ms",
                                                     "processed_tokens", "completed_requests"), by_model=False)
    load_ms, load_res = fit_load_ms(rows_for("loading.csv", ("cpu_to_gpu_mean_ms",)), caldir / "loading.csv")
    lora, lora_res = fit_lora(
        rows_for("lora_overhead.csv", ("kind", "status", "mean_loras_by_batch", "mean_batch_size", "input_len", "output_len",
                                         "max_loras", "mean_itl_ms")),
        sched_rows, step, load_ms, caldir / "lora_overhead.csv", caldir / "scheduler_overhead.csv")
    mem, mem_res = fit_memory(
        rows_for("kv_capacity.csv", ("max_loras", "max_lora_rank", "kv_cache_tokens", "model_plus_lora_weights_gib", "status")),
        caldir / "kv_capacity.csv")
    # The scheduler file has no model column: its rows inform every model's profile.
    sched_q, sched_res = fit_scheduler(sched_rows, caldir / "scheduler_overhead.csv")

    hashes = {f: hashlib.sha256((caldir / f).read_bytes()).hexdigest() for f in CALIBRATION_FILES}
    return Profile(
        name=name or f"{model}_{gpu}",
        model=model, gpu=gpu, vllm_version=vllm_version, max_model_len=int(max_model_len),
        step=StepTimeModel(**step, **lora, sched_ms_per_waiting=sched_q),
        memory=MemoryModel(**mem),
        engine=EngineModel(preallocate_blocks=preallocate_blocks(vllm_version), load_ms=load_ms),
        provenance={
            "twin_version": TWIN_VERSION,
            "command": f"loraplace calibrate CALDIR --model {model} --gpu {gpu} --vllm-version {vllm_version} --max-model-len {max_model_len}",
            "inputs_sha256": hashes,
            "fit": {"step_time": step_res, "lora_overhead": lora_res, "memory": mem_res, "loading": load_res, "scheduler": sched_res},
        },
    )
