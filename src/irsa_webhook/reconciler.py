"""The reconciler (``--reconcile=report|restart``): pods that missed their injection, and fixes.

The webhook acts only when a pod is created. A pod created while the API server could not reach it
(``failurePolicy: Ignore`` admits it anyway), before its ServiceAccount was annotated, or before the
role changed, runs without the right identity and nothing says so. Every ``--reconcile-interval``
the replica holding the Lease (``leader``) reads the running and pending pods and asks ``drift``
what the webhook would still inject into each of those the API server sends to the webhook: the
registration's rules, ``namespaceSelector`` and ``objectSelector`` decide that (``registration``),
not the ServiceAccount alone. A kube-system pod of an annotated ServiceAccount, excluded by the
chart, did not miss anything.

Cost to the API server: a GET of the registration and, when its namespaceSelector is not empty,
one LIST of namespaces (``limit=500``); then one paginated LIST of pods per pass (``limit=500``,
field selector ``status.phase!=Succeeded,status.phase!=Failed``, all namespaces), each page checked
and dropped, so memory stays at one page; no watch, so no pod is held between passes. Kubernetes
serves such lists from its watch cache. Plus one POST per Event (at most ``EVENTS_PER_PASS`` per
pass, each pod once) and, in restart mode, a GET and a PATCH per restarted owner.
``docs/reconciler.md`` has the figures at 10k pods.

While the registration cannot be read, the pass still counts (with the scope last read, or every
pod) but writes no Event and restarts nothing: an unknown scope must not produce Events or
restarts that the registration would have ruled out. The registration's ``matchConditions`` are
CEL, which only the API server evaluates: pods they exclude are still counted and reported, and
restart mode holds every restart (such a pod's fresh replacements would miss the injection again).

In ``restart`` mode the owning Deployment, StatefulSet or DaemonSet is rolled as ``kubectl rollout
restart`` does it. Restarts are held while this webhook is not ready, and while pods created after
it turned ready (within ``--reconcile-hold-after-miss``) lack their injection: the API server
admitted those without calling the webhook, so new pods would miss it too. The API server's own
fail-open counter is only on its ``/metrics``, which a workload should not be allowed to read;
recent unmutated pods are the same fact as seen from the pods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from irsa_webhook.app import ConfigMapProvider, ContainerCredentialsProvider, ServiceAccountLookup
from irsa_webhook.config import MutationSettings, ReconcileSettings
from irsa_webhook.decision import Sources
from irsa_webhook.drift import ROLE_CHANGED, Gap, describe, event_name, find_gap
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.leader import LeaseApi
from irsa_webhook.metrics import Metrics
from irsa_webhook.registration import (
    CONFIGURATIONS_PATH,
    WEBHOOK_NAME,
    WebhookRegistration,
    find_webhook,
    registration_of,
    sends_pod,
)

logger = logging.getLogger(__name__)

PAGE_SIZE = 500
"""Pods per LIST page: 20 requests at 10k pods, and one page (a few MB) in memory at a time."""

POD_PHASES = "status.phase!=Succeeded,status.phase!=Failed"

EVENTS_PER_PASS = 500
"""A cluster-wide miss (the webhook was down for a while) must not turn into thousands of Event
writes at once; the metric counts every pod at once, the Events follow over the next passes."""

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""The pod-template annotation ``kubectl rollout restart`` sets; changing it rolls the owner."""

READINESS_POLL = 0.25
"""Seconds between looks at this webhook's readiness; ``ready_since`` is this accurate."""

NOT_READY = "webhook-not-ready"
SCOPE_UNKNOWN = "registration-unreadable"
MATCH_CONDITIONS = "match-conditions"
RECENT_MISSES = "recent-unmutated-pods"
HOLD_REASONS = (NOT_READY, SCOPE_UNKNOWN, MATCH_CONDITIONS, RECENT_MISSES)

_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}
_REASON_OF_EVENT = {True: "IRSARoleChanged", False: "IRSAInjectionMissing"}


class ScopeUnknown(Exception):
    """The registration, or the namespaces its selector needs, cannot be read."""


