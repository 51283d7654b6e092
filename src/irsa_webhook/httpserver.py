"""uvicorn, configured once for both ports: limits, keep-alive, TLS and no signal handlers."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn

from irsa_webhook.config import ServerSettings


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handlers: we run two servers and drain them together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def uvicorn_config(
    app: Any, settings: ServerSettings, port: int, context: ssl.SSLContext | None
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.bind_address,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        ssl_context_factory=(lambda _config, _default: context) if context else None,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )
