"""The surrogate as the solvers' oracle: microseconds per query, the twin stays the final check."""

from __future__ import annotations

from importlib import resources

from loraplace.twin.entities import LengthSpec, vllm_max_lora_rank
from loraplace.twin.errors import ConfigError
from loraplace.twin.oracle import GpuQuery, Oracle, Verdict
from loraplace.twin.profile import Profile

from .design import BASE_LENGTHS, LENGTH_SCALE, MAX_ADAPTERS, RANK_MIXES
from .features import feature_matrix
from .generate import profile_hash
from .model import SurrogateModel, starved_rule


# The capacity table's margin for other mixes of rates, per shipped model and adapter count, from
# benchmarks/capacity_margin.py (15 Dirichlet mixes and the paper's 4:2:1 mix per count, seed 0): the largest
# ratio plus 0.02 (for other draws), rounded up to the next 0.05, never below 1 (the probed shapes themselves);
# a test re-measures them.
SHAPE_MARGINS = {
    "llama-3.1-8b-instruct_h100-64gb": ((2, 1.05), (4, 1.0), (8, 1.0), (16, 1.0), (24, 1.15), (32, 1.1), (48, 1.1),
                                        (64, 1.15), (96, 1.1), (128, 1.1), (192, 1.05), (256, 1.1)),
    "qwen-2.5-7b-instruct_h100-64gb": ((2, 1.05), (4, 1.0), (8, 1.0), (16, 1.0), (24, 1.1), (32, 1.05), (48, 1.1),
                                       (64, 1.2), (96, 1.15), (128, 1.15), (192, 1.2), (256, 1.25)),
}

# The capacity tables' margin for adapters of a smaller rank than their GPU's --max-lora-rank, per shipped model,
# from benchmarks/capacity_margin.py (solvers.shape_margin.rank_ratios, seed 0: Llama 1.02, Qwen 1.025 at most):
# the largest ratio plus 0.02 (one 0.5 % load step of the measurement each way, and other draws).
RANK_MARGINS = {"llama-3.1-8b-instruct_h100-64gb": 1.04, "qwen-2.5-7b-instruct_h100-64gb": 1.045}


def shipped_model_dir(profile_name: str):
    return resources.files("loraplace.surrogate") / "models" / profile_name


def check_length_spread(sigma: float) -> None:
    """The surrogate's data drew request lengths with the default log-normal spread: it answers for no other."""
    if sigma != LengthSpec.sigma:
        raise ConfigError(f"the surrogate was trained on request lengths of log-normal spread {LengthSpec.sigma:g}, "
                          f"not {sigma:g}; use --oracle twin")


EXTRAPOLATED = "are extrapolated (--oracle twin plans with the twin itself)"


def domain_warnings(ranks, lengths: LengthSpec) -> list[str]:
    """What to tell a user whose adapters need a --max-lora-rank, or whose request-length means lie, outside the
    surrogate's design: its answers there are extrapolated."""
    out = []
    learnt = max(max(mix) for mix in RANK_MIXES)
    above = sorted({r for r in ranks if vllm_max_lora_rank(r) > learnt})
    if above:
        out.append(f"the surrogate learnt --max-lora-rank up to {learnt}; its answers for GPUs serving rank "
                   f"{', '.join(map(str, above))} {EXTRAPOLATED}")
    lo, hi = LENGTH_SCALE
    for what, mean, base in (("input", lengths.mean_input, BASE_LENGTHS.mean_input),
                             ("output", lengths.mean_output, BASE_LENGTHS.mean_output)):
        if not lo * base <= mean <= hi * base:
            out.append(f"the surrogate learnt mean {what} lengths of {lo * base:g} to {hi * base:g} tokens; its answers "
                       f"for {mean:g} {EXTRAPOLATED}")
    return out


def size_warning(adapter_counts) -> str | None:
    """The same for placements whose GPUs serve more adapters than any GPU of the design, or None."""
    most = max(adapter_counts, default=0)
    if most <= MAX_ADAPTERS:
        return None
    return f"the surrogate learnt GPUs of up to {MAX_ADAPTERS} adapters; its answers for GPUs of up to {most} {EXTRAPOLATED}"


class SurrogateOracle(Oracle):
    """Throughput from the regressors; starvation from the classifier as the paper uses it, and also whenever
    the predicted throughput is below the threshold (the classifier alone let through GPUs packed to loads
    it had rarely seen, which the twin then found starved). At another threshold than the one it was
    trained for, from the predicted throughput alone."""

    name = "surrogate"

    def __init__(self, profile: Profile, model: SurrogateModel, starvation_threshold: float = 0.9):
        super().__init__(profile, starvation_threshold)
        meta = model.metadata
        if meta.get("profile_sha256") not in (None, profile_hash(profile)):
            raise ConfigError(f"the surrogate for {profile.name} was trained on a different version of that profile; "
                              "retrain it (loraplace surrogate train) or use --oracle twin")
        self.model = model
        self.trained_threshold = float(meta.get("data", {}).get("starvation_threshold", 0.9))
        self.trained_client_ports = meta.get("data", {}).get("client_ports")  # None: an open client (or not recorded)

    @classmethod
    def shipped(cls, profile: Profile, starvation_threshold: float = 0.9) -> "SurrogateOracle":
        folder = shipped_model_dir(profile.name)
        if not (folder / "metadata.json").is_file():
            raise ConfigError(f"no surrogate ships for profile {profile.name}; train one with "
                              "'loraplace surrogate train' or use --oracle twin")
        oracle = cls(profile, SurrogateModel.load(folder), starvation_threshold)
        oracle.shape_margins = SHAPE_MARGINS.get(profile.name, oracle.shape_margins)
        oracle.rank_margin = RANK_MARGINS.get(profile.name, oracle.rank_margin)
        return oracle

    def _predict(self, queries: list[GpuQuery]) -> list[Verdict]:
        for sigma in {q.length_sigma for q in queries}:
            check_length_spread(sigma)
        same = abs(self.threshold - self.trained_threshold) < 1e-9
        pred = self.model.predict(feature_matrix(queries, self.profile), ("ratio", "starved") if same else ("ratio",))
        out = []
        starved = starved_rule(pred, self.threshold, classifier=same)
        for q, ratio, st in zip(queries, pred["ratio"], starved):
            offered = q.offered_tok_s
            out.append(Verdict("ok", bool(st), float(min(ratio, 1.0)) * offered, offered))  # never above the offered load
        return out
