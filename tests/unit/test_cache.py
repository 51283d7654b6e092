"""The list-then-watch state machine and the live lookup, against a scripted API server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import orjson
import pytest

from irsa_webhook.cache import (
    LIST_PAGE_SIZE,
    ConfigMapSource,
    ListWatchApi,
    LookupSkipped,
    ServiceAccountCache,
)
from irsa_webhook.config import MutationSettings
from irsa_webhook.identity import EMPTY_CONFIG_MAP, ServiceAccountEntry
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.metrics import Metrics
from irsa_webhook.reasons import Reason

pytestmark = pytest.mark.timeout(5)

ROLE = "arn:aws:iam::111122223333:role/s3-reader"
OTHER_ROLE = "arn:aws:iam::111122223333:role/other"
SETTINGS = MutationSettings()
SA_LIST = "/api/v1/serviceaccounts"

T = TypeVar("T")

HANG = object()
"""In a watch script: keep the connection open and say nothing more."""


class FakeApi:
    """A scripted API server: LIST pages, watch streams and single GETs, each call recorded.

    Each watch takes the next script from ``watches``: events to send, exceptions to raise,
    ``asyncio.Event`` gates to wait for, ``HANG``. With no script left a watch hangs, as an idle
    watch does. With no LIST response left a LIST hangs too, so a test never spins.
    """

    def __init__(
        self,
        pages: list[dict[str, Any] | Exception] | None = None,
        watches: list[list[Any]] | None = None,
        objects: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.pages = list(pages or [])
        self.watches = list(watches or [])
        self.objects = dict(objects or {})
        self.get_delay = 0.0
        self.get_errors: list[ApiError] = []
        self.list_calls: list[dict[str, str]] = []
        self.watch_calls: list[dict[str, str]] = []
        self.get_calls: list[str] = []
        self.gets_finished = 0
        self.open_watches = 0

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        params = dict(params or {})
        if "limit" in params:
            self.list_calls.append({"path": path, **params})
            if not self.pages:
                await asyncio.Event().wait()
            page = self.pages.pop(0)
            if isinstance(page, Exception):
                raise page
            return page
        self.get_calls.append(path)
        await asyncio.sleep(self.get_delay)
        self.gets_finished += 1
        if self.get_errors:
            raise self.get_errors.pop(0)
        if path in self.objects:
            return self.objects[path]
        raise ApiError(404, "NotFound", f"{path} not found")

    async def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        self.watch_calls.append({"path": path, **(params or {})})
        script: list[Any] = self.watches.pop(0) if self.watches else [HANG]
        self.open_watches += 1
        try:
            for item in script:
                if item is HANG:
                    await asyncio.Event().wait()
                elif isinstance(item, asyncio.Event):
                    await item.wait()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.open_watches -= 1


def service_account(
    namespace: str, name: str, version: str = "1", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": namespace, "name": name, "resourceVersion": version}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata}


def role(arn: str) -> dict[str, str]:
    return {"eks.amazonaws.com/role-arn": arn}


def page(items: list[dict[str, Any]], version: str = "10", token: str = "") -> dict[str, Any]:
    metadata = {"resourceVersion": version}
    if token:
        metadata["continue"] = token
    return {"kind": "ServiceAccountList", "metadata": metadata, "items": items}


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def bookmark(version: str) -> dict[str, Any]:
    return event("BOOKMARK", {"kind": "ServiceAccount", "metadata": {"resourceVersion": version}})


def expired(code: int | None = 410, reason: str = "Expired") -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status", "reason": reason, "message": "too old"}
    if code is not None:
        status["code"] = code
    return event("ERROR", status)


class Sleeps:
    """Records backoff delays instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


async def running(
    source: ServiceAccountCache | ConfigMapSource, check: Callable[[], Awaitable[None]]
) -> None:
    """Run the source's loop while ``check`` runs, then cancel it as the app does at shutdown."""
    task = asyncio.create_task(source.run())
    try:
        await check()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def new_cache(
    api: ListWatchApi, metrics: Metrics | None = None, grace_period: float = 1.0, **kwargs: Any
) -> ServiceAccountCache:
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("random", lambda: 1.0)
    return ServiceAccountCache(api, SETTINGS, grace_period=grace_period, metrics=metrics, **kwargs)


