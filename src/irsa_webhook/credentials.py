"""Where the ``Authorization`` header for the API server comes from: a fixed value, a token file
that the kubelet rotates, or an exec credential plugin (``aws eks get-token`` and the like).

Each source is asked before every request, so asking must be cheap: all of them cache. None of
them blocks the event loop: a plugin runs as an asyncio subprocess, so admissions keep being
answered while it takes its seconds, and concurrent requests wait on the one run in progress.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from irsa_webhook.tls import load_cert_chain_data

logger = logging.getLogger(__name__)

TOKEN_REFRESH_SECONDS = 60.0
"""Bound ServiceAccount tokens rotate (the kubelet refreshes them at 80% of their life, at
least hourly); re-reading the file once a minute follows rotation without a read per request."""

EXEC_TIMEOUT = 60.0
"""Longest wait for a credential plugin. ``aws eks get-token`` takes a second or two; one that
hangs must fail the requests waiting on it (they are retried) rather than stall them for good."""

EXPIRY_MARGIN = 10.0
"""A plugin's token is fetched anew this long before its ``expirationTimestamp``, so no request
leaves with a token that expires on its way."""


class CredentialError(Exception):
    """No credentials could be had (the plugin failed, or answered something unusable). The
    message says which plugin and why; it never holds the plugin's output."""


class Credentials(Protocol):
    async def authorization(self) -> str | None:
        """The ``Authorization`` header value for the next request, or None for none."""

    def invalidate(self) -> None:
        """The API server answered 401: the next ``authorization`` must not reuse the cache."""


class StaticCredentials:
    """A bearer token or basic-auth pair written in the kubeconfig."""

    def __init__(self, header: str) -> None:
        self._header = header

    async def authorization(self) -> str | None:
        return self._header

    def invalidate(self) -> None:
        """Nothing to fetch again: the kubeconfig's value is all there is."""


class TokenFile:
    """A bearer token re-read from its file at most once per refresh period (client-go does the
    same for the in-cluster token and a kubeconfig's ``tokenFile``).

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

    async def authorization(self) -> str | None:
        return self.current()

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    def current(self) -> str | None:
        # A small local file read once a minute: cheaper inline than handed to a thread.
        now = self._clock()
        if self._header is None or now - self._read_at >= self._refresh_seconds:
            self._read_at = now
            try:
                with open(self._path, encoding="utf-8") as file:
                    token = file.read().strip()
            except OSError as exc:
                logger.warning(
                    "cannot read the token file; keeping the previous token",
                    extra={"path": self._path, "error": exc.strerror},
                )
            else:
                if token:
                    self._header = f"Bearer {token}"
        return self._header


@dataclass(frozen=True, slots=True)
class ExecConfig:
    """A kubeconfig user's ``exec`` section, checked."""

    api_version: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cluster: Mapping[str, Any] | None = None
    """The cluster as the plugin sees it (``provideClusterInfo: true``), else None."""
    directory: str | None = None
    """The kubeconfig's directory: the plugin runs there, so a relative command is found."""


class ExecPlugin:
    """Runs a client.authentication.k8s.io exec plugin and caches its answer until it expires.

    A token answer becomes a bearer header; a client-certificate answer is loaded into
    ``context`` (the TLS context of the client's connections) and no header is sent.
    """

    def __init__(
        self,
        config: ExecConfig,
        context: ssl.SSLContext | None,
        *,
        timeout: float = EXEC_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._context = context
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._header: str | None = None
        self._fetched = False
        self._expires_at = float("inf")

    async def authorization(self) -> str | None:
        if not self._fresh():
            async with self._lock:
                # Whoever waited on the lock finds what the run before it fetched.
                if not self._fresh():
                    await self._fetch()
        return self._header

    def invalidate(self) -> None:
        self._fetched = False

    def _fresh(self) -> bool:
        return self._fetched and self._clock() < self._expires_at - EXPIRY_MARGIN

    async def _fetch(self) -> None:
        status = _check_response(await self._run(), self._config)
        token = status.get("token")
        if isinstance(token, str) and token:
            self._header = f"Bearer {token}"
        else:
            certificate, key = status.get("clientCertificateData"), status.get("clientKeyData")
            if not (isinstance(certificate, str) and isinstance(key, str) and certificate and key):
                raise self._error("answered neither a token nor a client certificate and key")
            if self._context is None:
                raise self._error("answered a client certificate for a server without TLS")
            try:
                load_cert_chain_data(self._context, certificate.encode(), key.encode())
            except (OSError, ssl.SSLError) as exc:
                raise self._error(
                    f"answered a client certificate that cannot be used: {exc}"
                ) from None
            self._header = None
        self._expires_at = _expiry(status.get("expirationTimestamp"), self._config)
        self._fetched = True
        logger.info(
            "credential plugin answered",
            extra={
                "command": self._config.command,
                "kind": "token" if self._header else "client certificate",
                "expires_in_s": (
                    round(self._expires_at - self._clock())
                    if self._expires_at != float("inf")
                    else None
                ),
            },
        )

    async def _run(self) -> bytes:
        config = self._config
        spec: dict[str, Any] = {"interactive": False}
        if config.cluster is not None:
            spec["cluster"] = config.cluster
        exec_info = {"apiVersion": config.api_version, "kind": "ExecCredential", "spec": spec}
        environment = {
            **os.environ,
            **dict(config.env),
            "KUBERNETES_EXEC_INFO": orjson.dumps(exec_info).decode(),
        }
        try:
            process = await asyncio.create_subprocess_exec(
                config.command,
                *config.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=config.directory,
                env=environment,
            )
        except OSError as exc:
            raise self._error(f"cannot be started: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self._timeout):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise self._error(f"did not answer within {self._timeout:g} s") from None
        except asyncio.CancelledError:
            # Nobody waits for its answer any more; leave no process behind.
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            # The plugin's own error message is what tells the user what to fix (kubectl shows
            # it too); its first line only, since a plugin is free to print anything there.
            lines = stderr.decode(errors="replace").strip().splitlines()
            detail = f": {lines[0][:200]}" if lines else ""
            raise self._error(f"exited with status {process.returncode}{detail}")
        return stdout

    def _error(self, problem: str) -> CredentialError:
        return CredentialError(f"credential plugin {self._config.command!r} {problem}")


def _check_response(stdout: bytes, config: ExecConfig) -> Mapping[str, Any]:
    def error(problem: str) -> CredentialError:
        return CredentialError(f"credential plugin {config.command!r} {problem}")

    try:
        response = orjson.loads(stdout)
    except orjson.JSONDecodeError:
        raise error("printed something that is not an ExecCredential in JSON") from None
    if not isinstance(response, dict) or response.get("kind") != "ExecCredential":
        raise error("printed JSON that is not an ExecCredential")
    if response.get("apiVersion") != config.api_version:
        raise error(
            f"answered apiVersion {response.get('apiVersion')!r}; "
            f"the kubeconfig asks for {config.api_version!r}"
        )
    status = response.get("status")
    if not isinstance(status, dict):
        raise error("answered an ExecCredential without a status")
    return status


def _expiry(value: Any, config: ExecConfig) -> float:
    """``expirationTimestamp`` (RFC 3339) as a Unix time; absent means "until a 401"."""
    if value is None or value == "":
        return float("inf")
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise CredentialError(
            f"credential plugin {config.command!r} answered expirationTimestamp {value!r}, "
            "which is not an RFC 3339 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
