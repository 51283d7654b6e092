"""A small synchronous Kubernetes client for the one-shot commands (``oidc``, ``iam``): GET,
create and merge-patch of plain JSON objects.

The webhook's own client (``kubeapi``) is asynchronous and read-only; these commands run one
request after another and need writes, so they get their own, built on the same connection
settings (``kubeconfig`` reads the kubeconfig or the in-cluster ServiceAccount).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import orjson

from irsa_webhook.config import ConfigError
from irsa_webhook.credentials import CredentialError
from irsa_webhook.kubeconfig import load_connection

REQUEST_TIMEOUT = 15.0
"""Per request: these commands run by hand, a stuck API server should fail, not hang."""


class ClusterError(Exception):
    """The API server could not be reached, or refused a request; one line that says which.

    ``status`` is the HTTP status (0 when there was no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Cluster:
    """One API server, reached with the credentials of a kubeconfig or of the pod."""

    def __init__(self, host: str, http: httpx.Client, tls_server_name: str = "") -> None:
        self.host = host
        self._http = http
        self._extensions = {"sni_hostname": tls_server_name} if tls_server_name else None

    @classmethod
    def connect(cls, kubeconfig: str = "") -> Cluster:
        """``kubeconfig`` (else ``$KUBECONFIG``, else ``~/.kube/config``, else in-cluster), read
        by the webhook's own loader; credentials (an exec plugin's too) are fetched once, which
        is enough for a command that runs for seconds."""
        default = (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]) or str(
            Path("~/.kube/config").expanduser()
        )
        path = kubeconfig or (default if Path(default).exists() else "")
        try:
            connection = load_connection(path)
            header = (
                asyncio.run(connection.credentials.authorization())
                if connection.credentials
                else None
            )
        except (ConfigError, CredentialError) as exc:
            raise ClusterError(0, f"no usable Kubernetes connection: {exc}") from None
        # The API server serves its JWKS only as application/jwk-set+json.
        headers = {
            "Accept": "application/json, application/jwk-set+json",
            "User-Agent": "irsa-webhook",
        }
        if header:
            headers["Authorization"] = header
        http = httpx.Client(
            base_url=connection.host,
            verify=connection.verify,
            headers=headers,
            timeout=REQUEST_TIMEOUT,
            proxy=connection.proxy or None,
            trust_env=False,
        )
        return cls(connection.host, http, connection.tls_server_name)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return self._request("GET", path)
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body, "application/json")

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch: ``None`` values remove keys (annotations, labels)."""
        return self._request("PATCH", path, body, "application/merge-patch+json")

    def _request(
        self, method: str, path: str, body: Any = None, content_type: str = ""
    ) -> dict[str, Any]:
        headers = {"Content-Type": content_type} if content_type else {}
        content = orjson.dumps(body) if body is not None else None
        try:
            response = self._http.request(
                method, path, content=content, headers=headers, extensions=self._extensions
            )
        except httpx.HTTPError as exc:
            raise ClusterError(0, f"cannot reach the API server at {self.host}: {exc}") from None
        try:
            document = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            document = {}
        if response.is_error:
            message = document.get("message") if isinstance(document, dict) else None
            text = " ".join(str(message or response.text or response.reason_phrase).split())
            raise ClusterError(
                response.status_code, f"{method} {path}: {response.status_code} {text}"
            )
        if not isinstance(document, dict):
            raise ClusterError(0, f"{method} {path}: the API server sent JSON that is no object")
        return document