def restarts(metrics: Metrics, reason: str, source: str = "serviceaccounts") -> float:
    value = metrics.registry.get_sample_value(
        "irsa_webhook_watch_restarts_total", {"source": source, "reason": reason}
    )
    return value or 0.0


def sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# --- list, then watch -------------------------------------------------------------------------


def test_the_first_list_reads_every_page_before_the_cache_is_synced() -> None:
    api = FakeApi(
        pages=[
            page([service_account("a", "one", annotations=role(ROLE))], token="next-page"),
            page([service_account("b", "two")], version="42"),
        ]
    )
    metrics = Metrics()
    cache = new_cache(api, metrics)

    async def check() -> None:
        assert not cache.synced
        await asyncio.wait_for(cache.wait_synced(), 1)
        assert cache.synced
        assert len(cache) == 2
        entry = cache.get("a", "one")
        assert entry is not None
        assert entry.role_arn == ROLE
        assert cache.get("b", "two") is not None
        assert api.list_calls == [
            {"path": SA_LIST, "limit": str(LIST_PAGE_SIZE)},
            {"path": SA_LIST, "limit": str(LIST_PAGE_SIZE), "continue": "next-page"},
        ]
        await until(lambda: len(api.watch_calls) == 1)
        assert api.watch_calls[0] == {
            "path": SA_LIST,
            "watch": "1",
            "resourceVersion": "42",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        assert sample(metrics, "irsa_webhook_cache_synced", {"source": "serviceaccounts"}) == 1
        assert sample(metrics, "irsa_webhook_cache_size", {"source": "serviceaccounts"}) == 2

    run(lambda: running(cache, check))


def test_watch_events_add_change_and_remove_service_accounts() -> None:
    api = FakeApi(
        pages=[page([service_account("a", "gone")])],
        watches=[
            [
                event("ADDED", service_account("a", "new", "11", role(ROLE))),
                event("MODIFIED", service_account("a", "new", "12", role(OTHER_ROLE))),
                event("DELETED", service_account("a", "gone", "13")),
                HANG,
            ]
        ],
    )
    metrics = Metrics()
    cache = new_cache(api, metrics)

    async def check() -> None:
        await until(lambda: cache.get("a", "gone") is None and cache.get("a", "new") is not None)
        entry = cache.get("a", "new")
        assert entry is not None
        assert entry.role_arn == OTHER_ROLE
        assert cache.snapshot() == {"a/new": entry}
        assert sample(metrics, "irsa_webhook_cache_size", {"source": "serviceaccounts"}) == 1

    run(lambda: running(cache, check))


def test_the_watch_resumes_from_the_last_version_seen_including_a_bookmark() -> None:
    api = FakeApi(
        pages=[page([], version="10")],
        watches=[
            [event("ADDED", service_account("a", "one", "11")), bookmark("15")],
            [event("MODIFIED", service_account("a", "one", "16", role(ROLE)))],
        ],
    )
    metrics = Metrics()
    cache = new_cache(api, metrics)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 3)
        assert [call["resourceVersion"] for call in api.watch_calls] == ["10", "15", "16"]
        assert len(api.list_calls) == 1
        entry = cache.get("a", "one")
        assert entry is not None
        assert entry.role_arn == ROLE
        assert restarts(metrics, "closed") == 2

    run(lambda: running(cache, check))


@pytest.mark.parametrize(
    "error_event",
    [expired(), expired(code=None, reason="Gone")],
    ids=["code 410", "reason Gone without a code"],
)
def test_an_expired_error_in_the_stream_makes_the_cache_list_again(
    error_event: dict[str, Any],
) -> None:
    api = FakeApi(
        pages=[
            page([service_account("a", "deleted-while-away")], version="10"),
            page([service_account("a", "created-while-away")], version="90"),
        ],
        watches=[[bookmark("20"), error_event]],
    )
    metrics = Metrics()
    cache = new_cache(api, metrics)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 2)
        assert len(api.list_calls) == 2
        assert set(cache.snapshot()) == {"a/created-while-away"}
        assert api.watch_calls[1]["resourceVersion"] == "90"
        assert restarts(metrics, "expired") == 1

    run(lambda: running(cache, check))


