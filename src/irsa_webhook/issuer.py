"""Reading the issuer's documents: from the cluster (what kube-apiserver signs with now) and from
the public issuer URL, anonymously, the way STS fetches them."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from irsa_webhook.kubeclient import Cluster
from irsa_webhook.oidc import (
    DISCOVERY_PATH,
    IssuerError,
    PublicKey,
    issuer_url,
    key_id,
    public_key_from_jwk,
    validate_issuer,
)

FETCH_TIMEOUT = 5.0
"""STS gives up on an issuer slower than about 5 s; so do we, so that verify predicts it."""


@dataclass(frozen=True)
class ClusterIssuer:
    """What the cluster's API server says about itself: its issuer and current public keys."""

    issuer: str
    keys: list[PublicKey]


def cluster_issuer(cluster: Cluster) -> ClusterIssuer:
    """The issuer and keys kube-apiserver serves (``/.well-known/openid-configuration`` and
    ``/openid/v1/jwks``). Each key's ``kid`` is checked against our derivation of it."""
    discovery = cluster.get(f"/{DISCOVERY_PATH}")
    if discovery is None:
        raise IssuerError(
            f"the API server at {cluster.host} serves no /{DISCOVERY_PATH}: start kube-apiserver "
            "with an https --service-account-issuer (or pass --issuer and --public-key)"
        )
    issuer = discovery.get("issuer")
    if not isinstance(issuer, str):
        raise IssuerError(f"the API server's discovery document has no issuer: {discovery!r}")
    cluster_jwks = cluster.get("/openid/v1/jwks")
    if cluster_jwks is None or not isinstance(cluster_jwks.get("keys"), list):
        raise IssuerError(f"the API server at {cluster.host} serves no JWKS at /openid/v1/jwks")
    keys = []
    for entry in cluster_jwks["keys"]:
        key = public_key_from_jwk(entry)
        if entry.get("kid") != key_id(key):
            raise IssuerError(
                f"the API server's key {entry.get('kid')!r} has kid {key_id(key)!r} by "
                "kube-apiserver's rule; refusing to publish a JWKS STS would not match"
            )
        keys.append(key)
    return ClusterIssuer(issuer, keys)


def ca_context(ca_bundle: str | None) -> ssl.SSLContext:
    """TLS trust as the AWS tools take it: ``--ca-bundle``, else ``AWS_CA_BUNDLE``, else the
    system's store (which honours ``SSL_CERT_FILE``)."""
    bundle = ca_bundle or os.environ.get("AWS_CA_BUNDLE") or None
    try:
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError) as exc:
        raise IssuerError(f"cannot read the CA bundle {bundle}: {exc}") from None


@dataclass(frozen=True)
class Published:
    discovery: dict[str, Any]
    jwks: dict[str, Any]
    problems: list[str]
    """What a fetch found wrong short of failing: content types and cache headers."""


def fetch_published(issuer: str, context: ssl.SSLContext) -> Published:
    """Both documents as STS reads them: anonymous GETs over https, no redirect followed, JSON
    objects; the JWKS from the discovery document's ``jwks_uri``."""
    validate_issuer(issuer)
    with httpx.Client(
        verify=context, follow_redirects=False, timeout=FETCH_TIMEOUT, trust_env=False
    ) as http:
        problems: list[str] = []
        discovery = _fetch_json(http, issuer_url(issuer, DISCOVERY_PATH), problems)
        uri = discovery.get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith("https://"):
            raise IssuerError(f"the discovery document's jwks_uri {uri!r} is not an https URL")
        jwks = _fetch_json(http, uri, problems)
    return Published(discovery, jwks, problems)


def _fetch_json(http: httpx.Client, url: str, problems: list[str]) -> dict[str, Any]:
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise IssuerError(f"GET {url} failed: {exc or type(exc).__name__}") from None
    if response.is_redirect:
        raise IssuerError(
            f"GET {url} redirects to {response.headers.get('location')!r}: STS does not follow "
            "redirects; publish under the issuer URL itself"
        )
    if response.status_code != 200:
        raise IssuerError(
            f"GET {url} answered {response.status_code} to an anonymous request: STS must be "
            "able to read it without credentials"
        )
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise IssuerError(f"GET {url} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise IssuerError(f"GET {url} is JSON but not an object")
    content_type = response.headers.get("content-type", "")
    if content_type.split(";")[0].strip() != "application/json":
        problems.append(f"{url} is served as {content_type!r}, not application/json")
    return document
