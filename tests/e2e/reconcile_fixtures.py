"""The reconciler's end-to-end pieces: the chart's objects for a reconciler mode (its registration
among them), a webhook process running with them, and hand-made owner chains (no controllers run on
the API-server-only plane)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from cluster import REPO, ControlPlane, Webhook, start_webhook, token_kubeconfig

ROLE = "arn:aws:iam::111122223333:role/reconcile-e2e"
EVENT_COMPONENT = "irsa-webhook-reconciler"
CHART_KINDS = {
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Lease",
    "MutatingWebhookConfiguration",
}
SCOPE_LABEL = "irsa-reconcile-e2e"
"""The release's registration selects the namespaces whose label has the release namespace as its
value (``select``): pods of the other tests are never sent to it."""
OPT_OUT_LABEL = "irsa-reconcile-e2e-opt-out"
"""Pods with this label are left out by the registration's objectSelector."""
NOWHERE = "https://127.0.0.1:1/mutate"
"""Where the registration sends pods: nothing listens, so the API server fails open at once
(failurePolicy Ignore) and the pods it selects are stored unmutated, as after a webhook outage."""


@dataclass(frozen=True)
class Release:
    """The chart's objects for one reconciler mode, installed in a namespace of their own."""

    mode: str
    namespace: str

    @property
    def fullname(self) -> str:
        # One release name per mode: their cluster-scoped RBAC objects must not overwrite each
        # other's bindings while both are installed.
        return f"reconcile-{self.mode}-irsa-webhook"

    @property
    def lease(self) -> str:
        return f"{self.fullname}-reconciler"

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"


def chart_objects(plane: ControlPlane, release: Release) -> list[dict[str, Any]]:
    """The ServiceAccount, RBAC, Lease and registration the chart renders for the release's mode.
    The registration is the chart's, with a namespaceSelector of this release's own and an
    objectSelector that leaves out ``OPT_OUT_LABEL``; it points ``NOWHERE``."""
    rendered = subprocess.run(
        [
            plane.env["HELM"],
            "template",
            f"reconcile-{release.mode}",
            str(REPO / "charts" / "irsa-webhook"),
            "--namespace",
            release.namespace,
            "--set",
            f"reconciler.mode={release.mode}",
            "--set",
            f"mutatingWebhook.namespaceSelector.matchLabels.{SCOPE_LABEL}={release.namespace}",
            "--set",
            f"mutatingWebhook.objectSelector.matchExpressions[0].key={OPT_OUT_LABEL}",
            "--set",
            "mutatingWebhook.objectSelector.matchExpressions[0].operator=DoesNotExist",
            "--set",
            f"mutatingWebhook.url={NOWHERE}",
            "--set-file",
            f"pki.caBundle={plane.ca_cert}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc.get("kind") in CHART_KINDS]


def install_rbac(plane: ControlPlane, mode: str) -> Release:
    """A fresh release namespace holding the chart's objects for ``mode``. Their cluster-scoped
    objects are one per mode: the last release installed of a mode owns its registration."""
    release = Release(mode, f"reconcile-sys-{uuid.uuid4().hex[:6]}")
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": release.namespace}})
    plane.apply(*chart_objects(plane, release))
    return release


def select(plane: ControlPlane, namespace: str, release: Release) -> None:
    """Label ``namespace`` so that the release's registration selects it."""
    plane.kubectl(
        "label", "namespace", namespace, f"{SCOPE_LABEL}={release.namespace}", "--overwrite"
    )


def start_reconciler(plane: ControlPlane, directory: Path, release: Release, *args: str) -> Webhook:
    """``irsa-webhook serve --reconcile=<mode>`` with the chart ServiceAccount's token (exactly
    the chart's RBAC for that mode), a pass a second, and the chart's Lease."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = token_kubeconfig(
        plane, directory / "kubeconfig", release.namespace, release.fullname
    )
    return start_webhook(
        plane,
        directory,
        kubeconfig,
        f"--reconcile={release.mode}",
        "--reconcile-interval=1s",
        f"--reconcile-lease-name={release.lease}",
        f"--reconcile-webhook-configuration={release.fullname}",
        "--reconcile-lease-duration=3s",
        f"--namespace={release.namespace}",
        *args,
    )


def create(plane: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    result = plane.kubectl("create", "-o", "json", "-f", "-", stdin=orjson.dumps(body).decode())
    stored: dict[str, Any] = orjson.loads(result.stdout)
    return stored


def pod_spec(account: str) -> dict[str, Any]:
    return {
        "serviceAccountName": account,
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
    }


def reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }


def owned_pod(
    plane: ControlPlane,
    namespace: str,
    name: str,
    account: str,
    owner: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner is not None:
        metadata["ownerReferences"] = [reference(owner)]
    return create(
        plane, {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec(account)}
    )


def deployment_chain(
    plane: ControlPlane, namespace: str, name: str, account: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Deployment, its ReplicaSet and one pod, linked as the controllers would link them."""
    labels = {"app": name}
    deployment = create(
        plane,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec(account)},
            },
        },
    )
    template_hash = "5d8f7c9b4"
    replica_set = create(
        plane,
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{template_hash}",
                "namespace": namespace,
                "ownerReferences": [reference(deployment)],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {**labels, "pod-template-hash": template_hash}},
                "template": {
                    "metadata": {"labels": {**labels, "pod-template-hash": template_hash}},
                    "spec": pod_spec(account),
                },
            },
        },
    )
    pod = owned_pod(
        plane,
        namespace,
        f"{name}-{template_hash}-x7k2p",
        account,
        replica_set,
        {**labels, "pod-template-hash": template_hash},
    )
    return deployment, pod


def job_with_pod(
    plane: ControlPlane, namespace: str, name: str, account: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    job = create(
        plane,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {**pod_spec(account), "restartPolicy": "Never"}}},
        },
    )
    labels = job["spec"]["template"]["metadata"]["labels"]
    return job, owned_pod(plane, namespace, f"{name}-q8v4d", account, job, labels)


def events_on(plane: ControlPlane, namespace: str, pod_name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = plane.get(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod_name}"
    )["items"]
    return [event for event in events if event.get("reportingComponent") == EVENT_COMPONENT]


def restarted_at(plane: ControlPlane, kind: str, namespace: str, name: str) -> str | None:
    template = plane.get(kind, name, "-n", namespace)["spec"]["template"]
    value: str | None = (template["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/restartedAt"
    )
    return value


def metric(webhook: Webhook, name: str, **labels: str) -> float | None:
    """One sample of the webhook's /metrics, or None when it has no such series."""
    selector = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.compile(
        rf"^{re.escape(name)}(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$", re.MULTILINE
    )
    for match in pattern.finditer(webhook.metrics()):
        found = ",".join(sorted((match.group("labels") or "").split(",")))
        if found == ",".join(sorted(selector.split(","))) or (not labels and not found):
            return float(match.group("value"))
    return None


def passes(webhook: Webhook) -> float:
    return metric(webhook, "irsa_webhook_reconcile_passes_total", result="ok") or 0.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def wait_for_passes(webhook: Webhook, count: int) -> None:
    """Until ``count`` more passes have completed than now."""
    target = passes(webhook) + count
    wait_for(lambda: passes(webhook) >= target, f"{count} reconcile passes")
