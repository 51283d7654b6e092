"""A small HTTP/1.1-over-TLS load generator: raw asyncio protocols, keep-alive connections.

Run it in its own process (``python -m bench.loadgen``) so it does not share the server's GIL.
Two modes: ``--rate R`` is open loop (request k of connection c is due at ``(c + k*C)/R``;
latency counts from when it was due, so a slow server cannot hide its queue: no coordinated
omission), without ``--rate`` every connection sends back to back (saturation).
Prints one JSON object: requests (measured), sent (all, with warm-up), errors, rps,
p50/p90/p99/max in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from urllib.parse import urlsplit

from bench.reviews import reviews


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends and waits for the whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        length = response_length(self._buffer)
        if length is None:
            return
        status = int(self._buffer[9:12])
        del self._buffer[:length]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(status)

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self._waiter


def response_length(buffer: bytes | bytearray) -> int | None:
    """The length of the complete HTTP/1.1 response at the start of ``buffer``, or None while
    it is incomplete. Bodies framed by Content-Length and chunked bodies (any webhook may
    stream its answer) are both understood."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    headers = {}
    for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    position = end + 4
    if b"chunked" not in headers.get(b"transfer-encoding", b""):
        length = position + int(headers.get(b"content-length", b"0"))
        return length if len(buffer) >= length else None
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        if size == 0:
            # The last chunk; trailers (usually none) end with an empty line.
            trailers_end = buffer.find(b"\r\n\r\n", line_end)
            return trailers_end + 4 if trailers_end >= 0 else None
        position = line_end + 2 + size + 2
        if len(buffer) < position:
            return None


def _requests(host: str, path: str, bodies: list[bytes]) -> list[bytes]:
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def run(
    url: str,
    cafile: str,
    connections: int,
    duration: float,
    rate: float | None,
    accounts: int,
    warmup: float,
) -> dict[str, float]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise SystemExit(f"--url {url} needs a host and a port")
    payloads = _requests(parts.netloc, parts.path or "/", reviews(accounts))
    context = ssl.create_default_context(cafile=cafile)
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(connections):
        _, conn = await loop.create_connection(
            _Connection, parts.hostname, parts.port, ssl=context, server_hostname=parts.hostname
        )
        conns.append(conn)
    for conn in conns:  # one request each: TLS handshakes and first-request costs are not measured
        await conn.request(payloads[0])
    latencies: list[float] = []
    errors = 0
    sent = connections
    begin = time.perf_counter() + warmup
    stop = begin + duration

    async def worker(index: int, conn: _Connection) -> None:
        nonlocal errors, sent
        k = 0
        while True:
            if rate:
                due = begin - warmup + (index + k * connections) / rate
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
            else:
                due = time.perf_counter()
            if due >= stop:
                return
            status = await conn.request(payloads[(index + k * connections) % len(payloads)])
            done = time.perf_counter()
            sent += 1
            if due >= begin:
                latencies.append(done - due)
                if status != 200:
                    errors += 1
            k += 1

    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - begin
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "sent": sent,
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="https://127.0.0.1:PORT/mutate")
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=None, help="requests/s; omit to saturate")
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(
            args.url,
            args.cafile,
            args.connections,
            args.duration,
            args.rate,
            args.accounts,
            args.warmup,
        )
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
