"""End-to-end fixtures: a control plane per session and the webhook serving it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from aws_emulator import MotoServer, start_moto
from cluster import (
    REPO,
    WEBHOOK_NAMESPACE,
    WEBHOOK_SERVICE_ACCOUNT,
    ControlPlane,
    Webhook,
    chart_rbac,
    leaked_secrets,
    make_namespace,
    read_env,
    service_account,
    start_webhook,
    token_kubeconfig,
    wait_until_mutating,
    webhook_configuration,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    if shutil.which("go") is None and not os.environ.get("IRSA_TESTENV_PREBUILT"):
        pytest.fail(
            "Go is not installed: the end-to-end tests build kube-apiserver and etcd from Go "
            "modules (hack/testenv); install Go >= 1.26, or run 'hack/test.sh --unit'"
        )
    directory = tmp_path_factory.mktemp("control-plane")
    script = str(REPO / "hack" / "control-plane.sh")
    started = subprocess.run(
        [script, "start", str(directory)], capture_output=True, text=True, timeout=3600
    )
    if started.returncode != 0:
        pytest.fail(f"hack/control-plane.sh start failed:\n{started.stderr[-3000:]}")
    try:
        yield ControlPlane(directory, read_env(directory / "env"))
    finally:
        subprocess.run([script, "stop", str(directory)], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def webhook(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    directory = tmp_path_factory.mktemp("webhook")
    plane = control_plane
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WEBHOOK_NAMESPACE}})
    plane.apply(*chart_rbac(plane, WEBHOOK_NAMESPACE))
    kubeconfig = token_kubeconfig(
        plane, directory / "kubeconfig", WEBHOOK_NAMESPACE, WEBHOOK_SERVICE_ACCOUNT
    )
    running = start_webhook(plane, directory, kubeconfig)
    plane.apply(webhook_configuration("irsa", running.url, running.ca_bundle))
    namespace = make_namespace(plane, "probe")
    plane.apply(
        service_account(
            namespace,
            "probe",
            {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/probe"},
        )
    )
    wait_until_mutating(plane, namespace, "probe")
    try:
        yield running
    finally:
        plane.kubectl("delete", "mutatingwebhookconfiguration", "irsa", check=False)
        running.process.terminate()
        running.process.wait(timeout=30)
        # Everything the session's webhook logged across the whole e2e run, shutdown included.
        assert leaked_secrets(plane, running) == [], "secrets in the e2e run's webhook log"


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server over https on loopback, AWS-managed policies loaded."""
    with start_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server
