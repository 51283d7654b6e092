"""The IAM side of a binding as pure data: ARNs, the trust policy for one ServiceAccount, and the
tags by which ``bind`` remembers what it owns (so ``unbind`` and ``apply --prune`` never touch
what another tool made)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from irsa_webhook.oidc import provider_host_path

DEFAULT_AUDIENCE = "sts.amazonaws.com"
"""The webhook's default token audience (``--token-audience``)."""

ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
AUDIENCE_ANNOTATION = "eks.amazonaws.com/audience"

INLINE_POLICY_NAME = "irsa-webhook"
"""The name of the one inline policy ``bind`` puts on a role."""

TAG_PREFIX = "irsa-webhook/"
"""Every tag this tool owns starts with it."""
TAG_CREATED = "irsa-webhook/created-role"
"""On roles ``bind`` created (value ``true``): only those may be deleted by ``unbind``."""
TAG_BOUND = "irsa-webhook/service-account"
"""``<namespace>/<name>`` of the ServiceAccount the role is bound to."""
TAG_CONFIG = "irsa-webhook/cluster-config"
"""The ``metadata.name`` of the ClusterConfig that ``iam apply`` bound the role from (prune)."""
TAG_POLICY_PREFIX = "irsa-webhook/policy/"
"""One tag per managed policy ``bind`` attached: key prefix + a hash of the ARN, value the ARN."""

ROLE_NAME_LIMIT = 64
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_ROLE_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role(?P<path>/(?:[\x21-\x7e]*/)?)"
    r"(?P<name>[\w+=,.@-]{1,64})$"
)
_POLICY_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?:\d{12}|aws):policy/[\x21-\x7e]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class BindingError(Exception):
    """A binding's input cannot be used (a malformed or foreign ARN, an invalid name), or the
    account lacks what the binding needs; the message says what to fix."""


@dataclass(frozen=True)
class RoleRef:
    """A role by name and path in one account and partition."""

    partition: str
    account: str
    name: str
    path: str = "/"

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role{self.path}{self.name}"


def parse_role_arn(arn: str, partition: str, account: str) -> RoleRef:
    """The role of ``arn``, which must be in the credentials' partition and account: IAM trusts
    an OIDC provider only for roles of the provider's own account."""
    match = _ROLE_ARN.match(arn)
    if not match:
        raise BindingError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    if match["partition"] != partition:
        raise BindingError(
            f"role ARN {arn} is in partition {match['partition']}, but the AWS credentials are "
            f"for partition {partition}"
        )
    if match["account"] != account:
        raise BindingError(
            f"role ARN {arn} is in account {match['account']}, but the AWS credentials are for "
            f"account {account} (the role and the OIDC provider must share an account)"
        )
    return RoleRef(partition, account, match["name"], match["path"])


def check_role_name(name: str) -> str:
    if not _ROLE_NAME.match(name):
        raise BindingError(
            f"role name {name!r} is not valid: 1 to {ROLE_NAME_LIMIT} characters of letters, "
            "digits and +=,.@_-"
        )
    return name


def check_policy_arn(arn: str, partition: str | None = None) -> str:
    match = _POLICY_ARN.match(arn)
    if not match:
        raise BindingError(f"{arn!r} is not an IAM policy ARN (arn:aws:iam::<account>:policy/...)")
    if partition is not None and match["partition"] != partition:
        raise BindingError(
            f"policy ARN {arn} is in partition {match['partition']}, but the AWS credentials are "
            f"for partition {partition}"
        )
    return arn


def check_namespace(namespace: str) -> str:
    if not _DNS_LABEL.match(namespace):
        raise BindingError(f"namespace {namespace!r} is not a DNS label (RFC 1123)")
    return namespace


def check_service_account(name: str) -> str:
    if not _DNS_SUBDOMAIN.match(name):
        raise BindingError(f"ServiceAccount name {name!r} is not a DNS subdomain (RFC 1123)")
    return name


def provider_arn(issuer: str, partition: str, account: str) -> str:
    """The IAM OIDC provider's ARN for ``issuer``: its URL without scheme (and default port)."""
    return f"arn:{partition}:iam::{account}:oidc-provider/{provider_host_path(issuer)}"


def subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def trust_policy(
    issuer: str, provider: str, namespace: str, service_account: str, audience: str
) -> dict[str, Any]:
    """A trust policy that lets exactly one ServiceAccount's tokens, for ``audience``, assume
    the role: ``StringEquals`` on ``<issuer host/path>:sub`` and ``:aud`` (never a wildcard
    inside StringEquals, which matches nothing)."""
    prefix = provider_host_path(issuer)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{prefix}:sub": subject(namespace, service_account),
                        f"{prefix}:aud": audience,
                    }
                },
            }
        ],
    }


def policy_tag_key(policy_arn: str) -> str:
    """Tag keys are at most 128 characters and ARNs can be longer: a short hash names the tag."""
    return TAG_POLICY_PREFIX + hashlib.sha256(policy_arn.encode()).hexdigest()[:16]


def attached_by_us(tags: dict[str, str]) -> set[str]:
    """The managed-policy ARNs a role's tags say ``bind`` attached."""
    return {value for key, value in tags.items() if key.startswith(TAG_POLICY_PREFIX)}


def default_role_name(cluster: str, namespace: str, service_account: str) -> str:
    """A deterministic role name for a ServiceAccount that fits IAM's 64 characters: the readable
    ``irsa-<cluster>-<namespace>-<name>`` when it fits, else its start plus a hash of the whole."""
    readable = f"irsa-{cluster}-{namespace}-{service_account}".replace(".", "-")
    if len(readable) <= ROLE_NAME_LIMIT:
        return readable
    digest = hashlib.sha256(f"{cluster}/{namespace}/{service_account}".encode()).hexdigest()[:10]
    return f"{readable[: ROLE_NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"
