"""The reconciler against the real API server (no controllers here: owner chains are made by hand,
and a restart is seen as the rollout-restart annotation on the Deployment's template). Each release
installs the chart's registration, selecting the namespaces labelled for it and pointing nowhere,
so the pods it selects are stored unmutated (the API server fails open) and only those count."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reconcile_fixtures import (
    OPT_OUT_LABEL,
    ROLE,
    Release,
    deployment_chain,
    events_on,
    install_rbac,
    job_with_pod,
    metric,
    owned_pod,
    restarted_at,
    select,
    start_reconciler,
    wait_for,
    wait_for_passes,
)

from cluster import (
    ControlPlane,
    Webhook,
    make_namespace,
    service_account,
    token_kubeconfig,
    wait_until_mutating,
)
from irsa_webhook.kubeapi import KubeApi
from irsa_webhook.leader import LeaseElector

pytestmark = pytest.mark.timeout(180)

MISSING = "irsa_webhook_reconcile_pods_missing_injection"


def app_namespace(plane: ControlPlane, release: Release | None) -> str:
    """A namespace no webhook mutates in, so its pods are created unmutated; the release's
    registration selects it when ``release`` is given, and it holds an annotated ServiceAccount."""
    namespace = f"reconcile-app-{uuid.uuid4().hex[:6]}"
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    if release is not None:
        select(plane, namespace, release)
    plane.apply(
        service_account(namespace, "app", {"eks.amazonaws.com/role-arn": ROLE}),
        service_account(namespace, "plain"),
    )
    return namespace


def wait_for_events(plane: ControlPlane, namespace: str, pod: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_for(
        lambda: events_on(plane, namespace, pod), f"an Event on {pod}"
    )
    return found


def stop(webhook: Webhook) -> None:
    webhook.process.terminate()
    webhook.process.wait(timeout=30)


@pytest.fixture
def restart_mode(control_plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[str, str, Webhook]]:
    """Unmutated workloads of every owner kind, created before a restart-mode webhook starts;
    and an unmutated Deployment of an annotated ServiceAccount in a namespace the registration
    does not select (the returned second namespace)."""
    plane = control_plane
    system = install_rbac(plane, "restart")
    excluded = app_namespace(plane, None)
    deployment_chain(plane, excluded, "csi", "app")
    namespace = app_namespace(plane, system)
    deployment_chain(plane, namespace, "web", "app")
    job_with_pod(plane, namespace, "backup", "app")
    owned_pod(plane, namespace, "lonely", "app")
    owned_pod(plane, namespace, "unannotated", "plain")
    owned_pod(
        plane,
        namespace,
        "skipped",
        "app",
        labels={"eks.amazonaws.com/skip-pod-identity-webhook": "true"},
    )
    webhook = start_reconciler(plane, tmp_path / "webhook", system)
    try:
        yield namespace, excluded, webhook
    finally:
        stop(webhook)


def test_pods_that_missed_their_injection_get_one_event_each_and_are_counted(
    control_plane: ControlPlane, restart_mode: tuple[str, str, Webhook]
) -> None:
    plane = control_plane
    namespace, excluded, webhook = restart_mode
    missed = ("web-5d8f7c9b4-x7k2p", "backup-q8v4d", "lonely")
    events = {name: wait_for_events(plane, namespace, name) for name in missed}
    (web,) = events["web-5d8f7c9b4-x7k2p"]
    assert web["type"] == "Warning"
    assert web["reason"] == "IRSAInjectionMissing"
    assert f"role {ROLE}" in web["message"]
    assert f"kubectl rollout restart -n {namespace} deployment/web" in web["message"]
    assert "delete Job backup and create it again" in events["backup-q8v4d"][0]["message"]
    assert "It has no owner" in events["lonely"][0]["message"]
    assert metric(webhook, MISSING, namespace=namespace, reason="token-volume") == 3
    assert metric(webhook, MISSING, namespace=namespace, reason="credentials-env") == 3

    wait_for_passes(webhook, 3)
    for name in missed:
        (event,) = events_on(plane, namespace, name)
        assert event.get("count", 1) == 1, "the Event was repeated"
    for name in ("unannotated", "skipped"):
        assert events_on(plane, namespace, name) == []
    assert events_on(plane, excluded, "csi-5d8f7c9b4-x7k2p") == []
    assert metric(webhook, MISSING, namespace=excluded, reason="token-volume") is None


def test_restart_mode_rolls_the_deployment_and_leaves_the_job_alone(
    control_plane: ControlPlane, restart_mode: tuple[str, str, Webhook]
) -> None:
    plane = control_plane
    namespace, excluded, webhook = restart_mode
    wait_for(lambda: restarted_at(plane, "deployment", namespace, "web"), "the Deployment rolled")
    wait_for_passes(webhook, 2)
    assert restarted_at(plane, "job", namespace, "backup") is None
    assert restarted_at(plane, "deployment", excluded, "csi") is None, "rolled for nothing"
    assert (
        metric(
            webhook, "irsa_webhook_reconcile_restarts_total", kind="Deployment", result="restarted"
        )
        == 1
    ), "restarted more than once within the interval"


def test_no_restart_while_pods_created_after_the_webhook_turned_ready_miss_it(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The webhook is up but the API server does not reach it (here: the registration points
    nowhere, so it fails open): new pods miss their credentials, so a restart would only repeat
    that."""
    plane = control_plane
    system = install_rbac(plane, "restart")
    webhook = start_reconciler(plane, tmp_path / "webhook", system)
    try:
        namespace = app_namespace(plane, system)
        # Creation times are whole seconds: from the next one on, a pod is surely younger than
        # the webhook's readiness (which its first pass proves).
        wait_for_passes(webhook, 1)
        next_second = math.ceil(time.time())
        wait_for(lambda: time.time() >= next_second, "the next second")
        deployment_chain(plane, namespace, "web", "app")
        wait_for(lambda: events_on(plane, namespace, "web-5d8f7c9b4-x7k2p"), "an Event")
        wait_for_passes(webhook, 2)
        assert (
            metric(webhook, "irsa_webhook_reconcile_restarts_held", reason="recent-unmutated-pods")
            == 1
        )
        assert restarted_at(plane, "deployment", namespace, "web") is None
    finally:
        stop(webhook)


