"""What a reconcile pass costs the API server (``hack/bench.sh --reconcile``).

Creates N pods in a running control plane (they stay Pending: there is no node, which changes
nothing for a LIST), most of them stored as the webhook would have mutated them and 1% not, then
registers the webhook for that namespace only (pointing nowhere: nothing calls it, the
reconciler reads it) and runs report-mode passes in this process with the real ServiceAccount
cache, Lease and API client. Requests are read from the API server's own
``apiserver_request_total`` before and after each pass, by verb and resource; the reconciler's
counters are not used for that.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import ssl
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
from prometheus_client.parser import text_string_to_metric_families

from bench.run import log, read_env
from irsa_webhook.admission import ReviewRequest
from irsa_webhook.cache import ServiceAccountCache
from irsa_webhook.config import MutationSettings, ReconcileSettings
from irsa_webhook.decision import Sources, decide
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    parse_service_account,
)
from irsa_webhook.kubeapi import KubeApi
from irsa_webhook.leader import LeaseElector
from irsa_webhook.metrics import Metrics
from irsa_webhook.reconciler import Reconciler
from irsa_webhook.registration import CONFIGURATIONS_PATH, WEBHOOK_NAME

NAMESPACE = "bench-reconcile"
ROLE = "arn:aws:iam::111122223333:role/bench"
ANNOTATIONS = {"eks.amazonaws.com/role-arn": ROLE}
REGISTRATION = {
    "metadata": {"name": NAMESPACE},
    "webhooks": [
        {
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                }
            ],
            # Not empty, as with the chart's defaults: each pass lists the namespaces too.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
        }
    ],
}


class _Empty:
    """A source the bench does not watch: synced, with nothing in it."""

    synced = True

    def __init__(self, current: Any) -> None:
        self.current = current


def _pod(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"app-{index:05d}", "namespace": NAMESPACE, "labels": {"app": "a"}},
        "spec": {
            "serviceAccountName": "app",
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "env": [{"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def _mutated(pod: dict[str, Any], settings: MutationSettings) -> dict[str, Any]:
    """The pod as the webhook would have stored it."""
    entry = parse_service_account(ANNOTATIONS, settings)
    request = ReviewRequest(None, None, "", NAMESPACE, copy.deepcopy(pod), "app")
    sources = Sources(entry, EMPTY_CONFIG_MAP, EMPTY_CONTAINER_CREDENTIALS)
    decision = decide(request, sources, settings, lambda low, high: high)
    mutated: dict[str, Any] = jsonpatch.apply_patch(pod, decision.patch)
    return mutated


async def _create_pods(client: httpx.AsyncClient, count: int, missed_every: int) -> None:
    settings = MutationSettings()
    semaphore = asyncio.Semaphore(32)

    async def create(index: int) -> None:
        pod = _pod(index)
        body = pod if index % missed_every == 0 else _mutated(pod, settings)
        async with semaphore:
            response = await client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=body)
        if response.status_code not in (201, 409):
            raise RuntimeError(f"creating a pod failed: {response.status_code} {response.text}")

    started = time.monotonic()
    await asyncio.gather(*(create(index) for index in range(count)))
    log(f"created {count} pods in {time.monotonic() - started:.1f} s")


async def _requests(client: httpx.AsyncClient) -> Counter[tuple[str, str]]:
    text = (await client.get("/metrics")).text
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                labels = sample.labels
                counts[(labels.get("verb", ""), labels.get("resource", ""))] += int(sample.value)
    return counts


async def bench(plane: Path, count: int, passes: int) -> None:
    env = read_env(plane / "env")
    client = httpx.AsyncClient(
        base_url=env["APISERVER_URL"],
        verify=ssl.create_default_context(cafile=env["CA_CERT"]),
        headers={"Authorization": f"Bearer {env['ADMIN_TOKEN']}"},
        timeout=60,
    )
    await client.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
    await client.post(
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
        json={"metadata": {"name": "app", "annotations": ANNOTATIONS}},
    )
    missed_every = 100
    page = (await client.get(f"/api/v1/namespaces/{NAMESPACE}/pods", params={"limit": "1"})).json()
    present = len(page.get("items") or ()) + int(page["metadata"].get("remainingItemCount") or 0)
    if present < count:  # a kept plane (IRSA_BENCH_PLANE) may have them from a previous run
        await _create_pods(client, count, missed_every)
    # Registered after the pods were created, so their creation never waited on it.
    response = await client.post(CONFIGURATIONS_PATH, json=REGISTRATION)
    if response.status_code not in (201, 409):
        raise RuntimeError(f"registering failed: {response.status_code} {response.text}")

    api = KubeApi.from_config(env["KUBECONFIG"])
    settings = MutationSettings()
    metrics = Metrics()
    service_accounts = ServiceAccountCache(api, settings, metrics=metrics)
    elector = LeaseElector(api, NAMESPACE, "bench-reconciler", "bench", duration=60)
    reconciler = Reconciler(
        api,
        settings,
        ReconcileSettings(mode="report", webhook_configuration=NAMESPACE),
        service_accounts=service_accounts,
        config_map=_Empty(EMPTY_CONFIG_MAP),
        container_credentials=_Empty(EMPTY_CONTAINER_CREDENTIALS),
        elector=elector,
        not_ready_reasons=list,
        metrics=metrics,
    )
    cache = asyncio.create_task(service_accounts.run())
    await service_accounts.wait_synced()
    await elector.try_acquire_or_renew()
    durations = []
    print(f"\nreconcile pass over {count} pods ({count // missed_every} without injection):")
    for number in range(1, passes + 1):
        before = await _requests(client)
        report = await reconciler.reconcile_once()
        after = await _requests(client)
        # The scrape after the pass is itself one GET of a non-resource URL: not counted.
        delta = {
            f"{verb} {resource}": after[key] - before[key]
            for key in sorted(after)
            for verb, resource in [key]
            if after[key] - before[key] and resource
        }
        durations.append(report.seconds)
        print(
            f"  pass {number}: {report.seconds:.2f} s, {report.pods} pods read "
            f"({report.not_selected} not selected), "
            f"{len(report.gaps)} missing, Events {dict(report.events)}; "
            f"API server requests: {delta}"
        )
    print(f"  median pass duration {statistics.median(durations):.2f} s")
    # The baseline: the same pages read and decoded, nothing checked.
    listing = []
    for _ in range(passes):
        started = time.monotonic()
        async for _pod in reconciler.pods():
            pass
        listing.append(time.monotonic() - started)
    print(f"  median of listing alone (same pages, no checks) {statistics.median(listing):.2f} s")
    await client.delete(f"{CONFIGURATIONS_PATH}/{NAMESPACE}")
    cache.cancel()
    await asyncio.gather(cache, return_exceptions=True)
    await api.aclose()
    await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plane", type=Path, required=True)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(bench(args.plane, args.pods, args.passes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
