"""A thin asyncio client for the few Kubernetes API calls the webhook makes: GET and WATCH, and
the writes of the self-managed certificates and of the reconciler (Events, restarts, its Lease).

Requests go through ``httpx`` and JSON through ``orjson``; where the server is and which
credentials to send come from ``kubeconfig`` and ``credentials``. Objects stay plain dicts, as
everywhere else in the webhook. Every failure to get an answer from the API server, credentials
included, is one exception type, ``ApiError``, so callers have a single thing to handle.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
import orjson

from irsa_webhook.credentials import CredentialError, Credentials
from irsa_webhook.kubeconfig import Connection, load_connection

logger = logging.getLogger(__name__)

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


class _CredentialsAuth(httpx.Auth):
    """Sets ``Authorization`` from the credentials before each request; on a 401 asks them once
    more, bypassing their cache (an exec plugin's token may have been revoked early), and retries
    when that gives a different answer (client-go does the same)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = await self._credentials.authorization()
        if sent:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401:
            return
        self._credentials.invalidate()
        fresh = await self._credentials.authorization()
        if fresh and fresh != sent:
            request.headers["Authorization"] = fresh
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
        credentials: Credentials | None = None,
        tls_server_name: str = "",
        proxy: str = "",
        request_timeout: float = REQUEST_TIMEOUT,
        stream_read_timeout: float = STREAM_READ_TIMEOUT,
    ) -> None:
        self.host = host.rstrip("/")
        self._request_timeout = httpx.Timeout(request_timeout)
        self._stream_timeout = httpx.Timeout(request_timeout, read=stream_read_timeout)
        # httpcore checks the certificate against, and sends as SNI, this name.
        self._extensions = {"sni_hostname": tls_server_name} if tls_server_name else None
        self._client = httpx.AsyncClient(
            base_url=self.host,
            verify=verify,
            auth=_CredentialsAuth(credentials) if credentials is not None else None,
            proxy=proxy or None,
            limits=_LIMITS,
            timeout=self._request_timeout,
            headers={"Accept": "application/json", "User-Agent": "irsa-webhook"},
        )

    @classmethod
    def from_connection(cls, connection: Connection) -> KubeApi:
        return cls(
            connection.host,
            verify=connection.verify,
            credentials=connection.credentials,
            tls_server_name=connection.tls_server_name,
            proxy=connection.proxy,
        )

    @classmethod
    def from_config(cls, kubeconfig: str = "", kube_api: str = "") -> KubeApi:
        """Connect as ``--kubeconfig`` and ``--kube-api`` say (``kubeconfig.load_connection``);
        raises ``ConfigError`` when they describe nothing usable."""
        return cls.from_connection(load_connection(kubeconfig, kube_api))

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON document, such as one object or one page of a list.

        The body is read as a stream, not into the response: httpx's response sits in a
        reference cycle with its stream, so a body it holds (a list page: ~280 KB per 500
        ServiceAccounts) would live until the next cyclic collection instead of until it is
        parsed, and the next page would be read while it still occupies the heap."""
        try:
            async with self._client.stream(
                "GET", path, params=params, extensions=self._extensions
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _status_error(response)
                body = b"".join([chunk async for chunk in response.aiter_bytes()])
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        except CredentialError as exc:
            raise _credential_error(exc) from exc
        return _decode(body)

    async def send(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """A write (POST, PUT, or PATCH in ``content_type``); returns the object as stored."""
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
                "GET",
                path,
                params=params,
                timeout=self._stream_timeout,
                extensions=self._extensions,
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _status_error(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _decode(line)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        except CredentialError as exc:
            raise _credential_error(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()


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


def _credential_error(exc: CredentialError) -> ApiError:
    return ApiError(0, "CredentialError", str(exc))
