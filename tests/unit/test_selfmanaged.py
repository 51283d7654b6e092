"""The self-managed certificate loop against a scripted API server: what it writes, what it does
when another replica wrote first, and when it patches the caBundle. The real API server runs the
same loop in tests/e2e/test_self_managed.py; this pins the orderings a real race seldom hits."""

from __future__ import annotations

import asyncio
import copy
import datetime
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import pytest

from irsa_webhook import pki
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.registration import CONFIGURATIONS_PATH
from irsa_webhook.selfmanaged import SelfManagedCertificate

pytestmark = pytest.mark.timeout(10)

NAMESPACE, SECRET, CONFIGURATION = "irsa", "webhook-pki", "webhook"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"
HOSTS = ("webhook.irsa.svc",)
LIFETIMES = pki.Lifetimes(certificate=86400.0, ca=10 * 86400.0)


class ScriptedApi:
    """One Secret and one webhook configuration held as the API server would; writes recorded.

    ``winner`` is a bundle another replica writes just before our first PUT, which then fails
    with 409 Conflict, as the API server answers a PUT carrying an outdated resourceVersion.
    """

    def __init__(self, secret_data: dict[str, str] | None, winner: pki.Bundle | None) -> None:
        self.secret: dict[str, Any] = {
            "metadata": {"name": SECRET, "namespace": NAMESPACE, "resourceVersion": "1"},
            "type": "Opaque",
            **({"data": secret_data} if secret_data else {}),
        }
        self.configuration: dict[str, Any] = {
            "metadata": {"name": CONFIGURATION, "resourceVersion": "1"},
            "webhooks": [{"name": "pod-identity-webhook.amazonaws.com", "clientConfig": {}}],
        }
        self.winner = winner
        self.writes: list[tuple[str, str, Any]] = []
        self.patched = asyncio.Event()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        if path == SECRET_PATH:
            return copy.deepcopy(self.secret)
        item = self.configuration if path == CONFIGURATIONS_PATH else self.secret
        return {"metadata": {"resourceVersion": "1"}, "items": [copy.deepcopy(item)]}

    async def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        if "sendInitialEvents" in (params or {}):
            # A streamed list: the objects a LIST would return, then the end bookmark.
            for item in (await self.get(path, params))["items"]:
                yield {"type": "ADDED", "object": item}
            metadata = {
                "resourceVersion": "1",
                "annotations": {"k8s.io/initial-events-end": "true"},
            }
            yield {"type": "BOOKMARK", "object": {"metadata": metadata}}
        await asyncio.Event().wait()
        yield {}

    async def send(
        self, method: str, path: str, body: Any, content_type: str = "application/json"
    ) -> dict[str, Any]:
        self.writes.append((method, path, body))
        if method == "PUT":
            if self.winner is not None:
                self.secret["data"] = pki.secret_data(self.winner)
                self.secret["metadata"]["resourceVersion"] = "2"
                self.winner = None
            if body["metadata"]["resourceVersion"] != self.secret["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified")
            self.secret = {**body, "metadata": {**body["metadata"], "resourceVersion": "3"}}
            return copy.deepcopy(self.secret)
        assert method == "PATCH"
        assert content_type == "application/json-patch+json"
        for operation in body:
            if operation["op"] == "add":
                self.configuration["webhooks"][0]["clientConfig"]["caBundle"] = operation["value"]
        self.patched.set()
        return copy.deepcopy(self.configuration)


async def run_until_patched(api: ScriptedApi) -> SelfManagedCertificate:
    manager = SelfManagedCertificate(
        api,
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        namespace=NAMESPACE,
        secret=SECRET,
        webhook_configuration=CONFIGURATION,
        hosts=HOSTS,
        lifetimes=LIFETIMES,
    )
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(api.patched.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return manager


def issued() -> pki.Bundle:
    now = datetime.datetime.now(datetime.UTC)
    return pki.renew(None, pki.Renewal.CA, HOSTS, LIFETIMES, now, CONFIGURATION)


def served_not_after(bundle: pki.Bundle) -> float:
    return bundle.certificate.not_valid_after_utc.timestamp()


def test_an_empty_secret_gets_a_new_ca_and_the_registration_its_bundle() -> None:
    api = ScriptedApi(None, None)
    manager = asyncio.run(run_until_patched(api))
    ((method, path, body), _patch) = api.writes
    assert (method, path) == ("PUT", SECRET_PATH)
    assert body["metadata"]["resourceVersion"] == "1"
    written = pki.read_bundle(api.secret["data"])
    assert manager.loaded
    assert manager.not_after == served_not_after(written)
    ca_bundle = api.configuration["webhooks"][0]["clientConfig"]["caBundle"]
    assert ca_bundle == pki.ca_bundle(written, datetime.datetime.now(datetime.UTC))


def test_a_replica_that_loses_the_race_serves_the_winners_certificate() -> None:
    winner = issued()
    api = ScriptedApi(None, winner)
    manager = asyncio.run(run_until_patched(api))
    methods = [method for method, _, _ in api.writes]
    # One PUT refused with 409, then no second one: the winner's bundle is good.
    assert methods == ["PUT", "PATCH"]
    assert manager.not_after == served_not_after(winner)
    assert api.configuration["webhooks"][0]["clientConfig"]["caBundle"] == pki.ca_bundle(
        winner, datetime.datetime.now(datetime.UTC)
    )


def test_a_good_secret_is_served_as_it_is_and_only_the_missing_ca_bundle_is_patched() -> None:
    existing = issued()
    api = ScriptedApi(pki.secret_data(existing), None)
    manager = asyncio.run(run_until_patched(api))
    assert [method for method, _, _ in api.writes] == ["PATCH"]
    assert manager.not_after == served_not_after(existing)
    ((_, _, operations),) = api.writes
    # The patch checks the webhook's name, so it cannot land on another entry of the list.
    assert operations[0] == {
        "op": "test",
        "path": "/webhooks/0/name",
        "value": "pod-identity-webhook.amazonaws.com",
    }


def test_the_next_check_is_due_when_a_third_of_the_lifetime_is_left() -> None:
    existing = issued()
    api = ScriptedApi(pki.secret_data(existing), None)

    async def scenario() -> float:
        manager = await run_until_patched(api)
        return await manager.reconcile()

    wait = asyncio.run(scenario())
    expected = served_not_after(existing) - LIFETIMES.certificate / 3 - time.time()
    assert wait == pytest.approx(expected, abs=5)
