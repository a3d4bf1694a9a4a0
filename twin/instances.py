"""Adapter sets from files: a CSV with columns id,rank,rate."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .entities import Adapter
from .errors import InputFileError, LoraplaceError


def read_adapters_csv(path: Path) -> list[Adapter]:
    """Adapters from `id,rank,rate` rows, with a one-line error naming the first bad row."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise InputFileError(f"adapters file not found: {path}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputFileError(f"{path}: not a readable CSV ({e})") from None
    if not rows or not {"id", "rank", "rate"} <= set(rows[0]):
        raise InputFileError(f"{path}: expected a header with columns id,rank,rate and at least one row")
    adapters, seen = [], set()
    for line, r in enumerate(rows, start=2):
        try:
            a = Adapter(str(r["id"]), int(r["rank"]), float(r["rate"]))
        except (TypeError, ValueError):
            raise InputFileError(f"{path}:{line}: rank must be an integer and rate a number") from None
        except LoraplaceError as e:
            raise InputFileError(f"{path}:{line}: {e}") from None
        if not math.isfinite(a.rate):
            raise InputFileError(f"{path}:{line}: rate must be finite")
        if a.id in seen:
            raise InputFileError(f"{path}:{line}: duplicate adapter id {a.id}")
        seen.add(a.id)
        adapters.append(a)
    return adapters