def test_report_mode_changes_no_workload(control_plane: ControlPlane, tmp_path: Path) -> None:
    plane = control_plane
    system = install_rbac(plane, "report")
    namespace = app_namespace(plane, system)
    deployment_chain(plane, namespace, "web", "app")
    webhook = start_reconciler(plane, tmp_path / "webhook", system)
    try:
        wait_for(lambda: events_on(plane, namespace, "web-5d8f7c9b4-x7k2p"), "an Event")
        wait_for_passes(webhook, 2)
        assert restarted_at(plane, "deployment", namespace, "web") is None
    finally:
        stop(webhook)


def test_a_pod_whose_role_changed_after_it_started_is_found(
    control_plane: ControlPlane, webhook: Webhook, tmp_path: Path
) -> None:
    """A pod mutated by the session's webhook, then its ServiceAccount gets another role."""
    plane = control_plane
    namespace = make_namespace(plane, "reconcile-drift")
    old = "arn:aws:iam::111122223333:role/old"
    plane.apply(service_account(namespace, "app", {"eks.amazonaws.com/role-arn": old}))
    wait_until_mutating(plane, namespace, "app")
    stored = owned_pod(plane, namespace, "drifted", "app")
    assert old in str(stored["spec"]["containers"][0]["env"])
    plane.apply(service_account(namespace, "app", {"eks.amazonaws.com/role-arn": ROLE}))
    system = install_rbac(plane, "report")
    select(plane, namespace, system)
    reconciler = start_reconciler(plane, tmp_path / "webhook", system)
    try:
        (event,) = wait_for(lambda: events_on(plane, namespace, "drifted"), "an Event")
        assert event["reason"] == "IRSARoleChanged"
        assert metric(reconciler, MISSING, namespace=namespace, reason="role-changed") == 1
    finally:
        stop(reconciler)


