"""The Kubernetes side of a binding: the ServiceAccount (and, as eksctl does, its namespace)
with the annotations and labels it must carry. Only the keys named are touched; everything
else on an existing ServiceAccount is kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irsa_webhook.aws.changes import Plan, json_diff
from irsa_webhook.kubeclient import Cluster

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "irsa-webhook"


def service_account_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"


def plan_service_account(
    cluster: Cluster,
    namespace: str,
    name: str,
    annotations: Mapping[str, str | None],
    labels: Mapping[str, str | None],
) -> Plan:
    """What makes ``namespace/name`` carry ``annotations`` and ``labels`` (a None value: the key
    must be absent). A missing ServiceAccount is created, labelled as ours."""
    plan = Plan()
    where = f"ServiceAccount {namespace}/{name}"
    current = cluster.get(service_account_path(namespace, name))
    if current is None:
        if all(value is None for value in annotations.values()):
            plan.keep(f"{where} (absent)")
            return plan
        if cluster.get(f"/api/v1/namespaces/{namespace}") is None:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace},
            }
            plan.add(
                f"create namespace {namespace}",
                lambda: _create(cluster, "/api/v1/namespaces", body),
            )
        created: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                **{k: v for k, v in labels.items() if v is not None},
            },
            "annotations": {k: v for k, v in annotations.items() if v is not None},
        }
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": created}
        plan.add(
            f"create {where}",
            lambda: _create(cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts", account),
            json_diff(None, created, "metadata"),
        )
        return plan
    metadata: dict[str, Any] = current.get("metadata") or {}
    patch: dict[str, dict[str, str | None]] = {}
    for field, wanted in (("annotations", annotations), ("labels", labels)):
        present = metadata.get(field) or {}
        changed = {key: value for key, value in wanted.items() if present.get(key) != value}
        if changed:
            patch[field] = changed
    if not patch:
        plan.keep(where)
        return plan
    before = {
        field: {key: (metadata.get(field) or {}).get(key) for key in patch[field]}
        for field in patch
    }
    plan.add(
        f"update {where}: {', '.join(f'{f} {k}' for f in patch for k in patch[f])}",
        lambda: _patch(cluster, service_account_path(namespace, name), {"metadata": patch}),
        json_diff(before, patch, "metadata"),
    )
    return plan


def _create(cluster: Cluster, path: str, body: dict[str, Any]) -> None:
    cluster.create(path, body)


def _patch(cluster: Cluster, path: str, body: dict[str, Any]) -> None:
    cluster.merge_patch(path, body)
