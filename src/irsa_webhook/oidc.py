"""The cluster's OIDC issuer as STS sees it: the discovery document, the JWKS, and the rules a
published pair must follow. Pure functions only; fetching lives in ``irsa_webhook.issuer``.

The ``kid`` of each key is derived exactly as kube-apiserver derives it, because STS picks the
verification key by the token header's ``kid``: a JWKS with any other ``kid`` makes every
exchange fail with "Couldn't retrieve verification key from your identity provider".
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
"""The key types kube-apiserver signs ServiceAccount tokens with."""

DISCOVERY_PATH = ".well-known/openid-configuration"
"""Where STS reads the discovery document, relative to the issuer."""

JWKS_PATH = "openid/v1/jwks"
"""Where we publish the JWKS, relative to the issuer: the path kube-apiserver serves it on."""

_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CURVES_BY_JWK_NAME: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


class IssuerError(Exception):
    """The issuer URL, a key, or a published document cannot be used; the message is one line
    that says what to fix."""


def validate_issuer(issuer: str) -> str:
    """Returns ``issuer`` unchanged when STS can use it: https, a host, no query or fragment.

    The string is kept byte for byte (a trailing ``/`` included): every link of the chain, the
    tokens' ``iss``, the discovery document and the IAM provider, must carry the same one.
    """
    parts = urlsplit(issuer)
    if parts.scheme != "https":
        raise IssuerError(
            f"issuer {issuer!r} is not an https URL: STS only trusts https issuers, and "
            "kube-apiserver serves discovery only for one"
        )
    if not parts.hostname:
        raise IssuerError(f"issuer {issuer!r} has no host")
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise IssuerError(f"issuer {issuer!r} must not have a query or a fragment")
    if parts.username is not None or parts.password is not None:
        raise IssuerError(f"issuer {issuer!r} must not carry credentials")
    return issuer


def issuer_url(issuer: str, path: str) -> str:
    """``path`` under the issuer, as OIDC discovery joins them (one ``/``)."""
    return f"{issuer.rstrip('/')}/{path}"


def provider_host_path(issuer: str) -> str:
    """The issuer without scheme and without a default port: how IAM names the provider in its
    ARN and prefixes the condition keys (``<host/path>:sub``)."""
    parts = urlsplit(issuer)
    host = parts.hostname or ""
    netloc = host if parts.port in (None, 443) else f"{host}:{parts.port}"
    return f"{netloc}{parts.path}".rstrip("/")


def key_id(key: PublicKey) -> str:
    """kube-apiserver's ``kid``: base64url without padding of the SHA-256 of the PKIX DER."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def algorithm(key: PublicKey) -> str:
    """The JWS algorithm kube-apiserver signs with for this key (every RSA key is RS256)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    return _CURVE_ALGORITHMS[key.curve.name]


def load_public_keys(data: bytes, source: str) -> list[PublicKey]:
    """Every public key in a PEM file, as ``--service-account-key-file`` reads it: public keys,
    certificates, or else a private key (its public half)."""
    keys: list[PublicKey] = []
    for block in _pem_blocks(data):
        label = block.split(b"\n", 1)[0]
        try:
            if b"CERTIFICATE" in label:
                keys.append(_usable(x509.load_pem_x509_certificate(block).public_key(), source))
            elif b"PUBLIC KEY" in label:
                keys.append(_usable(serialization.load_pem_public_key(block), source))
        except ValueError as exc:
            raise IssuerError(f"{source}: unreadable PEM block: {exc}") from None
    if keys:
        return keys
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IssuerError(
            f"{source} holds no public key, certificate or unencrypted private key in PEM"
        ) from None
    return [_usable(private.public_key(), source)]


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks = []
    for chunk in data.split(b"-----BEGIN ")[1:]:
        end = chunk.find(b"-----END ")
        if end < 0:
            continue
        tail = chunk.find(b"-----", end + len(b"-----END "))
        blocks.append(b"-----BEGIN " + chunk[: tail + 5] + b"\n")
    return blocks


def _usable(key: object, source: str) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVE_ALGORITHMS:
        return key
    raise IssuerError(
        f"{source}: a {type(key).__name__} cannot sign ServiceAccount tokens "
        "(kube-apiserver uses RSA or ECDSA P-256/384/521 keys)"
    )


def jwk(key: PublicKey) -> dict[str, str]:
    """The JWK kube-apiserver publishes for ``key``: ``use``, ``kty``, ``kid``, ``alg`` and the
    key's numbers (big-endian, base64url, no padding; EC coordinates padded to the curve size)."""
    base = {"use": "sig", "kid": key_id(key), "alg": algorithm(key)}
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {**base, "kty": "RSA", "n": _b64_int(numbers.n), "e": _b64_int(numbers.e)}
    point = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {
        **base,
        "kty": "EC",
        "crv": _CURVE_NAMES[key.curve.name],
        "x": _b64(point.x.to_bytes(size, "big")),
        "y": _b64(point.y.to_bytes(size, "big")),
    }


