"""The HTTP layer: ``/mutate``, ``/healthz`` and ``/readyz`` on the TLS port, ``/metrics`` (and
the debug dump, when enabled) on the plain-HTTP metrics port.

The hot path reads the raw body and answers with orjson bytes; no request models, no
middleware, no work that does not depend on the request (bench/RESULTS.md has the figures).
Errors in the envelope are HTTP errors with a JSON body; the webhook never denies a pod.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from irsa_webhook.admission import (
    EnvelopeError,
    ReviewRequest,
    decode_review,
    encode_response,
    error_body,
)
from irsa_webhook.cache import LookupSkipped
from irsa_webhook.config import MutationSettings
from irsa_webhook.decision import Decision, Sources, decide
from irsa_webhook.identity import (
    ConfigMapMappings,
    ContainerCredentialsConfig,
    ServiceAccountEntry,
)
from irsa_webhook.metrics import Metrics
from irsa_webhook.mutation import RandomInt

logger = logging.getLogger(__name__)

JSON = "application/json"


class ServiceAccountLookup(Protocol):
    @property
    def synced(self) -> bool: ...

    def get(self, namespace: str, name: str) -> ServiceAccountEntry | None: ...

    async def lookup(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        """The entry after a live GET; raises ``LookupSkipped`` when none may be made now."""
        ...

    def snapshot(self) -> dict[str, ServiceAccountEntry]:
        """Called from a worker thread (the debug dump): must not iterate what the loop changes."""


class ConfigMapProvider(Protocol):
    @property
    def synced(self) -> bool: ...

    @property
    def current(self) -> ConfigMapMappings: ...


class ContainerCredentialsProvider(Protocol):
    synced: bool

    @property
    def current(self) -> ContainerCredentialsConfig: ...


class CertificateState(Protocol):
    loaded: bool


@dataclass(slots=True)
class WebhookState:
    """What the handlers read: the identity sources, readiness inputs and settings."""

    settings: MutationSettings
    service_accounts: ServiceAccountLookup
    config_map: ConfigMapProvider
    container_credentials: ContainerCredentialsProvider
    certificate: CertificateState
    metrics: Metrics
    max_request_bytes: int = 4 * 1024 * 1024
    readiness_requires_sync: bool = True
    enable_debugging_handlers: bool = False
    random_int: RandomInt = field(default_factory=lambda: random.SystemRandom().randint)
    draining: bool = False
    """Set on SIGTERM: /readyz fails so endpoints drop us while in-flight requests finish."""
    failures: list[str] = field(default_factory=list)
    """Why the process is broken beyond repair (a background task ended): /healthz fails."""

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if self.draining:
            reasons.append("shutting down")
        if not self.certificate.loaded:
            reasons.append("no serving certificate loaded")
        if self.readiness_requires_sync:
            for name, source in (
                ("serviceaccounts", self.service_accounts),
                ("configmap", self.config_map),
                ("container-credentials", self.container_credentials),
            ):
                if not source.synced:
                    reasons.append(f"{name} not synced yet")
        return reasons


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def _error(status: int, message: str) -> Response:
    return _json(status, error_body(message))


def create_webhook_app(state: WebhookState) -> FastAPI:
    app = FastAPI(title="irsa-webhook", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.webhook = state

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        started = time.perf_counter()
        response = await _mutate(request, state)
        elapsed = time.perf_counter() - started
        state.metrics.observe_request("POST", "/mutate", response.status_code, elapsed)
        return response

    @app.get("/healthz")
    async def healthz() -> Response:
        if state.failures:
            return _json(503, orjson.dumps({"status": "failed", "reasons": state.failures}))
        return _json(200, b'{"status":"ok"}')

    @app.get("/readyz")
    async def readyz() -> Response:
        reasons = state.not_ready_reasons()
        if reasons:
            return _json(503, orjson.dumps({"status": "not ready", "reasons": reasons}))
        return _json(200, b'{"status":"ready"}')

    return app


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks = []
    size = 0
    # ASGI messages read directly: Starlette's stream() wraps the same loop in an async
    # generator, which costs more than the rest of this function on the hot path.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _mutate(request: Request, state: WebhookState) -> Response:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != JSON:
        return _error(415, f"Content-Type must be application/json, not {content_type[:60]!r}")
    try:
        body = await _read_body(request, state.max_request_bytes)
    except ClientDisconnect:
        # The client left (or the read timeout cut it) mid-body: nobody is there to answer,
        # and it is no server error, so no traceback either.
        logger.info("client disconnected before its request body was complete")
        return _error(400, "request body incomplete: the client disconnected")
    if body is None:
        return _error(413, f"request body is larger than {state.max_request_bytes} bytes")
    started = time.perf_counter()
    try:
        review = decode_review(body)
    except EnvelopeError as exc:
        logger.warning("rejected admission request: %s", exc, extra={"status": exc.status})
        return _error(exc.status, str(exc))
    decision = Decision("not-a-pod-create")
    if review.pod is not None:
        entry = state.service_accounts.get(review.namespace, review.service_account)
        skipped = None
        if entry is None:
            try:
                entry = await state.service_accounts.lookup(
                    review.namespace, review.service_account
                )
            except LookupSkipped as exc:
                skipped = exc.warning
        sources = Sources(entry, state.config_map.current, state.container_credentials.current)
        decision = decide(review, sources, state.settings, state.random_int)
        if skipped is not None:
            decision.warnings.append(skipped)
        _log_decision(review, decision, started)
    body = encode_response(review, decision.patch, decision.warnings)
    state.metrics.observe_decision(
        decision.outcome,
        decision.identity.mode.value if decision.identity else None,
        [warning.reason for warning in decision.warnings],
        time.perf_counter() - started,
    )
    return _json(200, body)


def _log_decision(review: ReviewRequest, decision: Decision, started: float) -> None:
    """Routine decisions at debug (the reference logs them at -v=3), anything a user must act
    on at info: at hundreds of pods/s an info line per pod is noise and costs real CPU."""
    level = (
        logging.INFO
        if decision.warnings or decision.outcome == "missing-service-account"
        else logging.DEBUG
    )
    if not logger.isEnabledFor(level):
        return
    identity = decision.identity
    logger.log(
        level,
        "admission decision",
        extra={
            "namespace": review.namespace,
            "pod": review.pod_name,
            "service_account": review.service_account,
            "role_arn": identity.role_arn if identity else "",
            "mode": identity.mode.value if identity else "",
            "source": identity.source if identity else "",
            "outcome": decision.outcome,
            "mutated": ",".join(decision.mutated),
            "skipped": ",".join(decision.skipped),
            "warnings": ",".join(warning.reason for warning in decision.warnings),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )


def create_metrics_app(
    state: WebhookState, dump: Callable[[], dict[str, ServiceAccountEntry]] | None = None
) -> FastAPI:
    """The plain-HTTP app: never serves /mutate; the debug dump only when enabled."""
    app = FastAPI(title="irsa-webhook metrics", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if state.enable_debugging_handlers:
        snapshot = dump or state.service_accounts.snapshot

        @app.get("/debug/alpha/cache")
        async def cache_dump() -> Response:
            # Tens of milliseconds at 50k ServiceAccounts: in a worker thread, so admissions
            # and probes on this loop are not held up by a debugging request.
            return _json(200, await asyncio.to_thread(_render_dump, snapshot))

    return app


def _render_dump(snapshot: Callable[[], dict[str, ServiceAccountEntry]]) -> bytes:
    """The cache in the reference's ``/debug/alpha/cache`` shape; runs off the event loop."""
    entries = {
        key: {
            "RoleARN": entry.role_arn,
            "Audience": entry.audience,
            "UseRegionalSTS": entry.regional_sts,
            "TokenExpiration": entry.token_expiration,
        }
        for key, entry in snapshot().items()
    }
    return orjson.dumps(entries, option=orjson.OPT_INDENT_2)
