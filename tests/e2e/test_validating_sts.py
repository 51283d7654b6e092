"""The lab's validating STS on its own, against tokens the real API server issued.

A control plane of its own here: its ``--service-account-issuer`` is a bucket of moto's S3,
served by moto over https, and the issuer documents in the bucket are the API server's own
(discovery and JWKS). Each test breaks one link of the chain (IAM provider, audience, published
keys, trust policy, clock) and asserts the code and message AWS's STS gives for it, through
boto3, as a pod's SDK would see them.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import jwt
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from aws_emulator import MotoServer
from cluster import REPO, ControlPlane, read_env, service_account
from irsa_lab import sts_errors, sts_server
from irsa_lab.iam_directory import MotoDirectory
from irsa_lab.issuer_keys import HttpsKeySource
from irsa_lab.serving import server
from irsa_lab.trust import IamTrustPolicy
from loopback import serve_in_thread

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

BUCKET = "irsa-lab-sts-test"
NAMESPACE = "team-a"
AUDIENCE = "sts.amazonaws.com"
ROLE = "s3-reader"
REGION = "us-east-1"
DISCOVERY_KEY = ".well-known/openid-configuration"
JWKS_KEY = "openid/v1/jwks"


@dataclass
class Chain:
    """The AWS side of one cluster's IRSA chain in moto, and the cluster."""

    plane: ControlPlane
    moto: MotoServer
    issuer: str
    iam: IAMClient
    s3: S3Client
    account: str
    directory: MotoDirectory
    """What the validating STS reads IAM through (one for the module: boto3 clients are slow
    to make)."""
    keys: HttpsKeySource

    @property
    def host_path(self) -> str:
        return self.issuer.removeprefix("https://")

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{ROLE}"

    def provider_arn(self, url: str | None = None) -> str:
        return f"arn:aws:iam::{self.account}:oidc-provider/{(url or self.issuer)[8:]}"

    def publish(self, jwks: dict[str, Any] | None = None) -> None:
        """The API server's discovery document and JWKS into the bucket (or another JWKS)."""
        with self.plane.client() as api:
            discovery = api.get("/.well-known/openid-configuration").json()
            served = api.get("/openid/v1/jwks").json()
        assert discovery["issuer"] == self.issuer
        # STS reads anonymously: the two objects are public by bucket policy, as on AWS.
        public_read = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": [
                        f"arn:aws:s3:::{BUCKET}/{key}" for key in (DISCOVERY_KEY, JWKS_KEY)
                    ],
                }
            ],
        }
        self.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read))
        for key, document in ((DISCOVERY_KEY, discovery), (JWKS_KEY, jwks or served)):
            self.s3.put_object(
                Bucket=BUCKET,
                Key=key,
                Body=json.dumps(document).encode(),
                ContentType="application/json",
            )

    def provider(self, *, client_ids: tuple[str, ...] = (AUDIENCE,), url: str = "") -> None:
        """Exactly one IAM OIDC provider, for ``url`` (default: the issuer)."""
        for entry in self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            self.iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])
        if client_ids:
            self.iam.create_open_id_connect_provider(
                Url=url or self.issuer, ClientIDList=list(client_ids)
            )

    def role(self, *, namespace: str = NAMESPACE, account: str = ROLE) -> None:
        """The role, trusting ``namespace``/``account`` of this issuer (eksctl's policy)."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": self.provider_arn()},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{self.host_path}:sub": f"system:serviceaccount:{namespace}:{account}",
                            f"{self.host_path}:aud": AUDIENCE,
                        }
                    },
                }
            ],
        }
        try:
            self.iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(policy))
        except self.iam.exceptions.NoSuchEntityException:
            self.iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(policy))

    def token(self, account: str = ROLE, audience: str = AUDIENCE) -> str:
        """A TokenRequest token of the real API server, as the kubelet projects it."""
        return self.plane.kubectl(
            "create", "token", account, "-n", NAMESPACE, "--audience", audience,
            "--duration", "1h",
        ).stdout.strip()  # fmt: skip


def aws_client(service: str, url: str, ca_bundle: str | None, **credentials: str) -> Any:
    """A boto3 client of ``service`` at ``url``; moto's test keys unless ``credentials``."""
    session = boto3.session.Session(
        aws_access_key_id=credentials.get("aws_access_key_id", "testing"),
        aws_secret_access_key=credentials.get("aws_secret_access_key", "testing"),
        aws_session_token=credentials.get("aws_session_token"),
        region_name=REGION,
    )
    return session.client(
        service,  # type: ignore[call-overload]
        endpoint_url=url,
        verify=ca_bundle or True,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def chain(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    issuer = f"{moto.url}/{BUCKET}"
    directory = tmp_path_factory.mktemp("sts-control-plane")
    script = str(REPO / "hack" / "control-plane.sh")
    started = subprocess.run(
        [script, "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "IRSA_SA_ISSUER": issuer},
    )
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        plane = ControlPlane(directory, read_env(directory / "env"))
        plane.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            service_account(NAMESPACE, ROLE),
            service_account(NAMESPACE, "other"),
        )
        s3: S3Client = aws_client("s3", moto.url, moto.ca_bundle)
        s3.create_bucket(Bucket=BUCKET)
        iam: IAMClient = aws_client("iam", moto.url, moto.ca_bundle)
        sts: STSClient = aws_client("sts", moto.url, moto.ca_bundle)
        account = sts.get_caller_identity()["Account"]
        iam_reader = MotoDirectory(moto.url, REGION, moto.ca_bundle)
        keys = HttpsKeySource(moto.ca_bundle)
        yield Chain(plane, moto, issuer, iam, s3, account, iam_reader, keys)
        keys.close()
    finally:
        subprocess.run([script, "stop", str(directory)], capture_output=True, timeout=120)


@pytest.fixture
def healthy(chain: Chain) -> Chain:
    """Every link as it should be: documents published, provider with the audience, role."""
    chain.publish()
    chain.provider()
    chain.role()
    return chain


@contextmanager
def validating_sts(chain: Chain, clock: Callable[[], float] = time.time) -> Iterator[STSClient]:
    validator = sts_server.Validator(chain.directory, chain.keys, IamTrustPolicy(), clock)
    app = sts_server.create_app(validator, chain.moto.url, chain.moto.ca_bundle)
    with serve_in_thread(server(app, "127.0.0.1", 0)) as (port, _thread):
        yield aws_client("sts", f"http://127.0.0.1:{port}", None)


@pytest.fixture
def sts(chain: Chain) -> Iterator[STSClient]:
    with validating_sts(chain) as client:
        yield client


def assume(sts: STSClient, token: str, role_arn: str) -> Any:
    return sts.assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="botocore-session-1", WebIdentityToken=token
    )


def refusal(sts: STSClient, token: str, role_arn: str) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        assume(sts, token, role_arn)
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        error["Error"]["Message"],
    )


def test_a_token_of_the_trusted_service_account_gets_the_roles_credentials(
    healthy: Chain, sts: STSClient
) -> None:
    answer = assume(sts, healthy.token(), healthy.role_arn)
    assert answer["SubjectFromWebIdentityToken"] == f"system:serviceaccount:{NAMESPACE}:{ROLE}"
    assert answer["Audience"] == AUDIENCE
    assert answer["Provider"] == healthy.provider_arn()
    credentials = answer["Credentials"]
    caller = aws_client(
        "sts",
        healthy.moto.url,
        healthy.moto.ca_bundle,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ).get_caller_identity()
    assert caller["Arn"] == f"arn:aws:sts::{healthy.account}:assumed-role/{ROLE}/botocore-session-1"


def test_other_actions_reach_moto_unchanged(healthy: Chain, sts: STSClient) -> None:
    assert sts.get_caller_identity()["Account"] == healthy.account


def test_no_provider_for_the_issuer_is_an_invalid_identity_token_naming_it(
    healthy: Chain, sts: STSClient
) -> None:
    healthy.provider(client_ids=())
    assert refusal(sts, healthy.token(), healthy.role_arn) == (
        "InvalidIdentityToken",
        400,
        f"No OpenIDConnect provider found in your account for {healthy.issuer}",
    )


