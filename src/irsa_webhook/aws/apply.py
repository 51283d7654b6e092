"""``iam apply -f`` and ``iam export``: a ClusterConfig's ServiceAccounts bound with the same code
as ``iam bind``, one entry at a time; ``--prune`` removes what an earlier apply of the same
config (by its name, in the roles' tags) made and the file no longer lists."""

from __future__ import annotations

from collections.abc import Sequence

from irsa_webhook.aws.binding import (
    Binding,
    Role,
    attached_policies,
    check_provider,
    inline_policy,
    plan_bind,
    plan_unbind_role,
    read_role,
)
from irsa_webhook.aws.changes import Plan
from irsa_webhook.aws.clusterconfig import ClusterConfig, ServiceAccountEntry
from irsa_webhook.aws.provider import plan_provider
from irsa_webhook.aws.roles import (
    DEFAULT_AUDIENCE,
    ROLE_ARN_ANNOTATION,
    TAG_BOUND,
    TAG_CONFIG,
    TAG_PREFIX,
    RoleRef,
    check_policy_arn,
    provider_arn,
)
from irsa_webhook.aws.service_accounts import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    plan_service_account,
    service_account_path,
)
from irsa_webhook.aws.session import Aws, Caller, aws_errors
from irsa_webhook.kubeclient import Cluster

IGNORED_ANNOTATIONS = {ROLE_ARN_ANNOTATION, "kubectl.kubernetes.io/last-applied-configuration"}


def plan_apply(
    aws: Aws,
    cluster: Cluster,
    caller: Caller,
    issuer: str,
    configs: Sequence[ClusterConfig],
    prune: bool,
) -> Plan:
    plan = Plan()
    for config in configs:
        for entry in config.service_accounts:
            for arn in (*entry.managed_policies, entry.permissions_boundary):
                if arn:
                    check_policy_arn(arn, caller.partition)
        provider = provider_arn(issuer, caller.partition, caller.account)
        provider_plan = (
            plan_provider(aws, caller, issuer, [DEFAULT_AUDIENCE]) if config.with_oidc else Plan()
        )
        if not provider_plan.changes:
            # A provider this apply creates cannot be checked yet (--dry-run); any other must
            # exist and accept the audience.
            check_provider(aws, caller, issuer, DEFAULT_AUDIENCE)
        plan.extend(provider_plan)
        for entry in config.service_accounts:
            plan.extend(
                plan_bind(aws, cluster, issuer, provider, binding_of(entry, config, caller))
            )
        if prune:
            plan.extend(_plan_prune(aws, cluster, caller, config))
    return plan


def binding_of(entry: ServiceAccountEntry, config: ClusterConfig, caller: Caller) -> Binding:
    return Binding(
        namespace=entry.namespace,
        service_account=entry.name,
        role=RoleRef(caller.partition, caller.account, entry.role_name),
        managed_policies=entry.managed_policies,
        inline_policy=entry.inline_policy,
        permissions_boundary=entry.permissions_boundary,
        role_tags={**entry.tags, TAG_CONFIG: config.name},
        labels={**entry.labels, MANAGED_BY_LABEL: MANAGED_BY},
        annotations=entry.annotations,
        role_only=entry.role_only,
    )


def bound_roles(aws: Aws, caller: Caller) -> list[Role]:
    """Every role of the account that ``bind`` or ``apply`` bound to a ServiceAccount."""
    iam = aws.iam()
    roles = []
    with aws_errors("iam:ListRoles"):
        pages = iam.get_paginator("list_roles").paginate()
        names = [
            (role["RoleName"], role.get("Path", "/")) for page in pages for role in page["Roles"]
        ]
    for name, path in names:
        role = read_role(aws, RoleRef(caller.partition, caller.account, name, path))
        if role is not None and TAG_BOUND in role.tags:
            roles.append(role)
    return roles


def _plan_prune(aws: Aws, cluster: Cluster, caller: Caller, config: ClusterConfig) -> Plan:
    listed = {f"{entry.namespace}/{entry.name}" for entry in config.service_accounts}
    plan = Plan()
    for role in bound_roles(aws, caller):
        bound_to = role.tags[TAG_BOUND]
        if role.tags.get(TAG_CONFIG) != config.name or bound_to in listed:
            continue
        namespace, _, name = bound_to.partition("/")
        account = cluster.get(service_account_path(namespace, name))
        annotations = ((account or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(ROLE_ARN_ANNOTATION) == role.ref.arn:
            # The ServiceAccount itself stays: it may hold other things than ours.
            plan.extend(
                plan_service_account(
                    cluster, namespace, name, {ROLE_ARN_ANNOTATION: None}, {MANAGED_BY_LABEL: None}
                )
            )
        plan.extend(plan_unbind_role(aws, role, bound_to, delete_role=True))
    return plan


def export_config(
    aws: Aws, cluster: Cluster, caller: Caller, issuer: str, namespace: str | None
) -> ClusterConfig:
    """What is bound now, as a ClusterConfig that ``apply`` would find nothing to change in."""
    entries = []
    names = set()
    for role in bound_roles(aws, caller):
        bound_namespace, _, name = role.tags[TAG_BOUND].partition("/")
        if namespace and bound_namespace != namespace:
            continue
        names.add(role.tags.get(TAG_CONFIG, ""))
        account = cluster.get(service_account_path(bound_namespace, name))
        metadata = (account or {}).get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        role_only = annotations.get(ROLE_ARN_ANNOTATION) != role.ref.arn
        entries.append(
            ServiceAccountEntry(
                namespace=bound_namespace,
                name=name,
                role_name=role.ref.name,
                managed_policies=tuple(sorted(attached_policies(aws, role.ref.name))),
                inline_policy=inline_policy(aws, role.ref.name),
                permissions_boundary=role.boundary,
                role_only=role_only,
                labels={}
                if role_only
                else {
                    k: v for k, v in (metadata.get("labels") or {}).items() if k != MANAGED_BY_LABEL
                },
                annotations={}
                if role_only
                else {k: v for k, v in annotations.items() if k not in IGNORED_ANNOTATIONS},
                tags={k: v for k, v in role.tags.items() if not k.startswith(TAG_PREFIX)},
            )
        )
    names.discard("")
    provider = provider_arn(issuer, caller.partition, caller.account)
    with aws_errors("iam:ListOpenIDConnectProviders"):
        providers = aws.iam().list_open_id_connect_providers()["OpenIDConnectProviderList"]
    return ClusterConfig(
        name=names.pop() if len(names) == 1 else "cluster",
        with_oidc=any(item["Arn"] == provider for item in providers),
        service_accounts=tuple(sorted(entries, key=lambda e: (e.namespace, e.name))),
    )
