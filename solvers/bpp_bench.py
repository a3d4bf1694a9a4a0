"""Run bin-packing solvers over the standard sets and compare with the known optima (optima.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from loraplace.twin.errors import InputFileError

from .bpp_instances import read_instance
from .bpp_solve import BppResult, solve


@dataclass(frozen=True)
class Known:
    set: str
    optimum: int
    proven: bool  # optimum_kind == proven, else best known
    lower_bound: int


def read_optima(path: Path) -> dict[str, Known]:
    """Known optima keyed by the file path relative to the instances folder."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {r["file"]: Known(r["set"], int(r["optimum"]), r["optimum_kind"] == "proven", int(r["lower_bound"] or 0))
                for r in rows}
    except FileNotFoundError:
        raise InputFileError(f"optima file not found: {path}") from None
    except (KeyError, ValueError) as e:
        raise InputFileError(f"{path}: not an optima table with file, set, optimum, optimum_kind, lower_bound ({e})") from None


def select(root: Path, base: Path, optima: dict[str, Known], sets: list[str] | None,
           per_set: int | None) -> list[tuple[Path, Known]]:
    """Instance files under `root` that the optima table (paths relative to `base`) knows; some sets; N of each, evenly spread."""
    root = root.resolve()
    chosen: dict[str, list] = {}
    for rel, known in sorted(optima.items()):
        path = (base / rel).resolve()
        if path.is_relative_to(root) and (not sets or known.set in sets):
            chosen.setdefault(known.set, []).append((path, known))
    picked = []
    for items in chosen.values():
        if per_set is not None and per_set < len(items):  # every k-th file, so that a sample covers all classes of a set
            items = [items[int(k * len(items) / per_set)] for k in range(per_set)]
        picked += items
    if not picked:
        raise InputFileError(f"no instance under {root} is listed in the optima table")
    return picked


def summarise(results: list[tuple[BppResult, Known]], time_limit: float) -> list[dict]:
    """Per set and solver: instances, proven optimal, matched the known optimum, contradictions, gap, times."""
    groups: dict[tuple[str, str], list] = {}
    for res, known in results:
        groups.setdefault((known.set, res.solver), []).append((res, known))
    rows = []
    for (name, solver), items in sorted(groups.items()):
        times = [r.time_s for r, _ in items]
        rows.append({
            "name": name,
            "solver": solver,
            "instances": len(items),
            "proven_optimal": sum(r.status == "optimal" for r, _ in items),
            # a solver call that overran the limit (graph building and the last LP are not interruptible) does not count
            "proven_within_limit": sum(r.status == "optimal" and r.time_s <= time_limit for r, _ in items),
            "matched_known": sum(r.bins == k.optimum for r, k in items),
            # claimed optimal, yet a proven optimum or a known packing says otherwise
            "contradictions": sum(r.status == "optimal" and (r.bins != k.optimum if k.proven else r.bins > k.optimum)
                                  for r, k in items),
            "mean_gap_pct": round(100 * sum((r.bins - k.optimum) / k.optimum for r, k in items) / len(items), 3),
            "mean_time_s": round(sum(times) / len(times), 3),
            "max_time_s": round(max(times), 3),
            "not_proven": sorted(r.instance for r, _ in items if r.status != "optimal"),
        })
    return rows


def count(root: Path, optima_path: Path, sets: list[str] | None = None, per_set: int | None = None) -> int:
    return len(select(Path(root), Path(optima_path).parent, read_optima(optima_path), sets, per_set))


def bench(root: Path, optima_path: Path, solvers: list[str], time_limit: float, sets: list[str] | None = None,
          per_set: int | None = None, progress=None) -> list[dict]:
    """Solve every selected instance with every solver; the per-set summary rows."""
    optima = read_optima(optima_path)
    results, unreadable = [], {}
    for path, known in select(Path(root), Path(optima_path).parent, optima, sets, per_set):
        try:
            inst = read_instance(path)
        except InputFileError:  # e.g. negative sizes in some published files: counted, not solved
            unreadable[known.set] = unreadable.get(known.set, 0) + 1
            inst = None
        for s in solvers:
            if inst is not None:
                results.append((solve(inst, s, time_limit), known))
            if progress:
                progress()
    rows = summarise(results, time_limit)
    for row in rows:
        row["unreadable"] = unreadable.get(row["name"], 0)
    return rows
