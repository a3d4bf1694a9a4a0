"""Request lengths whose means match the requested means exactly (in expectation), by construction.

A clipped log-normal is solved for the location that gives the target mean after clipping, so
clipping never shifts the mean and nothing is resampled.
"""

from __future__ import annotations

import math

import numpy as np

from .entities import LengthSpec


def _clipped_lognormal_mean(mu: float, sigma: float, lo: float, hi: float) -> float:
    """E[min(max(X, lo), hi)] for X ~ LogNormal(mu, sigma)."""
    if sigma == 0:
        return min(max(math.exp(mu), lo), hi)
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    a, b = (math.log(lo) - mu) / sigma, (math.log(hi) - mu) / sigma
    inner = math.exp(mu + sigma**2 / 2) * (phi(b - sigma) - phi(a - sigma))
    return lo * phi(a) + hi * (1 - phi(b)) + inner


def solve_mu(mean: float, sigma: float, lo: float, hi: float) -> float:
    """Location of the log-normal whose clipped mean equals `mean` (bisection; the clipped mean is monotone in mu)."""
    left, right = math.log(lo) - 10 * sigma - 1, math.log(hi) + 10 * sigma + 1
    for _ in range(200):
        mid = (left + right) / 2
        if _clipped_lognormal_mean(mid, sigma, lo, hi) < mean:
            left = mid
        else:
            right = mid
    return (left + right) / 2


def _integer_with_mean(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised rounding: E[round(x)] = x, so integers keep the continuous mean."""
    base = np.floor(x)
    return (base + (rng.random(x.shape) < (x - base))).astype(np.int64)


def sample_lengths(spec: LengthSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, output) token counts for n requests."""
    if spec.sample:
        pairs = np.asarray(spec.sample, dtype=np.int64)
        idx = rng.integers(0, len(pairs), n)
        return pairs[idx, 0], pairs[idx, 1]
    max_output = spec.max_total - spec.max_input
    mu_in = solve_mu(spec.mean_input, spec.sigma, spec.min_input, spec.max_input)
    mu_out = solve_mu(spec.mean_output, spec.sigma, spec.min_output, max_output)
    prompt = np.clip(rng.lognormal(mu_in, spec.sigma, n), spec.min_input, spec.max_input)
    output = np.clip(rng.lognormal(mu_out, spec.sigma, n), spec.min_output, max_output)
    return _integer_with_mean(prompt, rng), _integer_with_mean(output, rng)
