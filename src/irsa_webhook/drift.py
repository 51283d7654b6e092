"""What a stored pod lacks of what the webhook would inject now, and who can fix it. Pure.

The reconciler asks this of every running or pending pod. The verdict is ``check_injection``'s
(shared with ``doctor``): ``decide``, the very decision ``/mutate`` makes, run on the pod as it is
stored, plus the comparison of its ``AWS_ROLE_ARN`` with the current role. This module adds what
the reconciler needs around it: the pods it must leave alone, reason labels for its metric, the
owner to restart, and the words of the Event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from irsa_webhook.config import CONTAINER_CREDENTIALS_LABEL, SKIP_LABEL, MutationSettings
from irsa_webhook.decision import Sources
from irsa_webhook.identity import Mode
from irsa_webhook.injection_check import InjectionState, check_injection
from irsa_webhook.patch import Operation

TOKEN_VOLUME = "token-volume"
CREDENTIALS_ENV = "credentials-env"
REGION_OR_STS_ENV = "region-or-sts-env"
TOKEN_MOUNT = "token-mount"
POD_IDENTITY_LABEL = "pod-identity-label"
ROLE_CHANGED = "role-changed"
REASONS = (
    TOKEN_VOLUME,
    CREDENTIALS_ENV,
    REGION_OR_STS_ENV,
    TOKEN_MOUNT,
    POD_IDENTITY_LABEL,
    ROLE_CHANGED,
)
"""Metric labels, in the order a message names them."""

_CREDENTIAL_VARS = frozenset(
    (
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    )
)
ROLLABLE_KINDS = frozenset(("Deployment", "StatefulSet", "DaemonSet"))
"""Owners whose pod template can change, so a restart recreates the pods through the webhook."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The workload that recreates a pod: what a restart is applied to."""

    kind: str
    """Deployment, StatefulSet, DaemonSet, Job, another controller's kind, or Pod (bare)."""
    name: str

    @property
    def rollable(self) -> bool:
        return self.kind in ROLLABLE_KINDS


@dataclass(frozen=True, slots=True)
class Gap:
    """One pod that lacks (part of) its injection."""

    namespace: str
    pod: str
    uid: str
    created: str
    """The pod's creationTimestamp, as stored (RFC 3339)."""
    service_account: str
    role_arn: str
    """The role the pod should have now; empty for container credentials."""
    mode: Mode
    reasons: tuple[str, ...]
    owner: Owner


SourcesFor = Callable[[str, str], Sources]
"""(namespace, ServiceAccount name) -> what is known about that ServiceAccount now."""


def find_gap(
    pod: Mapping[str, Any], sources_for: SourcesFor, settings: MutationSettings
) -> Gap | None:
    """What the webhook would still inject into ``pod`` now; None when nothing (or the pod is
    none of the webhook's business: skip label, no identity, being deleted)."""
    metadata: Mapping[str, Any] = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp") or SKIP_LABEL in (metadata.get("labels") or {}):
        return None
    namespace = str(metadata.get("namespace") or "default")
    service_account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
    check = check_injection(pod, sources_for(namespace, service_account), settings)
    identity = check.identity
    if identity is None or check.state is InjectionState.AS_EXPECTED:
        return None
    reasons = set(_reasons_of(check.patch))
    if check.stale:
        reasons.add(ROLE_CHANGED)
    if not reasons:
        return None
    return Gap(
        namespace=namespace,
        pod=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
        service_account=service_account,
        role_arn=identity.role_arn,
        mode=identity.mode,
        reasons=tuple(reason for reason in REASONS if reason in reasons),
        owner=owner_of(metadata),
    )


def _reasons_of(patch: Iterable[Operation]) -> Iterable[str]:
    """The metric's reason labels for a patch's operations (``describe_patch`` has the words)."""
    for operation in patch:
        path = str(operation["path"])
        if path == "/spec" or path.startswith("/spec/volumes"):
            yield TOKEN_VOLUME
        elif path.startswith("/metadata"):
            yield POD_IDENTITY_LABEL
        elif "/volumeMounts" in path:
            yield TOKEN_MOUNT
        elif "/env" in path:
            value = operation.get("value")
            added = value if isinstance(value, list) else [value]
            names = {str(item.get("name")) for item in added if isinstance(item, dict)}
            yield CREDENTIALS_ENV if names & _CREDENTIAL_VARS else REGION_OR_STS_ENV


def owner_of(metadata: Mapping[str, Any]) -> Owner:
    """The workload behind a pod, from its controller reference alone (no API call).

    A Deployment's ReplicaSets are named ``<deployment>-<pod-template-hash>`` and their pods carry
    that hash as a label; that is how ``kubectl`` finds the Deployment too. A ReplicaSet without
    the hash suffix was created by hand and is its own owner.
    """
    name = str(metadata.get("name") or "")
    for reference in metadata.get("ownerReferences") or ():
        if not reference.get("controller"):
            continue
        kind, owner = str(reference.get("kind") or ""), str(reference.get("name") or "")
        if kind == "ReplicaSet":
            suffix = "-" + str((metadata.get("labels") or {}).get("pod-template-hash") or "")
            if suffix != "-" and owner.endswith(suffix) and len(owner) > len(suffix):
                return Owner("Deployment", owner.removesuffix(suffix))
        return Owner(kind, owner)
    return Owner("Pod", name)


_WHAT = {
    TOKEN_VOLUME: "the token volume",
    CREDENTIALS_ENV: "the credential variables",
    REGION_OR_STS_ENV: "the region or STS variables",
    TOKEN_MOUNT: "the token mount",
    POD_IDENTITY_LABEL: f"the {CONTAINER_CREDENTIALS_LABEL} label",
}


def describe(gap: Gap) -> str:
    """The Event message: what is missing, why that matters, and the command that fixes it."""
    if gap.mode is Mode.CONTAINER_CREDENTIALS:
        identity = "EKS Pod Identity (container credentials)"
    else:
        identity = f"role {gap.role_arn}"
    missing = [_WHAT[reason] for reason in gap.reasons if reason in _WHAT]
    parts = []
    if missing:
        parts.append(f"lacks {_join(missing)} the webhook injects")
    if ROLE_CHANGED in gap.reasons:
        parts.append("runs with another AWS_ROLE_ARN than its ServiceAccount names now")
    return (
        f"Pod {gap.pod} {' and '.join(parts)} for ServiceAccount {gap.service_account} "
        f"({identity}): it was created before that identity applied or while the webhook was "
        f"unreachable, so AWS SDKs in it do not use that identity. {fix(gap.namespace, gap.owner)}"
    )


def fix(namespace: str, owner: Owner) -> str:
    """How to get the pod recreated through the webhook, for its kind of owner."""
    if owner.rollable:
        return (
            f"Restart its {owner.kind}: kubectl rollout restart -n {namespace} "
            f"{owner.kind.lower()}/{owner.name}"
        )
    if owner.kind == "Pod":
        return "It has no owner: delete it and create it again."
    if owner.kind == "Job":
        return (
            f"A Job's pod template cannot change: delete Job {owner.name} and create it again "
            "(a CronJob's next run gets the identity)."
        )
    return f"Restart its owner {owner.kind} {owner.name} so that it recreates the pod."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def event_name(gap: Gap) -> str:
    """One name per pod and set of reasons: a second replica, or this one after a restart,
    creating the same Event gets AlreadyExists instead of repeating it."""
    digest = hashlib.sha256(f"{gap.uid}/{','.join(gap.reasons)}".encode()).hexdigest()[:10]
    return f"{gap.pod[:200]}.irsa-{digest}"
