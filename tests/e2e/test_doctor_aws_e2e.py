"""doctor's AWS checks against moto's real server: IAM read over https, STS called unsigned.

moto's AssumeRoleWithWebIdentity validates nothing, so here sts-probe only proves the call is
made as the SDK makes it; the IAM-side verdicts (provider, audience, trust policy) are
doctor's own and must name the broken link. The lab's validating STS covers the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aws_emulator import MotoServer
from cluster import ControlPlane, Webhook, make_namespace, pod, service_account
from doctoring import AWS_SIDE, CLUSTER_SIDE, anonymous_issuer_reads, create, doctor_json

ACCOUNT = "123456789012"
"""moto's default account."""


@pytest.fixture(scope="module")
def public_issuer(control_plane: ControlPlane) -> Iterator[None]:
    with anonymous_issuer_reads(control_plane):
        yield


@dataclass
class Chain:
    """One ServiceAccount wired to one role in moto, the way iam bind wires it."""

    plane: ControlPlane
    moto: MotoServer
    namespace: str
    issuer: str
    role_name: str

    @property
    def host_path(self) -> str:
        return self.issuer.removeprefix("https://")

    @property
    def provider_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:oidc-provider/{self.host_path}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.role_name}"

    def trust(self, subject: str, operator: str = "StringEquals") -> None:
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": self.provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        operator: {f"{self.host_path}:sub": subject},
                        "StringEquals": {f"{self.host_path}:aud": "sts.amazonaws.com"},
                    }
                    if operator != "StringEquals"
                    else {
                        "StringEquals": {
                            f"{self.host_path}:sub": subject,
                            f"{self.host_path}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
        self.moto.client("iam").update_assume_role_policy(
            RoleName=self.role_name, PolicyDocument=json.dumps(document)
        )

    def doctor(self, *args: str) -> dict[str, Any]:
        return doctor_json(self.plane, *args, "-n", self.namespace, aws=self.moto.env)


def _remove_providers_of(moto: MotoServer, host_path: str) -> None:
    """The session's moto is shared: touch only the providers of this control plane's issuer
    (its spellings with a trailing slash included)."""
    iam = moto.client("iam")
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        if entry["Arn"].partition(":oidc-provider/")[2].rstrip("/") == host_path:
            iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])


@pytest.fixture
def chain(
    control_plane: ControlPlane, webhook: Webhook, public_issuer: None, moto: MotoServer
) -> Iterator[Chain]:
    namespace = make_namespace(control_plane, "doctor-aws")
    issuer = control_plane.env["SA_ISSUER"]
    iam = moto.client("iam")
    wired = Chain(control_plane, moto, namespace, issuer, f"reader-{namespace}")
    _remove_providers_of(moto, wired.host_path)
    iam.create_open_id_connect_provider(Url=issuer, ClientIDList=["sts.amazonaws.com"])
    iam.create_role(RoleName=wired.role_name, AssumeRolePolicyDocument="{}")
    wired.trust(f"system:serviceaccount:{namespace}:reader")
    control_plane.apply(
        service_account(namespace, "reader", {"eks.amazonaws.com/role-arn": wired.role_arn})
    )
    create(control_plane, pod(namespace, "web", "reader"))
    yield wired
    iam.delete_role(RoleName=wired.role_name)
    _remove_providers_of(moto, wired.host_path)


def test_a_healthy_chain_passes_every_check_and_the_probe_assumes_the_role(chain: Chain) -> None:
    found = chain.doctor("pod", "web")

    assert found["failed"] == set()
    for check in (*CLUSTER_SIDE, *AWS_SIDE):
        assert found["checks"][check]["status"] == "ok", found["checks"][check]
    assert found["checks"]["sts-probe"]["evidence"].startswith(
        f"assumed arn:aws:sts::{ACCOUNT}:assumed-role/{chain.role_name}/irsa-webhook-doctor"
    )
    match = found["checks"]["issuer-match"]["evidence"]
    assert "= the IAM provider URL = the trust policy's condition key prefix" in match


