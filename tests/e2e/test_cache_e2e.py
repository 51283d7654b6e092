"""The ServiceAccount cache against the real kube-apiserver: list, watch, live GET, reconnect."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from cluster import ControlPlane, make_namespace, service_account
from irsa_webhook.cache import ServiceAccountCache
from irsa_webhook.config import MutationSettings
from irsa_webhook.identity import ServiceAccountEntry
from irsa_webhook.kubeapi import KubeApi
from irsa_webhook.metrics import Metrics

pytestmark = pytest.mark.timeout(120)

ROLE = "arn:aws:iam::111122223333:role/cache-e2e"
OTHER_ROLE = "arn:aws:iam::111122223333:role/cache-e2e-other"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"

T = TypeVar("T")


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def kubectl(plane: ControlPlane, *args: str) -> None:
    """kubectl without blocking the event loop the cache runs on."""
    await asyncio.to_thread(plane.kubectl, *args)


def role_of(entry: ServiceAccountEntry | None) -> str | None:
    return entry.role_arn if entry is not None else None


class Proxy:
    """A TCP proxy in front of the API server, so a test can cut every open connection."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 443
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self._host, self._port)
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer),
                self._pipe(upstream_reader, writer),
                return_exceptions=True,
            )
        finally:
            self._writers -= {writer, upstream_writer}
            writer.transport.abort()
            upstream_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


def restarts(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "irsa_webhook_watch_restarts_total", {"source": "serviceaccounts", "reason": reason}
    )
    return value or 0.0


def test_the_cache_lists_existing_service_accounts_then_follows_create_annotate_and_delete(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = make_namespace(control_plane, "cache")
    control_plane.apply(service_account(namespace, "before", {ROLE_ANNOTATION: ROLE}))

    async def scenario() -> None:
        api = KubeApi.from_config(control_plane.kubeconfig)
        cache = ServiceAccountCache(api, MutationSettings(), grace_period=0)
        task = asyncio.create_task(cache.run())
        try:
            with caplog.at_level(logging.INFO, logger="irsa_webhook.cache"):
                await asyncio.wait_for(cache.wait_synced(), 30)
            assert role_of(cache.get(namespace, "before")) == ROLE
            # This API server streams the list on the watch (sendInitialEvents): no fallback.
            listed = [r for r in caplog.records if r.getMessage() == "listed"]
            assert [getattr(r, "how", None) for r in listed] == ["stream"], caplog.text
            assert "listing in pages" not in caplog.text

            await kubectl(control_plane, "create", "serviceaccount", "-n", namespace, "after")
            await until(lambda: cache.get(namespace, "after") is not None)
            assert role_of(cache.get(namespace, "after")) == ""

            await kubectl(
                control_plane,
                "annotate",
                "serviceaccount",
                "-n",
                namespace,
                "after",
                f"{ROLE_ANNOTATION}={OTHER_ROLE}",
            )
            await until(lambda: role_of(cache.get(namespace, "after")) == OTHER_ROLE)

            await kubectl(control_plane, "delete", "serviceaccount", "-n", namespace, "before")
            await until(lambda: cache.get(namespace, "before") is None)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.aclose()

    run(scenario)


def test_a_live_get_finds_a_service_account_the_cache_has_not_seen(
    control_plane: ControlPlane,
) -> None:
    namespace = make_namespace(control_plane, "cache")
    control_plane.apply(service_account(namespace, "fresh", {ROLE_ANNOTATION: ROLE}))

    async def scenario() -> None:
        api = KubeApi.from_config(control_plane.kubeconfig)
        metrics = Metrics()
        # Not running: only the live GET can know about the ServiceAccount.
        cache = ServiceAccountCache(api, MutationSettings(), grace_period=5.0, metrics=metrics)
        try:
            assert role_of(await cache.lookup(namespace, "fresh")) == ROLE
            assert role_of(cache.get(namespace, "fresh")) == ROLE
            started = time.monotonic()
            assert await cache.lookup(namespace, "never-created") is None
            assert time.monotonic() - started < 2.0, "a 404 must not wait out the grace period"
        finally:
            await api.aclose()
        found = {"result": "found"}
        not_found = {"result": "not-found"}
        name = "irsa_webhook_service_account_live_lookups_total"
        assert metrics.registry.get_sample_value(name, found) == 1
        assert metrics.registry.get_sample_value(name, not_found) == 1

    run(scenario)


def test_the_watch_resumes_after_its_connection_is_cut(control_plane: ControlPlane) -> None:
    namespace = make_namespace(control_plane, "cache")

    async def scenario() -> None:
        proxy = Proxy(control_plane.url)
        await proxy.start()
        api = KubeApi.from_config(control_plane.kubeconfig, kube_api=proxy.url)
        metrics = Metrics()
        cache = ServiceAccountCache(api, MutationSettings(), grace_period=0, metrics=metrics)
        task = asyncio.create_task(cache.run())
        try:
            await asyncio.wait_for(cache.wait_synced(), 30)
            await kubectl(control_plane, "create", "serviceaccount", "-n", namespace, "one")
            await until(lambda: cache.get(namespace, "one") is not None)

            proxy.cut()
            await kubectl(control_plane, "create", "serviceaccount", "-n", namespace, "two")
            await until(lambda: cache.get(namespace, "two") is not None)

            assert restarts(metrics, "error") >= 1, "the cut was noticed"
            assert restarts(metrics, "expired") == 0, "resumed from its version, no relist"
            assert cache.get(namespace, "one") is not None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.aclose()
            await proxy.close()

    run(scenario)