def test_a_provider_registered_with_a_trailing_slash_is_not_the_issuers(
    healthy: Chain, sts: STSClient
) -> None:
    healthy.provider(url=healthy.issuer + "/")
    assert refusal(sts, healthy.token(), healthy.role_arn)[2] == (
        f"No OpenIDConnect provider found in your account for {healthy.issuer}"
    )


def test_a_provider_without_the_tokens_audience_gives_incorrect_token_audience(
    healthy: Chain, sts: STSClient
) -> None:
    healthy.provider(client_ids=("amazonaws.com",))
    assert refusal(sts, healthy.token(), healthy.role_arn) == (
        "InvalidIdentityToken",
        400,
        "Incorrect token audience",
    )


def test_a_token_for_another_audience_gives_incorrect_token_audience(
    healthy: Chain, sts: STSClient
) -> None:
    token = healthy.token(audience="amazonaws.com")
    assert refusal(sts, token, healthy.role_arn)[2] == "Incorrect token audience"


def test_a_published_jwks_missing_the_current_key_gives_the_verification_key_error(
    healthy: Chain, sts: STSClient
) -> None:
    with healthy.plane.client() as api:
        current = api.get("/openid/v1/jwks").json()["keys"][0]
    healthy.publish({"keys": [{**current, "kid": "rotated-" + current["kid"][:8]}]})
    assert refusal(sts, healthy.token(), healthy.role_arn) == (
        "InvalidIdentityToken",
        400,
        "Couldn't retrieve verification key from your identity provider,  please reference "
        "AssumeRoleWithWebIdentity documentation for requirements",
    )


def test_an_unpublished_discovery_document_gives_the_verification_key_error(
    healthy: Chain, sts: STSClient
) -> None:
    healthy.s3.delete_object(Bucket=BUCKET, Key=DISCOVERY_KEY)
    assert refusal(sts, healthy.token(), healthy.role_arn)[2] == sts_errors.KEY_UNAVAILABLE


def test_a_trust_policy_for_another_namespace_is_not_authorized(
    healthy: Chain, sts: STSClient
) -> None:
    healthy.role(namespace="team-b")
    assert refusal(sts, healthy.token(), healthy.role_arn) == (
        "AccessDenied",
        403,
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    )


def test_a_token_of_another_service_account_is_not_authorized(
    healthy: Chain, sts: STSClient
) -> None:
    assert refusal(sts, healthy.token("other"), healthy.role_arn)[:2] == ("AccessDenied", 403)


def test_a_role_that_does_not_exist_is_not_authorized(healthy: Chain, sts: STSClient) -> None:
    missing = f"arn:aws:iam::{healthy.account}:role/nobody"
    assert refusal(sts, healthy.token(), missing)[2] == sts_errors.NOT_AUTHORIZED


def test_a_malformed_role_arn_is_a_validation_error(healthy: Chain, sts: STSClient) -> None:
    assert refusal(sts, healthy.token(), "arn:aws:iam::12345:role/s3-reader") == (
        "ValidationError",
        400,
        "Request ARN is invalid",
    )


def test_a_token_past_its_expiry_gives_expired_token_with_both_times(healthy: Chain) -> None:
    token = healthy.token()
    expiration = _claims(token)["exp"]
    late = expiration + 5
    with validating_sts(healthy, clock=lambda: late) as sts:
        assert refusal(sts, token, healthy.role_arn) == (
            "ExpiredTokenException",
            400,
            f"Token expired: current date/time {late} must be before the expiration "
            f"date/time {expiration}",
        )


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_the_published_documents_are_what_the_issuer_url_serves(healthy: Chain) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=healthy.moto.ca_bundle)) as http:
        discovery = http.get(f"{healthy.issuer}/{DISCOVERY_KEY}")
    assert discovery.status_code == 200
    assert discovery.json()["jwks_uri"] == f"{healthy.issuer}/{JWKS_KEY}"