def test_only_pods_the_registration_sends_to_the_webhook_are_reported(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Unmutated pods of annotated ServiceAccounts where the chart's registration does not send
    pods (a namespace its namespaceSelector leaves out, the release namespace it excludes by
    default, a pod its objectSelector leaves out) are not reported; one it selects is. Without
    the registration the pass counts but writes nothing."""
    plane = control_plane
    system = install_rbac(plane, "report")
    selected = app_namespace(plane, system)
    excluded = app_namespace(plane, None)
    select(plane, system.namespace, system)  # labelled, yet excluded as the release namespace
    plane.apply(service_account(system.namespace, "app", {"eks.amazonaws.com/role-arn": ROLE}))
    owned_pod(plane, selected, "missed", "app")
    owned_pod(plane, selected, "opted-out", "app", labels={OPT_OUT_LABEL: "yes"})
    owned_pod(plane, excluded, "csi-controller", "app")
    owned_pod(plane, system.namespace, "release-pod", "app")
    webhook = start_reconciler(plane, tmp_path / "webhook", system)
    try:
        (event,) = wait_for_events(plane, selected, "missed")
        assert event["reason"] == "IRSAInjectionMissing"
        wait_for_passes(webhook, 2)
        assert events_on(plane, selected, "opted-out") == []
        assert events_on(plane, excluded, "csi-controller") == []
        assert events_on(plane, system.namespace, "release-pod") == []
        assert metric(webhook, MISSING, namespace=selected, reason="token-volume") == 1
        for namespace in (excluded, system.namespace):
            assert metric(webhook, MISSING, namespace=namespace, reason="token-volume") is None
        assert (metric(webhook, "irsa_webhook_reconcile_pods_not_selected") or 0) >= 3
        assert metric(webhook, "irsa_webhook_reconcile_scope_known") == 1

        plane.kubectl("delete", "mutatingwebhookconfiguration", system.fullname)
        owned_pod(plane, selected, "missed-later", "app")
        wait_for(
            lambda: metric(webhook, "irsa_webhook_reconcile_scope_known") == 0, "the scope lost"
        )
        wait_for(
            lambda: metric(webhook, MISSING, namespace=selected, reason="token-volume") == 2,
            "the new pod counted with the scope last read",
        )
        wait_for_passes(webhook, 2)
        assert events_on(plane, selected, "missed-later") == [], "an Event without a scope"
        assert metric(webhook, MISSING, namespace=excluded, reason="token-volume") is None
    finally:
        stop(webhook)
    assert "cannot read MutatingWebhookConfiguration" in webhook.log_path.read_text()


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> dict[str, Release]:
    """The release namespace of the chart's objects, one per mode, shared by the RBAC checks."""
    return {mode: install_rbac(control_plane, mode) for mode in ("report", "restart")}


@pytest.mark.parametrize(
    ("mode", "verb", "resource", "allowed"),
    [
        ("report", "list", "pods", True),
        ("report", "watch", "pods", False),
        ("report", "get", "pods", False),
        ("report", "delete", "pods", False),
        ("report", "create", "events", True),
        ("report", "patch", "deployments.apps", False),
        ("report", "get", "secrets", False),
        ("report", "list", "namespaces", True),
        ("report", "get", "namespaces", False),
        ("report", "watch", "namespaces", False),
        ("report", "list", "mutatingwebhookconfigurations.admissionregistration.k8s.io", False),
        ("report", "get", "mutatingwebhookconfigurations.admissionregistration.k8s.io", False),
        ("restart", "get", "deployments.apps", True),
        ("restart", "patch", "deployments.apps", True),
        ("restart", "patch", "statefulsets.apps", True),
        ("restart", "patch", "daemonsets.apps", True),
        ("restart", "update", "deployments.apps", False),
        ("restart", "patch", "replicasets.apps", False),
        ("restart", "patch", "jobs.batch", False),
        ("restart", "create", "pods", False),
        ("restart", "delete", "pods", False),
    ],
)
def test_the_reconciler_rbac_grants_only_what_its_mode_uses(
    control_plane: ControlPlane,
    installed: dict[str, Release],
    mode: str,
    verb: str,
    resource: str,
    allowed: bool,
) -> None:
    system = installed[mode]
    answer = control_plane.kubectl(
        "auth", "can-i", verb, resource, "--all-namespaces", "--as", system.user, check=False
    )
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


@pytest.mark.parametrize(
    ("verb", "name", "allowed"),
    [("get", "own", True), ("patch", "own", False), ("get", "other", False)],
)
def test_the_reconciler_may_only_read_its_own_registration(
    control_plane: ControlPlane, installed: dict[str, Release], verb: str, name: str, allowed: bool
) -> None:
    system = installed["report"]
    name = system.fullname if name == "own" else name
    target = f"mutatingwebhookconfigurations.admissionregistration.k8s.io/{name}"
    answer = control_plane.kubectl("auth", "can-i", verb, target, "--as", system.user, check=False)
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


@pytest.mark.parametrize(
    ("verb", "lease", "allowed"),
    [
        ("get", "own", True),
        ("update", "own", True),
        ("update", "other", False),
        ("create", "", False),
    ],
)
def test_the_reconciler_may_only_read_and_update_its_own_lease(
    control_plane: ControlPlane, installed: dict[str, Release], verb: str, lease: str, allowed: bool
) -> None:
    system = installed["report"]
    lease = system.lease if lease == "own" else lease
    target = f"leases.coordination.k8s.io/{lease}" if lease else "leases.coordination.k8s.io"
    answer = control_plane.kubectl(
        "auth", "can-i", verb, target, "-n", system.namespace, "--as", system.user, check=False
    )
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


def test_one_replica_holds_the_lease_and_another_takes_over_when_it_stops(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    system = install_rbac(control_plane, "report")
    kubeconfig = token_kubeconfig(
        control_plane, tmp_path / "kubeconfig", system.namespace, system.fullname
    )

    async def scenario() -> None:
        api = KubeApi.from_config(str(kubeconfig))
        try:
            first = LeaseElector(api, system.namespace, system.lease, "first", duration=3)
            second = LeaseElector(api, system.namespace, system.lease, "second", duration=3)
            assert await first.try_acquire_or_renew()
            assert not await second.try_acquire_or_renew()
            assert first.is_leader()
            assert not second.is_leader()
            # The first stops renewing (a crashed replica): the second waits a full duration.
            loop = asyncio.get_running_loop()
            started = loop.time()
            while not await second.try_acquire_or_renew():
                assert loop.time() - started < 10, "the Lease was never taken over"
                await asyncio.sleep(0.5)
            assert loop.time() - started >= 3
            assert not await first.try_acquire_or_renew()
            # A holder that shuts down hands the Lease over at once.
            await second.release()
            started = loop.time()
            while not await first.try_acquire_or_renew():
                assert loop.time() - started < 3, "a released Lease was not free"
                await asyncio.sleep(0.2)
        finally:
            await api.aclose()

    asyncio.run(scenario())
    lease = control_plane.get("lease", system.lease, "-n", system.namespace)
    assert lease["spec"]["holderIdentity"] == "first"
    assert lease["spec"]["leaseTransitions"] == 3  # first, second, first again
