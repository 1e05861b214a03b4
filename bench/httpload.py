"""A lean HTTP/1.1 load generator: keep-alive connections on raw asyncio streams.

aiohttp's client spends a few hundred µs of CPU per request, more than the servers measured
here; on a 2-core machine shared with them that would make the load generator the ceiling.
This client writes a prepared request and reads the status line, the headers and a
Content-Length body: ~30 µs per request. It speaks just enough HTTP for our own servers.

Two ways to load a server:
- `closed_loop`: C connections, each sending its next request when the last one is answered
  (the maximum rate the server sustains with C in flight);
- `open_loop`: requests started on a fixed schedule whatever the answers do, latency measured
  from the scheduled start (no coordinated omission), on as many connections as needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HttpError(Exception):
    pass


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A prepared POST request for `url`."""
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


@dataclass
class Run:
    """What a load run measured. `answered_at[i]` is when request i got its 2xx (monotonic)."""

    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int = 0
    answered_at: dict[int, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _ok(status: int) -> bool:
    return 200 <= status < 300


async def closed_loop(
    url: str, requests: Sequence[bytes], concurrency: int, *, check: Callable[[int], bool] = _ok
) -> Run:
    """Send every request, `concurrency` at a time, each on a keep-alive connection."""
    host, port = address(url)
    connections = [await Connection.open(host, port) for _ in range(concurrency)]
    latencies: list[float] = []
    answered: dict[int, float] = {}
    errors = 0
    index = 0

    async def worker(connection: Connection) -> None:
        nonlocal index, errors
        while index < len(requests):
            mine = index
            index += 1
            started = time.perf_counter()
            status, _ = await connection.send(requests[mine])
            done = time.perf_counter()
            if check(status):
                latencies.append((done - started) * 1000)
                answered[mine] = time.monotonic()
            else:
                errors += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    return Run(len(requests), time.perf_counter() - started, latencies, errors, answered)


async def open_loop(
    url: str, requests: Sequence[bytes], rate: float, *, check: Callable[[int], bool] = _ok
) -> Run:
    """Start request i at `i / rate` seconds, whatever happened to the others."""
    host, port = address(url)
    idle: list[Connection] = []
    latencies: list[float] = []
    answered: dict[int, float] = {}
    errors = 0

    async def one(i: int, due: float) -> None:
        nonlocal errors
        connection = idle.pop() if idle else await Connection.open(host, port)
        status, _ = await connection.send(requests[i])
        done = time.perf_counter()
        idle.append(connection)
        if check(status):
            latencies.append((done - due) * 1000)
            answered[i] = time.monotonic()
        else:
            errors += 1

    started = time.perf_counter()
    tasks = []
    for i in range(len(requests)):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    for connection in idle:
        await connection.close()
    return Run(len(requests), seconds, latencies, errors, answered)
