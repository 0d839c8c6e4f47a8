"""The load generator: a closed loop of N concurrent clients against one agent URL.

Run by bench/run.py as its own process, pinned to its own core (`taskset -c 1`), and printing
one JSON object: counts, errors, req/s, latency and time-to-first-token percentiles.

Every answer is checked, not just counted: a streamed answer must deliver the expected text (or
text that the expected regular expression matches in full) as `response.output_text.delta`
events and end with `data: [DONE]`; a non-streamed one must carry the expected text in its
output items. Anything else (a wrong status, a missing token, a timeout, an `{"error": ...}`
event) counts as an error with its reason.

Bounded: at most `--requests` requests, none started after `--duration` seconds, and each one
given up after `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

DELTA = "response.output_text.delta"


@dataclass
class Sample:
    ok: bool
    latency: float
    ttft: float | None = None
    error: str = ""


@dataclass
class Config:
    url: str
    body: dict[str, Any]
    stream: bool
    expected_text: str | None
    expected_pattern: re.Pattern[str] | None
    expected_status: int
    timeout: float


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def output_text(output: list[dict[str, Any]]) -> str:
    return "".join(
        part.get("text", "")
        for item in output
        if item.get("type") == "message"
        for part in item.get("content", [])
        if part.get("type") == "output_text"
    )


async def _read_stream(response: aiohttp.ClientResponse, started: float) -> tuple[str, float]:
    """The streamed text and the time to its first delta; raises ValueError on a bad stream."""
    deltas: list[str] = []
    ttft: float | None = None
    done = False
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        event = json.loads(payload)
        if "error" in event:
            raise ValueError(f"error event: {str(event['error'])[:120]}")
        if event.get("type") == DELTA:
            if ttft is None:
                ttft = time.perf_counter() - started
            deltas.append(event.get("delta", ""))
    if not done:
        raise ValueError("stream ended without [DONE]")
    return "".join(deltas), ttft if ttft is not None else time.perf_counter() - started


async def one_request(session: aiohttp.ClientSession, config: Config) -> Sample:
    started = time.perf_counter()
    body = {**config.body, "stream": True} if config.stream else config.body
    try:
        async with asyncio.timeout(config.timeout):
            async with session.post(config.url, json=body) as response:
                if response.status != config.expected_status:
                    await response.read()
                    return Sample(False, time.perf_counter() - started, None, f"{response.status}")
                if config.expected_text is None and config.expected_pattern is None:
                    # e.g. the 501 of the migration scaffold
                    await response.read()
                    return Sample(True, time.perf_counter() - started)
                if config.stream:
                    text, ttft = await _read_stream(response, started)
                else:
                    text = output_text((await response.json()).get("output", []))
                    ttft = None
    except TimeoutError:
        return Sample(False, time.perf_counter() - started, None, "timeout")
    except (aiohttp.ClientError, ValueError) as exc:
        return Sample(False, time.perf_counter() - started, None, type(exc).__name__)
    latency = time.perf_counter() - started
    if config.expected_pattern is not None:
        if not config.expected_pattern.fullmatch(text):
            return Sample(False, latency, ttft, f"wrong text ({len(text)} chars)")
    elif text != config.expected_text:
        return Sample(False, latency, ttft, f"wrong text ({len(text)} chars)")
    return Sample(True, latency, ttft)


async def run(config: Config, concurrency: int, requests: int, duration: float) -> dict[str, Any]:
    samples: list[Sample] = []
    issued = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    started = time.perf_counter()
    deadline = started + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            samples.append(await one_request(session, config))

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ok = [s for s in samples if s.ok]
    latencies = [s.latency for s in ok]
    ttfts = [s.ttft for s in ok if s.ttft is not None]
    errors = Counter(s.error for s in samples if not s.ok)
    return {
        "concurrency": concurrency,
        "stream": config.stream,
        "requests": len(samples),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "elapsed_s": elapsed,
        "rps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p99_s": percentile(ttfts, 99),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/invocations")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=10, help="requests in all (at most)")
    parser.add_argument("--duration", type=float, default=30, help="start none after this (s)")
    parser.add_argument("--timeout", type=float, default=60, help="per request (s)")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--message", default="hi")
    parser.add_argument("--expected-text", default=None, help="the answer every request must get")
    parser.add_argument(
        "--expected-pattern", default=None, help="a regular expression every answer must match"
    )
    parser.add_argument("--expected-status", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        url=args.url,
        body={"input": [{"role": "user", "content": args.message}]},
        stream=args.stream,
        expected_text=args.expected_text,
        expected_pattern=re.compile(args.expected_pattern) if args.expected_pattern else None,
        expected_status=args.expected_status,
        timeout=args.timeout,
    )
    result = asyncio.run(run(config, args.concurrency, args.requests, args.duration))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
