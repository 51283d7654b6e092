"""issuer-discovery, issuer-match, jwks-kid: what STS fetches and compares before IAM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from irsa_webhook.doctor.gather import Fetched
from irsa_webhook.doctor.report import CheckResult, Status, ok

NO_VERIFICATION_KEY = (
    "An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity "
    "operation: Couldn't retrieve verification key from your identity provider, please "
    "reference AssumeRoleWithWebIdentity documentation for requirements"
)
NO_PROVIDER = (
    "An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity "
    "operation: No OpenIDConnect provider found in your account for {issuer}"
)
JSON_TYPES = ("application/json", "application/jwk-set+json")
"""The API server serves its JWKS as the latter (RFC 7517); both are JSON to STS."""
ACCEPTED_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
"""What STS verifies (the STS API model, ``WebIdentityToken``)."""
PUBLISH_FIX = (
    "publish the cluster's discovery document and JWKS at the issuer URL "
    "(irsa-webhook oidc publish)"
)


def discovery_url(issuer: str) -> str:
    """Where OpenID discovery puts the document for ``issuer`` (a trailing slash is dropped)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def check_issuer_discovery(
    cluster_discovery: Mapping[str, Any] | None,
    cluster_problem: str,
    public_discovery: Fetched | None,
    public_jwks: Fetched | None,
) -> CheckResult:
    check = "issuer-discovery"
    if cluster_problem:
        return CheckResult(
            check, Status.WARN, cluster_problem, "", "run doctor with a user who may read it"
        )
    if cluster_discovery is None:
        return CheckResult(
            check,
            Status.FAIL,
            "the API server serves no /.well-known/openid-configuration: its "
            "--service-account-issuer is not an https URL",
            NO_VERIFICATION_KEY,
            "set kube-apiserver --service-account-issuer to an https URL and publish its documents",
        )
    issuer = str(cluster_discovery.get("issuer", ""))
    if not issuer.startswith("https://"):
        return CheckResult(
            check,
            Status.FAIL,
            f"the cluster's issuer {issuer!r} is not https",
            NO_VERIFICATION_KEY,
            "set kube-apiserver --service-account-issuer to an https URL",
        )
    assert public_discovery is not None
    if public_discovery.document is None:
        return CheckResult(
            check,
            Status.FAIL,
            f"{public_discovery.url} {public_discovery.error}",
            NO_VERIFICATION_KEY,
            PUBLISH_FIX,
        )
    jwks_uri = str(public_discovery.document.get("jwks_uri", ""))
    if not jwks_uri.startswith("https://"):
        return CheckResult(
            check,
            Status.FAIL,
            f"{public_discovery.url}: jwks_uri {jwks_uri!r} is not https",
            NO_VERIFICATION_KEY,
            PUBLISH_FIX,
        )
    if public_jwks is None or public_jwks.document is None:
        error = public_jwks.error if public_jwks is not None else "not fetched"
        return CheckResult(
            check, Status.FAIL, f"jwks_uri {jwks_uri} {error}", NO_VERIFICATION_KEY, PUBLISH_FIX
        )
    keys = public_jwks.document.get("keys")
    if not isinstance(keys, list) or not keys:
        return CheckResult(
            check,
            Status.FAIL,
            f"jwks_uri {jwks_uri} holds no keys",
            NO_VERIFICATION_KEY,
            PUBLISH_FIX,
        )
    evidence = (
        f"issuer {issuer}; {public_discovery.url} and jwks_uri {jwks_uri} ({len(keys)} key(s)) "
        f"read anonymously over https in {public_discovery.elapsed * 1000:.0f} ms"
    )
    not_json = [
        f.url
        for f in (public_discovery, public_jwks)
        if f.content_type.split(";")[0].strip() not in JSON_TYPES
    ]
    if not_json:
        return CheckResult(
            check,
            Status.WARN,
            f"{evidence}; not served as application/json: {', '.join(not_json)}",
            "",
            "upload both documents with Content-Type application/json",
        )
    return ok(check, evidence)