def test_a_trust_policy_for_another_namespace_fails_trust_policy_with_the_values(
    chain: Chain,
) -> None:
    chain.trust("system:serviceaccount:elsewhere:reader")

    found = chain.doctor("pod", "web")

    assert found["failed"] == {"trust-policy"}
    trust = found["checks"]["trust-policy"]
    assert (
        f"request 'system:serviceaccount:{chain.namespace}:reader' does not match "
        "'system:serviceaccount:elsewhere:reader'" in trust["evidence"]
    )
    assert "Not authorized to perform sts:AssumeRoleWithWebIdentity" in trust["symptom"]


def test_a_pod_of_another_service_account_fails_trust_policy(chain: Chain) -> None:
    chain.plane.apply(
        service_account(chain.namespace, "other", {"eks.amazonaws.com/role-arn": chain.role_arn})
    )
    create(chain.plane, pod(chain.namespace, "intruder", "other"))

    found = chain.doctor("pod", "intruder")

    assert found["failed"] == {"trust-policy"}
    assert (
        f"system:serviceaccount:{chain.namespace}:other"
        in (found["checks"]["trust-policy"]["evidence"])
    )


def test_a_wildcard_inside_string_equals_is_named(chain: Chain) -> None:
    chain.trust(f"system:serviceaccount:{chain.namespace}:*")

    found = chain.doctor("serviceaccount", "reader")

    assert found["failed"] == {"trust-policy"}
    assert "wildcard-in-string-equals" in found["checks"]["trust-policy"]["evidence"]


def test_the_same_pattern_with_string_like_passes(chain: Chain) -> None:
    chain.trust(f"system:serviceaccount:{chain.namespace}:*", operator="StringLike")

    found = chain.doctor("serviceaccount", "reader")

    assert found["failed"] == set()


def test_an_audience_the_provider_does_not_list_fails_provider_audience(chain: Chain) -> None:
    chain.plane.kubectl(
        "annotate",
        "serviceaccount",
        "-n",
        chain.namespace,
        "reader",
        "eks.amazonaws.com/audience=other.example",
    )

    found = chain.doctor("serviceaccount", "reader")

    assert "provider-audience" in found["failed"]
    assert "Incorrect token audience" in found["checks"]["provider-audience"]["symptom"]
    # The trust policy's aud condition names sts.amazonaws.com too: it fails for the same reason.
    assert found["failed"] <= {"provider-audience", "trust-policy"}


def test_a_missing_provider_fails_provider_exists(chain: Chain) -> None:
    chain.moto.client("iam").delete_open_id_connect_provider(
        OpenIDConnectProviderArn=chain.provider_arn
    )

    found = chain.doctor("serviceaccount", "reader")

    assert found["failed"] == {"provider-exists"}
    assert found["checks"]["provider-audience"]["status"] == "skipped"
    assert (
        f"No OpenIDConnect provider found in your account for {chain.issuer}"
        in (found["checks"]["provider-exists"]["symptom"])
    )


def test_a_provider_with_a_trailing_slash_fails_issuer_match_and_provider_exists_points_there(
    chain: Chain,
) -> None:
    iam = chain.moto.client("iam")
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=chain.provider_arn)
    iam.create_open_id_connect_provider(Url=chain.issuer + "/", ClientIDList=["sts.amazonaws.com"])

    found = chain.doctor("serviceaccount", "reader")

    assert found["failed"] == {"issuer-match"}
    assert "(a trailing slash differs)" in found["checks"]["issuer-match"]["evidence"]
    exists = found["checks"]["provider-exists"]
    assert exists["status"] == "warn"
    assert f"the account has {chain.provider_arn}/" in exists["evidence"]


def test_a_role_that_does_not_exist_fails_trust_policy(chain: Chain) -> None:
    chain.plane.kubectl(
        "annotate",
        "--overwrite",
        "serviceaccount",
        "-n",
        chain.namespace,
        "reader",
        f"eks.amazonaws.com/role-arn=arn:aws:iam::{ACCOUNT}:role/absent",
    )

    found = chain.doctor("serviceaccount", "reader")

    assert "trust-policy" in found["failed"]
    assert "does not exist" in found["checks"]["trust-policy"]["evidence"]
