"""``bind`` and ``unbind``: one role that trusts exactly one ServiceAccount, its policies, and
the ServiceAccount's ``role-arn`` annotation. ``iam apply`` runs the same code per entry.

``bind`` is declarative over what it owns: policies it attached earlier (remembered in role
tags) and no longer asked for are detached; policies someone else attached are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from irsa_webhook.aws.changes import Plan, json_diff
from irsa_webhook.aws.provider import current_client_ids
from irsa_webhook.aws.roles import (
    AUDIENCE_ANNOTATION,
    DEFAULT_AUDIENCE,
    INLINE_POLICY_NAME,
    ROLE_ARN_ANNOTATION,
    TAG_BOUND,
    TAG_CREATED,
    BindingError,
    RoleRef,
    attached_by_us,
    parse_role_arn,
    policy_tag_key,
    provider_arn,
    trust_policy,
)
from irsa_webhook.aws.service_accounts import plan_service_account, service_account_path
from irsa_webhook.aws.session import Aws, Caller, aws_errors, read_or_none
from irsa_webhook.kubeclient import Cluster


@dataclass(frozen=True)
class Binding:
    """What one ServiceAccount should be bound to."""

    namespace: str
    service_account: str
    role: RoleRef
    managed_policies: tuple[str, ...] = ()
    inline_policy: dict[str, Any] | None = None
    permissions_boundary: str | None = None
    audience: str = DEFAULT_AUDIENCE
    role_tags: Mapping[str, str] = field(default_factory=dict)
    """Extra tags on the role (``iam apply``: the entry's ``tags`` and the config's name)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    role_only: bool = False
    """The role only: the ServiceAccount is someone else's (a Helm chart's) to annotate."""

    @property
    def bound_to(self) -> str:
        return f"{self.namespace}/{self.service_account}"


@dataclass(frozen=True)
class Role:
    """A role as IAM has it now."""

    ref: RoleRef
    trust: dict[str, Any]
    tags: dict[str, str]
    boundary: str | None


def read_role(aws: Aws, ref: RoleRef) -> Role | None:
    answer = read_or_none(
        f"iam:GetRole {ref.name}", lambda: aws.iam().get_role(RoleName=ref.name), "NoSuchEntity"
    )
    if answer is None:
        return None
    role = answer["Role"]
    with aws_errors(f"iam:ListRoleTags {ref.name}"):
        tags = aws.iam().list_role_tags(RoleName=ref.name)["Tags"]
    trust: Any = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(trust, str):
        trust = json.loads(trust)
    boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    actual = RoleRef(ref.partition, ref.account, role["RoleName"], role.get("Path", "/"))
    return Role(actual, dict(trust), {tag["Key"]: tag["Value"] for tag in tags}, boundary)


def attached_policies(aws: Aws, name: str) -> set[str]:
    with aws_errors(f"iam:ListAttachedRolePolicies {name}"):
        pages = aws.iam().get_paginator("list_attached_role_policies").paginate(RoleName=name)
        return {policy["PolicyArn"] for page in pages for policy in page["AttachedPolicies"]}


def inline_policy(aws: Aws, name: str) -> dict[str, Any] | None:
    answer = read_or_none(
        f"iam:GetRolePolicy {name}",
        lambda: aws.iam().get_role_policy(RoleName=name, PolicyName=INLINE_POLICY_NAME),
        "NoSuchEntity",
    )
    if answer is None:
        return None
    document = answer["PolicyDocument"]
    return dict(json.loads(document) if isinstance(document, str) else document)


def check_provider(aws: Aws, caller: Caller, issuer: str, audience: str) -> str:
    """The provider's ARN; refuses when there is none or it lacks ``audience``."""
    arn = provider_arn(issuer, caller.partition, caller.account)
    client_ids = current_client_ids(aws, arn)
    if client_ids is None:
        raise BindingError(
            f"there is no IAM OIDC provider for {issuer} in account {caller.account}: run "
            f"'irsa-webhook iam create-provider --issuer {issuer}' first"
        )
    if audience not in client_ids:
        raise BindingError(
            f"the IAM OIDC provider {arn} does not accept the audience {audience}: run "
            f"'irsa-webhook iam create-provider --issuer {issuer} --audience {audience}'"
        )
    return arn