def _spelling_hint(value: str, expected: str) -> str:
    if value.rstrip("/") == expected.rstrip("/"):
        return " (a trailing slash differs)"
    if value.replace(":443", "") == expected.replace(":443", ""):
        return " (one has :443)"
    if value.lower() == expected.lower():
        return " (case differs)"
    if value.split("://")[-1] == expected.split("://")[-1]:
        return " (the scheme differs)"
    return ""


def check_issuer_match(
    token_iss: str,
    compared: Sequence[tuple[str, str | None]],
) -> CheckResult:
    """``iss`` of a fresh token equals, byte for byte, every other spelling of the issuer.

    ``compared`` is (where, value) pairs; a None value is a source doctor could not read, and
    its ``where`` says why.
    """
    check = "issuer-match"
    mismatches = [
        f"{where} {value!r}{_spelling_hint(value, token_iss)}"
        for where, value in compared
        if value is not None and value != token_iss
    ]
    matched = [where for where, value in compared if value == token_iss]
    unread = [where for where, value in compared if value is None]
    if mismatches:
        return CheckResult(
            check,
            Status.FAIL,
            f"token iss {token_iss!r} differs from " + "; ".join(mismatches),
            NO_PROVIDER.format(issuer=token_iss),
            "use the token's iss, byte for byte, for the published issuer, the IAM provider URL "
            "and the trust policy's condition keys",
        )
    evidence = f"token iss {token_iss!r} = " + " = ".join(matched)
    if unread:
        evidence += "; not compared: " + "; ".join(unread)
    return ok(check, evidence)


def check_jwks_kid(
    token: str,
    header: Mapping[str, Any],
    public_jwks: Mapping[str, Any] | None,
    cluster_jwks: Mapping[str, Any] | None,
) -> CheckResult:
    """The key that signed the token is published under its ``kid`` and verifies it."""
    check = "jwks-kid"
    kid = header.get("kid", "")
    alg = header.get("alg", "")
    if alg not in ACCEPTED_ALGORITHMS:
        return CheckResult(
            check,
            Status.FAIL,
            f"the token is signed with {alg!r}; STS accepts {', '.join(ACCEPTED_ALGORITHMS)}",
            "InvalidIdentityToken",
            "sign service-account tokens with an RSA or ECDSA key",
        )
    if public_jwks is None:
        return CheckResult(
            check, Status.SKIPPED, "the public JWKS could not be read (see issuer-discovery)"
        )
    public = [k for k in public_jwks.get("keys") or [] if isinstance(k, dict)]
    public_kids = [str(k.get("kid", "")) for k in public]
    match = next((k for k in public if str(k.get("kid", "")) == kid), None)
    if match is None:
        return CheckResult(
            check,
            Status.FAIL,
            f"the token's kid {kid!r} is not in the public JWKS "
            f"(kids: {', '.join(map(repr, public_kids)) or 'none'})",
            NO_VERIFICATION_KEY,
            "publish the API server's current keys again (irsa-webhook oidc publish): the "
            "signing key changed since the last publish",
        )
    try:
        jwt.decode(
            token,
            key=jwt.PyJWK(match).key,
            algorithms=[alg],
            options={
                "verify_aud": False,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except (jwt.PyJWTError, ValueError) as exc:
        return CheckResult(
            check,
            Status.FAIL,
            f"the public key with kid {kid!r} does not verify the token: {exc}",
            "An error occurred (InvalidIdentityToken) when calling the AssumeRoleWithWebIdentity "
            "operation: The ID token provided is not valid",
            "publish the API server's current public keys (irsa-webhook oidc publish)",
        )
    evidence = f"kid {kid!r} ({alg}) is in the public JWKS and verifies the token"
    cluster_kids = {
        str(k.get("kid", "")) for k in (cluster_jwks or {}).get("keys") or [] if isinstance(k, dict)
    }
    unpublished = sorted(cluster_kids - set(public_kids))
    if unpublished:
        return CheckResult(
            check,
            Status.WARN,
            f"{evidence}; keys the API server accepts but are not published: "
            + ", ".join(unpublished),
            NO_VERIFICATION_KEY + " (once the API server signs with them)",
            "publish the API server's current keys (irsa-webhook oidc publish)",
        )
    return ok(check, evidence)
