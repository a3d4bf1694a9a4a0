"""Request streams: per-adapter Poisson (optionally bursty), or a replayed trace."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .entities import Adapter, LengthSpec
from .errors import ConfigError, InputFileError
from .lengths import sample_lengths


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: times (s), adapter index, prompt and output tokens."""

    arrival: np.ndarray
    adapter: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival)


@dataclass(frozen=True)
class Burst:
    """Rates switch between phases: each (seconds, multiplier) in turn, cycled over the window."""

    phases: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.phases or any(d <= 0 or m < 0 for d, m in self.phases):
            raise ConfigError("burst phases need positive durations and non-negative multipliers")

    @classmethod
    def parse(cls, text: str) -> "Burst":
        """'SECONDS:MULTIPLIER,...', e.g. '300:2,300:0.5'."""
        try:
            return cls(tuple((float(d), float(m)) for d, m in (ph.split(":") for ph in text.split(","))))
        except ValueError:
            raise ConfigError(f"burst must look like 'SECONDS:MULTIPLIER,...', got {text!r}") from None

    def segments(self, duration: float) -> list[tuple[float, float, float]]:
        """(start, end, multiplier) pieces covering [0, duration)."""
        out, t, i = [], 0.0, 0
        while t < duration:
            d, m = self.phases[i % len(self.phases)]
            out.append((t, min(t + d, duration), m))
            t += d
            i += 1
        return out


def _check_rates(adapters: list[Adapter]) -> np.ndarray:
    if not adapters:
        raise ConfigError("no adapters to serve")
    rates = np.array([a.rate for a in adapters], dtype=float)
    if (rates < 0).any() or not np.isfinite(rates).all():
        raise ConfigError("adapter rates must be finite and >= 0")
    return rates


def poisson_workload(adapters: list[Adapter], duration: float, lengths: LengthSpec, rng: np.random.Generator,
                     count: int | None = None, burst: Burst | None = None) -> Workload:
    """Independent Poisson streams, merged. With `count`, the merged stream is conditioned on that many arrivals."""
    if duration <= 0:
        raise ConfigError(f"duration must be positive, got {duration}")
    rates = _check_rates(adapters)
    total = rates.sum()
    segments = burst.segments(duration) if burst else [(0.0, duration, 1.0)]
    weights = np.array([(e - s) * m for s, e, m in segments])
    if count is None:
        counts = rng.poisson(total * weights)
    else:
        if count < 0:
            raise ConfigError(f"arrival count must be >= 0, got {count}")
        counts = rng.multinomial(count, weights / weights.sum()) if weights.sum() > 0 else np.zeros(len(segments), int)
    times = np.concatenate([rng.uniform(s, e, c) for (s, e, _), c in zip(segments, counts)]) if len(segments) else np.empty(0)
    times.sort()
    n = len(times)
    p = rates / total if total > 0 else np.full(len(rates), 1 / len(rates))
    adapter = rng.choice(len(adapters), size=n, p=p) if n else np.empty(0, dtype=np.int64)
    prompt, output = sample_lengths(lengths, n, rng)
    return Workload(times, adapter.astype(np.int64), prompt, output)


def _azure_time(text: str) -> float:
    return datetime.fromisoformat(text[:26]).timestamp()


# CSV layouts: (prompt column, output column, arrival column or None, how to read an arrival)
CSV_FORMATS = (("ContextTokens", "GeneratedTokens", "TIMESTAMP", _azure_time),  # Azure LLM inference 2023
               ("num_prefill_tokens", "num_decode_tokens", "arrived_at", float),  # Splitwise; Vidur's length files
               ("prompt_tokens", "output_tokens", None, None))  # a plain length sample


def _read_records(path: Path) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(arrival seconds, or None where the file has none; prompt tokens; output tokens) in file order."""
    try:
        if path.suffix == ".jsonl":  # Mooncake
            recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            t = np.array([r["timestamp"] for r in recs], float) / 1000.0 if recs and "timestamp" in recs[0] else None
            pin = np.array([int(r["input_length"]) for r in recs], np.int64)
            pout = np.array([int(r["output_length"]) for r in recs], np.int64)
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            cols = rows[0].keys() if rows else set()
            fmt = next((f for f in CSV_FORMATS if {f[0], f[1]} <= cols), None)
            if rows and fmt is None:
                raise InputFileError(f"{path}: unknown request-file columns {sorted(cols)}")
            pc, oc, tc, parse = fmt or CSV_FORMATS[-1]
            pin = np.array([int(r[pc]) for r in rows], np.int64)
            pout = np.array([int(r[oc]) for r in rows], np.int64)
            t = np.array([parse(r[tc]) for r in rows], float) if tc in cols else None
    except FileNotFoundError:
        raise InputFileError(f"not found: {path}") from None
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise InputFileError(f"{path}: malformed request file ({e})") from None
    if not len(pin):
        raise InputFileError(f"{path}: no requests in the file")
    if (pin < 0).any() or (pout < 0).any():
        raise InputFileError(f"{path}: negative token counts")
    return t, np.maximum(pin, 1), np.maximum(pout, 1)


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds from first arrival, prompt tokens, output tokens) from an Azure/Splitwise CSV or Mooncake JSONL."""
    path = Path(path)
    t, pin, pout = _read_records(path)
    if t is None:
        raise InputFileError(f"{path}: no arrival times (a file of lengths only is a length sample, not a trace)")
    order = np.argsort(t, kind="stable")
    t = t[order] - t[order][0]
    return t, pin[order], pout[order]


def read_length_sample(path: Path, max_model_len: int) -> LengthSpec:
    """Request lengths drawn from a file's (prompt, output) pairs: a trace of any supported kind, or a CSV of
    `prompt_tokens,output_tokens` (or `num_prefill_tokens,num_decode_tokens`); pairs longer than the model drops."""
    path = Path(path)
    _, pin, pout = _read_records(path)
    fits = pin + pout <= max_model_len
    if not fits.any():
        raise InputFileError(f"{path}: no request fits max_model_len {max_model_len}")
    return LengthSpec.from_sample(np.c_[pin[fits], pout[fits]])


def trace_workload(path: Path, adapters: list[Adapter], duration: float, rng: np.random.Generator,
                   max_model_len: int) -> Workload:
    """Replay a trace's timestamps and lengths; adapters drawn with popularity proportional to their rates."""
    t, pin, pout = read_trace(path)
    keep = (t < duration) & (pin + pout <= max_model_len)
    rates = _check_rates(adapters)
    p = rates / rates.sum() if rates.sum() > 0 else np.full(len(rates), 1 / len(rates))
    n = int(keep.sum())
    return Workload(t[keep], rng.choice(len(adapters), size=n, p=p).astype(np.int64), pin[keep], pout[keep])
