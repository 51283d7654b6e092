"""uvicorn's httptools protocol with the two limits it lacks: a read deadline and a header cap.

uvicorn bounds the idle time between keep-alive requests, but nothing bounds how long a client
may take to send one request, so a client that trickles or stops (slowloris) holds its connection,
and a ``--max-connections`` slot, forever. And httptools has no header size limit. This subclass
keeps httptools' parser and adds both for about 1.5 µs a request: a clock read, a sum over the
headers and a few attribute stores.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

logger = logging.getLogger(__name__)

UNFINISHED_HEAD_FACTOR = 4
"""A head still unfinished after this many times ``max_header_bytes`` of raw reads is refused.

httptools hands a header to us only once it is complete and buffers it until then, so one endless
header line is invisible to the exact count. Raw bytes include the request line, separators and
line ends, hence the margin; the first read of a request is not counted, so the bound is this
plus one read (asyncio reads at most 256 KiB at a time).
"""


ABORT_AFTER_CLOSE = 2.0
"""Seconds a refused connection gets to finish its close (and read our answer) before it is cut."""


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; ``data_received`` answers 431."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that refuses slow requests (408) and oversized headers (431).

    The read deadline runs from the connection (for its first request) or from the first byte of
    a request (for later ones) until the request's body is complete; uvicorn's keep-alive timer
    covers the idle time in between. The header size is the URL plus every header name and value,
    as the parser delivers them. Use ``with_limits`` to get a class bound to the settings.
    """

    read_timeout: ClassVar[float]
    max_header_bytes: ClassVar[int]

    _read_by = 0.0
    """Loop time by which the request being read must be complete; 0 when none is."""
    _timer: asyncio.TimerHandle | None = None
    """Checks ``_read_by`` when it may have passed; re-armed lazily (see ``_arm``)."""
    _in_head = False
    """A request has begun and its headers are not complete yet."""
    _head_reads = 0
    """Raw bytes of the reads after the first while the head stayed unfinished."""
    _lost = False

    # uvicorn narrows BaseProtocol's BaseTransport to Transport, with the same ignore.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._read_by = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus: nothing is parsed once we are closing, a 431 raised by a
        # callback is answered as such (uvicorn would answer 400 and log an invalid request), and
        # a head that keeps growing without finishing is refused.
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_reads += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_headers()
            else:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_reads > UNFINISHED_HEAD_FACTOR * self.max_header_bytes:
            self._refuse_headers()

    # The parser callbacks below run for every request: they call the base class explicitly,
    # because a zero-argument super() costs about 0.2 µs a call on Python 3.11.

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        if not self._read_by:  # the first request keeps the deadline armed at connection
            self._arm()
        self._in_head = True
        self._head_reads = 0

    def on_headers_complete(self) -> None:
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
        if size > self.max_header_bytes:
            raise _HeadTooLarge
        self._in_head = False
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        # Before uvicorn's early return for a request already answered (an early 413).
        self._read_by = 0.0
        HttpToolsProtocol.on_message_complete(self)

    def _arm(self) -> None:
        # One timer per connection, not one per request: a request that completes only clears
        # ``_read_by``, and the timer, when it fires, moves itself to the current deadline. Most
        # requests thus cost a clock read instead of scheduling and cancelling a timer.
        self._read_by = self.loop.time() + self.read_timeout
        if self._timer is None:
            self._timer = self.loop.call_at(self._read_by, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._read_by or self.transport.is_closing():
            return
        if self.loop.time() < self._read_by:
            self._timer = self.loop.call_at(self._read_by, self._check_deadline)
            return
        logger.warning(
            "closing a connection whose request did not arrive within the read timeout",
            extra={"peer": self._peer(), "read_timeout": self.read_timeout},
        )
        self._close(408, b"Request Timeout")

    def _refuse_headers(self) -> None:
        logger.warning(
            "refusing a request whose headers exceed the header size limit",
            extra={"peer": self._peer(), "max_header_bytes": self.max_header_bytes},
        )
        self._close(431, b"Request Header Fields Too Large")

    def _close(self, status: int, message: bytes) -> None:
        """Answer ``status`` if nothing else is or will be written for this request; close."""
        self._read_by = 0.0
        cycle: RequestResponseCycle | None = self.cycle
        if self._in_head:
            # ``cycle`` is the previous request's: answer unless its response is still going.
            answer = cycle is None or cycle.response_complete
        else:
            # Waiting for the first request (no cycle), or for this request's body; after an
            # early answer (413) the body is only being discarded. A pipelined request waits in
            # ``pipeline`` behind one whose response is not written yet.
            answer = cycle is not None and not cycle.response_started and not self.pipeline
        if cycle is not None and not cycle.response_complete:
            # The app sees http.disconnect now rather than when the TLS close finishes.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(message),
                b"connection: close\r\n\r\n",
                message,
            ]
            self.transport.write(b"".join(head))
        self.transport.close()
        # A TLS close waits for the client's close_notify, up to asyncio's 30 s: a client that
        # just refused to send its request would keep its connection slot that long.
        self.loop.call_later(ABORT_AFTER_CLOSE, self._abort_unless_lost)

    def _abort_unless_lost(self) -> None:
        if not self._lost:
            self.transport.abort()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""


def with_limits(read_timeout: float, max_header_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, bound to these limits.

    uvicorn builds one protocol per connection from a class, so the limits are class attributes
    of a subclass made for this configuration.
    """

    class Bounded(BoundedHttpToolsProtocol):
        pass

    Bounded.read_timeout = read_timeout
    Bounded.max_header_bytes = max_header_bytes
    return Bounded
