"""uvicorn, configured once for both ports: limits, keep-alive, TLS and no signal handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn

from irsa_webhook.config import ServerSettings

logger = logging.getLogger(__name__)


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handlers: we run two servers and drain them together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def http_protocol(settings: ServerSettings) -> type[asyncio.Protocol] | str:
    """httptools with ``--read-timeout`` and ``--max-header-bytes``; h11 when it is missing.

    httptools comes with ``uvicorn[standard]``. Without it, h11 still bounds the headers
    (``h11_max_incomplete_event_size``, roughly: it counts what is unparsed after each read),
    but nothing bounds how long a client takes to send its request.
    """
    try:
        from irsa_webhook.protocol import with_limits
    except ImportError:
        logger.warning("httptools is not installed: serving with h11, without --read-timeout")
        return "h11"
    return with_limits(settings.read_timeout, settings.max_header_bytes)


def uvicorn_config(
    app: Any, settings: ServerSettings, port: int, context: ssl.SSLContext | None
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.bind_address,
        port=port,
        http=http_protocol(settings),
        log_config=None,
        access_log=False,
        lifespan="off",
        # Admission, probes and metrics are plain HTTP: without this, uvicorn imports its
        # websockets protocol (~0.6 MB of idle memory) for connections that never come. An
        # Upgrade request is then answered as the plain request it also is.
        ws="none",
        server_header=False,
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )
