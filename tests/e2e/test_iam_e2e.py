"""``irsa-webhook iam create-provider|bind|unbind`` against moto's IAM server and the real API
server; every outcome read back with boto3 and kubectl."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from aws_emulator import MotoServer
from chain import Outcome, attached, irsa, kubeconfig_with_server, role_or_none, sa_metadata
from cluster import ControlPlane, make_namespace

ACCOUNT = "123456789012"
S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
SQS_READ = "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess"
ROLE_ARN = "eks.amazonaws.com/role-arn"


# Each CLI run is a fresh interpreter loading boto3 and the kubernetes client; the first test
# also waits for the control plane and moto to start.
pytestmark = pytest.mark.timeout(300)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(moto: MotoServer, plane: ControlPlane, *args: str) -> Outcome:
    return irsa(*args, env={**moto.env, "KUBECONFIG": plane.kubeconfig})


@pytest.fixture(scope="module")
def provider(moto: MotoServer, control_plane: ControlPlane) -> str:
    """The IAM OIDC provider for the control plane's own issuer (what bind trusts)."""
    outcome = run(moto, control_plane, "iam", "create-provider")
    assert outcome.returncode == 0, outcome.stderr
    host = control_plane.url.removeprefix("https://")
    return f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"


def iam(moto: MotoServer) -> Any:
    return moto.client("iam")


def tags(moto: MotoServer, name: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in iam(moto).list_role_tags(RoleName=name)["Tags"]}


def expected_trust(plane: ControlPlane, provider: str, namespace: str, name: str) -> Any:
    host = plane.url.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:sub": f"system:serviceaccount:{namespace}:{name}",
                        f"{host}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def test_create_provider_creates_it_with_the_audience_then_changes_nothing(
    moto: MotoServer, control_plane: ControlPlane
) -> None:
    issuer = f"https://{unique('oidc')}.example.com/cluster"
    first = run(moto, control_plane, "iam", "create-provider", "--issuer", issuer)
    assert first.returncode == 0, first.stderr
    arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer.removeprefix('https://')}"
    assert f"done: create the IAM OIDC provider {arn}" in first.stdout
    provider = iam(moto).get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]
    assert provider["ThumbprintList"] == []
    again = run(moto, control_plane, "iam", "create-provider", "--issuer", issuer)
    assert again.returncode == 0
    assert "nothing to change" in again.stdout


def test_create_provider_adds_a_missing_audience_and_keeps_the_others(
    moto: MotoServer, control_plane: ControlPlane
) -> None:
    issuer = f"https://{unique('kops')}.example.com"
    # kOps creates its providers with the client ID amazonaws.com.
    arn = iam(moto).create_open_id_connect_provider(Url=issuer, ClientIDList=["amazonaws.com"])[
        "OpenIDConnectProviderArn"
    ]
    dry = run(moto, control_plane, "iam", "create-provider", "--issuer", issuer, "--dry-run")
    assert f"would: add client ID sts.amazonaws.com to {arn}" in dry.stdout
    described = iam(moto).get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert described["ClientIDList"] == ["amazonaws.com"]
    outcome = run(moto, control_plane, "iam", "create-provider", "--issuer", issuer)
    assert outcome.returncode == 0, outcome.stderr
    described = iam(moto).get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert described["ClientIDList"] == ["amazonaws.com", "sts.amazonaws.com"]


