"""Training data from the twin: simulate every design point (or a near-boundary draw of them) and append it to
a JSON-lines file.

The first line records what the data depends on (profile and its hash, twin version, seed, window,
threshold, the client's ports, sample count, and for a near-boundary draw its candidates and selecting
model); every other line is one simulated configuration. A run that stops part way continues where it
stopped when started again with the same settings.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from loraplace.twin.errors import ConfigError, InputFileError
from loraplace.twin.client import PortLimitedClient, client_with_ports
from loraplace.twin.oracle import PLANNING_CLIENT, WINDOW_S, GpuQuery, run_query
from loraplace.twin.profile import Profile

from .boundary import BoundarySelection
from .design import design

FORMAT = "loraplace-surrogate-data/1"


def twin_version() -> str:
    try:
        return version("loraplace")
    except PackageNotFoundError:
        return "unknown"


def profile_hash(profile: Profile) -> str:
    """SHA-256 of what the twin simulates with: the profile less its provenance (fit summaries, input hashes)."""
    d = json.loads(profile.to_json())
    d.pop("provenance", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def header(profile: Profile, samples: int, seed: int, window: float, threshold: float,
           client: PortLimitedClient | None, selection: BoundarySelection | None = None) -> dict:
    """What a data file depends on; a near-boundary file also names its candidate design and selecting model."""
    head = {"format": FORMAT, "profile": profile.name, "profile_sha256": profile_hash(profile),
            "twin_version": twin_version(), "samples": samples, "seed": seed, "window_s": window,
            "starvation_threshold": threshold, "client_ports": client.ports if client else 0}
    return {**head, "selection": selection.header()} if selection else head


def design_size(head: dict) -> int:
    """Points of the design a file's indices refer to (the candidates, for a near-boundary file)."""
    return head.get("selection", {}).get("candidates", head["samples"])


def header_client(head: dict) -> PortLimitedClient | None:
    """The client a data file was simulated with (files from before the header recorded it: the open client)."""
    return client_with_ports(head.get("client_ports", 0))


def point_seed(seed: int, index: int) -> int:
    """The twin's seed for design point `index` of a design made with `seed`."""
    return seed * 1_000_003 + index


def sample_record(args: tuple[int, Profile, GpuQuery, float, float, int, PortLimitedClient | None]) -> dict:
    """Simulate design point `index` (a top-level function for process pools and Ray)."""
    index, profile, q, window, threshold, seed, client = args
    res = run_query(profile, q, window, threshold, seed, client)
    return {"index": index, "ranks": list(q.ranks), "rates": list(q.rates), "max_loras": q.max_loras,
            "max_lora_rank": q.max_lora_rank, "mean_input": q.mean_input, "mean_output": q.mean_output,
            **{k: v for k, v in res.to_dict().items() if k in RESULT_KEYS}}


RESULT_KEYS = ("status", "throughput_tok_s", "ideal_tok_s", "starved", "mean_itl_ms", "mean_ttft_ms", "completed",
               "arrivals", "dropped", "wall_s")


def read_data(path: Path) -> tuple[dict, list[dict]]:
    """(header, records) of a data file (plain or gzipped); records sorted by design index."""
    try:
        raw = Path(path).read_bytes()
        lines = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode().splitlines()
    except FileNotFoundError:
        raise InputFileError(f"data file not found: {path}") from None
    try:
        head = json.loads(lines[0]) if lines else {}
        records = [json.loads(x) for x in lines[1:] if x.strip()]
    except json.JSONDecodeError as e:
        raise InputFileError(f"{path}: malformed JSON line ({e})") from None
    if head.get("format") != FORMAT:
        raise InputFileError(f"{path}: not a loraplace surrogate data file (format {head.get('format')!r})")
    return head, sorted(records, key=lambda r: r["index"])


def _resume(out: Path, head: dict) -> set[int]:
    """Indices already simulated in `out`, after checking it was made with the same settings and twin version
    (records of two versions of the twin must not mix in one file)."""
    if not out.exists() or out.stat().st_size == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(head) + "\n")
        return set()
    old, records = read_data(out)
    if old != head:
        raise ConfigError(f"{out} was generated with other settings or twin version ({old}); choose another --out "
                          "to start afresh")
    return {r["index"] for r in records}


def _local_pool(jobs: list, workers: int):
    """Yield finished records as they complete, keeping at most a few jobs per worker in flight."""
    with ProcessPoolExecutor(workers) as pool:
        pending, queue = set(), iter(jobs)
        for job in queue:
            pending.add(pool.submit(sample_record, job))
            if len(pending) >= 4 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
        for f in pending:
            yield f.result()


def _ray_pool(jobs: list, address: str):
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'loraplace[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True)
    remote = ray.remote(sample_record)
    pending = [remote.remote(j) for j in jobs]
    while pending:
        done, pending = ray.wait(pending)
        yield from ray.get(done)


def generate(profile: Profile, samples: int, out: Path, seed: int = 0, window: float = WINDOW_S,
             threshold: float = 0.9, workers: int = 2, ray_address: str | None = None, progress=None,
             client: PortLimitedClient | None = PLANNING_CLIENT, selection: BoundarySelection | None = None) -> int:
    """Simulate the design points not yet in `out` (with `selection`, `samples` points drawn near the boundary from
    its candidates); returns how many were simulated now."""
    if samples <= 0:
        raise ConfigError(f"--samples must be positive, got {samples}")
    head = header(profile, samples, seed, window, threshold, client, selection)
    done = _resume(Path(out), head)
    points = design(profile, design_size(head), seed)
    chosen = selection.pick(points, profile, samples, threshold, seed) if selection else range(samples)
    jobs = [(i, profile, points[i], window, threshold, point_seed(seed, i), client) for i in chosen if i not in done]
    if progress:
        progress(len(done))
    stream = _ray_pool(jobs, ray_address) if ray_address else (
        map(sample_record, jobs) if workers <= 1 else _local_pool(jobs, workers))
    count = 0
    with open(out, "a") as f:
        for rec in stream:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            count += 1
            if progress:
                progress(1)
    return count
