"""The cluster edge of ``doctor``: every read it makes of the API server and the issuer.

Nothing here decides: each function returns what it found, or a one-line reason it found
nothing, and the checks judge. The only writes are ones the API server does not keep: a
TokenRequest (a token is minted, nothing is stored) and a pod create with ``dryRun=All``.
The minted token lives in memory only and is never printed.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from irsa_webhook.doctor.facts import Fetched, TlsProbe
from irsa_webhook.kubeapi import ApiError, KubeApi

DISCOVERY_PATH = "/.well-known/openid-configuration"
CLUSTER_JWKS_PATH = "/openid/v1/jwks"
FETCH_TIMEOUT = 5.0
"""STS gives up on an issuer slower than about 5 s; doctor's fetches use the same bound."""
PROBE_TOKEN_SECONDS = 600
"""The shortest token the API server issues; sts-probe needs it for one call."""
PROBE_IMAGE = "registry.k8s.io/pause:3.10"
"""The dry-run pod is never stored or run; the image only has to be a valid reference."""


async def get_or_none(api: KubeApi, path: str) -> dict[str, Any] | None:
    """The object, or None when the API server says it does not exist."""
    try:
        return await api.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


async def fetch_public(url: str, context: ssl.SSLContext) -> Fetched:
    """GET ``url`` anonymously the way STS does: no redirects followed, 5 s, a JSON object."""
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(
            verify=context, follow_redirects=False, timeout=FETCH_TIMEOUT, trust_env=False
        ) as http:
            response = await http.get(url)
    except httpx.HTTPError as exc:
        return Fetched(url, error=f"GET failed: {exc or type(exc).__name__}")
    elapsed = time.monotonic() - started
    content_type = response.headers.get("content-type", "")
    if response.is_redirect:
        where = response.headers.get("location")
        return Fetched(url, error=f"redirects to {where!r}; STS does not follow redirects")
    if response.status_code != 200:
        return Fetched(url, error=f"answered HTTP {response.status_code} to an anonymous GET")
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return Fetched(url, error="is not JSON", content_type=content_type)
    if not isinstance(document, dict):
        return Fetched(url, error="is JSON but not an object", content_type=content_type)
    return Fetched(url, document, content_type=content_type, elapsed=elapsed)


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A token TokenRequest issued for the ServiceAccount, decoded (not verified)."""

    token: str = field(repr=False)
    header: dict[str, Any]
    claims: dict[str, Any]


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT; ValueError when it is not three base64url JSON parts."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("the token is not a three-part JWT")
    decoded = []
    for part in parts[:2]:
        try:
            value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"a JWT part is not base64url JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("a JWT part is not a JSON object")
        decoded.append(value)
    return decoded[0], decoded[1]


async def mint_token(api: KubeApi, namespace: str, name: str, audience: str) -> MintedToken:
    """TokenRequest for ``namespace/name``: what the kubelet would project into the pod."""
    response = await api.send(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": PROBE_TOKEN_SECONDS},
        },
    )
    token = str((response.get("status") or {}).get("token") or "")
    header, claims = decode_unverified(token)
    return MintedToken(token, header, claims)


def probe_pod(namespace: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"irsa-webhook-doctor-{uuid.uuid4().hex[:8]}",
            "namespace": namespace,
        },
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "probe", "image": PROBE_IMAGE}],
        },
    }


async def dry_run_pod(api: KubeApi, namespace: str, service_account: str) -> dict[str, Any]:
    """Create a pod with ``dryRun=All``: admission (our webhook too) runs, nothing is stored."""
    return await api.send(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods?dryRun=All",
        probe_pod(namespace, service_account),
    )


def _tls_probe(host: str, port: int, server_name: str, ca_pem: str) -> TlsProbe:
    address = f"{host}:{port}"
    try:
        context = ssl.create_default_context(cadata=ca_pem or None)
    except ssl.SSLError as exc:
        return TlsProbe(address, False, f"the caBundle is not a PEM certificate: {exc}")
    if not ca_pem:
        return TlsProbe(address, False, "the webhook configuration has no caBundle")
    try:
        with (
            socket.create_connection((host, port), timeout=3) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            certificate = tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        return TlsProbe(address, False, f"the caBundle does not verify it: {exc.verify_message}")
    except (OSError, ssl.SSLError) as exc:
        return TlsProbe(address, False, f"{type(exc).__name__}: {exc}", reachable=False)
    return TlsProbe(address, True, f"valid until {certificate.get('notAfter', '?')}")


async def probe_tls(host: str, port: int, server_name: str, ca_pem: str) -> TlsProbe:
    return await asyncio.to_thread(_tls_probe, host, port, server_name, ca_pem)


def url_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 443


def ca_bundle_pem(client_config: Mapping[str, Any]) -> str:
    raw = client_config.get("caBundle") or ""
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


async def ready_endpoints(
    api: KubeApi, namespace: str, service: str, service_port: int
) -> list[tuple[str, int]]:
    """Addresses (ip, port) of the Service's ready endpoints for its port ``service_port``,
    from its EndpointSlices. The slices name their ports after the Service's, so the port the
    webhook configuration calls is found by name: the webhook's Service serves metrics too."""
    definition = await get_or_none(api, f"/api/v1/namespaces/{namespace}/services/{service}")
    port_name = next(
        (
            str(p.get("name") or "")
            for p in ((definition or {}).get("spec") or {}).get("ports") or []
            if p.get("port") == service_port
        ),
        None,
    )
    slices = await api.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        params={"labelSelector": f"kubernetes.io/service-name={service}"},
    )
    return endpoints_for(slices, port_name)


def endpoints_for(slices: Mapping[str, Any], port_name: str | None) -> list[tuple[str, int]]:
    """Ready (ip, port) pairs of the EndpointSlice list ``slices`` for the Service port named
    ``port_name`` (``""``: the unnamed one); None, the Service has no such port: none."""
    found: list[tuple[str, int]] = []
    if port_name is None:
        return found
    for item in slices.get("items") or []:
        port = next(
            (
                int(p["port"])
                for p in item.get("ports") or []
                if p.get("port") and str(p.get("name") or "") == port_name
            ),
            None,
        )
        if port is None:
            continue
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found += [(address, port) for address in endpoint.get("addresses") or []]
    return found
