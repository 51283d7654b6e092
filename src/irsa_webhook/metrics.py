"""Prometheus metrics: the reference webhook's names (dashboards keep working) and ours.

The reference's counters are exposed under their exact Go names (``http_request_count``, not
``..._total``), so they are emitted as untyped samples by a small collector; prometheus-client
would otherwise append ``_total``. Our own metrics use seconds and the ``irsa_webhook_`` prefix.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# The reference's latency histogram is in microseconds, 0.125 s to 8 s.
_REFERENCE_BUCKETS_US = (125000, 250000, 500000, 1e6, 2e6, 4e6, 8e6)
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0)


class _ReferenceCounters(Collector):
    """``http_request_count``, ``pod_identity_webhook_pod_count`` and missing-SA, as in Go."""

    def __init__(self) -> None:
        self.requests: Tally[tuple[str, str, str]] = Tally()
        self.pods: Tally[str] = Tally()
        self.missing_service_accounts = 0

    def collect(self) -> Iterator[Metric]:
        requests = Metric("http_request_count", "Count of HTTP requests", "unknown")
        for (verb, path, code), value in sorted(self.requests.items()):
            requests.add_sample(
                "http_request_count", {"verb": verb, "path": path, "code": code}, value
            )
        yield requests
        pods = Metric("pod_identity_webhook_pod_count", "Pods mutated, by method", "unknown")
        for method, value in sorted(self.pods.items()):
            pods.add_sample("pod_identity_webhook_pod_count", {"method": method}, value)
        yield pods
        missing = Metric(
            "pod_identity_webhook_missing_sa_count",
            "Pods whose ServiceAccount was not found",
            "unknown",
        )
        missing.add_sample(
            "pod_identity_webhook_missing_sa_count", {}, self.missing_service_accounts
        )
        yield missing


class Metrics:
    """All metrics of one webhook process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._latency_children: dict[tuple[str, str], Histogram] = {}
        self._outcome_children: dict[str, tuple[Counter, Histogram]] = {}
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._reference = _ReferenceCounters()
        registry.register(self._reference)
        self.request_latencies_us = Histogram(
            "http_request_latencies",
            "Response latency distribution in microseconds (reference name)",
            ["verb", "path"],
            buckets=_REFERENCE_BUCKETS_US,
            registry=registry,
        )
        self.used = Gauge(
            "pod_identity_webhook_used", "The webhook is in use (reference name)", registry=registry
        )
        self.request_duration = Histogram(
            "irsa_webhook_request_duration_seconds",
            "Time to answer an admission request",
            ["outcome"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            "irsa_webhook_admission_decisions",
            "Admission decisions by outcome (mutated, unchanged, not-annotated, missing-sa, ...)",
            ["outcome"],
            registry=registry,
        )
        self.warnings = Counter(
            "irsa_webhook_warnings",
            "Admission warnings returned, by reason code (stable, see irsa_webhook.reasons)",
            ["reason"],
            registry=registry,
        )
        self.cache_size = Gauge(
            "irsa_webhook_cache_size", "Objects held by each cache", ["source"], registry=registry
        )
        self.cache_synced = Gauge(
            "irsa_webhook_cache_synced",
            "1 once the source has been fully read",
            ["source"],
            registry=registry,
        )
        self.cache_last_contact = Gauge(
            "irsa_webhook_cache_last_contact_timestamp_seconds",
            "When the source last heard from the API server (a list or any watch event, "
            "bookmarks included), as a Unix time: alert when it falls minutes behind",
            ["source"],
            registry=registry,
        )
        self.watch_restarts = Counter(
            "irsa_webhook_watch_restarts",
            "Watch reconnections, by source and reason",
            ["source", "reason"],
            registry=registry,
        )
        self.live_lookups = Counter(
            "irsa_webhook_service_account_live_lookups",
            "Cache misses and their live GET of the ServiceAccount, by result (rate-limited and "
            "in-flight-limit: no GET was made)",
            ["result"],
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "irsa_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix time",
            registry=registry,
        )
        self.certificate_reloads = Counter(
            "irsa_webhook_certificate_reloads",
            "Serving certificate reloads, by result",
            ["result"],
            registry=registry,
        )

        self.reconcile_missing = Gauge(
            "irsa_webhook_reconcile_pods_missing_injection",
            "Running or pending pods that lack what the webhook would inject now, by namespace "
            "and reason (token-volume, credentials-env, role-changed, ...), as of the last pass",
            ["namespace", "reason"],
            registry=registry,
        )
        self.reconcile_passes = Counter(
            "irsa_webhook_reconcile_passes",
            "Reconcile passes over the pods, by result (ok, error)",
            ["result"],
            registry=registry,
        )
        self.reconcile_pass_duration = Gauge(
            "irsa_webhook_reconcile_pass_duration_seconds",
            "How long the last reconcile pass took",
            registry=registry,
        )
        self.reconcile_pods_checked = Gauge(
            "irsa_webhook_reconcile_pods_checked",
            "Running or pending pods the last reconcile pass read",
            registry=registry,
        )
        self.reconcile_pods_not_selected = Gauge(
            "irsa_webhook_reconcile_pods_not_selected",
            "Pods the last reconcile pass read but left alone: the webhook registration's "
            "rules, namespaceSelector or objectSelector do not send them to the webhook",
            registry=registry,
        )
        self.reconcile_scope_known = Gauge(
            "irsa_webhook_reconcile_scope_known",
            "1 when the last reconcile pass read the webhook registration (and the namespaces "
            "its selector needs); 0: it counted with an older or no scope, and wrote nothing",
            registry=registry,
        )
        self.reconcile_events = Counter(
            "irsa_webhook_reconcile_events",
            "Events about pods that missed their injection, by result (created, exists, error)",
            ["result"],
            registry=registry,
        )
        self.reconcile_restarts = Counter(
            "irsa_webhook_reconcile_restarts",
            "Owner restarts, by kind and result (restarted, recently-restarted, "
            "rollout-in-progress, did-not-help, rate-limited, held, gone, error)",
            ["kind", "result"],
            registry=registry,
        )
        self.reconcile_held = Gauge(
            "irsa_webhook_reconcile_restarts_held",
            "1 while restarts are held, by reason (webhook-not-ready, registration-unreadable, "
            "match-conditions, recent-unmutated-pods)",
            ["reason"],
            registry=registry,
        )
        self.reconcile_leader = Gauge(
            "irsa_webhook_reconcile_leader",
            "1 while this replica holds the reconciler Lease",
            registry=registry,
        )

    def observe_request(self, verb: str, path: str, code: int, seconds: float) -> None:
        self._reference.requests[(verb, path, str(code))] += 1
        latency = self._latency_children.get((verb, path))
        if latency is None:
            latency = self._latency_children[(verb, path)] = self.request_latencies_us.labels(
                verb, path
            )
        latency.observe(seconds * 1e6)

    def observe_decision(
        self, outcome: str, mode: str | None, warning_reasons: list[str], seconds: float
    ) -> None:
        """One answered admission request. ``labels()`` is looked up once per outcome: it
        costs more than the increment itself on the hot path."""
        children = self._outcome_children.get(outcome)
        if children is None:
            children = self._outcome_children[outcome] = (
                self.decisions.labels(outcome),
                self.request_duration.labels(outcome),
            )
        children[0].inc()
        children[1].observe(seconds)
        if mode is not None:
            self._reference.pods[mode] += 1
        elif outcome == "missing-service-account":
            self._reference.missing_service_accounts += 1
        for reason in warning_reasons:
            self.warnings.labels(reason).inc()
