"""Reading eksctl's ClusterConfig: what each entry becomes, which fields are named as skipped,
and which files are refused with the entry's index."""

from __future__ import annotations

import pytest

from irsa_webhook.aws.clusterconfig import parse_cluster_configs, render_cluster_config
from irsa_webhook.aws.roles import BindingError, default_role_name

SEED = """\
apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata: {name: demo, region: eu-west-1, version: "1.31", tags: {env: lab}}
iam:
  withOIDC: true
  serviceAccountRoleARN: arn:aws:iam::1:role/x
  serviceAccounts:
    - metadata: {name: s3-reader, labels: {aws-usage: application}}
      attachPolicyARNs: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]
      wellKnownPolicies: {autoScaler: true}
managedNodeGroups: [{name: ng}]
"""


def test_the_seed_file_gives_one_entry_in_default_with_a_default_role_name() -> None:
    (config,) = parse_cluster_configs(SEED, "cluster.yaml")
    (entry,) = config.service_accounts
    assert (config.name, config.with_oidc, config.region) == ("demo", True, "eu-west-1")
    assert (entry.namespace, entry.name) == ("default", "s3-reader")
    assert entry.role_name == "irsa-demo-default-s3-reader"
    assert entry.labels == {"aws-usage": "application"}
    assert entry.tags == {"env": "lab"}
    assert entry.managed_policies == ("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",)


def test_every_unsupported_field_is_named_in_one_warning() -> None:
    (config,) = parse_cluster_configs(SEED, "cluster.yaml")
    where = "cluster.yaml document 0"
    assert sorted(warning.split(" is not supported")[0] for warning in config.warnings) == [
        f"{where}: iam.serviceAccountRoleARN",
        f"{where}: iam.serviceAccounts[0]: wellKnownPolicies",
        f"{where}: managedNodeGroups",
        f"{where}: metadata.version",
    ]


def test_a_default_role_name_fits_iams_64_characters_and_stays_deterministic() -> None:
    name = default_role_name("a-very-long-cluster-name", "a-long-namespace-name", "a" * 40)
    assert len(name) == 64
    assert name == default_role_name("a-very-long-cluster-name", "a-long-namespace-name", "a" * 40)
    assert name != default_role_name("a-very-long-cluster-name", "a-long-namespace-name", "b" * 40)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("kind: Pod\napiVersion: v1\n", "document 0 is v1/Pod, not an eksctl.io/v1alpha5"),
        ("[1, 2]", "document 0 is list"),
        (": :", "is not YAML"),
        ("", "holds no document"),
        (SEED.replace("name: demo", "region: x"), "metadata.name (the cluster's name)"),
        (SEED.replace("name: s3-reader", "namespace: x"), "serviceAccounts[0]: metadata.name"),
        (SEED.replace("name: s3-reader", "name: a, namespace: NS"), "is not a DNS label"),
        (SEED.replace("arn:aws:iam::aws:policy/", ""), "serviceAccounts[0]: 'AmazonS3Read"),
        (SEED.replace("aws-usage: application", "n: 1"), "must map names to strings"),
        (SEED.replace("withOIDC: true", "withOIDC: yes please"), "withOIDC must be true"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_with_where_and_what(text: str, reason: str) -> None:
    with pytest.raises(
        BindingError, match=reason.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        parse_cluster_configs(text, "cluster.yaml")


def test_a_service_account_listed_twice_is_refused() -> None:
    twice = SEED.replace(
        "managedNodeGroups", "    - metadata: {name: s3-reader}\nmanagedNodeGroups"
    )
    with pytest.raises(BindingError, match="listed twice"):
        parse_cluster_configs(twice, "cluster.yaml")


def test_a_rendered_config_reads_back_to_the_same_entries() -> None:
    (config,) = parse_cluster_configs(SEED, "cluster.yaml")
    (again,) = parse_cluster_configs(render_cluster_config(config), "exported.yaml")
    assert again.service_accounts == config.service_accounts
    assert again.warnings == ()