def plan_bind(
    aws: Aws, cluster: Cluster | None, issuer: str, provider: str, binding: Binding
) -> Plan:
    """Everything ``binding`` needs changed, in the order to change it."""
    ref = binding.role
    iam = aws.iam()
    plan = Plan()
    role = read_role(aws, ref)
    desired_trust = trust_policy(
        issuer, provider, binding.namespace, binding.service_account, binding.audience
    )
    wanted_tags = {TAG_BOUND: binding.bound_to, **binding.role_tags}
    if role is None:
        tags = [{"Key": key, "Value": value} for key, value in wanted_tags.items()]
        tags.append({"Key": TAG_CREATED, "Value": "true"})
        extra: dict[str, Any] = {}
        if binding.permissions_boundary:
            extra["PermissionsBoundary"] = binding.permissions_boundary

        def create_role() -> None:
            with aws_errors(f"iam:CreateRole {ref.name}"):
                iam.create_role(
                    RoleName=ref.name,
                    Path=ref.path,
                    AssumeRolePolicyDocument=json.dumps(desired_trust),
                    Description=f"IRSA role of ServiceAccount {binding.bound_to}",
                    Tags=tags,  # type: ignore[arg-type]
                    **extra,
                )

        plan.add(
            f"create role {ref.arn} trusting {binding.bound_to}",
            create_role,
            json_diff(None, desired_trust, "trust policy"),
        )
        current_tags: dict[str, str] = {}
        attached: set[str] = set()
        inline = None
    else:
        if role.ref.path != ref.path:
            raise BindingError(
                f"role {ref.name} exists with path {role.ref.path}, not {ref.path}: "
                "give its real ARN"
            )
        bound = role.tags.get(TAG_BOUND)
        if bound not in (None, binding.bound_to):
            raise BindingError(
                f"role {ref.arn} is bound to ServiceAccount {bound} by irsa-webhook: unbind it "
                "first, or choose another role"
            )
        current_tags = role.tags
        attached = attached_policies(aws, ref.name)
        inline = inline_policy(aws, ref.name)
        if role.trust == desired_trust:
            plan.keep(f"trust policy of {ref.arn} ({binding.bound_to})")
        else:

            def update_trust() -> None:
                with aws_errors(f"iam:UpdateAssumeRolePolicy {ref.name}"):
                    iam.update_assume_role_policy(
                        RoleName=ref.name, PolicyDocument=json.dumps(desired_trust)
                    )

            plan.add(
                f"update the trust policy of {ref.arn} to trust exactly {binding.bound_to}",
                update_trust,
                json_diff(role.trust, desired_trust, "trust policy"),
            )
        missing_tags = {k: v for k, v in wanted_tags.items() if current_tags.get(k) != v}
        if missing_tags:

            def tag_role(missing: dict[str, str] = missing_tags) -> None:
                with aws_errors(f"iam:TagRole {ref.name}"):
                    iam.tag_role(
                        RoleName=ref.name,
                        Tags=[{"Key": key, "Value": value} for key, value in missing.items()],
                    )

            plan.add(f"tag {ref.arn}: {', '.join(sorted(missing_tags))}", tag_role)
        if binding.permissions_boundary and role.boundary != binding.permissions_boundary:
            boundary = binding.permissions_boundary

            def put_boundary() -> None:
                with aws_errors(f"iam:PutRolePermissionsBoundary {ref.name}"):
                    iam.put_role_permissions_boundary(
                        RoleName=ref.name, PermissionsBoundary=boundary
                    )

            plan.add(f"set the permissions boundary of {ref.arn} to {boundary}", put_boundary)

    plan.extend(_plan_policies(aws, ref, binding, attached, current_tags, inline))
    if not binding.role_only and cluster is not None:
        annotations = {ROLE_ARN_ANNOTATION: ref.arn, **binding.annotations}
        if binding.audience != DEFAULT_AUDIENCE:
            annotations[AUDIENCE_ANNOTATION] = binding.audience
        plan.extend(
            plan_service_account(
                cluster, binding.namespace, binding.service_account, annotations, binding.labels
            )
        )
    return plan


def _plan_policies(
    aws: Aws,
    ref: RoleRef,
    binding: Binding,
    attached: set[str],
    tags: Mapping[str, str],
    inline: dict[str, Any] | None,
) -> Plan:
    iam = aws.iam()
    plan = Plan()
    ours = attached_by_us(dict(tags))
    for arn in binding.managed_policies:
        if arn in attached:
            plan.keep(f"policy {arn} on {ref.name}")
            continue

        def attach(arn: str = arn) -> None:
            with aws_errors(f"iam:AttachRolePolicy {arn}"):
                iam.attach_role_policy(RoleName=ref.name, PolicyArn=arn)
            with aws_errors(f"iam:TagRole {ref.name}"):
                iam.tag_role(RoleName=ref.name, Tags=[{"Key": policy_tag_key(arn), "Value": arn}])

        plan.add(f"attach policy {arn} to {ref.name}", attach)
    for arn in sorted(ours - set(binding.managed_policies)):

        def detach(arn: str = arn) -> None:
            _detach(aws, ref.name, arn, arn in attached)

        plan.add(f"detach policy {arn} from {ref.name} (attached by an earlier bind)", detach)
    if binding.inline_policy is not None:
        document = binding.inline_policy
        if inline == document:
            plan.keep(f"inline policy {INLINE_POLICY_NAME} of {ref.name}")
        else:

            def put_inline() -> None:
                with aws_errors(f"iam:PutRolePolicy {ref.name}"):
                    iam.put_role_policy(
                        RoleName=ref.name,
                        PolicyName=INLINE_POLICY_NAME,
                        PolicyDocument=json.dumps(document),
                    )

            plan.add(
                f"put inline policy {INLINE_POLICY_NAME} on {ref.name}",
                put_inline,
                json_diff(inline, document, "inline policy"),
            )
    elif inline is not None:
        plan.add(
            f"delete inline policy {INLINE_POLICY_NAME} of {ref.name} (no longer asked for)",
            lambda: _delete_inline(aws, ref.name),
        )
    return plan


