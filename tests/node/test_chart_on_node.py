"""The Helm chart installed for real on the node: its pods mutate pods that run, whoever creates
them (a Deployment too), a rolling restart of the webhook under a stream of pod creates with
failurePolicy Fail loses none, and upgrade and uninstall leave no pod unmutated, nothing behind."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from nodecluster import NodeCluster, Release, annotated_service_account, webhook_namespace

pytestmark = pytest.mark.timeout(900)

ROLE = "arn:aws:iam::111122223333:role/chart-on-node"
READ_TOKEN = 'cat "$AWS_WEB_IDENTITY_TOKEN_FILE" | wc -c'


@pytest.fixture
def app_namespace(node_cluster: NodeCluster, node_webhook: Release) -> Iterator[str]:
    namespace = webhook_namespace(node_cluster, "chart")
    annotated_service_account(node_cluster, namespace, "app", ROLE)
    yield namespace
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


def test_the_webhook_pods_run_the_dev_image_ready_by_the_charts_probes_without_restarts(
    node_cluster: NodeCluster, node_webhook: Release
) -> None:
    pods = node_cluster.get(
        "pods", "-n", node_webhook.namespace, "-l", "app.kubernetes.io/name=irsa-webhook"
    )["items"]
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["image"] == node_cluster.webhook_image
        assert container["imagePullPolicy"] == "Never"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(
    "security_context",
    [{"runAsUser": 1000, "runAsGroup": 1000}, {"runAsUser": 1000, "fsGroup": 2000}],
    ids=["without-fsGroup", "with-fsGroup"],
)
def test_a_non_root_container_can_read_its_projected_token(
    node_cluster: NodeCluster, app_namespace: str, security_context: dict[str, Any]
) -> None:
    log = node_cluster.run_pod(
        app_namespace,
        node_cluster.busybox_image,
        ["sh", "-c", f"id -u; {READ_TOKEN}"],
        service_account="app",
        security_context={"runAsNonRoot": True, **security_context},
    )
    uid, size = log.split()
    assert uid == "1000"
    assert int(size) > 500


def test_the_pods_of_a_deployment_are_mutated(
    node_cluster: NodeCluster, app_namespace: str
) -> None:
    labels = {"app": "worker"}
    node_cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "worker", "namespace": app_namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "app",
                        "containers": [
                            {
                                "name": "main",
                                "image": node_cluster.busybox_image,
                                "imagePullPolicy": "Never",
                                "command": ["sh", "-c", f"{READ_TOKEN}; sleep 3600"],
                            }
                        ],
                    },
                },
            },
        }
    )
    node_cluster.kubectl(
        "rollout", "status", "deployment/worker", "-n", app_namespace, "--timeout=180s"
    )
    pods = node_cluster.get("pods", "-n", app_namespace, "-l", "app=worker")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert env_of(pod)["AWS_ROLE_ARN"] == ROLE
        assert int(node_cluster.logs(app_namespace, pod["metadata"]["name"])) > 500


class PodStream:
    """Creates pods (server-side dry run: admitted exactly like real ones, but none is stored
    or scheduled) one after another until stopped; records every answer."""

    def __init__(self, cluster: NodeCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.results: list[tuple[int, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with self.cluster.client() as api:
            while not self._stop.is_set():
                body = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"s-{uuid.uuid4().hex[:10]}"},
                    "spec": {
                        "serviceAccountName": "app",
                        "containers": [{"name": "m", "image": self.cluster.busybox_image}],
                    },
                }
                try:
                    response = api.post(
                        f"/api/v1/namespaces/{self.namespace}/pods",
                        params={"dryRun": "All"},
                        json=body,
                    )
                except httpx.HTTPError:
                    self.results.append((0, False))
                    continue
                mutated = response.status_code == 201 and (
                    env_of(response.json()).get("AWS_ROLE_ARN") == ROLE
                )
                self.results.append((response.status_code, mutated))

    def failures(self) -> list[tuple[int, bool]]:
        return [r for r in self.results if r != (201, True)]


def wait_rollout(cluster: NodeCluster, release: Release) -> None:
    cluster.kubectl(
        "rollout",
        "status",
        f"deployment/{release.deployment}",
        "-n",
        release.namespace,
        "--timeout=240s",
    )


def test_a_rolling_restart_of_the_webhook_under_pod_creates_with_failure_policy_fail_loses_none(
    node_cluster: NodeCluster, node_webhook: Release, app_namespace: str
) -> None:
    node_webhook.upgrade("--set", "mutatingWebhook.failurePolicy=Fail")
    try:
        with PodStream(node_cluster, app_namespace) as stream:
            time.sleep(2)
            node_cluster.kubectl(
                "rollout",
                "restart",
                f"deployment/{node_webhook.deployment}",
                "-n",
                node_webhook.namespace,
            )
            wait_rollout(node_cluster, node_webhook)
            time.sleep(2)
        assert len(stream.results) > 20
        assert stream.failures() == []
    finally:
        node_webhook.upgrade()


def test_helm_upgrade_under_pod_creates_leaves_no_pod_unmutated(
    node_cluster: NodeCluster, node_webhook: Release, app_namespace: str
) -> None:
    with PodStream(node_cluster, app_namespace) as stream:
        node_webhook.upgrade("--set", "config.defaultAwsRegion=eu-west-1")
        wait_rollout(node_cluster, node_webhook)
    node_webhook.upgrade()
    assert len(stream.results) > 20
    assert stream.failures() == []


def test_helm_uninstall_leaves_nothing_behind(node_cluster: NodeCluster) -> None:
    release = Release(node_cluster, f"gone-{uuid.uuid4().hex[:6]}", "irsa-uninstall")
    release.install("--set", "replicaCount=1")
    selector = f"app.kubernetes.io/instance={release.name}"
    kinds = "deployments,replicasets,pods,services,secrets,configmaps,serviceaccounts,roles"
    kinds += ",rolebindings,poddisruptionbudgets"
    assert node_cluster.get(kinds, "-n", release.namespace, "-l", selector)["items"]
    release.uninstall()
    deadline = time.monotonic() + 120
    while node_cluster.get(kinds, "-n", release.namespace, "-l", selector)["items"]:
        assert time.monotonic() < deadline, "the release's objects stayed after helm uninstall"
        time.sleep(0.5)
    cluster_kinds = "mutatingwebhookconfigurations,clusterroles,clusterrolebindings"
    assert node_cluster.get(cluster_kinds, "-l", selector)["items"] == []
    node_cluster.kubectl("delete", "namespace", release.namespace, "--wait=false")


def dry_run_pod(cluster: NodeCluster, namespace: str) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "serviceAccountName": "app",
            "containers": [{"name": "m", "image": cluster.busybox_image}],
        },
    }
    with cluster.client() as api:
        response = api.post(
            f"/api/v1/namespaces/{namespace}/pods", params={"dryRun": "All"}, json=body
        )
    assert response.status_code == 201, response.text
    pod: dict[str, Any] = response.json()
    return pod


@pytest.mark.parametrize("mode", ["existingSecret", "manual"])
def test_the_chart_serves_a_certificate_it_is_given(
    node_cluster: NodeCluster, node_webhook: Release, tmp_path: Path, mode: str
) -> None:
    """The PKI modes that work offline besides the default self-managed one (node_webhook):
    a kubernetes.io/tls Secret of the user's (existingSecret) and cert/key in the values
    (manual). cert-manager cannot be had here: no registry serves its images or manifests."""
    suffix = uuid.uuid4().hex[:6]
    release = Release(node_cluster, f"pki-{suffix}", f"irsa-pki-{suffix}", f"irsa-pki-{suffix}")
    ca = trustme.CA()
    leaf = ca.issue_cert(f"{release.deployment}.{release.namespace}.svc")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "tls.crt").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "tls.key").write_bytes(leaf.private_key_pem.bytes())
    values = ["--set-file", f"pki.caBundle={tmp_path / 'ca.pem'}", "--set", "replicaCount=1"]
    if mode == "existingSecret":
        node_cluster.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": release.namespace}}
        )
        node_cluster.kubectl(
            "create",
            "secret",
            "tls",
            "mine",
            "-n",
            release.namespace,
            f"--cert={tmp_path / 'tls.crt'}",
            f"--key={tmp_path / 'tls.key'}",
        )
        values += ["--set", "pki.existingSecret=mine"]
    else:
        values += [
            "--set-file",
            f"pki.cert={tmp_path / 'tls.crt'}",
            "--set-file",
            f"pki.key={tmp_path / 'tls.key'}",
        ]
    release.install(*values)
    try:
        namespace = webhook_namespace(node_cluster, "pki", release.selector_label)
        annotated_service_account(node_cluster, namespace, "app", ROLE)
        (pod,) = node_cluster.get(
            "pods", "-n", release.namespace, "-l", f"app.kubernetes.io/instance={release.name}"
        )["items"]
        secrets = [v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v]
        assert secrets == (["mine"] if mode == "existingSecret" else [f"{release.deployment}-cert"])
        # The API server called the release's webhook and verified it with our CA.
        deadline = time.monotonic() + 60
        while env_of(dry_run_pod(node_cluster, namespace)).get("AWS_ROLE_ARN") != ROLE:
            assert time.monotonic() < deadline, f"{mode}: the release never mutated a pod"
            time.sleep(0.5)
        node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    finally:
        release.uninstall()
        node_cluster.kubectl("delete", "namespace", release.namespace, "--wait=false")
