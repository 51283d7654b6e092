"""The issuer's signing keys, fetched the way STS fetches them: anonymously over https, first the
discovery document under the issuer, then the JWKS its ``jwks_uri`` names.

Nothing is cached. AWS's STS caches the JWKS for a while; the lab fetches it on every call so
that a test changing the published keys sees the effect at once.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from irsa_lab.web_identity import KeysUnavailable

DISCOVERY_PATH = "/.well-known/openid-configuration"
FETCH_TIMEOUT = 5.0
"""STS gives up on an issuer that takes longer than about 5 s to answer."""

log = logging.getLogger(__name__)


class HttpsKeySource:
    """A ``KeySource`` over https, trusting ``ca_bundle`` (the lab's CA) or the system roots."""

    def __init__(self, ca_bundle: str | None = None) -> None:
        context = ssl.create_default_context(cafile=ca_bundle)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # A redirect is not followed: STS does not follow one either (OpenShift saw
        # "Couldn't retrieve verification key" from a bucket answering PermanentRedirect).
        self._http = httpx.Client(verify=context, timeout=FETCH_TIMEOUT, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def signing_keys(self, issuer: str) -> Mapping[str, Any]:
        if not issuer.startswith("https://"):
            raise KeysUnavailable(f"the issuer {issuer} is not an https URL")
        # OpenID Connect Discovery: a terminating "/" of the issuer is removed before the path.
        discovery = self._json(issuer.rstrip("/") + DISCOVERY_PATH)
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise KeysUnavailable(f"the discovery document's jwks_uri {jwks_uri!r} is not https")
        jwks = self._json(jwks_uri)
        if not isinstance(jwks.get("keys"), list):
            raise KeysUnavailable(f"{jwks_uri} has no keys list")
        return jwks

    def _json(self, url: str) -> dict[str, Any]:
        try:
            response = self._http.get(url)
        except httpx.HTTPError as error:
            log.info("issuer document unreachable", extra={"url": url, "error": str(error)})
            raise KeysUnavailable(f"{url}: {error}") from None
        if response.status_code != 200:
            log.info("issuer document refused", extra={"url": url, "status": response.status_code})
            raise KeysUnavailable(f"{url} answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise KeysUnavailable(f"{url} is not JSON") from None
        if not isinstance(document, dict):
            raise KeysUnavailable(f"{url} is not a JSON object")
        return document