def test_an_http_410_on_the_watch_makes_the_cache_list_again() -> None:
    api = FakeApi(
        pages=[page([], version="10"), page([service_account("a", "one")], version="91")],
        watches=[[ApiError(410, "Expired", "too old resource version")]],
    )
    cache = new_cache(api)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 2)
        assert len(api.list_calls) == 2
        assert cache.get("a", "one") is not None
        assert api.watch_calls[1]["resourceVersion"] == "91"

    run(lambda: running(cache, check))


def test_each_complete_list_releases_the_freed_memory_once_its_items_are_in_place() -> None:
    """The first list and a relist each end with one release, when the pages (and on a relist
    the previous items) are garbage; the watch's events do not trigger one."""
    api = FakeApi(
        pages=[
            page([service_account("a", "one")], version="10", token="more"),
            page([service_account("a", "two")], version="11"),
            page([service_account("a", "three")], version="90"),
        ],
        watches=[[event("ADDED", service_account("a", "four", "12")), expired()]],
    )
    seen: list[tuple[bool, set[str], int]] = []

    def release() -> None:
        seen.append((cache.synced, set(cache.snapshot()), len(api.list_calls)))

    cache = new_cache(api, release_memory=release)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 2)
        assert seen == [
            (True, {"a/one", "a/two"}, 2),
            (True, {"a/three"}, 3),
        ]

    run(lambda: running(cache, check))


def test_errors_back_off_exponentially_and_progress_resets_the_backoff() -> None:
    failure = ApiError(500, "InternalError", "etcd is sad")
    api = FakeApi(
        pages=[failure, page([], version="10")],
        watches=[
            [failure],
            [RuntimeError("a bug, not an API error")],
            [bookmark("11")],
            [expired(code=500, reason="InternalError")],
        ],
    )
    sleeps = Sleeps()
    metrics = Metrics()
    cache = new_cache(api, metrics, sleep=sleeps)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 5)
        # list error, watch error, watch bug; a bookmark resets; normal close, in-stream error
        assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4, 0.1, 0.2])
        assert restarts(metrics, "error") == 4
        assert restarts(metrics, "closed") == 1
        assert api.watch_calls[-1]["resourceVersion"] == "11"

    run(lambda: running(cache, check))


def test_a_410_after_an_outage_relists_without_the_outage_backoff() -> None:
    down = ApiError(503, "ServiceUnavailable", "apiserver is down")
    api = FakeApi(
        pages=[page([], version="10"), page([service_account("a", "one")], version="91")],
        watches=[[down], [down], [down], [ApiError(410, "Expired", "too old resource version")]],
    )
    sleeps = Sleeps()
    metrics = Metrics()
    cache = new_cache(api, metrics, sleep=sleeps)

    async def check() -> None:
        await until(lambda: len(api.list_calls) == 2)
        assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4, 0.1])
        assert cache.get("a", "one") is not None

    run(lambda: running(cache, check))


def test_a_server_that_keeps_answering_410_is_relisted_with_backoff_not_in_a_loop() -> None:
    gone = ApiError(410, "Expired", "too old resource version")
    api = FakeApi(pages=[page([], version="10")] * 5, watches=[[gone]] * 4)
    sleeps = Sleeps()
    cache = new_cache(api, sleep=sleeps)

    async def check() -> None:
        await until(lambda: len(api.list_calls) == 5)
        # The first 410 relists at once; each further one without an event in between doubles.
        assert sleeps.delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])

    run(lambda: running(cache, check))


def test_the_last_contact_gauge_is_set_when_the_source_hears_from_the_api_server() -> None:
    api = FakeApi(pages=[page([], version="10")], watches=[[bookmark("11")]])
    metrics = Metrics()
    cache = new_cache(api, metrics)
    before = time.time()

    def contact() -> float:
        value = metrics.registry.get_sample_value(
            "irsa_webhook_cache_last_contact_timestamp_seconds", {"source": "serviceaccounts"}
        )
        return value or 0.0

    async def check() -> None:
        await until(lambda: len(api.watch_calls) >= 2)
        assert before <= contact() <= time.time()

    run(lambda: running(cache, check))


