"""``irsa-webhook iam apply -f`` (eksctl's ClusterConfig on a non-EKS cluster) and ``iam export``
against moto's IAM server (AWS-managed policies loaded) and the real API server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from aws_emulator import MotoServer
from chain import Outcome, attached, irsa, role_or_none, sa_metadata
from cluster import ControlPlane

# Each CLI run is a fresh interpreter; the first test also waits for the servers to start.
pytestmark = pytest.mark.timeout(300)

ACCOUNT = "123456789012"
S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
ROLE_ARN = "eks.amazonaws.com/role-arn"
MANAGED_BY = "app.kubernetes.io/managed-by"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def apply(moto: MotoServer, plane: ControlPlane, config: Any, tmp: Path, *args: str) -> Outcome:
    path = tmp / f"cluster-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump_all(config))
    return irsa(
        "iam", "apply", "-f", str(path), *args, env={**moto.env, "KUBECONFIG": plane.kubeconfig}
    )


def cluster_config(name: str, *entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eksctl.io/v1alpha5",
        "kind": "ClusterConfig",
        "metadata": {"name": name, "region": "us-east-1"},
        "iam": {"withOIDC": True, "serviceAccounts": list(entries)},
        **extra,
    }


def test_the_seed_style_file_binds_its_service_account_and_a_second_apply_changes_nothing(
    moto: MotoServer, control_plane: ControlPlane, tmp_path: Path
) -> None:
    name, namespace = unique("seed"), unique("shop")
    config = cluster_config(
        name,
        {
            "metadata": {"name": "orders", "namespace": namespace, "labels": {"team": "shop"}},
            "attachPolicyARNs": [S3_READ],
        },
    )
    first = apply(moto, control_plane, [config], tmp_path)
    assert first.returncode == 0, first.stderr
    role_name = f"irsa-{name}-{namespace}-orders"
    created = role_or_none(moto, role_name)
    assert created is not None
    host = control_plane.url.removeprefix("https://")
    statement = created["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Condition"]["StringEquals"] == {
        f"{host}:sub": f"system:serviceaccount:{namespace}:orders",
        f"{host}:aud": "sts.amazonaws.com",
    }
    assert attached(moto, role_name) == {S3_READ}
    account = sa_metadata(control_plane, namespace, "orders")
    assert account is not None
    assert account["labels"] == {"team": "shop", MANAGED_BY: "irsa-webhook"}
    assert account["annotations"] == {ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/{role_name}"}

    second = apply(moto, control_plane, [config], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout
    assert "done:" not in second.stdout


def test_several_entries_role_only_an_inline_policy_and_unsupported_fields(
    moto: MotoServer, control_plane: ControlPlane, tmp_path: Path
) -> None:
    name, first_ns, second_ns = unique("multi"), unique("a"), unique("b")
    inline = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}],
    }
    config = cluster_config(
        name,
        {"metadata": {"name": "api", "namespace": first_ns}, "attachPolicy": inline,
         "wellKnownPolicies": {"autoScaler": True}},
        {"metadata": {"name": "worker", "namespace": second_ns}, "roleName": unique("worker"),
         "attachPolicyARNs": [S3_READ], "tags": {"team": "b"}},
        {"metadata": {"name": "helm-owned", "namespace": second_ns}, "roleOnly": True,
         "roleName": unique("helm")},
        vpc={"cidr": "10.0.0.0/16"},
        status={"endpoint": "https://example"},
    )  # fmt: skip
    outcome = apply(moto, control_plane, [config], tmp_path)
    assert outcome.returncode == 0, outcome.stderr
    warnings = outcome.stderr.strip().splitlines()
    assert len(warnings) == 3
    assert any("vpc is not supported" in line for line in warnings)
    assert any("status is not supported" in line for line in warnings)
    assert any(
        "iam.serviceAccounts[0]: wellKnownPolicies is not supported" in line for line in warnings
    )
    entries = config["iam"]["serviceAccounts"]
    api_role = f"irsa-{name}-{first_ns}-api"
    assert (
        moto.client("iam").get_role_policy(RoleName=api_role, PolicyName="irsa-webhook")[
            "PolicyDocument"
        ]
        == inline
    )
    worker = entries[1]["roleName"]
    tags = {
        t["Key"]: t["Value"] for t in moto.client("iam").list_role_tags(RoleName=worker)["Tags"]
    }
    assert tags["team"] == "b"
    assert tags["irsa-webhook/cluster-config"] == name
    assert sa_metadata(control_plane, first_ns, "api") is not None
    assert sa_metadata(control_plane, second_ns, "worker") is not None
    assert role_or_none(moto, entries[2]["roleName"]) is not None
    assert sa_metadata(control_plane, second_ns, "helm-owned") is None


def test_prune_removes_what_an_earlier_apply_made_and_the_file_no_longer_lists(
    moto: MotoServer, control_plane: ControlPlane, tmp_path: Path
) -> None:
    name, namespace = unique("prune"), unique("p")
    keep = {"metadata": {"name": "keep", "namespace": namespace}, "attachPolicyARNs": [S3_READ]}
    drop = {"metadata": {"name": "drop", "namespace": namespace}, "attachPolicyARNs": [S3_READ]}
    assert apply(moto, control_plane, [cluster_config(name, keep, drop)], tmp_path).returncode == 0
    dropped_role = f"irsa-{name}-{namespace}-drop"
    assert role_or_none(moto, dropped_role) is not None
    # Another config's role is never pruned by this one.
    other = unique("other")
    other_entry = {"metadata": {"name": "x", "namespace": namespace}}
    assert (
        apply(moto, control_plane, [cluster_config(other, other_entry)], tmp_path).returncode == 0
    )

    without_prune = apply(moto, control_plane, [cluster_config(name, keep)], tmp_path)
    assert "nothing to change" in without_prune.stdout
    dry = apply(moto, control_plane, [cluster_config(name, keep)], tmp_path, "--prune", "--dry-run")
    assert f"would: delete role arn:aws:iam::{ACCOUNT}:role/{dropped_role}" in dry.stdout
    assert role_or_none(moto, dropped_role) is not None
    pruned = apply(moto, control_plane, [cluster_config(name, keep)], tmp_path, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert role_or_none(moto, dropped_role) is None
    account = sa_metadata(control_plane, namespace, "drop")
    assert account is not None
    assert ROLE_ARN not in (account.get("annotations") or {})
    assert role_or_none(moto, f"irsa-{name}-{namespace}-keep") is not None
    assert role_or_none(moto, f"irsa-{other}-{namespace}-x") is not None


def test_export_writes_a_config_whose_apply_changes_nothing(
    moto: MotoServer, control_plane: ControlPlane, tmp_path: Path
) -> None:
    name, namespace = unique("export"), unique("e")
    config = cluster_config(
        name,
        {"metadata": {"name": "web", "namespace": namespace, "labels": {"tier": "front"},
                      "annotations": {"owner": "team-e"}},
         "attachPolicyARNs": [S3_READ], "tags": {"cost": "e"},
         "attachPolicy": {"Version": "2012-10-17", "Statement": [
             {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}},
        {"metadata": {"name": "only-role", "namespace": namespace}, "roleOnly": True},
    )  # fmt: skip
    assert apply(moto, control_plane, [config], tmp_path).returncode == 0
    exported = irsa(
        "iam", "export", "-n", namespace,
        env={**moto.env, "KUBECONFIG": control_plane.kubeconfig},
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    document = yaml.safe_load(exported.stdout)
    assert document["metadata"]["name"] == name
    assert document["iam"]["withOIDC"] is True
    entries = {entry["metadata"]["name"]: entry for entry in document["iam"]["serviceAccounts"]}
    assert set(entries) == {"web", "only-role"}
    assert entries["only-role"]["roleOnly"] is True
    assert entries["web"]["metadata"]["labels"] == {"tier": "front"}
    assert entries["web"]["attachPolicyARNs"] == [S3_READ]
    again = apply(moto, control_plane, exported.stdout, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"apiVersion": "v1", "kind": "Pod"}, "document 1 is v1/Pod, not an eksctl.io/v1alpha5"),
        ("entry-without-name", "iam.serviceAccounts[1]: metadata.name is required"),
        ("bad-namespace", "iam.serviceAccounts[1]: namespace 'Bad_NS' is not a DNS label"),
        ("bad-arn", "iam.serviceAccounts[1]: 'S3ReadOnly' is not an IAM policy ARN"),
    ],
)
def test_a_bad_file_is_refused_with_the_entry_and_changes_nothing(
    moto: MotoServer, control_plane: ControlPlane, tmp_path: Path, document: Any, reason: str
) -> None:
    name, namespace = unique("bad"), unique("ok")
    good = {"metadata": {"name": "fine", "namespace": namespace}}
    bad: dict[str, Any] = {"metadata": {"name": "broken", "namespace": namespace}}
    if document == "entry-without-name":
        del bad["metadata"]["name"]
    elif document == "bad-namespace":
        bad["metadata"]["namespace"] = "Bad_NS"
    elif document == "bad-arn":
        bad["attachPolicyARNs"] = ["S3ReadOnly"]
    documents = [cluster_config(name, good, bad)]
    if isinstance(document, dict):
        documents.append(document)
    outcome = apply(moto, control_plane, documents, tmp_path)
    assert outcome.fails_with(reason), outcome
    assert role_or_none(moto, f"irsa-{name}-{namespace}-fine") is None
    assert control_plane.kubectl("get", "namespace", namespace, check=False).returncode != 0
