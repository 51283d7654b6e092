"""Which pods the API server sends to the webhook: its entry in a MutatingWebhookConfiguration.

A pod is sent to a webhook only when one of the entry's rules covers a Pod CREATE, its
``namespaceSelector`` matches the labels of the pod's namespace, its ``objectSelector`` matches
the pod's labels, and its ``matchConditions`` (CEL) hold. ``doctor`` uses this to explain why a
pod was not mutated; the reconciler, to leave alone the pods the webhook is never sent. Pure:
the callers read the configuration and the namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from irsa_webhook.injection_check import selector_matches

WEBHOOK_NAME = "pod-identity-webhook.amazonaws.com"
"""The webhook's name in its MutatingWebhookConfiguration (the chart keeps the reference's)."""

CONFIGURATIONS_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@dataclass(frozen=True, slots=True)
class WebhookRegistration:
    """The part of a webhook entry that decides whether a pod is sent to it."""

    name: str
    failure_policy: str
    object_selector: Mapping[str, Any] | None
    namespace_selector: Mapping[str, Any] | None
    match_conditions: tuple[str, ...] = ()
    """The names of the entry's CEL conditions, which only the API server can evaluate."""
    covers_pod_create: bool = True
    """One of the entry's rules matches a CREATE of a v1 Pod."""


def find_webhook(
    configuration: Mapping[str, Any], name: str = WEBHOOK_NAME
) -> Mapping[str, Any] | None:
    """The entry called ``name`` in a configuration; else its only entry (a hand-written
    registration may have renamed it); else None."""
    webhooks = [webhook for webhook in configuration.get("webhooks") or () if webhook]
    for webhook in webhooks:
        if webhook.get("name") == name:
            return dict(webhook)
    return dict(webhooks[0]) if len(webhooks) == 1 else None


def registration_of(webhook: Mapping[str, Any]) -> WebhookRegistration:
    return WebhookRegistration(
        name=str(webhook.get("name")),
        failure_policy=str(webhook.get("failurePolicy") or "Fail"),
        object_selector=webhook.get("objectSelector"),
        namespace_selector=webhook.get("namespaceSelector"),
        match_conditions=tuple(
            str(condition.get("name") or "") for condition in webhook.get("matchConditions") or ()
        ),
        covers_pod_create=any(_covers_pod_create(rule) for rule in webhook.get("rules") or ()),
    )


def _covers_pod_create(rule: Mapping[str, Any]) -> bool:
    def has(field: str, *wanted: str) -> bool:
        values: Iterable[str] = rule.get(field) or ()
        return any(value in wanted for value in values)

    # "pods/*" names subresources only; "*" every resource but no subresource.
    return (
        has("operations", "CREATE", "*")
        and has("apiGroups", "", "*")
        and has("apiVersions", "v1", "*")
        and has("resources", "pods", "*", "*/*")
        and str(rule.get("scope") or "*") in ("*", "Namespaced")
    )


def sends_pod(
    registration: WebhookRegistration,
    pod_labels: Mapping[str, str],
    namespace_labels: Mapping[str, str],
) -> bool:
    """The API server sends a CREATE of a pod with these labels, in a namespace with these, to
    the webhook (``match_conditions`` aside: they are not evaluated here).

    Kubernetes matches the objectSelector against the pod's labels as the webhook is called; the
    stored pod's labels differ from those only if a later webhook or an update changed them.
    """
    return (
        registration.covers_pod_create
        and selector_matches(registration.namespace_selector, namespace_labels)
        and selector_matches(registration.object_selector, pod_labels)
    )