def test_the_backoff_is_capped_at_thirty_seconds_and_jittered() -> None:
    failure = ApiError(503, "ServiceUnavailable", "")
    api = FakeApi(pages=[failure] * 12)
    sleeps = Sleeps()
    cache = new_cache(api, sleep=sleeps, random=lambda: 0.0)

    async def check() -> None:
        await until(lambda: len(sleeps.delays) == 12)
        assert sleeps.delays[:3] == pytest.approx([0.05, 0.1, 0.2])
        assert sleeps.delays[-1] == pytest.approx(15.0)
        assert max(sleeps.delays) == pytest.approx(15.0)

    run(lambda: running(cache, check))


def test_too_many_requests_waits_as_long_as_retry_after_says() -> None:
    api = FakeApi(
        pages=[ApiError(429, "TooManyRequests", "slow down", retry_after=7.0), page([])],
    )
    sleeps = Sleeps()
    cache = new_cache(api, sleep=sleeps)

    async def check() -> None:
        await asyncio.wait_for(cache.wait_synced(), 1)
        assert sleeps.delays == [7.0]

    run(lambda: running(cache, check))


def test_a_silent_watch_is_reconnected_from_the_last_version_after_the_inactivity_timeout() -> None:
    api = FakeApi(
        pages=[page([], version="10")],
        watches=[[event("ADDED", service_account("a", "one", "12")), HANG]],
    )
    metrics = Metrics()
    cache = new_cache(api, metrics, inactivity_timeout=0.05)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 2)
        assert api.watch_calls[1]["resourceVersion"] == "12"
        assert restarts(metrics, "timeout") == 1
        assert len(api.list_calls) == 1

    run(lambda: running(cache, check))


def test_cancelling_the_loop_closes_the_open_watch() -> None:
    api = FakeApi(pages=[page([])], watches=[[HANG]])
    cache = new_cache(api)

    async def check() -> None:
        await until(lambda: api.open_watches == 1)

    async def scenario() -> None:
        await running(cache, check)
        assert api.open_watches == 0

    run(scenario)


def test_service_accounts_without_our_annotations_share_one_compact_entry() -> None:
    api = FakeApi(
        pages=[
            page(
                [
                    service_account("a", "plain"),
                    service_account(
                        "b", "other-tools", annotations={"kubectl.kubernetes.io/x": "{}" * 500}
                    ),
                    service_account("c", "ours", annotations=role(ROLE)),
                ]
            )
        ]
    )
    cache = new_cache(api)

    async def check() -> None:
        await asyncio.wait_for(cache.wait_synced(), 1)
        plain = cache.get("a", "plain")
        assert isinstance(plain, ServiceAccountEntry)
        assert plain.role_arn == ""
        assert cache.get("b", "other-tools") is plain
        assert cache.get("c", "ours") is not plain

    run(lambda: running(cache, check))


# --- lookup ------------------------------------------------------------------------------------

SA_PATH = "/api/v1/namespaces/a/serviceaccounts/late"


def live_lookups(metrics: Metrics, result: str) -> float:
    value = sample(metrics, "irsa_webhook_service_account_live_lookups_total", {"result": result})
    return value or 0.0


def test_a_cached_service_account_is_returned_without_asking_the_api_server() -> None:
    api = FakeApi(pages=[page([service_account("a", "one", annotations=role(ROLE))])])
    cache = new_cache(api)

    async def check() -> None:
        await asyncio.wait_for(cache.wait_synced(), 1)
        entry = await cache.lookup("a", "one")
        assert entry is not None
        assert entry.role_arn == ROLE
        assert api.get_calls == []

    run(lambda: running(cache, check))


def test_a_miss_is_answered_by_a_live_get_within_the_grace_period_and_cached() -> None:
    api = FakeApi(objects={SA_PATH: service_account("a", "late", "5", role(ROLE))})
    metrics = Metrics()
    cache = new_cache(api, metrics)

    async def scenario() -> None:
        entry = await cache.lookup("a", "late")
        assert entry is not None
        assert entry.role_arn == ROLE
        assert cache.get("a", "late") == entry
        assert await cache.lookup("a", "late") == entry
        assert api.get_calls == [SA_PATH]
        assert live_lookups(metrics, "found") == 1

    run(scenario)


