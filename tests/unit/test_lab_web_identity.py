"""The validating STS's checks, one broken link at a time, with AWS's code and message for each.

Tokens here are signed by a key made for the test; the same checks against tokens of the real
API server, fetched over https from moto's S3, are in tests/lab/test_validating_sts.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from irsa_lab import sts_errors
from irsa_lab.trust import IamTrustPolicy
from irsa_lab.web_identity import (
    Directory,
    KeySource,
    KeysUnavailable,
    Provider,
    Role,
    issuer_host_path,
    validate,
)

ACCOUNT = "123456789012"
ISSUER = "https://oidc.lab.example/irsa"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.lab.example/irsa"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/s3-reader"
SUBJECT = "system:serviceaccount:team-a:s3-reader"
NOW = 1_800_000_000


def trust_policy(subject: str = SUBJECT) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER_ARN},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "oidc.lab.example/irsa:sub": subject,
                        "oidc.lab.example/irsa:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


@dataclass
class MemoryDirectory:
    providers: list[Provider] = field(
        default_factory=lambda: [
            Provider(PROVIDER_ARN, "oidc.lab.example/irsa", ("sts.amazonaws.com",))
        ]
    )
    roles: dict[str, Role] = field(
        default_factory=lambda: {ROLE_ARN: Role(ROLE_ARN, trust_policy())}
    )

    @property
    def account(self) -> str:
        return ACCOUNT

    def provider_for(self, issuer: str) -> Provider | None:
        wanted = issuer_host_path(issuer)
        return next((p for p in self.providers if issuer_host_path(p.url) == wanted), None)

    def role(self, arn: str) -> Role | None:
        return self.roles.get(arn)


@dataclass
class MemoryKeys:
    jwks: Mapping[str, Any] | None

    def signing_keys(self, issuer: str) -> Mapping[str, Any]:
        if self.jwks is None:
            raise KeysUnavailable(f"{issuer}: connection refused")
        return self.jwks


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk_of(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        entry = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        entry = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**entry, "kid": kid, "use": "sig"}


JWKS = {"keys": [jwk_of(RSA_KEY, "rsa-1"), jwk_of(EC_KEY, "ec-1")]}


def token(
    *,
    key: Any = RSA_KEY,
    algorithm: str = "RS256",
    kid: str | None = "rsa-1",
    **claims: Any,
) -> str:
    payload = {
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": ["sts.amazonaws.com"],
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 3600,
        **claims,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def call(
    web_identity_token: str,
    *,
    role_arn: str = ROLE_ARN,
    directory: Directory | None = None,
    keys: KeySource | None = None,
    now: float = NOW,
) -> Any:
    params = {
        "Action": "AssumeRoleWithWebIdentity",
        "RoleArn": role_arn,
        "RoleSessionName": "botocore-session-1",
        "WebIdentityToken": web_identity_token,
    }
    return validate(
        params, directory or MemoryDirectory(), keys or MemoryKeys(JWKS), IamTrustPolicy(), now
    )


def refusal(web_identity_token: str, **kwargs: Any) -> sts_errors.StsError:
    with pytest.raises(sts_errors.StsError) as caught:
        call(web_identity_token, **kwargs)
    return caught.value


def test_a_valid_token_is_granted_with_its_subject_audience_and_provider() -> None:
    granted = call(token())
    assert (granted.subject, granted.audience, granted.provider.arn) == (
        SUBJECT,
        "sts.amazonaws.com",
        PROVIDER_ARN,
    )


def test_an_es256_token_is_verified_with_its_ec_key() -> None:
    assert call(token(key=EC_KEY, algorithm="ES256", kid="ec-1")).subject == SUBJECT


def test_an_issuer_without_a_provider_is_refused_naming_the_issuer_as_aws_does() -> None:
    error = refusal(token(iss="https://elsewhere.example/id/1"))
    assert (error.code, error.status, error.message) == (
        "InvalidIdentityToken",
        400,
        "No OpenIDConnect provider found in your account for https://elsewhere.example/id/1",
    )


def test_a_trailing_slash_on_the_issuer_is_another_provider() -> None:
    error = refusal(token(iss=ISSUER + "/"))
    assert error.message == f"No OpenIDConnect provider found in your account for {ISSUER}/"


def test_the_default_port_in_the_issuer_names_the_same_provider() -> None:
    assert call(token(iss="https://oidc.lab.example:443/irsa")).subject == SUBJECT


def test_a_role_in_another_account_finds_no_provider_there() -> None:
    error = refusal(token(), role_arn="arn:aws:iam::999999999999:role/s3-reader")
    assert error.message == f"No OpenIDConnect provider found in your account for {ISSUER}"


def test_unreachable_issuer_documents_give_the_verification_key_error() -> None:
    error = refusal(token(), keys=MemoryKeys(None))
    assert (error.code, error.message) == (
        "InvalidIdentityToken",
        "Couldn't retrieve verification key from your identity provider,  please reference "
        "AssumeRoleWithWebIdentity documentation for requirements",
    )


def test_a_jwks_without_the_tokens_kid_gives_the_verification_key_error() -> None:
    error = refusal(token(kid="rotated-away"))
    assert error.message == sts_errors.KEY_UNAVAILABLE


def test_a_token_without_a_kid_matches_only_a_key_with_an_empty_kid() -> None:
    assert refusal(token(kid=None)).message == sts_errors.KEY_UNAVAILABLE
    keys = MemoryKeys({"keys": [jwk_of(RSA_KEY, "")]})
    assert call(token(kid=None), keys=keys).subject == SUBJECT


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused() -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    error = refusal(token(key=forger))
    assert error.code == "InvalidIdentityToken"
    assert "signature" in error.message


def test_an_hs256_token_is_refused_whatever_its_key() -> None:
    error = refusal(token(key="shared-secret-of-32-bytes-length!", algorithm="HS256"))
    assert error.code == "InvalidIdentityToken"
    assert "HS256" in error.message


@pytest.mark.parametrize("text", ["abcd", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_a_token_that_is_not_a_signed_jwt_is_an_invalid_identity_token(text: str) -> None:
    error = refusal(text)
    assert (error.code, error.status) == ("InvalidIdentityToken", 400)


def test_an_unsigned_token_for_a_known_issuer_is_refused() -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "sub": SUBJECT, "aud": "sts.amazonaws.com", "exp": NOW + 60},
        "",
        algorithm="none",
    )
    error = refusal(unsigned)
    assert error.code == "InvalidIdentityToken"
    assert "'none'" in error.message


def test_an_expired_token_gives_aws_expired_token_message_with_both_times() -> None:
    error = refusal(token(), now=NOW + 3600)
    assert (error.code, error.status, error.message) == (
        "ExpiredTokenException",
        400,
        f"Token expired: current date/time {NOW + 3600} must be before the expiration "
        f"date/time {NOW + 3600}",
    )


def test_an_audience_the_provider_does_not_list_is_an_incorrect_token_audience() -> None:
    error = refusal(token(aud=["amazonaws.com"]))
    assert (error.code, error.message) == ("InvalidIdentityToken", "Incorrect token audience")


def test_a_string_audience_is_matched_like_a_list_of_one() -> None:
    assert call(token(aud="sts.amazonaws.com")).audience == "sts.amazonaws.com"


def test_a_subject_the_trust_policy_does_not_name_is_not_authorized() -> None:
    error = refusal(token(sub="system:serviceaccount:team-b:s3-reader"))
    assert (error.code, error.status, error.message) == (
        "AccessDenied",
        403,
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    )


def test_a_role_that_does_not_exist_is_not_authorized_either() -> None:
    error = refusal(token(), role_arn=f"arn:aws:iam::{ACCOUNT}:role/missing")
    assert error.message == sts_errors.NOT_AUTHORIZED


def test_a_malformed_role_arn_is_a_validation_error() -> None:
    error = refusal(token(), role_arn="arn:aws:iam::12345:role/x")
    assert (error.code, error.message) == ("ValidationError", "Request ARN is invalid")


def test_the_first_broken_link_is_reported_provider_before_keys_before_audience() -> None:
    # Both the audience and the keys are wrong: STS cannot judge the audience of a token it
    # cannot verify, so the key error wins; with no provider, that wins over both.
    broken = token(aud=["other"], kid="gone")
    assert refusal(broken).message == sts_errors.KEY_UNAVAILABLE
    nowhere = token(aud=["other"], kid="gone", iss="https://nowhere.example")
    assert refusal(nowhere).message.startswith("No OpenIDConnect provider found")


def test_a_missing_parameter_is_refused_before_the_token_is_read() -> None:
    with pytest.raises(sts_errors.StsError) as caught:
        validate(
            {"RoleArn": ROLE_ARN, "RoleSessionName": "s"},
            MemoryDirectory(),
            MemoryKeys(JWKS),
            IamTrustPolicy(),
            NOW,
        )
    assert caught.value.code == "MissingParameter"


def test_the_error_document_is_sts_query_protocol_xml() -> None:
    document = sts_errors.error_document(sts_errors.incorrect_audience(), "req-1").decode()
    assert document == (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n'
        "  <Error>\n"
        "    <Type>Sender</Type>\n"
        "    <Code>InvalidIdentityToken</Code>\n"
        "    <Message>Incorrect token audience</Message>\n"
        "  </Error>\n"
        "  <RequestId>req-1</RequestId>\n"
        "</ErrorResponse>\n"
    )
