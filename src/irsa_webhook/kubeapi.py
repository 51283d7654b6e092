"""A thin asyncio client for the few Kubernetes API calls the webhook makes: GET and WATCH, and
for the reconciler (off by default) POST, PUT and PATCH.

The official ``kubernetes`` package is synchronous, so it is used only to read the connection
settings (kubeconfig or in-cluster); requests go through ``httpx`` and JSON through ``orjson``.
Objects stay plain dicts, as everywhere else in the webhook. Every failure to get an answer from
the API server is one exception type, ``ApiError``, so callers have a single thing to handle.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

import httpx
import orjson
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.config import incluster_config

logger = logging.getLogger(__name__)

TOKEN_REFRESH_SECONDS = 60.0
"""Bound ServiceAccount tokens rotate (the kubelet refreshes them at 80% of their life, at
least hourly); re-reading the file once a minute follows rotation without a read per request."""

REQUEST_TIMEOUT = 10.0
"""Connect/read/write timeout of a plain GET: a live lookup must not hang an admission."""

STREAM_READ_TIMEOUT = 120.0
"""Longest silence on a watch before the connection is treated as dead. The API server sends a
bookmark about once a minute, so two minutes of nothing means the peer is gone."""

_LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=4)
"""Two long-lived watches and a handful of live GETs; more connections only load the API server."""


class ApiError(Exception):
    """The API server answered with an error status, or could not be reached at all.

    ``status`` is the HTTP status, or 0 when there was no usable answer (connection refused,
    timeout, a body that is not JSON); ``reason`` is the Kubernetes ``Status`` reason (``NotFound``,
    ``Expired``, ...) or the name of the transport error; ``retry_after`` is the server's
    ``Retry-After`` in seconds when it sent one (429, 503). Retrying is the caller's decision.
    """

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class _TokenFile:
    """The in-cluster bearer token, re-read from its file at most once per refresh period.

    A failed re-read keeps the previous token: during a rotation the old token stays valid for a
    while, and a request with it is better than a request with none.
    """

    def __init__(
        self,
        path: str,
        refresh_seconds: float = TOKEN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._header: str | None = None
        self._read_at = 0.0

    def __call__(self) -> str | None:
        now = self._clock()
        if self._header is None or now - self._read_at >= self._refresh_seconds:
            self._read_at = now
            try:
                with open(self._path, encoding="utf-8") as file:
                    token = file.read().strip()
            except OSError as exc:
                logger.warning(
                    "cannot read the ServiceAccount token file; keeping the previous token",
                    extra={"path": self._path, "error": exc.strerror},
                )
            else:
                if token:
                    self._header = f"Bearer {token}"
        return self._header


class _BearerAuth(httpx.Auth):
    """Sets ``Authorization`` from a provider called per request (cheap; it caches)."""

    def __init__(self, header: Callable[[], str | None]) -> None:
        self._header = header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self._header()
        if value:
            request.headers["Authorization"] = value
        yield request


class KubeApi:
    """GET and WATCH against one API server; build it with ``from_config``.

    Use one instance per process and close it with ``aclose()``. It never logs a token or an
    ``Authorization`` header, and never logs response bodies.
    """

    def __init__(
        self,
        host: str,
        *,
        verify: ssl.SSLContext | bool = True,
        authorization: Callable[[], str | None] | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        stream_read_timeout: float = STREAM_READ_TIMEOUT,
    ) -> None:
        self.host = host.rstrip("/")
        self._request_timeout = httpx.Timeout(request_timeout)
        self._stream_timeout = httpx.Timeout(request_timeout, read=stream_read_timeout)
        self._client = httpx.AsyncClient(
            base_url=self.host,
            verify=verify,
            auth=_BearerAuth(authorization) if authorization is not None else None,
            limits=_LIMITS,
            timeout=self._request_timeout,
            headers={"Accept": "application/json", "User-Agent": "irsa-webhook"},
        )

    @classmethod
    def from_config(
        cls,
        kubeconfig: str = "",
        kube_api: str = "",
        *,
        token_path: str = incluster_config.SERVICE_TOKEN_FILENAME,
        ca_path: str = incluster_config.SERVICE_CERT_FILENAME,
        environ: Mapping[str, str] = os.environ,
    ) -> KubeApi:
        """Connection settings as the reference webhook (client-go) resolves them.

        ``kubeconfig`` names a kubeconfig file; without it the in-cluster ServiceAccount is used.
        ``kube_api`` (``--kube-api``) replaces the server URL either way, keeping the credentials.
        ``token_path``, ``ca_path`` and ``environ`` exist for tests of the in-cluster branch.
        Outside a cluster, a ``kube_api`` without ``kubeconfig`` connects without credentials, as
        client-go does. Raises ``kubernetes.config.ConfigException`` when nothing is usable.
        """
        configuration = kube_client.Configuration()
        authorization: Callable[[], str | None]
        if kubeconfig:
            # The kubernetes package's config loaders carry no type hints.
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )

            # The library re-runs exec credential plugins here when their token has expired.
            def authorization() -> str | None:
                value: str | None = configuration.get_api_key_with_prefix(
                    "BearerToken", alias="authorization"
                )
                return value

        else:
            try:
                incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                    token_filename=token_path,
                    cert_filename=ca_path,
                    try_refresh_token=False,
                    environ=environ,
                ).load_and_set(configuration)
            except kube_config.ConfigException:
                if not kube_api:
                    raise
                # client-go does the same: a bare --kube-api outside a cluster is anonymous.
                logger.info("not in a cluster; connecting to --kube-api without credentials")
                return cls(kube_api)
            authorization = _TokenFile(token_path)
        host = kube_api or configuration.host
        return cls(host, verify=_ssl_context(configuration), authorization=authorization)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON document, such as one object or one page of a list."""
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        if response.is_error:
            raise _status_error(response)
        return _decode(response.content)

    async def send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any],
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """POST, PUT or PATCH a JSON body; returns the object the server stored."""
        try:
            response = await self._client.request(
                method, path, content=orjson.dumps(body), headers={"Content-Type": content_type}
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        if response.is_error:
            raise _status_error(response)
        return _decode(response.content)

    async def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the events of a watch (``{"type": ..., "object": ...}``) as they arrive.

        Ends when the server closes the stream (``timeoutSeconds``); raises ``ApiError`` when the
        watch is refused or the connection stays silent for the stream read timeout.
        """
        try:
            async with self._client.stream(
                "GET", path, params=params, timeout=self._stream_timeout
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _status_error(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _decode(line)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _ssl_context(configuration: kube_client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig says: its CA (else the system's), its client certificate."""
    if not configuration.verify_ssl:
        # insecure-skip-tls-verify in the kubeconfig: the user asked for it explicitly.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def _decode(content: bytes | str) -> dict[str, Any]:
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise ApiError(0, "InvalidResponse", f"the API server sent non-JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ApiError(0, "InvalidResponse", "the API server sent JSON that is not an object")
    return document


def _status_error(response: httpx.Response) -> ApiError:
    reason = response.reason_phrase or "Error"
    message = ""
    try:
        status = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        message = response.text[:200]
    else:
        if isinstance(status, dict):
            reason = str(status.get("reason") or reason)
            message = str(status.get("message") or "")
    return ApiError(response.status_code, reason, message, _retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    # The API server only sends whole seconds; the HTTP-date form is not worth parsing.
    return float(value) if value.isdigit() else None


def _transport_error(exc: httpx.HTTPError) -> ApiError:
    reason = "Timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    return ApiError(0, reason, str(exc) or type(exc).__name__)
