"""The read deadline and header limit of ``protocol.BoundedHttpToolsProtocol``, over real TLS.

Each test starts the production uvicorn wiring on loopback with small limits, and talks raw HTTP
through a TLS socket so that it controls exactly what arrives when. Timeouts are short and every
wait has several times its expected length as margin, for a loaded CI machine.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from irsa_webhook import flags
from irsa_webhook.app import create_webhook_app
from irsa_webhook.cli import parse_arguments
from irsa_webhook.config import ConfigError, ServerSettings
from irsa_webhook.httpserver import http_protocol
from loopback import Pki, RunningServer, make_state, run_server

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Target:
    server: RunningServer
    pki: Pki

    def connect(self) -> ssl.SSLSocket:
        """A TLS connection with the handshake done and nothing sent."""
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        return self.pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1")

    def healthy(self) -> bool:
        url = f"{self.server.url}/healthz"
        return httpx.get(url, verify=self.pki.client_context(), timeout=10).status_code == 200


@contextlib.contextmanager
def serve(tmp_path: Path, **limits: Any) -> Iterator[Target]:
    settings = ServerSettings(bind_address="127.0.0.1", port=0, metrics_port=0, **limits)
    pki = Pki(trustme.CA(), tmp_path)
    pki.write(pki.issue())
    state, _ = make_state(pki)
    context = state.certificate.context  # type: ignore[attr-defined]
    with run_server(create_webhook_app(state), context, settings) as server:
        yield Target(server, pki)


def read_response(tls: ssl.SSLSocket, data: bytes = b"") -> bytes:
    """One response (``data`` is its start, if already read): head and Content-Length body.

    Whatever came before the server closed, if it closed first.
    """
    tls.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = tls.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def wait_closed(tls: ssl.SSLSocket, seconds: float) -> float | None:
    """Seconds until the server closes the connection, or None if it stays open that long.

    Bytes the server sends first (a response) are read and dropped.
    """
    started = time.monotonic()
    while (left := started + seconds - time.monotonic()) > 0:
        tls.settimeout(min(left, 0.5))
        try:
            if tls.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except (ssl.SSLError, OSError):
            return time.monotonic() - started
    return None


def send_until_answered(tls: ssl.SSLSocket, pieces: Iterator[bytes], pause: float) -> bytes:
    """Send ``pieces`` with ``pause`` between them until the server answers; the answer."""
    received = b""
    for piece in pieces:
        tls.settimeout(0)  # (select() would also wake up for TLS 1.3 session tickets)
        try:
            received = tls.recv(4096)
            break
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        tls.settimeout(10)
        try:
            tls.sendall(piece)
        except (ssl.SSLError, OSError):
            break
        time.sleep(pause)
    return read_response(tls, received)


def test_a_steady_request_that_completes_within_the_read_timeout_is_answered(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, read_timeout=4.0) as target, target.connect() as tls:
        for line in HEALTHZ.splitlines(keepends=True):
            tls.sendall(line)
            time.sleep(0.2)
        assert read_response(tls).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("stage", ["headers", "body"])
def test_a_request_trickled_past_the_read_timeout_gets_408_and_others_are_served(
    tmp_path: Path, stage: str
) -> None:
    # A deadline for the whole request, not an idle timeout: a piece every 0.1 s, forever.
    head = b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if stage == "headers":
        pieces = (b"X-Slow-%d: 1\r\n" % n for n in range(1000))
    else:
        head += b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        pieces = (b" " for _ in range(1000))
    with serve(tmp_path, read_timeout=0.5) as target, target.connect() as tls:
        started = time.monotonic()
        tls.sendall(head)
        response = send_until_answered(tls, pieces, pause=0.1)
        assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"connection: close" in response
        assert time.monotonic() - started >= 0.5
        assert wait_closed(tls, 10) is not None
        assert target.healthy()


def test_each_request_on_a_keep_alive_connection_gets_its_own_read_timeout(
    tmp_path: Path,
) -> None:
    # The deadline timer armed for the first request fires while the second is half sent; it
    # must move to the second request's own deadline instead of cutting it.
    with serve(tmp_path, read_timeout=1.0) as target, target.connect() as tls:
        tls.sendall(HEALTHZ)
        assert read_response(tls).startswith(b"HTTP/1.1 200")
        time.sleep(0.6)
        tls.sendall(HEALTHZ[:10])
        time.sleep(0.6)
        tls.sendall(HEALTHZ[10:])
        assert read_response(tls).startswith(b"HTTP/1.1 200")


def test_pipelined_requests_are_all_answered(tmp_path: Path) -> None:
    with serve(tmp_path, read_timeout=1.0) as target, target.connect() as tls:
        tls.sendall(HEALTHZ * 3)
        for _ in range(3):
            assert read_response(tls).startswith(b"HTTP/1.1 200")


def test_a_body_still_arriving_after_an_early_413_is_cut_at_the_read_timeout_silently(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, read_timeout=0.5) as target, target.connect() as tls:
        tls.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        assert read_response(tls).startswith(b"HTTP/1.1 413")
        assert send_until_answered(tls, (b" " * 100 for _ in range(1000)), pause=0.05) == b""


def test_a_connection_that_never_sends_a_request_is_closed_without_an_answer(
    tmp_path: Path,
) -> None:
    with serve(tmp_path, read_timeout=0.5) as target, target.connect() as tls:
        tls.settimeout(10)
        assert tls.recv(4096) == b""


def test_an_idle_keep_alive_connection_is_governed_by_the_keep_alive_timeout(
    tmp_path: Path,
) -> None:
    with (
        serve(tmp_path, read_timeout=0.5, keep_alive_timeout=4.0) as target,
        target.connect() as tls,
    ):
        tls.sendall(HEALTHZ)
        assert read_response(tls).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # three read timeouts, well inside the keep-alive timeout
        tls.sendall(HEALTHZ)
        assert read_response(tls).startswith(b"HTTP/1.1 200")
        tls.settimeout(15)
        assert tls.recv(4096) == b""  # closed by the keep-alive timer, without a 408


def exact_head(size: int) -> bytes:
    """A /healthz request whose URL plus header names and values are ``size`` bytes."""
    fixed = len(b"/healthz") + len(b"Host") + len(b"127.0.0.1") + len(b"X-Filler")
    filler = b"x" * (size - fixed)
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + filler + b"\r\n\r\n"


def test_headers_at_the_limit_are_served_and_one_byte_more_gets_431(tmp_path: Path) -> None:
    with serve(tmp_path, max_header_bytes=4096) as target:
        with target.connect() as tls:
            tls.sendall(exact_head(4096))
            assert read_response(tls).startswith(b"HTTP/1.1 200")
        with target.connect() as tls:
            tls.sendall(exact_head(4097))
            response = read_response(tls)
            assert response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
            assert wait_closed(tls, 10) is not None
        assert target.healthy()


def test_a_header_line_that_never_ends_is_refused_while_it_arrives(tmp_path: Path) -> None:
    # httptools buffers a header until it is complete; the raw count stops it at 4x the limit.
    pieces = (b"x" * 1024 for _ in range(1024))  # 1 MiB unless refused
    with serve(tmp_path, max_header_bytes=1024) as target, target.connect() as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
        response = send_until_answered(tls, pieces, pause=0.005)
        assert response.startswith(b"HTTP/1.1 431 ")
        assert target.healthy()


def test_each_refusal_logs_one_warning_with_the_peer_and_no_request_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b"Bearer not-for-the-logs"
    with (
        caplog.at_level(logging.WARNING, logger="irsa_webhook.protocol"),
        serve(tmp_path, read_timeout=0.5, max_header_bytes=1024) as target,
    ):
        with target.connect() as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nAuthorization: " + secret + b"\r\n")
            assert read_response(tls).startswith(b"HTTP/1.1 408")
        with target.connect() as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nAuthorization: " + secret * 100 + b"\r\n\r\n")
            assert read_response(tls).startswith(b"HTTP/1.1 431")
    records = [r for r in caplog.records if r.name == "irsa_webhook.protocol"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", "closing a connection whose request did not arrive within the read timeout"),
        ("WARNING", "refusing a request whose headers exceed the header size limit"),
    ]
    for record in records:
        assert vars(record)["peer"].startswith("127.0.0.1:")
        assert secret.decode() not in str(vars(record))


def test_without_httptools_the_server_falls_back_to_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "irsa_webhook.protocol", None)
    assert http_protocol(ServerSettings()) == "h11"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--read-timeout=0"], "--read-timeout must be positive"),
        (["--read-timeout=-1s"], "--read-timeout must be positive"),
        (["--max-header-bytes=512"], "--max-header-bytes must be at least 1024"),
    ],
)
def test_limits_that_cannot_work_are_config_errors(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flags.server_settings(parse_arguments(["serve", *args])[0], {})


def test_the_limits_are_read_from_flags_and_the_environment() -> None:
    settings = flags.server_settings(
        parse_arguments(["serve", "--read-timeout=500ms"])[0],
        {"IRSA_WEBHOOK_MAX_HEADER_BYTES": "8192"},
    )
    assert settings.read_timeout == pytest.approx(0.5)
    assert settings.max_header_bytes == 8192


def test_a_body_cut_at_the_read_timeout_logs_no_error_or_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    with (
        caplog.at_level(logging.INFO),
        serve(tmp_path, read_timeout=0.5) as target,
        target.connect() as tls,
    ):
        tls.sendall(head)
        assert read_response(tls).startswith(b"HTTP/1.1 408")
        # The app is told of the disconnect; give it time to have finished with the request.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            "disconnected" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
        assert target.healthy()
    assert any(r.getMessage().startswith("client disconnected") for r in caplog.records)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_refused_client_that_ignores_close_notify_loses_its_slot_within_seconds(
    tmp_path: Path,
) -> None:
    # The client reads our 408 but never answers the TLS close, which asyncio would otherwise
    # wait 30 s for: the connection must leave the server's books shortly after the refusal.
    with serve(tmp_path, read_timeout=0.5) as target, target.connect() as tls:
        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert read_response(tls).startswith(b"HTTP/1.1 408")
        connections = target.server.server.server_state.connections
        deadline = time.monotonic() + 10
        while connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not connections, "the refused connection still holds its slot"