def test_a_service_account_that_does_not_exist_is_reported_missing_without_waiting() -> None:
    api = FakeApi()
    metrics = Metrics()
    cache = new_cache(api, metrics, grace_period=1.0)

    async def scenario() -> None:
        started = time.monotonic()
        assert await cache.lookup("a", "late") is None
        assert time.monotonic() - started < 0.5
        assert live_lookups(metrics, "not-found") == 1

    run(scenario)


def test_concurrent_misses_for_one_service_account_share_one_get() -> None:
    api = FakeApi(objects={SA_PATH: service_account("a", "late", "5", role(ROLE))})
    api.get_delay = 0.05
    cache = new_cache(api)

    async def scenario() -> None:
        entries = await asyncio.gather(*(cache.lookup("a", "late") for _ in range(10)))
        assert api.get_calls == [SA_PATH]
        assert all(entry is not None and entry.role_arn == ROLE for entry in entries)

    run(scenario)


def test_a_get_slower_than_the_grace_period_gives_none_and_a_later_miss_asks_again() -> None:
    api = FakeApi()
    api.get_delay = 0.2
    metrics = Metrics()
    cache = new_cache(api, metrics, grace_period=0.05)

    async def scenario() -> None:
        assert await cache.lookup("a", "late") is None
        assert api.gets_finished == 0, "the lookup gave up before the GET answered"
        assert live_lookups(metrics, "timeout") == 1
        # Still in flight: a second miss joins it rather than starting another.
        assert await cache.lookup("a", "late") is None
        assert api.get_calls == [SA_PATH]
        await until(lambda: api.gets_finished == 1)
        await asyncio.sleep(0)  # the finished GET's done callback forgets it
        api.objects[SA_PATH] = service_account("a", "late", "5", role(ROLE))
        api.get_delay = 0.0
        entry = await cache.lookup("a", "late")
        assert entry is not None
        assert entry.role_arn == ROLE
        assert api.get_calls == [SA_PATH, SA_PATH]

    run(scenario)


def test_a_failed_get_does_not_stop_the_next_miss_from_asking_again() -> None:
    api = FakeApi(objects={SA_PATH: service_account("a", "late", "5", role(ROLE))})
    api.get_errors = [ApiError(500, "InternalError", "try again")]
    metrics = Metrics()
    cache = new_cache(api, metrics)

    async def scenario() -> None:
        assert await cache.lookup("a", "late") is None
        assert live_lookups(metrics, "error") == 1
        assert await cache.lookup("a", "late") is not None
        assert api.get_calls == [SA_PATH, SA_PATH]

    run(scenario)


def test_while_the_api_server_is_down_failed_lookups_warn_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi()
    now = [100.0]
    cache = new_cache(api, clock=lambda: now[0])

    def failures() -> list[int]:
        return [
            record.__dict__["similar_failures_not_logged"]
            for record in caplog.records
            if record.getMessage() == "live ServiceAccount lookup failed"
        ]

    async def scenario() -> None:
        for _ in range(5):
            api.get_errors = [ApiError(503, "ServiceUnavailable", "apiserver is down")]
            assert await cache.lookup("a", "late") is None
        assert failures() == [0]
        now[0] += 10.0
        api.get_errors = [ApiError(503, "ServiceUnavailable", "apiserver is down")]
        assert await cache.lookup("a", "late") is None
        assert failures() == [0, 4]
        assert len(api.get_calls) == 6, "every miss still asked: only the logging is limited"

    caplog.set_level(logging.WARNING, logger="irsa_webhook.cache")
    run(scenario)


def test_distinct_misses_past_the_burst_get_no_get_until_the_bucket_refills() -> None:
    api = FakeApi()
    metrics = Metrics()
    now = [100.0]
    cache = new_cache(api, metrics, clock=lambda: now[0], lookup_rate=10, lookup_burst=20)

    async def scenario() -> None:
        for index in range(20):
            assert await cache.lookup("a", f"missing-{index}") is None
        for index in range(20, 25):
            with pytest.raises(LookupSkipped) as skipped:
                await cache.lookup("a", f"missing-{index}")
            assert skipped.value.warning.reason is Reason.LIVE_LOOKUP_SKIPPED
        assert len(api.get_calls) == 20
        assert live_lookups(metrics, "rate-limited") == 5
        now[0] += 0.35  # three and a half tokens at ten a second
        for index in range(25, 28):
            assert await cache.lookup("a", f"missing-{index}") is None
        with pytest.raises(LookupSkipped):
            await cache.lookup("a", "missing-28")
        assert len(api.get_calls) == 23

    run(scenario)