def public_key_from_jwk(entry: Mapping[str, Any]) -> PublicKey:
    """The key of one JWK (as the cluster's or a published JWKS holds it)."""
    try:
        if entry.get("kty") == "RSA":
            return rsa.RSAPublicNumbers(_int_b64(entry["e"]), _int_b64(entry["n"])).public_key()
        if entry.get("kty") == "EC":
            curve = _CURVES_BY_JWK_NAME[entry["crv"]]
            return ec.EllipticCurvePublicNumbers(
                _int_b64(entry["x"]), _int_b64(entry["y"]), curve
            ).public_key()
    except (KeyError, TypeError, ValueError) as exc:
        raise IssuerError(f"JWK {entry.get('kid', '')!r} is malformed: {exc!r}") from None
    raise IssuerError(f"JWK {entry.get('kid', '')!r} has unsupported kty {entry.get('kty')!r}")


def jwks(keys: Iterable[PublicKey]) -> dict[str, list[dict[str, str]]]:
    """The JWKS for ``keys``, one entry per distinct key, in the order given (rotation: old and
    new keys side by side)."""
    entries: dict[str, dict[str, str]] = {}
    for key in keys:
        entries.setdefault(key_id(key), jwk(key))
    return {"keys": list(entries.values())}


def discovery_document(issuer: str, keys: Sequence[PublicKey]) -> dict[str, Any]:
    """The discovery document kube-apiserver builds, with ``jwks_uri`` under the public issuer:
    never the API server's own address, which STS cannot reach."""
    return {
        "issuer": issuer,
        "jwks_uri": issuer_url(issuer, JWKS_PATH),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted({algorithm(key) for key in keys}),
    }


def published_problems(
    issuer: str,
    discovery: Mapping[str, Any],
    published_jwks: Mapping[str, Any],
    kids: Iterable[str],
) -> list[str]:
    """What STS would reject in a published pair, one sentence each (empty when all is well):
    an ``issuer`` that differs byte for byte, a ``jwks_uri`` that is not https, and current
    signing keys (``kids``) missing from the JWKS."""
    problems = []
    published_issuer = discovery.get("issuer")
    if published_issuer != issuer:
        problems.append(
            f"the discovery document's issuer is {published_issuer!r}, not {issuer!r} "
            "(they must be equal byte for byte)"
        )
    uri = discovery.get("jwks_uri")
    if not isinstance(uri, str) or urlsplit(uri).scheme != "https":
        problems.append(f"the discovery document's jwks_uri {uri!r} is not an https URL")
    entries = published_jwks.get("keys")
    if not isinstance(entries, list):
        problems.append("the JWKS has no 'keys' list")
        entries = []
    published = {entry.get("kid") for entry in entries if isinstance(entry, dict)}
    problems.extend(
        f"the cluster's signing key {kid} is not in the published JWKS"
        for kid in kids
        if kid not in published
    )
    return problems


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _int_b64(text: str) -> int:
    if not isinstance(text, str):
        raise TypeError("not a string")
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")
