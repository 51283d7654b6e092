"""Serving a lab app with uvicorn: plain http, or TLS 1.2+ with the lab's certificate."""

from __future__ import annotations

import ssl
from typing import Any

import uvicorn

from irsa_webhook.tls import create_context


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = create_context("1.2", ())
    context.load_cert_chain(cert, key)
    return context


def server(app: Any, host: str, port: int, context: ssl.SSLContext | None = None) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            ssl_context_factory=(lambda _config, _default: context) if context else None,
        )
    )