def test_misses_past_the_in_flight_limit_are_skipped_while_gets_hang() -> None:
    api = FakeApi()
    api.get_delay = 10.0
    metrics = Metrics()
    cache = new_cache(api, metrics, grace_period=0.01, max_lookups_in_flight=3)

    async def scenario() -> None:
        for index in range(3):
            assert await cache.lookup("a", f"slow-{index}") is None
        with pytest.raises(LookupSkipped) as skipped:
            await cache.lookup("a", "slow-3")
        assert "live lookups are at their limit" in skipped.value.warning.message
        assert len(skipped.value.warning.message) < 120
        # A miss for a key already in flight joins it: no new GET, so no limit applies.
        assert await cache.lookup("a", "slow-0") is None
        assert len(api.get_calls) == 3
        assert live_lookups(metrics, "in-flight-limit") == 1
        assert live_lookups(metrics, "timeout") == 4

    run(scenario)


def test_skipped_lookups_warn_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    cache = new_cache(FakeApi(), clock=lambda: now[0], lookup_burst=0, lookup_rate=0)

    def skips() -> list[int]:
        return [
            record.__dict__["similar_skips_not_logged"]
            for record in caplog.records
            if record.getMessage().startswith("live ServiceAccount lookup skipped")
        ]

    async def scenario() -> None:
        for index in range(4):
            with pytest.raises(LookupSkipped):
                await cache.lookup("a", f"missing-{index}")
        now[0] += 10.0
        with pytest.raises(LookupSkipped):
            await cache.lookup("a", "missing-4")
        assert skips() == [0, 3]

    caplog.set_level(logging.WARNING, logger="irsa_webhook.cache")
    run(scenario)


def test_a_grace_period_of_zero_never_asks_the_api_server() -> None:
    api = FakeApi(objects={SA_PATH: service_account("a", "late", "5", role(ROLE))})
    cache = new_cache(api, grace_period=0)

    async def scenario() -> None:
        assert await cache.lookup("a", "late") is None
        assert api.get_calls == []

    run(scenario)


def test_synced_turns_false_while_the_watch_is_out_of_touch_past_the_limit() -> None:
    gate = asyncio.Event()
    api = FakeApi(pages=[page([])], watches=[[gate, bookmark("11"), HANG]])
    now = [1000.0]
    cache = new_cache(api, clock=lambda: now[0], out_of_touch_limit=300.0)

    async def check() -> None:
        await cache.wait_synced()
        now[0] += 300.0
        assert cache.synced, "at the limit, still in touch"
        now[0] += 1.0
        assert not cache.synced, "301 s without a word from the API server"
        gate.set()  # a bookmark arrives
        await until(lambda: cache.synced)

    run(lambda: running(cache, check))


def test_a_watch_the_server_ends_at_its_timeout_counts_as_contact() -> None:
    ends = asyncio.Event()
    api = FakeApi(pages=[page([])], watches=[[ends]])
    now = [1000.0]
    cache = new_cache(api, clock=lambda: now[0], out_of_touch_limit=300.0)

    async def check() -> None:
        await cache.wait_synced()
        now[0] += 200.0
        ends.set()  # the server closes the watch, having sent nothing
        await until(lambda: len(api.watch_calls) == 2)
        now[0] += 200.0
        assert cache.synced

    run(lambda: running(cache, check))


def test_the_config_map_source_goes_out_of_touch_too() -> None:
    api = FakeApi(pages=[page([])])
    now = [1000.0]
    source = ConfigMapSource(
        api, SETTINGS, "eks", sleep=Sleeps(), clock=lambda: now[0], out_of_touch_limit=60.0
    )

    async def check() -> None:
        await source.wait_synced()
        assert source.synced
        now[0] += 61.0
        assert not source.synced

    run(lambda: running(source, check))


# --- ConfigMap ---------------------------------------------------------------------------------

CM_LIST = "/api/v1/namespaces/eks/configmaps"