def test_bind_creates_the_role_and_the_service_account_and_a_second_run_changes_nothing(
    moto: MotoServer, control_plane: ControlPlane, provider: str, tmp_path: Path
) -> None:
    namespace, role = unique("bind"), unique("reader")
    inline = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    (tmp_path / "inline.json").write_text(json.dumps(inline))
    args = (
        "iam", "bind", "-n", namespace, "--service-account", "app", "--role-name", role,
        "--attach-policy-arn", S3_READ, "--inline-policy", str(tmp_path / "inline.json"),
    )  # fmt: skip
    first = run(moto, control_plane, *args)
    assert first.returncode == 0, first.stderr
    created = role_or_none(moto, role)
    assert created is not None
    assert created["AssumeRolePolicyDocument"] == expected_trust(
        control_plane, provider, namespace, "app"
    )
    assert attached(moto, role) == {S3_READ}
    policy = iam(moto).get_role_policy(RoleName=role, PolicyName="irsa-webhook")
    assert policy["PolicyDocument"] == inline
    assert tags(moto, role)["irsa-webhook/service-account"] == f"{namespace}/app"
    metadata = sa_metadata(control_plane, namespace, "app")
    assert metadata is not None
    assert metadata["annotations"] == {ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/{role}"}
    assert metadata["labels"] == {"app.kubernetes.io/managed-by": "irsa-webhook"}

    second = run(moto, control_plane, *args)
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout
    assert "done:" not in second.stdout


def test_bind_dry_run_prints_the_diff_and_changes_nothing(
    moto: MotoServer, control_plane: ControlPlane, provider: str
) -> None:
    namespace, role = unique("dry"), unique("dry")
    outcome = run(
        moto, control_plane, "iam", "bind", "-n", namespace, "--service-account", "app",
        "--role-name", role, "--attach-policy-arn", S3_READ, "--dry-run",
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    assert f"would: create role arn:aws:iam::{ACCOUNT}:role/{role}" in outcome.stdout
    host = provider.split("/", 1)[1]
    assert f'"{host}:sub": "system:serviceaccount:{namespace}:app"' in outcome.stdout
    assert f"would: create ServiceAccount {namespace}/app" in outcome.stdout
    assert role_or_none(moto, role) is None
    assert control_plane.kubectl("get", "namespace", namespace, check=False).returncode != 0


def test_bind_on_an_existing_role_and_service_account_changes_only_what_it_owns(
    moto: MotoServer, control_plane: ControlPlane, provider: str
) -> None:
    plane = control_plane
    namespace, role = make_namespace(plane, "own"), unique("existing")
    other_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam(moto).create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(other_trust))
    iam(moto).attach_role_policy(RoleName=role, PolicyArn=SQS_READ)
    plane.kubectl("create", "serviceaccount", "web", "-n", namespace)
    plane.kubectl("annotate", "serviceaccount", "web", "-n", namespace, "team=blue")
    args = ("-n", namespace, "--service-account", "web")
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"

    dry = run(moto, plane, "iam", "bind", *args, "--role-arn", role_arn, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would: update the trust policy of {role_arn}" in dry.stdout
    removed = [line for line in dry.stdout.splitlines() if line.lstrip().startswith("-")]
    assert any('"Service": "ec2.amazonaws.com"' in line for line in removed)
    assert iam(moto).get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"] == other_trust

    bound = run(moto, plane, "iam", "bind", *args, "--role-arn", role_arn,
                "--attach-policy-arn", S3_READ)  # fmt: skip
    assert bound.returncode == 0, bound.stderr
    assert iam(moto).get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"] == (
        expected_trust(plane, provider, namespace, "web")
    )
    assert attached(moto, role) == {S3_READ, SQS_READ}
    metadata = sa_metadata(plane, namespace, "web")
    assert metadata is not None
    assert metadata["annotations"] == {"team": "blue", ROLE_ARN: role_arn}
    assert "labels" not in metadata

    refused = run(moto, plane, "iam", "unbind", *args, "--delete-role")
    assert refused.fails_with("was not created by irsa-webhook: not deleting it")
    assert sa_metadata(plane, namespace, "web")["annotations"][ROLE_ARN] == role_arn  # type: ignore[index]

    unbound = run(moto, plane, "iam", "unbind", *args)
    assert unbound.returncode == 0, unbound.stderr
    assert attached(moto, role) == {SQS_READ}
    assert "irsa-webhook/service-account" not in tags(moto, role)
    assert sa_metadata(plane, namespace, "web")["annotations"] == {"team": "blue"}  # type: ignore[index]
    again = run(moto, plane, "iam", "unbind", *args)
    assert "nothing to change" in again.stdout


def test_unbind_with_delete_role_removes_the_role_bind_created_and_keeps_the_account(
    moto: MotoServer, control_plane: ControlPlane, provider: str, tmp_path: Path
) -> None:
    namespace, role = unique("gone"), unique("gone")
    (tmp_path / "inline.json").write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}],
            }
        )
    )
    args = ("-n", namespace, "--service-account", "app")
    assert run(moto, control_plane, "iam", "bind", *args, "--role-name", role,
               "--attach-policy-arn", S3_READ,
               "--inline-policy", str(tmp_path / "inline.json")).returncode == 0  # fmt: skip
    outcome = run(moto, control_plane, "iam", "unbind", *args, "--delete-role")
    assert outcome.returncode == 0, outcome.stderr
    assert role_or_none(moto, role) is None
    metadata = sa_metadata(control_plane, namespace, "app")
    assert metadata is not None
    assert ROLE_ARN not in (metadata.get("annotations") or {})


def test_bind_without_a_provider_for_the_issuer_is_refused(
    moto: MotoServer, control_plane: ControlPlane
) -> None:
    role = unique("noprov")
    outcome = run(
        moto, control_plane, "iam", "bind", "-n", unique("np"), "--service-account", "app",
        "--role-name", role, "--issuer", f"https://{unique('none')}.example.com",
    )  # fmt: skip
    assert outcome.fails_with("there is no IAM OIDC provider for")
    assert role_or_none(moto, role) is None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("http-issuer", "is not an https URL"),
        ("foreign-partition", "is in partition aws-cn, but the AWS credentials are for"),
        ("no-discovery", "serves no /.well-known/openid-configuration"),
        ("no-credentials", "no AWS credentials"),
        ("bad-namespace", "is not a DNS label"),
        ("bad-policy-arn", "is not an IAM policy ARN"),
    ],
)
def test_bind_refuses_bad_input_with_one_line_and_changes_nothing(
    moto: MotoServer,
    control_plane: ControlPlane,
    provider: str,
    tmp_path: Path,
    case: str,
    reason: str,
) -> None:
    namespace, role = unique("bad"), unique("bad")
    args = ["iam", "bind", "-n", namespace, "--service-account", "app", "--role-name", role]
    env = {**moto.env, "KUBECONFIG": control_plane.kubeconfig}
    if case == "http-issuer":
        args += ["--issuer", control_plane.url.replace("https://", "http://")]
    elif case == "foreign-partition":
        args[-2:] = ["--role-arn", f"arn:aws-cn:iam::{ACCOUNT}:role/{role}"]
    elif case == "no-discovery":
        env["KUBECONFIG"] = kubeconfig_with_server(
            control_plane, tmp_path / "kubeconfig", control_plane.url + "/no-discovery-here"
        )
    elif case == "no-credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    elif case == "bad-namespace":
        args[args.index("-n") + 1] = "Not_A_Label"
    else:
        args += ["--attach-policy-arn", "AmazonS3ReadOnlyAccess"]
    outcome = irsa(*args, env=env)
    assert outcome.fails_with(reason), outcome
    assert role_or_none(moto, role) is None
    assert control_plane.kubectl("get", "namespace", namespace, check=False).returncode != 0