class Elector(Protocol):
    identity: str

    def is_leader(self) -> bool: ...

    async def wait_leading(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """The pods the registration sends to the webhook, as read at the start of a pass."""

    registration: WebhookRegistration
    namespace_labels: Mapping[str, Mapping[str, str]] | None
    """Each namespace's labels; None when the namespaceSelector is empty (nothing was listed)."""

    def selects(self, pod: Mapping[str, Any]) -> bool:
        metadata = pod.get("metadata") or {}
        namespace: Mapping[str, str] = {}
        if self.namespace_labels is not None:
            found = self.namespace_labels.get(str(metadata.get("namespace") or ""))
            if found is None:
                return False  # its namespace is newer than the namespace LIST: the next pass
            namespace = found
        return sends_pod(self.registration, metadata.get("labels") or {}, namespace)


@dataclass(slots=True)
class PassReport:
    """What one pass found and did, for logs and tests."""

    pods: int = 0
    not_selected: int = 0
    """Pods read that the registration does not send to the webhook: not checked."""
    scope_problem: str = ""
    """Why the registration could not be read this pass; empty when it was."""
    gaps: list[Gap] = field(default_factory=list)
    events: Tally[str] = field(default_factory=Tally)
    restarts: Tally[str] = field(default_factory=Tally)
    held: str = ""
    seconds: float = 0.0


class _RestartBudget:
    """A token bucket: ``per_minute`` restarts a minute, at most that many at once."""

    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        self._rate = per_minute / 60
        self._capacity = max(1.0, per_minute)
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout_in_progress(workload: Mapping[str, Any]) -> bool:
    """The owner's controller has not yet replaced every pod of its current template."""
    metadata = workload.get("metadata") or {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return True
    if workload.get("kind") == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        return int(status.get("updatedNumberScheduled") or 0) < desired
    replicas = spec.get("replicas")
    desired = 1 if replicas is None else int(replicas)
    return int(status.get("updatedReplicas") or 0) < desired


class Reconciler:
    """Runs passes while this replica leads; see the module doc for what a pass does."""

    def __init__(
        self,
        api: LeaseApi,
        settings: MutationSettings,
        reconcile: ReconcileSettings,
        *,
        service_accounts: ServiceAccountLookup,
        config_map: ConfigMapProvider,
        container_credentials: ContainerCredentialsProvider,
        elector: Elector,
        not_ready_reasons: Callable[[], list[str]],
        metrics: Metrics,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._settings = settings
        self._reconcile = reconcile
        self._service_accounts = service_accounts
        self._config_map = config_map
        self._container_credentials = container_credentials
        self._elector = elector
        self._not_ready_reasons = not_ready_reasons
        self._metrics = metrics
        self._wall = wall
        self._clock = clock
        self._budget = _RestartBudget(reconcile.restarts_per_minute, clock)
        self._reported: set[str] = set()
        self._restarted: dict[tuple[str, str, str], float] = {}
        self._scope: Scope | None = None
        """The scope last read; kept for counting while the registration cannot be read."""
        self._scope_hold = ""
        self._scope_logged = ""
        self.ready_since: float | None = None
        """Wall time since which this webhook has been ready without a break; None if not."""

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow_readiness())
            tasks.create_task(self._passes())

    async def _follow_readiness(self) -> None:
        while True:
            self.observe_readiness()
            await asyncio.sleep(READINESS_POLL)

    def observe_readiness(self) -> None:
        if self._not_ready_reasons():
            self.ready_since = None
        elif self.ready_since is None:
            self.ready_since = self._wall()

    async def _passes(self) -> None:
        while True:
            await self._elector.wait_leading()
            if self._synced():
                try:
                    report = await self.reconcile_once()
                except ApiError as exc:
                    self._metrics.reconcile_passes.labels("error").inc()
                    logger.warning(
                        "reconcile pass failed; trying again next interval",
                        extra={"status": exc.status, "reason": exc.reason, "detail": exc.message},
                    )
                except Exception:
                    # A bug or an odd object must cost one pass, not the reconciler.
                    self._metrics.reconcile_passes.labels("error").inc()
                    logger.exception("reconcile pass failed unexpectedly")
                else:
                    self._log(report)
            await asyncio.sleep(self._reconcile.interval)

    def _synced(self) -> bool:
        return (
            self._service_accounts.synced
            and self._config_map.synced
            and self._container_credentials.synced
        )

    async def reconcile_once(self) -> PassReport:
        """One pass: check every running or pending pod the registration sends to the webhook,
        report, restart. Raises ``ApiError`` when the pods cannot be listed."""
        started = self._clock()
        report = PassReport()
        scope = await self._read_scope(report)
        async for pod in self.pods():
            report.pods += 1
            if scope is not None and not scope.selects(pod):
                report.not_selected += 1
                continue
            gap = find_gap(pod, self._sources, self._settings)
            if gap is not None:
                report.gaps.append(gap)
        self._publish(report)
        if self._elector.is_leader():
            if not report.scope_problem:
                await self._send_events(report)
            if self._reconcile.mode == "restart":
                await self._restart_owners(report)
        report.seconds = self._clock() - started
        self._metrics.reconcile_pass_duration.set(report.seconds)
        self._metrics.reconcile_passes.labels("ok").inc()
        return report

    async def _read_scope(self, report: PassReport) -> Scope | None:
        """This pass's scope: read now, or the last one read (None: every pod) when the
        registration cannot be read, which ``report.scope_problem`` then says."""
        try:
            scope = await self.scope()
        except ScopeUnknown as exc:
            report.scope_problem = str(exc)
            self._scope_hold = SCOPE_UNKNOWN
            counted = "pods the registration last read selected" if self._scope else "every pod"
            self._log_scope(
                f"cannot tell which pods the API server sends to the webhook ({exc}): "
                f"counting {counted}, writing no Event and restarting nothing until it can"
            )
            return self._scope
        self._scope = scope
        conditions = scope.registration.match_conditions
        self._scope_hold = MATCH_CONDITIONS if conditions else ""
        self._log_scope(
            f"the webhook registration has matchConditions ({', '.join(conditions)}), which only "
            "the API server can evaluate: pods they exclude are reported too, and no owner is "
            "restarted"
            if conditions
            else ""
        )
        return scope

    def _log_scope(self, message: str) -> None:
        """Log a change of scope once, not every pass."""
        if message == self._scope_logged:
            return
        if message:
            logger.warning(message, extra={"webhook_configuration": self._configuration})
        else:
            logger.info(
                "the webhook registration is read and has no matchConditions: only the pods it "
                "sends to the webhook count, and Events and restarts resume",
                extra={"webhook_configuration": self._configuration},
            )
        self._scope_logged = message

    @property
    def _configuration(self) -> str:
        return self._reconcile.webhook_configuration

    async def scope(self) -> Scope:
        """The registration's entry for this webhook and, if its namespaceSelector needs them,
        the namespaces' labels. Raises ``ScopeUnknown`` when either cannot be read."""
        if not self._configuration:
            raise ScopeUnknown("--reconcile-webhook-configuration is not set")
        path = f"{CONFIGURATIONS_PATH}/{quote(self._configuration, safe='')}"
        what = f"MutatingWebhookConfiguration {self._configuration}"
        try:
            webhook = find_webhook(await self._api.get(path))
        except ApiError as exc:
            raise ScopeUnknown(f"cannot read {what}: {exc.status} {exc.reason}") from exc
        if webhook is None:
            raise ScopeUnknown(f"{what} has no webhook {WEBHOOK_NAME}")
        registration = registration_of(webhook)
        if not registration.namespace_selector:
            return Scope(registration, None)
        labels: dict[str, Mapping[str, str]] = {}
        try:
            async for namespace in self._list("/api/v1/namespaces", {}):
                metadata = namespace.get("metadata") or {}
                labels[str(metadata.get("name") or "")] = metadata.get("labels") or {}
        except ApiError as exc:
            raise ScopeUnknown(f"cannot list namespaces: {exc.status} {exc.reason}") from exc
        return Scope(registration, labels)

    def _sources(self, namespace: str, service_account: str) -> Sources:
        return Sources(
            self._service_accounts.get(namespace, service_account),
            self._config_map.current,
            self._container_credentials.current,
        )

    def pods(self) -> AsyncIterator[Mapping[str, Any]]:
        """Every running or pending pod, a page at a time."""
        return self._list("/api/v1/pods", {"fieldSelector": POD_PHASES})

    async def _list(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Mapping[str, Any]]:
        params = {**params, "limit": str(PAGE_SIZE)}
        while True:
            page = await self._api.get(path, params)
            for pod in page.get("items") or ():
                yield pod
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    def _publish(self, report: PassReport) -> None:
        self._metrics.reconcile_pods_checked.set(report.pods)
        self._metrics.reconcile_pods_not_selected.set(report.not_selected)
        self._metrics.reconcile_scope_known.set(0 if report.scope_problem else 1)
        counts: Tally[tuple[str, str]] = Tally(
            (gap.namespace, reason) for gap in report.gaps for reason in gap.reasons
        )
        # Cleared first so that a namespace whose pods were fixed drops out of the metric.
        self._metrics.reconcile_missing.clear()
        for (namespace, reason), count in counts.items():
            self._metrics.reconcile_missing.labels(namespace, reason).set(count)

    async def _send_events(self, report: PassReport) -> None:
        current = {event_name(gap): gap for gap in report.gaps}
        # Forget pods that are gone or fixed; a pod keeps its uid, so it is never reported twice.
        self._reported &= current.keys()
        budget = EVENTS_PER_PASS
        for name, gap in current.items():
            if name in self._reported:
                continue
            if budget == 0:
                report.events["deferred"] += 1
                continue
            budget -= 1
            result = await self._create_event(name, gap)
            report.events[result] += 1
            self._metrics.reconcile_events.labels(result).inc()
            if result != "error":
                self._reported.add(name)

    async def _create_event(self, name: str, gap: Gap) -> str:
        now = _rfc3339(self._wall())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": gap.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": gap.pod,
                "namespace": gap.namespace,
                "uid": gap.uid,
            },
            "reason": _REASON_OF_EVENT[gap.reasons == (ROLE_CHANGED,)],
            "message": describe(gap)[:1024],
            "type": "Warning",
            "source": {"component": "irsa-webhook-reconciler"},
            "reportingComponent": "irsa-webhook-reconciler",
            "reportingInstance": self._elector.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        path = f"/api/v1/namespaces/{quote(gap.namespace, safe='')}/events"
        try:
            await self._api.send("POST", path, body)
        except ApiError as exc:
            if exc.status == 409:
                return "exists"
            logger.warning(
                "cannot create an Event",
                extra={"namespace": gap.namespace, "pod": gap.pod, "status": exc.status},
            )
            return "error"
        return "created"

    def hold_reason(self, gaps: list[Gap]) -> str:
        """Why no owner may be restarted now, or "" (see the module doc)."""
        if self._not_ready_reasons() or self.ready_since is None:
            return NOT_READY
        if self._scope_hold:
            return self._scope_hold
        now = self._wall()
        for gap in gaps:
            if gap.reasons == (ROLE_CHANGED,):
                continue  # a changed role is the ServiceAccount's doing, not a missed call
            created = _timestamp(gap.created)
            # Creation times are cut to whole seconds, so a stored time after ready_since means
            # the pod was surely created after it (a pod of our first ready second may be missed).
            if (
                created is not None
                and created > self.ready_since
                and now - created < self._reconcile.hold_after_miss
            ):
                return RECENT_MISSES
        return ""

    async def _restart_owners(self, report: PassReport) -> None:
        report.held = self.hold_reason(report.gaps)
        for reason in HOLD_REASONS:
            self._metrics.reconcile_held.labels(reason).set(1 if reason == report.held else 0)
        if report.held:
            return
        owners: dict[tuple[str, str, str], list[Gap]] = {}
        for gap in report.gaps:
            if gap.owner.rollable:
                key = (gap.namespace, gap.owner.kind, gap.owner.name)
                owners.setdefault(key, []).append(gap)
        for key, gaps in owners.items():
            result = await self._restart_owner(key, gaps)
            report.restarts[result] += 1
            self._metrics.reconcile_restarts.labels(key[1], result).inc()

    async def _restart_owner(self, key: tuple[str, str, str], gaps: list[Gap]) -> str:
        namespace, kind, name = key
        now = self._wall()
        restarted = self._restarted.get(key)
        if restarted is not None:
            if any((_timestamp(gap.created) or 0) > restarted + 1 for gap in gaps):
                # Pods created by our own restart miss it as well: another restart cannot help.
                logger.warning(
                    "pods created after a restart still lack their injection; not restarting again",
                    extra={"namespace": namespace, "owner": f"{kind}/{name}"},
                )
                return "did-not-help"
            if now - restarted < self._reconcile.interval:
                return "recently-restarted"
        if not self._elector.is_leader() or self.hold_reason(gaps):
            return "held"
        path = (
            f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/{_PLURALS[kind]}"
            f"/{quote(name, safe='')}"
        )
        try:
            workload = await self._api.get(path)
            template = (workload.get("spec") or {}).get("template") or {}
            previous = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)
            at = _timestamp(str(previous)) if previous else None
            if at is not None and now - at < self._reconcile.interval:
                # Someone (or the previous Lease holder) restarted it just now: let that roll.
                self._restarted[key] = at
                return "recently-restarted"
            if at is not None and rollout_in_progress(workload):
                # A slow rollout keeps old pods for longer than an interval; they go with it.
                return "rollout-in-progress"
            if not self._budget.take():
                return "rate-limited"
            annotation = {RESTARTED_AT: _rfc3339(now)}
            patch = {"spec": {"template": {"metadata": {"annotations": annotation}}}}
            await self._api.send("PATCH", path, patch, "application/strategic-merge-patch+json")
        except ApiError as exc:
            if exc.status == 404:
                return "gone"
            logger.warning(
                "cannot restart an owner",
                extra={"namespace": namespace, "owner": f"{kind}/{name}", "status": exc.status},
            )
            return "error"
        self._restarted[key] = now
        logger.info(
            "restarted an owner whose pods missed their injection",
            extra={"namespace": namespace, "owner": f"{kind}/{name}", "pods": len(gaps)},
        )
        return "restarted"

    def _log(self, report: PassReport) -> None:
        logger.info(
            "reconcile pass",
            extra={
                "pods": report.pods,
                "not_selected": report.not_selected,
                "missing": len(report.gaps),
                "events": dict(report.events),
                "restarts": dict(report.restarts),
                "held": report.held,
                "scope_problem": report.scope_problem,
                "duration_ms": round(report.seconds * 1000, 1),
            },
        )