def _detach(aws: Aws, role: str, arn: str, attached: bool) -> None:
    if attached:
        with aws_errors(f"iam:DetachRolePolicy {arn}"):
            aws.iam().detach_role_policy(RoleName=role, PolicyArn=arn)
    with aws_errors(f"iam:UntagRole {role}"):
        aws.iam().untag_role(RoleName=role, TagKeys=[policy_tag_key(arn)])


def _delete_inline(aws: Aws, role: str) -> None:
    with aws_errors(f"iam:DeleteRolePolicy {role}"):
        aws.iam().delete_role_policy(RoleName=role, PolicyName=INLINE_POLICY_NAME)


def bound_role(cluster: Cluster, caller: Caller, namespace: str, name: str) -> RoleRef | None:
    """The role a ServiceAccount's annotation names, or None (no ServiceAccount, no annotation)."""
    account = cluster.get(service_account_path(namespace, name))
    annotations = ((account or {}).get("metadata") or {}).get("annotations") or {}
    arn = annotations.get(ROLE_ARN_ANNOTATION)
    return parse_role_arn(arn, caller.partition, caller.account) if arn else None


def plan_unbind_role(aws: Aws, role: Role, bound_to: str, delete_role: bool) -> Plan:
    """Removes from ``role`` what ``bind`` put there for ``bound_to``; deletes the role when asked
    and ``bind`` created it. Refuses, before any change, when the role is not ours to touch."""
    ref = role.ref
    if role.tags.get(TAG_BOUND) != bound_to:
        raise BindingError(
            f"role {ref.arn} is not bound to {bound_to} by irsa-webhook (its tag "
            f"{TAG_BOUND} is {role.tags.get(TAG_BOUND)!r}); leaving it alone"
        )
    iam = aws.iam()
    attached = attached_policies(aws, ref.name)
    ours = attached_by_us(role.tags)
    inline = inline_policy(aws, ref.name)
    if delete_role:
        if role.tags.get(TAG_CREATED) != "true":
            raise BindingError(
                f"role {ref.arn} was not created by irsa-webhook: not deleting it (run without "
                "--delete-role to remove only what bind attached)"
            )
        foreign = sorted(attached - ours)
        with aws_errors(f"iam:ListRolePolicies {ref.name}"):
            inline_names = set(iam.list_role_policies(RoleName=ref.name)["PolicyNames"])
        foreign += sorted(inline_names - {INLINE_POLICY_NAME})
        if foreign:
            raise BindingError(
                f"role {ref.arn} also has policies irsa-webhook did not attach "
                f"({', '.join(foreign)}): not deleting it"
            )
    plan = Plan()
    for arn in sorted(ours):
        plan.add(
            f"detach policy {arn} from {ref.name}",
            lambda arn=arn: _detach(aws, ref.name, arn, arn in attached),  # type: ignore[misc]
        )
    if inline is not None:
        plan.add(
            f"delete inline policy {INLINE_POLICY_NAME} of {ref.name}",
            lambda: _delete_inline(aws, ref.name),
        )
    if delete_role:

        def delete() -> None:
            with aws_errors(f"iam:DeleteRole {ref.name}"):
                iam.delete_role(RoleName=ref.name)

        plan.add(f"delete role {ref.arn} (created by irsa-webhook bind)", delete)
    else:

        def untag() -> None:
            with aws_errors(f"iam:UntagRole {ref.name}"):
                iam.untag_role(RoleName=ref.name, TagKeys=[TAG_BOUND])

        plan.add(f"untag {ref.arn}: {TAG_BOUND}", untag)
    return plan


def plan_unbind(
    aws: Aws, cluster: Cluster, caller: Caller, namespace: str, name: str, delete_role: bool
) -> Plan:
    """The annotation first (pods created from then on get no role), then the role's side."""
    plan = Plan()
    ref = bound_role(cluster, caller, namespace, name)
    if ref is None:
        plan.keep(f"ServiceAccount {namespace}/{name} (no {ROLE_ARN_ANNOTATION} annotation)")
        return plan
    role = read_role(aws, ref)
    # Planned (and so checked) before the annotation: a refusal must change nothing.
    role_plan = Plan()
    if role is None:
        role_plan.keep(f"role {ref.arn} (does not exist)")
    else:
        role_plan = plan_unbind_role(aws, role, f"{namespace}/{name}", delete_role)
    plan.extend(plan_service_account(cluster, namespace, name, {ROLE_ARN_ANNOTATION: None}, {}))
    plan.extend(role_plan)
    return plan
