"""Helpers for tests on the real node: the cluster (a ControlPlane with the node's env), pods
that run, and the host-state snapshot the node must leave unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import REPO, ControlPlane, read_env

HACK = REPO / "hack"


def _localnode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localnode", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(HACK), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def why_no_node() -> str | None:
    result = _localnode("preflight")
    return result.stdout.strip() or None if result.returncode != 0 else None


def host_snapshot() -> dict[str, Any]:
    result = _localnode("snapshot")
    assert result.returncode == 0, result.stderr
    snapshot: dict[str, Any] = json.loads(result.stdout)
    return snapshot


def host_differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per kind of host state (interfaces, routes, mounts, iptables, sysctls, cgroups, paths):
    what is new after, and what is gone."""
    changes = {}
    for kind in before.keys() | after.keys():
        old = {json.dumps(x) for x in before.get(kind, [])}
        new = {json.dumps(x) for x in after.get(kind, [])}
        if old != new:
            changes[kind] = {"added": sorted(new - old), "removed": sorted(old - new)}
    return changes


@dataclass
class NodeCluster(ControlPlane):
    """The node's cluster: everything of ControlPlane, plus the node's images and chart values."""

    @classmethod
    def at(cls, directory: Path) -> NodeCluster:
        return cls(directory, read_env(directory / "env"))

    @property
    def node_name(self) -> str:
        return self.env["NODE_NAME"]

    @property
    def webhook_image(self) -> str:
        return self.env["WEBHOOK_IMAGE"]

    @property
    def lab_image(self) -> str:
        return self.env["LAB_IMAGE"]

    @property
    def busybox_image(self) -> str:
        return self.env["BUSYBOX_IMAGE"]

    @property
    def chart_values(self) -> Path:
        return Path(self.env["CHART_VALUES"])

    def wait_for_pod(
        self, namespace: str, name: str, phases: set[str], timeout: float = 120
    ) -> Any:
        """The pod once its phase is one of PHASES; fails early on Failed when not asked for."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.get("pod", "-n", namespace, name)
            phase = pod.get("status", {}).get("phase")
            if phase in phases:
                return pod
            if phase == "Failed" or time.monotonic() >= deadline:
                described = self.kubectl("describe", "pod", "-n", namespace, name, check=False)
                raise AssertionError(f"pod {namespace}/{name} is {phase}:\n{described.stdout}")
            time.sleep(0.2)

    def logs(self, namespace: str, name: str) -> str:
        return self.kubectl("logs", "-n", namespace, name).stdout

    def run_pod(
        self,
        namespace: str,
        image: str,
        command: list[str],
        *,
        service_account: str | None = None,
        security_context: dict[str, Any] | None = None,
        timeout: float = 120,
    ) -> str:
        """Run COMMAND in a fresh pod to completion; return its log (fails if it fails)."""
        name = f"run-{uuid.uuid4().hex[:8]}"
        container: dict[str, Any] = {
            "name": "main",
            "image": image,
            "imagePullPolicy": "Never",
            "command": command,
        }
        spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
        if service_account:
            spec["serviceAccountName"] = service_account
        if security_context:
            spec["securityContext"] = security_context
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
        )
        self.wait_for_pod(namespace, name, {"Succeeded"}, timeout)
        return self.logs(namespace, name)


# The chart's release on the node mutates only namespaces with this label, so that other tests
# sharing the node are untouched unless they ask for it.
WEBHOOK_SELECTOR_LABEL = "irsa-node-webhook"
CHART = REPO / "charts" / "irsa-webhook"


def helm(
    cluster: NodeCluster, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    home = cluster.directory / "helm"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    command = [cluster.env["HELM"], *args, "--kubeconfig", cluster.kubeconfig]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result


@dataclass
class Release:
    """A release of charts/irsa-webhook on the node."""

    cluster: NodeCluster
    name: str
    namespace: str
    selector_label: str = WEBHOOK_SELECTOR_LABEL

    @property
    def deployment(self) -> str:
        return f"{self.name}-irsa-webhook"

    def values(self, *extra: str) -> list[str]:
        return [
            "-f",
            str(self.cluster.chart_values),
            "--set-string",
            f"mutatingWebhook.namespaceSelector.matchLabels.{self.selector_label}=enabled",
            *extra,
        ]

    def install(self, *extra: str) -> None:
        helm(
            self.cluster,
            "install",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            "240s",
            *self.values(*extra),
        )

    def upgrade(self, *extra: str) -> None:
        helm(
            self.cluster,
            "upgrade",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            "--wait",
            "--timeout",
            "240s",
            *self.values(*extra),
        )

    def uninstall(self) -> None:
        helm(self.cluster, "uninstall", self.name, "-n", self.namespace, "--wait")


def webhook_namespace(
    cluster: NodeCluster, prefix: str, label: str = WEBHOOK_SELECTOR_LABEL
) -> str:
    """A fresh namespace whose pods the node's webhook release (or the one of LABEL) mutates."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {label: "enabled"}},
        }
    )
    # The controller-manager gives each namespace its default ServiceAccount a moment later.
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {name}"
        time.sleep(0.2)
    return name


def annotated_service_account(cluster: NodeCluster, namespace: str, name: str, role: str) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"eks.amazonaws.com/role-arn": role},
            },
        }
    )
