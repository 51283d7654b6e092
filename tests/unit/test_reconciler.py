"""The reconciler's rules for acting: Events once, restarts held, limited and not repeated.

The API is a fake here (these are the rules, not the wire); tests/e2e/test_reconciler_e2e.py
runs the same against the real API server.
"""

from __future__ import annotations

import argparse
import asyncio
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
    NOT_READY,
    PAGE_SIZE,
    RECENT_MISSES,
    RESTARTED_AT,
    Reconciler,
    rollout_in_progress,
)

ROLE = "arn:aws:iam::111122223333:role/app"
NOW = 1_800_000_000.0
READY_SINCE = NOW - 3600
OLD = "2027-01-15T07:00:00Z"  # before READY_SINCE (NOW is 2027-01-15T08:00:00Z)
RECENT = "2027-01-15T07:59:00Z"  # after it


def pod(name: str, created: str = OLD, owner: str | None = "web") -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "team",
        "uid": f"uid-{name}",
        "creationTimestamp": created,
        "labels": {"pod-template-hash": "abc12"},
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


@dataclass
class FakeApi:
    pods: list[dict[str, Any]]
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[tuple[str, str, Any, str]] = field(default_factory=list)
    lists: list[dict[str, str]] = field(default_factory=list)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        if path == "/api/v1/pods":
            params = dict(params or {})
            self.lists.append(params)
            start = int(params.get("continue", "0"))
            page = self.pods[start : start + int(params["limit"])]
            more = start + len(page) < len(self.pods)
            return {"items": page, "metadata": {"continue": str(start + len(page)) if more else ""}}
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
    **settings: Any,
) -> Reconciler:
    clock = clock or Clock()
    not_ready: list[str] = ready if ready is not None else []
    result = Reconciler(
        api,
        MutationSettings(),
        ReconcileSettings(mode=mode, **settings),
        service_accounts=ServiceAccounts(
            parse_service_account({"eks.amazonaws.com/role-arn": ROLE}, MutationSettings())
        ),
        config_map=Static(EMPTY_CONFIG_MAP),
        container_credentials=Static(EMPTY_CONTAINER_CREDENTIALS),
        elector=elector or Elector(),
        not_ready_reasons=lambda: not_ready,
        metrics=Metrics(),
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
