"""Open-loop load against a vLLM OpenAI-compatible server: requests at given times, streamed, timed.

Each request asks for exactly its output length (`min_tokens` = `max_tokens`, `ignore_eos`), with
a prompt of random words of the tiny tokenizer (one word, one token; see tiny_model.word).
Requests still in flight when the window closes are cancelled and not counted, as in the
reference runs. `/metrics` is sampled throughout.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import numpy as np

from .prometheus import summarize
from .tiny_model import word


@dataclass
class Request:
    """One request of a load: when (s from window start), which adapter (None = base model), lengths."""

    at: float
    model: str
    prompt_tokens: int
    output_tokens: int


@dataclass
class Outcome:
    request: Request
    sent: float
    first_token: float | None = None
    done: float | None = None
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.done is not None and self.error is None


@dataclass
class LoadResult:
    """Outcomes of one window and the server gauges averaged over it."""

    window_s: float
    elapsed_s: float
    outcomes: list[Outcome]
    metrics_mean: dict[str, float] = field(default_factory=dict)
    metrics_delta: dict[str, float] = field(default_factory=dict)

    def completed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.completed]

    def errors(self) -> list[str]:
        return [o.error for o in self.outcomes if o.error]


def prompt_text(n: int, rng: np.random.Generator, vocab: int) -> str:
    return " ".join(word(int(i)) for i in rng.integers(0, vocab, n))


async def _one(session, url: str, req: Request, out: Outcome, text: str, slots: asyncio.Semaphore | None,
               stream: bool) -> None:
    try:
        await _send(session, url, req, out, text, stream)
    finally:
        if slots is not None:
            slots.release()


async def _send(session, url: str, req: Request, out: Outcome, text: str, stream: bool) -> None:
    body = {"model": req.model, "prompt": text, "max_tokens": req.output_tokens, "min_tokens": req.output_tokens,
            "ignore_eos": True, "temperature": 0.0, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    try:
        async with session.post(url + "/v1/completions", json=body) as resp:
            if resp.status != 200:
                out.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return
            if not stream:
                usage = (await resp.json())["usage"]
                out.output_tokens, out.prompt_tokens = usage["completion_tokens"], usage["prompt_tokens"]
            else:
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:") or line == b"data: [DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    if chunk.get("choices") and out.first_token is None:  # vLLM always streams the first token at once
                        out.first_token = time.perf_counter()
                    if chunk.get("usage"):
                        out.output_tokens = chunk["usage"]["completion_tokens"]
                        out.prompt_tokens = chunk["usage"]["prompt_tokens"]
            out.done = time.perf_counter()
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - any transport failure is recorded against the request
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise  # cut off at the window's end: not completed, not an error
        out.error = f"{type(e).__name__}: {e}"


async def _metrics_once(session, url: str) -> dict:
    async with session.get(url + "/metrics") as r:
        return summarize(await r.text())


async def _scrape(session, url: str, samples: list[dict], period: float) -> None:
    while True:
        try:
            samples.append(await _metrics_once(session, url))
        except Exception:  # noqa: BLE001 - a missed sample only thins the average
            pass
        await asyncio.sleep(period)


async def run_window(url: str, requests: list[Request], window_s: float, seed: int = 0, vocab: int = 2000,
                     scrape_period: float = 1.0, drain: bool = False, concurrency: int | None = None,
                     stream: bool = True) -> LoadResult:
    """Send each request at its time; at `window_s` cancel what is unfinished (or, with drain, wait for it).

    With `concurrency`, at most that many are in flight (a closed loop when all are due at 0).
    Without `stream`, each response comes whole: no per-token client work, but no TTFT or ITL either.
    """
    import aiohttp

    rng = np.random.default_rng(seed)
    texts = [prompt_text(r.prompt_tokens, rng, vocab) for r in requests]
    conn = aiohttp.TCPConnector(limit=0, force_close=True)  # no keep-alive reuse: the server may close idle ones
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as session:
        before = await _metrics_once(session, url)
        samples: list[dict] = []
        scraper = asyncio.create_task(_scrape(session, url, samples, scrape_period))
        slots = asyncio.Semaphore(concurrency) if concurrency else None
        t0 = time.perf_counter()
        tasks, outcomes = [], []
        for req, text in zip(requests, texts):
            delay = t0 + req.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if req.at >= window_s:
                break
            if slots is not None:
                await slots.acquire()
            out = Outcome(req, sent=time.perf_counter())
            outcomes.append(out)
            tasks.append(asyncio.create_task(_one(session, url, req, out, text, slots, stream)))
        pending = [t for t in tasks if not t.done()]
        if pending:
            timeout = None if drain else max(t0 + window_s - time.perf_counter(), 0.0)
            await asyncio.wait(pending, timeout=timeout)
        elapsed = time.perf_counter() - t0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        scraper.cancel()
        await asyncio.gather(scraper, return_exceptions=True)
        after = await _metrics_once(session, url)
    for o in outcomes:  # completions after the window close are not counted (drain=False)
        if not drain and o.done is not None and o.done - t0 > window_s:
            o.done = None
        o.sent -= t0
        o.first_token = None if o.first_token is None else o.first_token - t0
        o.done = None if o.done is None else o.done - t0
    keys = {k for s in samples for k in s}
    mean = {k: float(np.mean([s.get(k, 0.0) for s in samples])) for k in keys}
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("preemptions", "prompt_tokens", "generation_tokens")}
    return LoadResult(window_s, elapsed, outcomes, mean, delta)


def run(url: str, requests: list[Request], window_s: float, **kw) -> LoadResult:
    """Synchronous wrapper of run_window."""
    return asyncio.run(run_window(url, requests, window_s, **kw))
