"""Start and stop a vLLM OpenAI-compatible server as a subprocess, and read what it logs at start-up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from loraplace.twin.errors import LoraplaceError

from .probe import ROLES as PROBE_ROLES

KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")
VERSION = re.compile(r"version (\d+\.\d+\.\d+\S*)")
START_FAILURES = (  # log text (older and newer vLLM wordings) -> status in the runs/ and kv_capacity schemas
    ("larger than the maximum number of tokens that can be stored in KV cache", "kv_below_max_model_len"),
    ("which is larger than the available KV cache memory", "kv_below_max_model_len"),
    ("No available memory for the cache blocks", "no_kv_memory"),
    ("out of memory", "cuda_oom"),
    ("OutOfMemoryError", "cuda_oom"),
)


class ServerError(LoraplaceError):
    """vLLM did not come up (the message names the log file)."""


@dataclass
class ServerConfig:
    """What one `vllm serve` start-up is given; `argv` turns it into the command line."""

    model: Path
    name: str
    adapters: list[tuple[str, Path]] = field(default_factory=list)
    max_loras: int = 1
    max_lora_rank: int = 16
    max_cpu_loras: int | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048
    dtype: str = "float32"
    port: int = 8100
    kv_cache_gib: int | None = 1
    extra: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        a = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
             "--served-model-name", self.name,
             "--port", str(self.port), "--dtype", self.dtype, "--max-model-len", str(self.max_model_len),
             "--max-num-seqs", str(self.max_num_seqs), "--max-num-batched-tokens", str(self.max_num_batched_tokens),
             "--no-enable-prefix-caching", "--disable-uvicorn-access-log", "--stream-interval", "16"]
        if self.adapters:
            a += ["--enable-lora", "--max-loras", str(self.max_loras), "--max-lora-rank", str(self.max_lora_rank),
                  "--max-cpu-loras", str(max(self.max_cpu_loras or len(self.adapters), self.max_loras)),
                  "--lora-modules", *[f"{n}={p}" for n, p in self.adapters]]
        return a + list(self.extra)


@dataclass
class StartedServer:
    config: ServerConfig
    process: subprocess.Popen
    log_path: Path
    startup_s: float
    kv_cache_tokens: int | None
    vllm_version: str | None
    probe: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> "StartedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def startup_status(log: str) -> str:
    """`ok`, or why the server never served, from its log."""
    for text, status in START_FAILURES:
        if text in log:
            return status
    return "failed"


def parse_startup(log: str) -> tuple[int | None, str | None]:
    """(KV-cache tokens, vLLM version) from a start-up log."""
    kv = KV_TOKENS.search(log)
    ver = VERSION.search(log)
    return (int(kv.group(1).replace(",", "")) if kv else None), (ver.group(1) if ver else None)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start_server(config: ServerConfig, log_path: Path, probe: Path | None = None,
                 timeout_s: float = 300.0) -> StartedServer:
    """Launch vLLM and wait until /health answers; ServerError (with the start-up status) if it exits first.

    With `probe`, the loraplace probe plugin writes the engine's counters next to that path.
    """
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if probe is not None:
        full_env["LORAPLACE_PROBE"] = str(probe)
        for role in PROBE_ROLES:  # counters of an earlier server at this path would poison the first difference
            Path(f"{probe}.{role}.json").unlink(missing_ok=True)
    if config.kv_cache_gib is not None:
        full_env["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gib)
    url = f"http://127.0.0.1:{config.port}"
    if healthy(url):
        raise ServerError(f"port {config.port} already answers /health: stop that server or choose another --port")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(config.argv(), stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
    while not healthy(url):
        if proc.poll() is not None:
            text = log_path.read_text(errors="replace")
            raise ServerError(f"vLLM exited during start-up ({startup_status(text)}); see {log_path}")
        if time.monotonic() - t0 > timeout_s:
            os.killpg(proc.pid, signal.SIGKILL)
            raise ServerError(f"vLLM did not answer /health within {timeout_s:.0f} s; see {log_path}")
        time.sleep(1.0)
    kv, version = parse_startup(log_path.read_text(errors="replace"))
    return StartedServer(config, proc, log_path, time.monotonic() - t0, kv, version, probe)
