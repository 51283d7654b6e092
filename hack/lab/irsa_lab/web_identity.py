"""What STS checks before it trades a web identity token for a role's credentials.

AWS's STS, for AssumeRoleWithWebIdentity: reads the token, finds the IAM OIDC provider whose URL
is the token's ``iss`` in the role's account, fetches the issuer's signing keys, verifies the
signature, ``exp`` and ``aud`` (against the provider's client IDs), then evaluates the role's
trust policy with the token's claims. moto checks none of it; ``validate`` does all of it, in that
order, so the first broken link is the one reported, with AWS's code and message.

Pure: IAM, the issuer's documents and the trust-policy evaluation come in through protocols, the
clock as a number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from irsa_lab import sts_errors

# The algorithms STS accepts (botocore's STS model, WebIdentityToken).
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*[\w+=,.@-]+")


@dataclass(frozen=True)
class AssumeRequest:
    """The parameters of one AssumeRoleWithWebIdentity call."""

    role_arn: str
    account: str
    """The role's account: STS looks for the OIDC provider there."""
    session_name: str
    token: str


@dataclass(frozen=True)
class Provider:
    """An IAM OIDC provider."""

    arn: str
    url: str
    """As IAM returns it: without the scheme."""
    client_ids: tuple[str, ...]


@dataclass(frozen=True)
class Role:
    arn: str
    trust_policy: Mapping[str, Any] | str
    """As IAM returns it: boto3 decodes the JSON, an older client may hand over the text."""


class Directory(Protocol):
    """IAM, as far as STS reads it."""

    @property
    def account(self) -> str:
        """The one account the lab's IAM holds."""
        ...

    def provider_for(self, issuer: str) -> Provider | None:
        """The provider whose URL is ``issuer`` (compared by ``issuer_host_path``)."""
        ...

    def role(self, arn: str) -> Role | None: ...


class KeySource(Protocol):
    def signing_keys(self, issuer: str) -> Mapping[str, Any]:
        """The issuer's JWKS, found through its discovery document.

        Raises ``KeysUnavailable`` when either document cannot be had."""
        ...


class TrustPolicy(Protocol):
    def allows(
        self, document: Mapping[str, Any] | str, provider_arn: str, claims: Mapping[str, Any]
    ) -> bool:
        """Whether ``document`` lets the provider's token with ``claims`` assume the role."""
        ...


class KeysUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched or read; the message says
    which and why (STS itself only ever says it could not retrieve the key)."""


@dataclass(frozen=True)
class Assumption:
    """A call that passed every check: what STS tells the caller about the token it took."""

    request: AssumeRequest
    provider: Provider
    subject: str
    audience: str
    issuer: str


def issuer_host_path(url: str) -> str:
    """How IAM names an issuer: no scheme, no default port, the path exactly as given (a
    trailing ``/`` included, which makes it another provider)."""
    rest = url.removeprefix("https://")
    host, slash, path = rest.partition("/")
    return host.removesuffix(":443") + slash + path


def parse_request(params: Mapping[str, str]) -> AssumeRequest:
    for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
        if not params.get(name):
            raise sts_errors.missing_parameter(name)
    match = _ROLE_ARN.fullmatch(params["RoleArn"])
    if match is None:
        raise sts_errors.invalid_arn()
    return AssumeRequest(
        params["RoleArn"],
        match.group("account"),
        params["RoleSessionName"],
        params["WebIdentityToken"],
    )


def validate(
    params: Mapping[str, str],
    directory: Directory,
    keys: KeySource,
    trust: TrustPolicy,
    now: float,
) -> Assumption:
    """Every check STS makes, in STS's order; raises the ``StsError`` of the first that fails."""
    request = parse_request(params)
    header, claims = _read_unverified(request.token)
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise sts_errors.invalid_token("the token has no iss claim")
    provider = directory.provider_for(issuer) if request.account == directory.account else None
    if provider is None:
        raise sts_errors.no_provider(issuer)
    try:
        jwks = keys.signing_keys(issuer)
    except KeysUnavailable:
        raise sts_errors.key_unavailable() from None
    _verify_signature(request.token, header, jwks)
    expiration = claims.get("exp")
    if not isinstance(expiration, int | float):
        raise sts_errors.invalid_token("the token has no exp claim")
    if now >= expiration:
        raise sts_errors.token_expired(int(now), int(expiration))
    audience = _audience_in(claims.get("aud"), provider.client_ids)
    role = directory.role(request.role_arn)
    if role is None or not trust.allows(role.trust_policy, provider.arn, claims):
        raise sts_errors.not_authorized()
    subject = claims.get("sub")
    return Assumption(
        request, provider, subject if isinstance(subject, str) else "", audience, issuer
    )


def _read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise sts_errors.invalid_token("the web identity token is not a signed JWT") from None
    if not isinstance(claims, dict):
        raise sts_errors.invalid_token("the web identity token's payload is not a JSON object")
    return header, claims


def _verify_signature(token: str, header: Mapping[str, Any], jwks: Mapping[str, Any]) -> None:
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise sts_errors.invalid_token(f"STS does not accept tokens signed with {algorithm!r}")
    # A token without a kid matches only a key whose kid is "" (as STS does).
    kid = header.get("kid", "")
    entries = jwks.get("keys")
    candidates = [
        entry
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and entry.get("kid", "") == kid
    ]
    if not candidates:
        raise sts_errors.key_unavailable()
    for entry in candidates:
        try:
            key = jwt.PyJWK(entry, algorithm)
            jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
            return
        except jwt.PyJWTError:
            continue
    raise sts_errors.invalid_token("the token's signature does not verify with the issuer's key")


def _audience_in(audience: Any, client_ids: Sequence[str]) -> str:
    values = [audience] if isinstance(audience, str) else audience
    if isinstance(values, list):
        for value in values:
            if isinstance(value, str) and value in client_ids:
                return value
    raise sts_errors.incorrect_audience()
