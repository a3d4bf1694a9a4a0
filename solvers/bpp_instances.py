"""Standard bin-packing instances: the BPPLIB one-dimensional format and the VPSolver `.vbp` vector format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loraplace.twin.errors import InputFileError


@dataclass(frozen=True)
class BinPackingInstance:
    """Items with sizes in d dimensions and one bin capacity per dimension (d = 1 for classical packing)."""

    name: str
    capacity: np.ndarray  # (d,)
    sizes: np.ndarray  # (n, d)

    @property
    def n(self) -> int:
        return len(self.sizes)

    @property
    def dims(self) -> int:
        return len(self.capacity)


def _ints(path: Path) -> list[int]:
    try:
        return [int(tok) for tok in Path(path).read_text().split()]
    except FileNotFoundError:
        raise InputFileError(f"instance not found: {path}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise InputFileError(f"{path}: expected whitespace-separated integers ({e})") from None


def _checked(name: str, capacity: np.ndarray, sizes: np.ndarray, path: Path) -> BinPackingInstance:
    if len(sizes) == 0:
        raise InputFileError(f"{path}: no items")
    if (capacity <= 0).any() or (sizes < 0).any() or (sizes > capacity).any() or (sizes.sum(axis=1) == 0).any():
        raise InputFileError(f"{path}: sizes must be non-negative, not all zero, and fit an empty bin")
    return BinPackingInstance(name, capacity, sizes)


def read_bpp(path: Path) -> BinPackingInstance:
    """BPPLIB: n, capacity, then n weights."""
    tok = _ints(path)
    if len(tok) < 3 or tok[0] != len(tok) - 2:
        raise InputFileError(f"{path}: header says {tok[0] if tok else '?'} items but {max(len(tok) - 2, 0)} weights follow")
    return _checked(Path(path).stem, np.array([tok[1]]), np.array(tok[2:]).reshape(-1, 1), Path(path))


def read_vbp(path: Path) -> BinPackingInstance:
    """VPSolver: d, the d capacities, m item types, then m lines of d sizes and a demand."""
    tok = _ints(path)
    try:
        d = tok[0]
        cap = np.array(tok[1 : 1 + d])
        m = tok[1 + d]
        rows = np.array(tok[2 + d :]).reshape(m, d + 1)
    except (IndexError, ValueError):
        raise InputFileError(f"{path}: not in the .vbp layout (d, capacities, m, then m rows of d sizes and a demand)") from None
    if (rows[:, d] < 0).any():
        raise InputFileError(f"{path}: negative demand")
    sizes = np.repeat(rows[:, :d], rows[:, d], axis=0)
    return _checked(Path(path).stem, cap, sizes, Path(path))


def read_instance(path: Path) -> BinPackingInstance:
    return read_vbp(path) if Path(path).suffix == ".vbp" else read_bpp(path)
