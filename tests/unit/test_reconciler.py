"""The reconciler's rules for acting: only on the pods its registration sends to the webhook,
Events once, restarts held, limited and not repeated.

The API is a fake here (these are the rules, not the wire); tests/e2e/test_reconciler_e2e.py
runs the same against the real API server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from irsa_webhook import flags
from irsa_webhook.config import ConfigError, MutationSettings, ReconcileSettings
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ServiceAccountEntry,
    parse_service_account,
)
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.metrics import Metrics
from irsa_webhook.reconciler import (
    EVENTS_PER_PASS,
    MATCH_CONDITIONS,
    NOT_READY,
    PAGE_SIZE,
    RECENT_MISSES,
    RESTARTED_AT,
    SCOPE_UNKNOWN,
    Reconciler,
    rollout_in_progress,
)
from irsa_webhook.registration import (
    CONFIGURATIONS_PATH,
    WEBHOOK_NAME,
    find_webhook,
    registration_of,
    sends_pod,
)

ROLE = "arn:aws:iam::111122223333:role/app"
NOW = 1_800_000_000.0
READY_SINCE = NOW - 3600
OLD = "2027-01-15T07:00:00Z"  # before READY_SINCE (NOW is 2027-01-15T08:00:00Z)
RECENT = "2027-01-15T07:59:00Z"  # after it


CONFIGURATION = "irsa-webhook"
RELEASE_NAMESPACE = "irsa-webhook"
SKIP = {"key": "eks.amazonaws.com/skip-pod-identity-webhook", "operator": "DoesNotExist"}
POD_CREATE = {
    "operations": ["CREATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
    "scope": "Namespaced",
}


def registration(
    namespace_selector: dict[str, Any] | None = None,
    object_selector: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The chart's MutatingWebhookConfiguration with its default exclusions (kube-system and the
    release namespace), the user's selectors added as the chart adds them."""
    excluded = {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", RELEASE_NAMESPACE],
    }
    namespaces = dict(namespace_selector or {})
    namespaces["matchExpressions"] = [*namespaces.get("matchExpressions", []), excluded]
    objects = dict(object_selector or {})
    objects["matchExpressions"] = [SKIP, *objects.get("matchExpressions", [])]
    webhook = {
        "name": WEBHOOK_NAME,
        "failurePolicy": "Ignore",
        "rules": [POD_CREATE],
        "namespaceSelector": namespaces,
        "objectSelector": objects,
        **fields,
    }
    return {"metadata": {"name": CONFIGURATION}, "webhooks": [webhook]}


def namespace_labels(*names: str, **labels: str) -> dict[str, dict[str, str]]:
    return {name: {"kubernetes.io/metadata.name": name, **labels} for name in names}


def pod(
    name: str,
    created: str = OLD,
    owner: str | None = "web",
    namespace: str = "team",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "creationTimestamp": created,
        "labels": {"pod-template-hash": "abc12", **(labels or {})},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": f"{owner}-abc12", "controller": True}
        ]
    return {
        "metadata": metadata,
        "spec": {"serviceAccountName": "app", "containers": [{"name": "app"}]},
    }


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team", "generation": 1},
        "spec": {"replicas": 1, "template": {"metadata": {}}},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, **status},
    }


REGISTRATION = f"{CONFIGURATIONS_PATH}/{CONFIGURATION}"