def config_map(config: Any, version: str = "1") -> dict[str, Any]:
    data = config if isinstance(config, str) else orjson.dumps(config).decode()
    return {
        "metadata": {
            "namespace": "eks",
            "name": "pod-identity-webhook",
            "resourceVersion": version,
        },
        "data": {"config": data},
    }


def new_config_map_source(api: ListWatchApi, metrics: Metrics | None = None) -> ConfigMapSource:
    return ConfigMapSource(api, SETTINGS, "eks", metrics=metrics, sleep=Sleeps())


def role_for(source: ConfigMapSource, namespace: str, name: str) -> str | None:
    entry = source.current.lookup(namespace, name)
    return entry.role_arn if entry is not None else None


def test_config_map_entries_follow_its_creation_update_deletion_and_recreation() -> None:
    created, updated, deleted, recreated = (asyncio.Event() for _ in range(4))
    glob_entry = {"team-*/one": {"RoleARN": OTHER_ROLE}}
    api = FakeApi(
        pages=[page([], version="10")],
        watches=[
            [
                created,
                event("ADDED", config_map({"a/one": {"RoleARN": ROLE}}, "11")),
                updated,
                event("MODIFIED", config_map(glob_entry, "12")),
                deleted,
                event("DELETED", config_map(glob_entry, "13")),
                recreated,
                event("ADDED", config_map(glob_entry, "14")),
                HANG,
            ],
        ],
    )
    metrics = Metrics()
    source = new_config_map_source(api, metrics)

    async def check() -> None:
        await asyncio.wait_for(source.wait_synced(), 1)
        assert source.synced
        assert api.list_calls[0] == {
            "path": CM_LIST,
            "fieldSelector": "metadata.name=pod-identity-webhook",
            "limit": str(LIST_PAGE_SIZE),
        }
        await until(lambda: len(api.watch_calls) == 1)
        assert api.watch_calls[0]["fieldSelector"] == "metadata.name=pod-identity-webhook"
        assert source.current is EMPTY_CONFIG_MAP
        created.set()
        await until(lambda: role_for(source, "a", "one") == ROLE)
        assert sample(metrics, "irsa_webhook_cache_size", {"source": "configmap"}) == 1
        updated.set()
        await until(lambda: role_for(source, "team-x", "one") == OTHER_ROLE)
        assert role_for(source, "a", "one") is None
        deleted.set()
        await until(lambda: source.current is EMPTY_CONFIG_MAP)
        recreated.set()
        await until(lambda: role_for(source, "team-x", "one") == OTHER_ROLE)

    run(lambda: running(source, check))


def test_a_config_map_that_is_not_json_keeps_the_previous_entries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fixed = asyncio.Event()
    api = FakeApi(
        pages=[
            page([config_map({"a/one": {"RoleARN": ROLE}}, "10")], version="10"),
            page([config_map("{not json", "11")], version="11"),
        ],
        watches=[
            [event("MODIFIED", config_map("{not json", "11")), expired()],
            [fixed, event("MODIFIED", config_map({"a/one": {"RoleARN": OTHER_ROLE}}, "12")), HANG],
        ],
    )
    source = new_config_map_source(api)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 2)
        assert role_for(source, "a", "one") == ROLE
        fixed.set()
        await until(lambda: role_for(source, "a", "one") == OTHER_ROLE)

    with caplog.at_level(logging.WARNING, logger="irsa_webhook.cache"):
        run(lambda: running(source, check))
    ignored = [r for r in caplog.records if "keeping the previous entries" in r.getMessage()]
    assert len(ignored) == 1, "the relist of the same broken data must not log again"


def test_config_map_entry_problems_are_logged_once_per_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"no-slash": {"RoleARN": ROLE}, "a/one": {"RoleARN": ROLE}}
    api = FakeApi(
        pages=[page([config_map(broken, "10")]), page([config_map(broken, "10")], version="20")],
        watches=[[expired()]],
    )
    source = new_config_map_source(api)

    async def check() -> None:
        await until(lambda: len(api.watch_calls) == 2)
        assert role_for(source, "a", "one") == ROLE

    with caplog.at_level(logging.WARNING, logger="irsa_webhook.cache"):
        run(lambda: running(source, check))
    problems = [r for r in caplog.records if "no-slash" in str(getattr(r, "detail", ""))]
    assert len(problems) == 1
