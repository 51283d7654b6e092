"""What the webhook would inject into a stored pod now, against what the pod has.

A pod is mutated once, at creation. When it lacks its credentials (created before its
ServiceAccount was annotated, the webhook failed open) or carries an old role (the annotation
changed since), the SDK in the pod falls back to another credential source or assumes the wrong
role. ``doctor`` reports that and the reconciler acts on it; both must judge with the webhook's
own rules, so this module runs the same ``decide`` as ``/mutate`` on the pod as it is stored:
an empty patch means nothing is missing, because the mutation is idempotent on a mutated pod.

Pure: the caller fetches the pod and the ServiceAccount and passes the webhook's settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from irsa_webhook.admission import ReviewRequest
from irsa_webhook.config import IRSA_VOLUME_NAME, MutationSettings
from irsa_webhook.decision import Sources, decide
from irsa_webhook.identity import Identity, Mode
from irsa_webhook.patch import Operation


class InjectionState(Enum):
    AS_EXPECTED = "as-expected"
    """The webhook would change nothing: every non-skipped container has its credentials."""
    MISSING = "missing"
    """The webhook would add something now (``missing`` says what)."""
    STALE_ROLE = "stale-role"
    """A container's ``AWS_ROLE_ARN`` is not the role the webhook would inject now."""
    NOT_EXPECTED = "not-expected"
    """The ServiceAccount (or ConfigMap) names no identity, so the webhook injects nothing."""


@dataclass(frozen=True, slots=True)
class InjectionCheck:
    """The verdict, and the values it rests on, in words a user can act on."""

    state: InjectionState
    identity: Identity | None
    """What the webhook resolves the pod's ServiceAccount to now; None: nothing."""
    missing: tuple[str, ...] = ()
    """What the webhook would add, per object: ``container 'app': env AWS_ROLE_ARN``."""
    stale: tuple[str, ...] = ()
    """Containers whose role differs from the current one, with both values."""
    injected_before: bool = False
    """The pod carries the webhook's token volume, so it was mutated once."""
    skipped: tuple[str, ...] = ()
    """Containers the pod's skip-containers annotation excludes."""
    warnings: tuple[str, ...] = ()
    """The decision's warnings, as the webhook would return them to ``kubectl``."""
    patch: tuple[Operation, ...] = ()


def check_injection(
    pod: Mapping[str, Any],
    sources: Sources,
    settings: MutationSettings,
) -> InjectionCheck:
    """Compare ``pod`` (as stored by the API server) with what ``decide`` would inject now."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    request = ReviewRequest(
        api_version=None,
        kind=None,
        uid="irsa-webhook-injection-check",
        namespace=str(metadata.get("namespace") or "default"),
        pod=dict(pod),
        service_account=str(spec.get("serviceAccountName") or "default"),
    )
    # The mutation's randomness only spreads token lifetimes; it never decides *whether*.
    decision = decide(request, sources, settings, lambda low, high: high)
    injected_before = any(
        volume.get("name") in (IRSA_VOLUME_NAME, settings.container_credentials_token_volume_name)
        for volume in spec.get("volumes") or []
    )
    found = InjectionCheck(
        InjectionState.NOT_EXPECTED,
        identity=decision.identity,
        injected_before=injected_before,
        skipped=tuple(decision.skipped),
        warnings=tuple(warning.message for warning in decision.warnings),
        patch=tuple(decision.patch),
    )
    if decision.identity is None:
        return found
    stale = _stale_roles(spec, decision.identity, set(decision.skipped))
    if decision.patch:
        missing = describe_patch(decision.patch, spec)
        return replace(found, state=InjectionState.MISSING, missing=missing, stale=stale)
    if stale:
        return replace(found, state=InjectionState.STALE_ROLE, stale=stale)
    return replace(found, state=InjectionState.AS_EXPECTED)


def _stale_roles(spec: Mapping[str, Any], identity: Identity, skipped: set[str]) -> tuple[str, ...]:
    if identity.mode is not Mode.STS_WEB_IDENTITY:
        return ()
    stale = []
    for list_name in ("initContainers", "containers"):
        for container in spec.get(list_name) or []:
            name = container.get("name", "")
            if name in skipped:
                continue
            for variable in container.get("env") or []:
                if variable.get("name") == "AWS_ROLE_ARN" and variable.get("value") != (
                    identity.role_arn
                ):
                    stale.append(
                        f"container {name!r} has AWS_ROLE_ARN {variable.get('value')!r}; the "
                        f"webhook would inject {identity.role_arn!r} now"
                    )
    return tuple(stale)


_CONTAINER_PATH = re.compile(
    r"/spec/(?P<list>initContainers|containers)/(?P<index>\d+)/(?P<field>\w+)"
)


def describe_patch(
    patch: list[Operation] | tuple[Operation, ...], spec: Mapping[str, Any]
) -> tuple[str, ...]:
    """The operations of a patch in words, grouped by object, in the patch's order."""
    parts: dict[str, list[str]] = {}
    for operation in patch:
        path = str(operation.get("path", ""))
        value = operation.get("value")
        items = value if isinstance(value, list) else [value]
        match = _CONTAINER_PATH.match(path)
        if match:
            containers = spec.get(match.group("list")) or []
            index = int(match.group("index"))
            name = containers[index].get("name", "") if index < len(containers) else str(index)
            owner = f"container {name!r}"
            kind = "env" if match.group("field") == "env" else "mount"
        elif path.startswith("/spec"):
            if isinstance(value, dict) and "volumes" in value:
                items = value["volumes"]
            owner, kind = "pod", "volume"
        else:
            owner, kind, items = "pod", "label", [path.rpartition("/")[2].replace("~1", "/")]
        names = [str(item.get("name")) if isinstance(item, dict) else str(item) for item in items]
        parts.setdefault(owner, []).extend(f"{kind} {name}" for name in names)
    return tuple(f"{owner}: {', '.join(what)}" for owner, what in parts.items())


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (``matchLabels`` and ``matchExpressions``, ANDed);
    an empty or absent selector matches everything, as in a webhook's object/namespace selector.
    An operator Kubernetes does not define matches nothing: the API server would have refused it.
    """
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key")
        operator = expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        elif operator == "DoesNotExist":
            ok = not present
        else:
            ok = False
        if not ok:
            return False
    return True