@dataclass
class FakeApi:
    pods: list[dict[str, Any]]
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[tuple[str, str, Any, str]] = field(default_factory=list)
    lists: list[dict[str, str]] = field(default_factory=list)
    configuration: dict[str, Any] = field(default_factory=registration)
    namespaces: dict[str, dict[str, str]] = field(
        default_factory=lambda: namespace_labels("team", "kube-system", RELEASE_NAMESPACE)
    )
    failing: dict[str, ApiError] = field(default_factory=dict)
    """Paths that answer with an error."""
    gets: list[str] = field(default_factory=list)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.gets.append(path)
        if path in self.failing:
            raise self.failing[path]
        if path == "/api/v1/pods":
            params = dict(params or {})
            self.lists.append(params)
            return self._page(self.pods, params)
        if path == "/api/v1/namespaces":
            namespaces = [
                {"metadata": {"name": name, "labels": labels}}
                for name, labels in self.namespaces.items()
            ]
            return self._page(namespaces, dict(params or {}))
        if path == REGISTRATION:
            return self.configuration
        if path in self.workloads:
            return self.workloads[path]
        raise ApiError(404, "NotFound", path)

    async def send(
        self, method: str, path: str, body: Mapping[str, Any], content_type: str = ""
    ) -> dict[str, Any]:
        self.sent.append((method, path, body, content_type))
        if method == "PATCH":
            template = self.workloads[path]["spec"]["template"]["metadata"]
            template.setdefault("annotations", {}).update(
                body["spec"]["template"]["metadata"]["annotations"]
            )
            self.workloads[path]["metadata"]["generation"] += 1
        return dict(body)

    @staticmethod
    def _page(items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        start = int(params.get("continue", "0"))
        page = items[start : start + int(params["limit"])]
        more = start + len(page) < len(items)
        return {"items": page, "metadata": {"continue": str(start + len(page)) if more else ""}}

    def events(self) -> list[Any]:
        return [body for method, path, body, _ in self.sent if path.endswith("/events")]

    def patches(self) -> list[tuple[str, Any, str]]:
        return [(path, body, kind) for method, path, body, kind in self.sent if method == "PATCH"]


@dataclass
class ServiceAccounts:
    entry: ServiceAccountEntry | None
    synced: bool = True

    def get(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self.entry

    async def lookup(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        raise AssertionError("the reconciler must not make live lookups")

    def snapshot(self) -> dict[str, ServiceAccountEntry]:
        return {}


@dataclass
class Static:
    current: Any
    synced: bool = True


@dataclass
class Elector:
    leading: bool = True
    identity: str = "replica-a"

    def is_leader(self) -> bool:
        return self.leading

    async def wait_leading(self) -> None:
        return None


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


WEB = "/apis/apps/v1/namespaces/team/deployments/web"


def reconciler(
    api: FakeApi,
    mode: str = "restart",
    ready: list[str] | None = None,
    elector: Elector | None = None,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    **settings: Any,
) -> Reconciler:
    clock = clock or Clock()
    not_ready: list[str] = ready if ready is not None else []
    result = Reconciler(
        api,
        MutationSettings(),
        ReconcileSettings(mode=mode, **{"webhook_configuration": CONFIGURATION, **settings}),
        service_accounts=ServiceAccounts(
            parse_service_account({"eks.amazonaws.com/role-arn": ROLE}, MutationSettings())
        ),
        config_map=Static(EMPTY_CONFIG_MAP),
        container_credentials=Static(EMPTY_CONTAINER_CREDENTIALS),
        elector=elector or Elector(),
        not_ready_reasons=lambda: not_ready,
        metrics=metrics or Metrics(),
        wall=clock,
        clock=clock,
    )
    result.ready_since = None if not_ready else READY_SINCE
    return result


def run(target: Reconciler, passes: int = 1) -> None:
    async def scenario() -> None:
        for _ in range(passes):
            await target.reconcile_once()

    asyncio.run(scenario())


def test_pods_are_listed_in_pages_of_running_and_pending_pods_only() -> None:
    api = FakeApi([pod(f"web-abc12-{index}") for index in range(PAGE_SIZE + 1)])
    run(reconciler(api, "report"))
    assert [params.get("continue") for params in api.lists] == [None, str(PAGE_SIZE)]
    assert api.lists[0]["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed"


def test_each_pod_gets_one_event_however_many_passes_see_it() -> None:
    api = FakeApi([pod("web-abc12-a"), pod("lonely", owner=None)])
    target = reconciler(api, "report")
    run(target, passes=3)
    events = api.events()
    assert sorted(event["involvedObject"]["name"] for event in events) == ["lonely", "web-abc12-a"]
    assert {event["reason"] for event in events} == {"IRSAInjectionMissing"}
    assert api.patches() == []


def test_a_pass_writes_at_most_its_event_budget_and_the_next_pass_the_rest() -> None:
    api = FakeApi([pod(f"lonely-{index}", owner=None) for index in range(EVENTS_PER_PASS + 3)])
    target = reconciler(api, "report")
    run(target)
    assert len(api.events()) == EVENTS_PER_PASS
    run(target)
    assert len(api.events()) == EVENTS_PER_PASS + 3


def test_report_mode_never_restarts() -> None:
    api = FakeApi([pod("web-abc12-a")], {WEB: deployment()})
    run(reconciler(api, "report"))
    assert api.patches() == []


def test_restart_rolls_the_deployment_like_kubectl_rollout_restart() -> None:
    api = FakeApi([pod("web-abc12-a"), pod("web-abc12-b")], {WEB: deployment()})
    run(reconciler(api))
    ((path, body, content_type),) = api.patches()
    assert path == WEB
    assert content_type == "application/strategic-merge-patch+json"
    assert body == {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2027-01-15T08:00:00Z"}}}}
    }


def test_a_bare_pod_and_a_job_pod_get_no_restart() -> None:
    job_pod = pod("backup-x")
    job_pod["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "backup", "controller": True}]
    api = FakeApi([pod("lonely", owner=None), job_pod])
    run(reconciler(api))
    assert api.patches() == []
    assert len(api.events()) == 2


@pytest.mark.parametrize(
    ("ready", "pods", "hold"),
    [
        pytest.param(
            ["serviceaccounts not synced yet"], [pod("web-abc12-a")], NOT_READY, id="unready"
        ),
        pytest.param([], [pod("web-abc12-a", RECENT)], RECENT_MISSES, id="recent-miss"),
        pytest.param([], [pod("web-abc12-a")], "", id="only-old-misses"),
    ],
)
def test_restarts_are_held_while_the_webhook_is_unready_or_pods_miss_it_now(
    ready: list[str], pods: list[dict[str, Any]], hold: str
) -> None:
    api = FakeApi(pods, {WEB: deployment()})
    target = reconciler(api, ready=ready)
    run(target)
    assert target.hold_reason([]) == (NOT_READY if ready else "")
    assert bool(api.patches()) == (hold == "")


def test_a_recent_miss_beyond_the_hold_window_no_longer_holds() -> None:
    api = FakeApi([pod("web-abc12-a", RECENT)], {WEB: deployment()})
    run(reconciler(api, hold_after_miss=30.0))
    assert len(api.patches()) == 1


def test_an_owner_is_restarted_once_per_interval_and_not_while_it_rolls() -> None:
    clock = Clock()
    api = FakeApi([pod("web-abc12-a")], {WEB: deployment()})
    target = reconciler(api, clock=clock, interval=60.0)
    run(target, passes=2)
    assert len(api.patches()) == 1
    clock.now += 120  # the interval is over, but the restart's rollout has not finished
    run(target)
    assert len(api.patches()) == 1
    api.workloads[WEB]["status"]["observedGeneration"] = 2
    clock.now += 120  # rolled, yet its old pod is still there without credentials
    run(target)
    assert len(api.patches()) == 2


def test_pods_created_after_our_restart_that_still_miss_stop_further_restarts() -> None:
    clock = Clock()
    api = FakeApi([pod("web-abc12-a")], {WEB: deployment()})
    target = reconciler(api, clock=clock, interval=60.0, hold_after_miss=0.0)
    run(target)
    api.pods = [pod("web-abc12-b", "2027-01-15T08:01:00Z")]
    api.workloads[WEB]["status"]["observedGeneration"] = 2
    clock.now += 300
    run(target)
    assert len(api.patches()) == 1


def test_restarts_are_rate_limited_per_minute() -> None:
    names = [f"app{index}" for index in range(5)]
    api = FakeApi(
        [pod(f"{name}-abc12-a", owner=name) for name in names],
        {f"/apis/apps/v1/namespaces/team/deployments/{name}": deployment() for name in names},
    )
    run(reconciler(api, restarts_per_minute=2.0))
    assert len(api.patches()) == 2


def test_a_replica_that_does_not_hold_the_lease_writes_nothing() -> None:
    api = FakeApi([pod("web-abc12-a")], {WEB: deployment()})
    run(reconciler(api, elector=Elector(leading=False)))
    assert api.sent == []


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def missing_in(metrics: Metrics, namespace: str) -> float | None:
    return sample(
        metrics,
        "irsa_webhook_reconcile_pods_missing_injection",
        namespace=namespace,
        reason="token-volume",
    )


KUBE_SYSTEM_DEPLOYMENT = "/apis/apps/v1/namespaces/kube-system/deployments/ebs-csi-controller"


def test_pods_the_registration_does_not_send_to_the_webhook_are_not_reported_or_restarted() -> None:
    """An EBS CSI controller in kube-system with an annotated ServiceAccount: the chart excludes
    kube-system, so its pods were never meant to be mutated, and a fresh one (created after the
    webhook turned ready) must not hold the restart of a pod that did miss its injection."""
    metrics = Metrics()
    api = FakeApi(
        [
            pod("web-abc12-a"),
            pod("ebs-csi-controller-abc12-a", RECENT, "ebs-csi-controller", "kube-system"),
            pod("webhook-abc12-a", owner="webhook", namespace=RELEASE_NAMESPACE),
        ],
        {WEB: deployment(), KUBE_SYSTEM_DEPLOYMENT: deployment()},
    )
    target = reconciler(api, metrics=metrics)
    run(target)
    assert [event["involvedObject"]["name"] for event in api.events()] == ["web-abc12-a"]
    assert [path for path, _, _ in api.patches()] == [WEB]
    assert missing_in(metrics, "team") == 1
    assert missing_in(metrics, "kube-system") is None
    assert sample(metrics, "irsa_webhook_reconcile_pods_not_selected") == 2
    assert sample(metrics, "irsa_webhook_reconcile_pods_checked") == 3
    assert sample(metrics, "irsa_webhook_reconcile_scope_known") == 1
    assert sample(metrics, "irsa_webhook_reconcile_restarts_held", reason=RECENT_MISSES) == 0


def test_the_user_selectors_of_the_registration_decide_too() -> None:
    api = FakeApi(
        [
            pod("in-scope", owner=None, labels={"irsa": "on"}),
            pod("opted-out", owner=None, labels={"irsa": "on", "tier": "system"}),
            pod("unlabelled", owner=None),
            pod("elsewhere", owner=None, namespace="batch", labels={"irsa": "on"}),
            pod("skipped", owner=None, labels={"eks.amazonaws.com/skip-pod-identity-webhook": ""}),
        ],
        configuration=registration(
            {"matchLabels": {"team": "yes"}},
            {
                "matchLabels": {"irsa": "on"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["system"]}],
            },
        ),
        namespaces={**namespace_labels("team", team="yes"), **namespace_labels("batch")},
    )
    run(reconciler(api, "report"))
    assert [event["involvedObject"]["name"] for event in api.events()] == ["in-scope"]


def test_the_registration_is_read_once_a_pass_and_namespaces_listed_only_for_a_selector() -> None:
    api = FakeApi([pod(f"lonely-{index}", owner=None) for index in range(3)])
    run(reconciler(api, "report"), passes=2)
    assert api.gets.count(REGISTRATION) == 2
    assert api.gets.count("/api/v1/namespaces") == 2
    unselective = registration()
    del unselective["webhooks"][0]["namespaceSelector"]
    api = FakeApi([pod("lonely", owner=None)], configuration=unselective)
    run(reconciler(api, "report"))
    assert "/api/v1/namespaces" not in api.gets
    assert len(api.events()) == 1


def test_a_pod_of_a_namespace_newer_than_the_namespace_list_waits_for_the_next_pass() -> None:
    api = FakeApi([pod("lonely", owner=None, namespace="brand-new")])
    target = reconciler(api, "report")
    run(target)
    assert api.events() == []
    api.namespaces.update(namespace_labels("brand-new"))
    run(target)
    assert len(api.events()) == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({REGISTRATION: ApiError(403, "Forbidden", "no")}, id="forbidden"),
        pytest.param({REGISTRATION: ApiError(404, "NotFound", "gone")}, id="not-found"),
        pytest.param({REGISTRATION: ApiError(0, "ConnectError", "down")}, id="unreachable"),
        pytest.param({"/api/v1/namespaces": ApiError(403, "Forbidden", "no")}, id="namespaces"),
    ],
)
def test_while_the_registration_cannot_be_read_nothing_is_written_and_the_log_says_so_once(
    failure: dict[str, ApiError], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    api = FakeApi(
        [pod("web-abc12-a"), pod("ebs-abc12-a", owner="ebs", namespace="kube-system")],
        {WEB: deployment()},
    )
    target = reconciler(api, metrics=metrics)
    run(target)  # reads the scope once, reports and restarts web
    assert len(api.events()) == len(api.patches()) == 1
    api.pods.append(pod("lonely", owner=None))
    api.failing.update(failure)
    with caplog.at_level(logging.INFO, "irsa_webhook.reconciler"):
        run(target, passes=3)
    assert len(api.events()) == len(api.patches()) == 1, "acted without a scope"
    # Still counted, with the scope last read: kube-system stays out.
    assert missing_in(metrics, "team") == 2
    assert missing_in(metrics, "kube-system") is None
    assert sample(metrics, "irsa_webhook_reconcile_scope_known") == 0
    assert sample(metrics, "irsa_webhook_reconcile_restarts_held", reason=SCOPE_UNKNOWN) == 1
    (warning,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "writing no Event and restarting nothing" in warning.getMessage()
    api.failing.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, "irsa_webhook.reconciler"):
        run(target)
    assert [event["involvedObject"]["name"] for event in api.events()][1:] == ["lonely"]
    assert sample(metrics, "irsa_webhook_reconcile_scope_known") == 1
    assert any("restarts resume" in record.getMessage() for record in caplog.records)


def test_without_a_registration_name_every_pod_is_counted_and_nothing_written() -> None:
    metrics = Metrics()
    api = FakeApi([pod("web-abc12-a"), pod("ebs-abc12-a", owner="ebs", namespace="kube-system")])
    run(reconciler(api, metrics=metrics, webhook_configuration=""))
    assert api.sent == []
    assert REGISTRATION not in api.gets
    assert missing_in(metrics, "kube-system") == 1
    assert sample(metrics, "irsa_webhook_reconcile_scope_known") == 0


def test_with_match_conditions_pods_are_reported_but_no_owner_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conditions = [{"name": "not-node-agents", "expression": "!has(object.spec.nodeName)"}]
    metrics = Metrics()
    api = FakeApi(
        [pod("web-abc12-a")],
        {WEB: deployment()},
        configuration=registration(matchConditions=conditions),
    )
    with caplog.at_level(logging.WARNING, "irsa_webhook.reconciler"):
        run(reconciler(api, metrics=metrics), passes=2)
    assert len(api.events()) == 1
    assert api.patches() == []
    assert sample(metrics, "irsa_webhook_reconcile_restarts_held", reason=MATCH_CONDITIONS) == 1
    (warning,) = caplog.records
    assert "matchConditions (not-node-agents)" in warning.getMessage()


@pytest.mark.parametrize(
    ("change", "sent"),
    [
        pytest.param({}, True, id="chart-rule"),
        pytest.param({"operations": ["UPDATE"]}, False, id="update-only"),
        pytest.param({"operations": ["*"], "resources": ["*"]}, True, id="wildcards"),
        pytest.param({"resources": ["pods/*"]}, False, id="subresources-only"),
        pytest.param({"apiGroups": ["apps"]}, False, id="other-group"),
        pytest.param({"scope": "Cluster"}, False, id="cluster-scope"),
    ],
)
def test_only_a_rule_covering_a_pod_create_sends_pods(change: dict[str, Any], sent: bool) -> None:
    webhook = find_webhook(registration(rules=[{**POD_CREATE, **change}]))
    assert webhook is not None
    namespace = namespace_labels("team")["team"]
    assert sends_pod(registration_of(webhook), {}, namespace) is sent


@pytest.mark.parametrize(
    ("pod_labels", "namespace", "sent"),
    [
        ({}, "team", True),
        ({}, "kube-system", False),
        ({}, RELEASE_NAMESPACE, False),
        ({"eks.amazonaws.com/skip-pod-identity-webhook": "true"}, "team", False),
    ],
)
def test_the_chart_defaults_leave_out_kube_system_the_release_and_the_skip_label(
    pod_labels: dict[str, str], namespace: str, sent: bool
) -> None:
    webhook = find_webhook(registration())
    assert webhook is not None
    labels = namespace_labels(namespace)[namespace]
    assert sends_pod(registration_of(webhook), pod_labels, labels) is sent


def test_the_webhook_entry_is_found_by_the_name_the_chart_renders() -> None:
    ours = {"name": WEBHOOK_NAME, "failurePolicy": "Fail"}
    other = {"name": "other.example.com", "failurePolicy": "Ignore"}
    assert find_webhook({"webhooks": [other, ours]}) == ours
    assert find_webhook({"webhooks": [other]}) == other  # a hand-written, renamed registration
    assert find_webhook({"webhooks": [other, dict(other, name="third")]}) is None
    assert find_webhook({}) is None


@pytest.mark.parametrize(
    ("workload", "rolling"),
    [
        (deployment(), False),
        (deployment(observedGeneration=0), True),
        (deployment(updatedReplicas=0), True),
        (
            {
                "kind": "DaemonSet",
                "status": {"desiredNumberScheduled": 3, "updatedNumberScheduled": 2},
            },
            True,
        ),
        (
            {
                "kind": "DaemonSet",
                "status": {"desiredNumberScheduled": 3, "updatedNumberScheduled": 3},
            },
            False,
        ),
    ],
)
def test_a_rollout_is_in_progress_until_every_pod_has_the_current_template(
    workload: dict[str, Any], rolling: bool
) -> None:
    assert rollout_in_progress(workload) == rolling


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--reconcile=sometimes"], {}, "--reconcile 'sometimes' must be off, report or restart"),
        (["--reconcile-interval=0s"], {}, "--reconcile-interval must be at least 1s"),
        (["--reconcile-restarts-per-minute=0"], {}, "must be positive"),
        ([], {"IRSA_WEBHOOK_RECONCILE": "never"}, "must be off, report or restart"),
    ],
)
def test_bad_reconcile_flags_are_refused_naming_the_flag(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    parser = argparse.ArgumentParser()
    flags.add_flags(parser, flags.RECONCILE_FLAGS)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        flags.server_settings(parser.parse_args(argv), environ)


def test_the_reconciler_is_off_unless_asked_and_reads_the_environment() -> None:
    parser = argparse.ArgumentParser()
    flags.add_flags(parser, flags.RECONCILE_FLAGS)
    assert flags.server_settings(parser.parse_args([]), {}).reconcile.mode == "off"
    settings = flags.server_settings(
        parser.parse_args([]),
        {"IRSA_WEBHOOK_RECONCILE": "report", "IRSA_WEBHOOK_RECONCILE_INTERVAL": "2m"},
    ).reconcile
    assert (settings.mode, settings.interval) == ("report", 120.0)
    named = flags.server_settings(
        parser.parse_args(["--reconcile-webhook-configuration=irsa-webhook"]), {}
    ).reconcile
    assert named.webhook_configuration == "irsa-webhook"
