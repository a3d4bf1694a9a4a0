"""Reading the CSV files the twin takes as input, with one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import InputFileError


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Rows of a CSV file, with a one-line error if it is missing, empty or lacks a column."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise InputFileError(f"file not found: {path}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputFileError(f"{path}: not a readable CSV ({e})") from None
    if not rows:
        raise InputFileError(f"{path}: no data rows")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise InputFileError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows
