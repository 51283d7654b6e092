"""The reconciler on the real node: workloads that started without the webhook get found, reported
and (in restart mode) rolled into mutated pods by the controllers; nothing rolls while the API
server is not reaching the webhook. One release of the chart with ``reconciler.mode`` set, in
namespaces of its own label, so the session's other webhook release never sees these pods."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from nodecluster import NodeCluster, Release, annotated_service_account, webhook_namespace

pytestmark = pytest.mark.timeout(900)

LABEL = "irsa-node-reconcile"
ROLE = "arn:aws:iam::111122223333:role/reconcile-node"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FAST = ("--set", "reconciler.interval=2s")


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def sleeper(cluster: NodeCluster, account: str) -> dict[str, Any]:
    return {
        "serviceAccountName": account,
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "app",
                "image": cluster.busybox_image,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }
        ],
    }


def deployment(cluster: NodeCluster, namespace: str, name: str, account: str) -> None:
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": sleeper(cluster, account),
                },
            },
        }
    )


def bare_pod(cluster: NodeCluster, namespace: str, name: str, account: str) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": sleeper(cluster, account),
        }
    )


def pods_of(cluster: NodeCluster, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return items


def has_role(pod: dict[str, Any]) -> bool:
    env = pod["spec"]["containers"][0].get("env") or []
    return any(item["name"] == "AWS_ROLE_ARN" and item.get("value") == ROLE for item in env)


def running(cluster: NodeCluster, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = pods_of(cluster, namespace, app)
    return [pod for pod in pods if pod.get("status", {}).get("phase") == "Running"]


def events_on(cluster: NodeCluster, namespace: str, pod: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}"
    )["items"]
    return [
        event for event in items if event.get("reportingComponent") == "irsa-webhook-reconciler"
    ]


def wait_for_events(cluster: NodeCluster, namespace: str, pod: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_for(
        lambda: events_on(cluster, namespace, pod), f"an Event on {pod}"
    )
    return found


def restarted_at(cluster: NodeCluster, namespace: str, name: str) -> str | None:
    template = cluster.get("deployment", name, "-n", namespace)["spec"]["template"]
    value: str | None = (template["metadata"].get("annotations") or {}).get(RESTARTED_AT)
    return value


def leader_metrics(release: Release) -> str:
    """/metrics of the webhook replica that holds the reconciler Lease (through the API server's
    pod proxy), or "" when none holds it yet."""
    pods = release.cluster.get(
        "pods", "-n", release.namespace, "-l", "app.kubernetes.io/name=irsa-webhook"
    )["items"]
    for pod in pods:
        name = pod["metadata"]["name"]
        answer = release.cluster.kubectl(
            "get",
            "--raw",
            f"/api/v1/namespaces/{release.namespace}/pods/{name}:9999/proxy/metrics",
            check=False,
        )
        if re.search(r"^irsa_webhook_reconcile_leader 1(\.0)?$", answer.stdout, re.MULTILINE):
            return answer.stdout
    return ""


def missing(release: Release, namespace: str, reason: str) -> float:
    pattern = (
        rf'^irsa_webhook_reconcile_pods_missing_injection\{{namespace="{namespace}",'
        rf'reason="{reason}"\}} (\S+)$'
    )
    match = re.search(pattern, leader_metrics(release), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def release(node_cluster: NodeCluster) -> Iterator[Release]:
    """Not installed yet: the tests first create workloads while no webhook is registered."""
    release = Release(node_cluster, "recon", f"recon-{uuid.uuid4().hex[:6]}", selector_label=LABEL)
    try:
        yield release
    finally:
        release.uninstall()
        node_cluster.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


def test_workloads_started_without_the_webhook_are_reported_then_rolled_into_mutated_pods(
    node_cluster: NodeCluster, release: Release
) -> None:
    cluster = node_cluster
    namespace = webhook_namespace(cluster, "recon-app", LABEL)
    annotated_service_account(cluster, namespace, "app", ROLE)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "late", "namespace": namespace},
        }
    )
    # No webhook is registered for this label yet: everything here starts without credentials.
    deployment(cluster, namespace, "web", "app")
    bare_pod(cluster, namespace, "lonely", "app")
    bare_pod(cluster, namespace, "early", "late")
    (web,) = wait_for(lambda: running(cluster, namespace, "web"), "the Deployment's pod")
    assert not has_role(web)
    for name in ("lonely", "early"):
        assert not has_role(cluster.wait_for_pod(namespace, name, {"Running"}))
    # The ServiceAccount of "early" is annotated only after its pod started.
    annotated_service_account(cluster, namespace, "late", ROLE)

    release.install("--set", "reconciler.mode=report", *FAST)
    web_name = web["metadata"]["name"]
    for name in (web_name, "lonely", "early"):
        (event,) = wait_for_events(cluster, namespace, name)
        assert event["reason"] == "IRSAInjectionMissing"
    assert "kubectl rollout restart" in events_on(cluster, namespace, web_name)[0]["message"]
    assert wait_for(lambda: missing(release, namespace, "token-volume") == 3, "the metric") is True
    assert restarted_at(cluster, namespace, "web") is None, "report mode rolled the Deployment"

    release.upgrade("--set", "reconciler.mode=restart", *FAST)
    wait_for(lambda: restarted_at(cluster, namespace, "web"), "the Deployment to be restarted")
    (rolled,) = wait_for(
        lambda: (
            [pod for pod in running(cluster, namespace, "web") if has_role(pod)]
            if len(pods_of(cluster, namespace, "web")) == 1
            else []
        ),
        "the rolled Deployment's only pod to run with its role",
    )
    assert rolled["metadata"]["name"] != web_name
    # The bare pods keep their Event and are not touched: nobody could recreate them.
    for name in ("lonely", "early"):
        pod = cluster.get("pod", name, "-n", namespace)
        assert pod["metadata"]["uid"]
        assert not has_role(pod)
    wait_for(lambda: missing(release, namespace, "token-volume") == 2, "the metric to drop to 2")


def test_nothing_is_restarted_while_the_api_server_does_not_reach_the_webhook(
    node_cluster: NodeCluster, release: Release
) -> None:
    cluster = node_cluster
    release.install(
        "--set", "reconciler.mode=restart", "--set", "mutatingWebhook.failurePolicy=Ignore", *FAST
    )
    configuration = f"{release.deployment}"
    registration = cluster.get("mutatingwebhookconfiguration", configuration)
    port = registration["webhooks"][0]["clientConfig"]["service"].get("port", 443)
    # The webhook keeps running and ready, but the API server now calls a port nothing serves:
    # with failurePolicy Ignore it admits every pod without credentials (fails open).
    patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/service/port", "value": 1}]
    cluster.kubectl(
        "patch",
        "mutatingwebhookconfiguration",
        configuration,
        "--type=json",
        "-p",
        orjson.dumps(patch).decode(),
    )
    try:
        namespace = webhook_namespace(cluster, "recon-down", LABEL)
        annotated_service_account(cluster, namespace, "app", ROLE)
        deployment(cluster, namespace, "web", "app")
        (web,) = wait_for(lambda: running(cluster, namespace, "web"), "the Deployment's pod")
        assert not has_role(web)
        wait_for(lambda: events_on(cluster, namespace, web["metadata"]["name"]), "an Event")
        held = r'^irsa_webhook_reconcile_restarts_held\{reason="recent-unmutated-pods"\} 1\.0$'
        wait_for(lambda: re.search(held, leader_metrics(release), re.MULTILINE), "the hold")
        assert restarted_at(cluster, namespace, "web") is None
    finally:
        restore = [
            {"op": "replace", "path": "/webhooks/0/clientConfig/service/port", "value": port}
        ]
        cluster.kubectl(
            "patch",
            "mutatingwebhookconfiguration",
            configuration,
            "--type=json",
            "-p",
            orjson.dumps(restore).decode(),
            check=False,
        )
