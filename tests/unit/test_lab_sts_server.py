"""The validating STS's HTTP edge: refusals and its own failures as STS's XML error documents.
(Forwarding to moto is exercised against moto's server in tests/e2e/test_validating_sts.py.)"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from irsa_lab import sts_server
from irsa_lab.serving import server
from irsa_lab.web_identity import AssumeRequest, Assumption, KeysUnavailable, Provider, Role
from loopback import serve_in_thread


class UnreachableIam:
    """IAM that cannot be reached, as when moto has gone away."""

    @property
    def account(self) -> str:
        return "123456789012"

    def provider_for(self, issuer: str) -> Provider | None:
        raise ConnectionError("moto is gone")

    def role(self, arn: str) -> Role | None:
        raise ConnectionError("moto is gone")


class NoKeys:
    def signing_keys(self, issuer: str) -> Mapping[str, Any]:
        raise KeysUnavailable(issuer)


class AllowAll:
    def allows(
        self, document: Mapping[str, Any] | str, provider_arn: str, claims: Mapping[str, Any]
    ) -> bool:
        return True


@pytest.fixture
def sts() -> Iterator[Any]:
    validator = sts_server.Validator(UnreachableIam(), NoKeys(), AllowAll())
    # moto is never reached on these paths: a refusal and a failure answer before forwarding.
    app = sts_server.create_app(validator, "http://127.0.0.1:9")
    with serve_in_thread(server(app, "127.0.0.1", 0)) as (port, _thread):
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client(
            "sts",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(retries={"max_attempts": 1}),
        )


def error_of(sts: Any, role_arn: str, token: str = "not-a-jwt") -> Any:  # noqa: S107
    with pytest.raises(ClientError) as caught:
        sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="session", WebIdentityToken=token
        )
    return caught.value.response


def test_a_refusal_reaches_boto3_as_the_sts_error_with_its_status(sts: Any) -> None:
    error = error_of(sts, "arn:aws:iam::12345:role/x")
    assert error["Error"] == {
        "Type": "Sender",
        "Code": "ValidationError",
        "Message": "Request ARN is invalid",
    }
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_lab_failing_is_an_internal_failure_not_a_refusal(sts: Any) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2lnbmF0dXJl"
    # A JWT naming an issuer: validation gets as far as IAM, which is unreachable.
    error = error_of(sts, "arn:aws:iam::123456789012:role/x", token)
    assert error["Error"]["Code"] == "InternalFailure"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_a_grant_adds_what_aws_says_about_the_token_to_motos_answer() -> None:
    moto_answer = (
        b'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<AssumeRoleWithWebIdentityResult><Credentials/></AssumeRoleWithWebIdentityResult>"
        b"</AssumeRoleWithWebIdentityResponse>"
    )
    provider = Provider("arn:aws:iam::1:oidc-provider/h/p", "h/p", ("sts.amazonaws.com",))
    assumption = Assumption(
        AssumeRequest("arn:aws:iam::1:role/r", "1", "s", "t"),
        provider,
        "system:serviceaccount:a&b:c",
        "sts.amazonaws.com",
        "https://h/p",
    )
    assert sts_server.with_token_facts(moto_answer, assumption) == (
        b'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<AssumeRoleWithWebIdentityResult><Credentials/>"
        b"<SubjectFromWebIdentityToken>system:serviceaccount:a&amp;b:c</SubjectFromWebIdentityToken>"
        b"<Audience>sts.amazonaws.com</Audience>"
        b"<Provider>arn:aws:iam::1:oidc-provider/h/p</Provider>"
        b"</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    )
