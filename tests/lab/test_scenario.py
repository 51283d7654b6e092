"""The seed's scenario end to end on the lab, and the ways users break it.

A pod of the lab image, with its ServiceAccount and only the lab's STS and S3 endpoints set,
reads an S3 object through the role ``iam bind`` made for it: boto3's default chain in the pod
uses what the webhook injected, the validating STS checks the real token. Each negative run
breaks one link and asserts the exact line the pod prints, which is what STS said.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from irsa_lab.lab import Lab
from irsa_lab.scenario import GREETING, Scenario

pytestmark = pytest.mark.timeout(1800)

ERROR = "An error occurred ({code}) when calling the AssumeRoleWithWebIdentity operation: {message}"
NOT_AUTHORIZED = ERROR.format(
    code="AccessDenied", message="Not authorized to perform sts:AssumeRoleWithWebIdentity"
)


@dataclass
class Bound:
    """The scenario set up: the chain published, a namespace whose ``s3-reader`` may read."""

    scenario: Scenario
    namespace: str


@pytest.fixture(scope="module")
def bound(lab: Lab) -> Iterator[Bound]:
    scenario = Scenario.of(lab)
    namespace = f"lab-{uuid.uuid4().hex[:6]}"
    scenario.publish()
    scenario.create_provider()
    scenario.put_greeting()
    scenario.namespace(namespace)
    scenario.service_account(namespace, "s3-reader")
    scenario.bind(namespace, "s3-reader", "lab-s3-reader")
    try:
        yield Bound(scenario, namespace)
    finally:
        scenario.kubectl("delete", "namespace", namespace, "--wait=false")


def printed(bound: Bound, account: str = "s3-reader", namespace: str = "") -> str:
    """What a reader pod of ``account`` printed; asserts that it failed."""
    run = bound.scenario.read_greeting(namespace or bound.namespace, account)
    assert run.phase == "Failed", run.output
    return run.output.strip().splitlines()[-1]


def test_the_pod_reads_the_object_through_its_service_accounts_role(bound: Bound) -> None:
    run = bound.scenario.read_greeting(bound.namespace, "s3-reader")
    assert (run.phase, run.output) == ("Succeeded", GREETING)


def test_a_pod_of_another_service_account_with_the_same_role_is_not_authorized(
    bound: Bound,
) -> None:
    role_arn = bound.scenario.role_arn("lab-s3-reader")
    bound.scenario.service_account(bound.namespace, "intruder", role_arn)
    assert printed(bound, "intruder") == NOT_AUTHORIZED


def test_a_trust_policy_for_another_namespace_is_not_authorized(bound: Bound) -> None:
    other = f"lab-other-{uuid.uuid4().hex[:6]}"
    bound.scenario.namespace(other)
    try:
        bound.scenario.service_account(other, "s3-reader")
        bound.scenario.bind(other, "s3-reader", "lab-other-namespace")
        # This namespace's SA now names the role that trusts only the other namespace's SA.
        role_arn = bound.scenario.role_arn("lab-other-namespace")
        bound.scenario.service_account(bound.namespace, "borrower", role_arn)
        assert printed(bound, "borrower") == NOT_AUTHORIZED
    finally:
        bound.scenario.kubectl("delete", "namespace", other, "--wait=false")


@pytest.fixture
def providers(bound: Bound) -> Iterator[Scenario]:
    """The test may replace the IAM OIDC provider; the right one is back afterwards."""
    try:
        yield bound.scenario
    finally:
        bound.scenario.delete_providers()
        bound.scenario.create_provider()


def test_a_provider_without_the_audience_gives_incorrect_token_audience(
    bound: Bound, providers: Scenario
) -> None:
    providers.delete_providers()
    providers.create_provider("amazonaws.com")
    assert printed(bound) == ERROR.format(
        code="InvalidIdentityToken", message="Incorrect token audience"
    )


def test_a_provider_for_the_issuer_with_a_trailing_slash_is_not_found(
    bound: Bound, providers: Scenario
) -> None:
    providers.delete_providers()
    # The issuer typed with a trailing slash (as the AWS CLI adds one): another provider to IAM.
    providers.create_provider(issuer=providers.issuer + "/")
    assert printed(bound) == ERROR.format(
        code="InvalidIdentityToken",
        message=f"No OpenIDConnect provider found in your account for {providers.issuer}",
    )


def test_a_published_jwks_missing_the_current_key_cannot_verify_the_token(
    bound: Bound, tmp_path: Path
) -> None:
    stranger = tmp_path / "other.pub"
    stranger.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    bound.scenario.publish(stranger)
    try:
        assert printed(bound) == ERROR.format(
            code="InvalidIdentityToken",
            message="Couldn't retrieve verification key from your identity provider,  please "
            "reference AssumeRoleWithWebIdentity documentation for requirements",
        )
    finally:
        bound.scenario.publish()
