"""Adapter sets from files: a CSV with columns id,rank,rate."""

from __future__ import annotations

import math
from pathlib import Path

from .csvfiles import read_csv
from .entities import Adapter
from .errors import InputFileError, LoraplaceError


def read_adapters_csv(path: Path) -> list[Adapter]:
    """Adapters from `id,rank,rate` rows, with a one-line error naming the first bad row."""
    rows = read_csv(path, ("id", "rank", "rate"))
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
