"""In-memory copies of the ServiceAccounts and the ``pod-identity-webhook`` ConfigMap.

Admission must not wait on the API server, so both are kept in step by list-then-watch (the
algorithm kopf uses): a list swapped in whole, then a WATCH from the list's resourceVersion with
bookmarks, resumed from the last version seen when the stream ends, and a relist when the server
says that version is gone (410). One ``Reflector`` runs that loop for every kind of object.

The list is streamed where the API server can (client-go's "watch list"): one WATCH with
``sendInitialEvents``, whose ADDED events are the current objects, up to a bookmark marked
``k8s.io/initial-events-end``, and which then goes on as the watch. Each object is decoded on its
own, so the list never holds a page of 500 parsed objects (what such pages leave behind in the
allocator was 0.8 MB of the idle memory at 1,000 ServiceAccounts), and it is one request instead
of one per page: 50,000 ServiceAccounts synced in 0.9 s instead of 1.4 s here. A server that refuses
the parameters (before Kubernetes 1.27, or with the WatchList feature gate off) gets the
paginated LIST instead, from then on.

Unlike the reference (docs/reference.md section 4), a cache miss triggers a live GET that
every concurrent miss for that key shares and that a later miss retries once it has finished, and
deleting the ConfigMap removes its entries. As in the reference, live GETs are rate limited (10 a
second, bursts of 20), and at most 20 run at once: any pod may name a ServiceAccount that does
not exist, so without a bound a flood of such pods would become a flood of GETs. A miss past
either limit is answered at once as a miss, with a warning (``LookupSkipped``).
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from irsa_webhook.config import CONFIG_MAP_KEY, CONFIG_MAP_NAME, MutationSettings
from irsa_webhook.heap import release_free_memory
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    ConfigMapMappings,
    ServiceAccountEntry,
    SourceError,
    parse_config_map,
    parse_service_account,
)
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.metrics import Metrics
from irsa_webhook.reasons import AdmissionWarning, Reason

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500
"""Objects per page of a paginated list (client-go's default). Smaller pages leave less behind
(250: 0.55 MB less idle RSS at 1,000 ServiceAccounts) but synced 50,000 a fifth slower here, one
round trip per page; the start-up peak is one page either way (``_take_page``)."""
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""The annotation of the bookmark that ends a streamed list's initial events."""
REFUSED_STREAMING = (400, 422)
"""How an API server refuses ``sendInitialEvents``: unknown before 1.27 (``resourceVersionMatch``
is then forbidden on a watch), or the WatchList feature gate off. Other errors are retried."""
BACKOFF_START = 0.1
BACKOFF_CAP = 30.0
LOOKUP_FAILURE_LOG_INTERVAL = 10.0
LOOKUP_RATE = 10.0
"""Live GETs per second, sustained (the reference's limiter)."""
LOOKUP_BURST = 20
"""Live GETs that may start at once after a quiet spell (the reference's burst)."""
MAX_LOOKUPS_IN_FLIGHT = 20
"""Live GETs running at once: with a slow API server the rate alone would let them pile up."""

Key = tuple[str, str]
"""(namespace, name). The namespace string is interned: 50k ServiceAccounts share a few hundred."""

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class ListWatchApi(Protocol):
    """The two calls a ``Reflector`` and the live lookup need; ``KubeApi`` provides them.

    Both raise ``ApiError`` for an error answer or an unreachable server.
    """

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]: ...

    def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]: ...


class LookupSkipped(Exception):
    """A cache miss got no live GET because the lookups are at their rate or in-flight limit.

    ``warning`` is the admission warning to return: the pod is decided as if the
    ServiceAccount were missing, and its creator should know why.
    """

    def __init__(self, warning: AdmissionWarning) -> None:
        super().__init__(warning.message)
        self.warning = warning


class _TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a GET takes one or is not made."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _LogLimiter:
    """One log line per interval for a condition that, once it starts, hits every request."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._quiet_until = float("-inf")
        self._suppressed = 0

    def allow(self) -> int | None:
        """The number of lines not logged since the last one, or None: do not log this one."""
        now = self._clock()
        if now < self._quiet_until:
            self._suppressed += 1
            return None
        suppressed, self._suppressed = self._suppressed, 0
        self._quiet_until = now + self._interval
        return suppressed


class _Inactive(Exception):
    """The watch delivered nothing, not even a bookmark, for the inactivity timeout."""


class _Backoff:
    """0.1 s doubling to 30 s, with jitter so that replicas do not reconnect in lockstep."""

    def __init__(self, random: Callable[[], float]) -> None:
        self._random = random
        self._delay = BACKOFF_START

    def next(self) -> float:
        delay = self._delay
        self._delay = min(BACKOFF_CAP, self._delay * 2)
        return delay * (0.5 + 0.5 * self._random())

    def reset(self) -> None:
        self._delay = BACKOFF_START


class Reflector(Generic[T]):
    """Keeps ``items`` equal to the API server's objects at ``path``: list, then watch.

    ``parse`` turns each object into what is kept (never the raw object: memory matters at 50k
    ServiceAccounts). ``on_change`` runs after every list and every applied event;
    ``after_list`` once a list is complete and swapped in. ``streaming_list`` lists through a
    watch with initial events where the server supports it (see the module). ``run`` loops
    until cancelled; it never raises otherwise. ``synced`` is true once a list has completed and
    for as long as the server has been heard from within ``out_of_touch_limit`` (0: forever).
    """

    def __init__(
        self,
        api: ListWatchApi,
        path: str,
        parse: Callable[[Mapping[str, Any]], T],
        *,
        source: str,
        params: Mapping[str, str] | None = None,
        watch_timeout: float = 300.0,
        inactivity_timeout: float = 90.0,
        metrics: Metrics | None = None,
        on_change: Callable[[], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        out_of_touch_limit: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        after_list: Callable[[], object] | None = None,
        streaming_list: bool = True,
    ) -> None:
        self.items: dict[Key, T] = {}
        """Replaced by a new dict on every list, so readers never see half a list."""
        self.resource_version = ""
        """The newest version seen, from a list, an object or a bookmark; the watch resumes here."""
        self._listed = False
        self._heard_at = float("-inf")
        self._out_of_touch_limit = out_of_touch_limit
        self._clock = clock
        self._api = api
        self._path = path
        self._parse = parse
        self._source = source
        self._params = dict(params or {})
        self._watch_timeout = watch_timeout
        self._inactivity_timeout = inactivity_timeout
        self._metrics = metrics
        # Set on every watch event: the labelled child is looked up once, here.
        self._last_contact = metrics.cache_last_contact.labels(source) if metrics else None
        self._on_change = on_change
        self._after_list = after_list
        self._streaming_list = streaming_list
        self._sleep = sleep
        self._backoff = _Backoff(random)
        self._synced_event = asyncio.Event()
        self._must_list = True
        self._expired_since_last_event = False

    @property
    def synced(self) -> bool:
        """Listed, and not out of touch: a watch that has heard nothing (no event, no bookmark,
        no clean end) for longer than the limit may have missed changes we would serve."""
        if not self._listed:
            return False
        limit = self._out_of_touch_limit
        return limit <= 0 or self._clock() - self._heard_at <= limit

    async def wait_synced(self) -> None:
        await self._synced_event.wait()

    async def run(self) -> None:
        while True:
            retry_after = None
            try:
                if self._must_list and self._streaming_list:
                    await self._watch(initial_events=True)
                else:
                    if self._must_list:
                        await self._list()
                    await self._watch()
                reason = "closed"
                logger.debug(
                    "watch ended; resuming",
                    extra={"source": self._source, "resource_version": self.resource_version},
                )
            except _Inactive:
                reason = "timeout"
                logger.info(
                    "watch silent for too long; reconnecting",
                    extra={"source": self._source, "timeout": self._inactivity_timeout},
                )
            except ApiError as exc:
                if exc.status in REFUSED_STREAMING and self._must_list and self._streaming_list:
                    # The server answered, so list in pages now, without a backoff.
                    self._stop_streaming("the API server refused a streamed list", exc.message)
                    continue
                if exc.status == 410:
                    # The server answered, so it is up: relist now, not after an outage's backoff.
                    # A 410 right after the relist's own watch backs off as usual, though, so a
                    # server that keeps expiring cannot make us list in a tight loop.
                    if not self._expired_since_last_event:
                        self._backoff.reset()
                    self._expired_since_last_event = True
                    reason = "expired"
                    self._must_list = True
                    logger.info(
                        "resource version expired; listing again",
                        extra={
                            "source": self._source,
                            "resource_version": self.resource_version,
                            "detail": exc.message,
                        },
                    )
                else:
                    reason = "error"
                    retry_after = exc.retry_after
                    logger.warning(
                        "list or watch failed; retrying",
                        extra={
                            "source": self._source,
                            "status": exc.status,
                            "reason": exc.reason,
                            "detail": exc.message,
                        },
                    )
            except Exception:
                # A bug or a malformed object must not stop the cache for good: log and retry.
                reason = "error"
                logger.exception(
                    "list or watch failed unexpectedly; retrying", extra={"source": self._source}
                )
            if self._metrics is not None:
                self._metrics.watch_restarts.labels(self._source, reason).inc()
            delay = self._backoff.next()
            await self._sleep(retry_after if retry_after is not None else delay)

    async def _list(self) -> None:
        items: dict[Key, T] = {}
        params = {**self._params, "limit": str(LIST_PAGE_SIZE)}
        while True:
            metadata = self._take_page(items, await self._api.get(self._path, params))
            token = metadata.get("continue")
            if not token:
                break
            params["continue"] = token
        self._listed_now(items, str(metadata.get("resourceVersion") or ""), "pages")

    def _listed_now(self, items: dict[Key, T], version: str, how: str) -> None:
        """Swap in a complete list, at ``version``, read ``how`` (stream or pages); the cache
        is synced from here on."""
        self.items = items
        self.resource_version = version
        self._must_list = False
        self._listed = True
        self._synced_event.set()
        self._heard_from_server()
        if self._metrics is not None:
            self._metrics.cache_synced.labels(self._source).set(1)
        if self._on_change is not None:
            self._on_change()
        logger.info(
            "listed",
            extra={
                "source": self._source,
                "objects": len(items),
                "resource_version": self.resource_version,
                "how": how,
            },
        )
        if self._after_list is not None:
            # What the list read (pages or events) and a relist's old items are garbage now.
            self._after_list()

    def _take_page(self, items: dict[Key, T], page: Mapping[str, Any]) -> Mapping[str, Any]:
        """Parse a page into ``items``; returns its list metadata. The page is let go before the
        next one is fetched: two pages held at once double the start-up peak, and memory freed
        that late mostly stays with the process (the idle RSS)."""
        for obj in page.get("items") or ():
            items[_key(obj)] = self._parse(obj)
        metadata: Mapping[str, Any] = page.get("metadata") or {}
        return metadata

    async def _watch(self, initial_events: bool = False) -> None:
        """Watch from ``resource_version``; with ``initial_events``, first list through the
        watch (``_read_initial_events``), then go on watching on the same stream."""
        params = {
            **self._params,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(self._watch_timeout)),
        }
        if initial_events:
            # No resourceVersion: the initial state is a consistent read, as a LIST's is.
            params["sendInitialEvents"] = "true"
            params["resourceVersionMatch"] = "NotOlderThan"
        elif self.resource_version:
            params["resourceVersion"] = self.resource_version
        stream = self._api.stream(self._path, params)
        try:
            if initial_events and not await self._read_initial_events(stream):
                return
            while True:
                deadline = asyncio.timeout(self._inactivity_timeout)
                try:
                    async with deadline:
                        event = await anext(stream)
                except StopAsyncIteration:
                    # A watch the server ends at its timeout is contact too.
                    self._heard_from_server()
                    return
                except TimeoutError:
                    if deadline.expired():
                        raise _Inactive from None
                    raise
                self._heard_from_server()
                self._apply(event)
                self._backoff.reset()
                self._expired_since_last_event = False
        finally:
            await stream.aclose()

    async def _read_initial_events(self, stream: AsyncGenerator[dict[str, Any], None]) -> bool:
        """Fill a new dict from a streamed list's events and swap it in whole at the end
        bookmark; False when the stream ended (or went silent, raising ``_Inactive``) first.

        The events of a list come back to back, tens of thousands of them: instead of a timer
        per event (a fifth of the sync's CPU), one deadline moves forward once it is within
        one inactivity timeout, so silence is noticed after one to two of them."""
        pending: dict[Key, T] = {}
        loop = asyncio.get_running_loop()
        limit = self._inactivity_timeout
        try:
            async with asyncio.timeout(2 * limit) as deadline:
                async for event in stream:
                    if _ends_initial_events(event):
                        self._listed_now(pending, _version(event), "stream")
                        self._backoff.reset()
                        self._expired_since_last_event = False
                        return True
                    self._apply(event, pending)
                    when = deadline.when()
                    if when is not None and when - loop.time() < limit:
                        deadline.reschedule(loop.time() + 2 * limit)
        except TimeoutError:
            if deadline.expired():
                self._stop_streaming("a streamed list went silent", "")
                raise _Inactive from None
            raise
        self._heard_from_server()
        self._stop_streaming("a streamed list ended before its last object", "")
        return False

    def _stop_streaming(self, problem: str, detail: str) -> None:
        """List in pages from now on: this server cannot stream a list (or did not finish one,
        which a server that supports it does within its watch timeout)."""
        self._streaming_list = False
        logger.info(
            "listing in pages from now on",
            extra={"source": self._source, "why": problem, "detail": detail},
        )

    def _heard_from_server(self) -> None:
        """Bookmarks arrive about once a minute on a healthy watch, so an old timestamp here
        means the cache is out of touch; past ``out_of_touch_limit``, ``synced`` turns false."""
        self._heard_at = self._clock()
        if self._last_contact is not None:
            self._last_contact.set(time.time())

    def _apply(self, event: Mapping[str, Any], pending: dict[Key, T] | None = None) -> None:
        """Apply one watch event to ``items``, or to ``pending``, the initial state of a streamed
        list, which nobody reads and whose version comes with its end bookmark."""
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise ApiError(0, "InvalidResponse", f"watch event {kind!r} without an object")
        if kind == "ERROR":
            code = obj.get("code")
            reason = str(obj.get("reason") or "Error")
            if not isinstance(code, int):
                code = 410 if reason in ("Expired", "Gone") else 0
            raise ApiError(code, reason, str(obj.get("message") or ""))
        items = self.items if pending is None else pending
        if kind in ("ADDED", "MODIFIED"):
            items[_key(obj)] = self._parse(obj)
        elif kind == "DELETED":
            items.pop(_key(obj), None)
        elif kind != "BOOKMARK":
            logger.debug("ignoring watch event", extra={"source": self._source, "type": kind})
            return
        if pending is not None:
            return
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        if kind != "BOOKMARK" and self._on_change is not None:
            self._on_change()


def _ends_initial_events(event: Mapping[str, Any]) -> bool:
    if event.get("type") != "BOOKMARK":
        return False
    metadata = (event.get("object") or {}).get("metadata") or {}
    return (metadata.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true"


def _version(event: Mapping[str, Any]) -> str:
    return str(((event.get("object") or {}).get("metadata") or {}).get("resourceVersion") or "")


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return sys.intern(str(metadata.get("namespace") or "")), str(metadata.get("name") or "")


class ServiceAccountCache:
    """Every ServiceAccount in the cluster, as parsed entries keyed by (namespace, name).

    An entry exists for every ServiceAccount, annotated or not, so "in the cache" means "exists";
    unannotated ones share one entry object. ``get`` is the O(1) hot path; ``lookup`` adds the
    live GET on a miss, bounded by the grace period, a rate and a number in flight (difference 4
    in the README).
    """

    def __init__(
        self,
        api: ListWatchApi,
        settings: MutationSettings,
        *,
        grace_period: float = 1.0,
        watch_timeout: float = 300.0,
        inactivity_timeout: float = 90.0,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
        lookup_rate: float = LOOKUP_RATE,
        lookup_burst: int = LOOKUP_BURST,
        max_lookups_in_flight: int = MAX_LOOKUPS_IN_FLIGHT,
        out_of_touch_limit: float = 0.0,
        release_memory: Callable[[], object] = release_free_memory,
    ) -> None:
        self._api = api
        self._settings = settings
        self._grace_period = grace_period
        self._failure_log = _LogLimiter(LOOKUP_FAILURE_LOG_INTERVAL, clock)
        self._skip_log = _LogLimiter(LOOKUP_FAILURE_LOG_INTERVAL, clock)
        self._bucket = _TokenBucket(lookup_rate, lookup_burst, clock)
        self._max_in_flight = max_lookups_in_flight
        self._metrics = metrics
        self._fetches: dict[Key, asyncio.Task[tuple[str, ServiceAccountEntry | None]]] = {}
        self._reflector: Reflector[ServiceAccountEntry] = Reflector(
            api,
            "/api/v1/serviceaccounts",
            self._parse,
            source="serviceaccounts",
            watch_timeout=watch_timeout,
            inactivity_timeout=inactivity_timeout,
            metrics=metrics,
            on_change=self._changed,
            sleep=sleep,
            random=random,
            out_of_touch_limit=out_of_touch_limit,
            clock=clock,
            # A full list of every ServiceAccount is the process's largest transient
            # allocation: give back what its pages leave free in the heap (``heap``).
            after_list=release_memory,
        )

    @property
    def synced(self) -> bool:
        return self._reflector.synced

    def get(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self._reflector.items.get((namespace, name))

    async def lookup(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        """The cached entry, else the answer of a live GET if it comes within the grace period.

        Concurrent misses for one key wait on one GET. A GET that outlives the grace period
        keeps running and stores what it finds; once it has finished, the next miss asks again.
        Raises ``LookupSkipped`` when a GET is needed but the limits allow none now.
        """
        key = (namespace, name)
        entry = self._reflector.items.get(key)
        if entry is not None or self._grace_period <= 0:
            return entry
        fetch = self._fetches.get(key)
        if fetch is None:
            if len(self._fetches) >= self._max_in_flight:
                self._skip(namespace, name, "in-flight-limit")
            if not self._bucket.take():
                self._skip(namespace, name, "rate-limited")
            fetch = asyncio.create_task(self._fetch(key))
            self._fetches[key] = fetch
            fetch.add_done_callback(lambda done: self._forget(key, done))
        try:
            result, entry = await asyncio.wait_for(asyncio.shield(fetch), self._grace_period)
        except TimeoutError:
            result, entry = "timeout", None
        if self._metrics is not None:
            self._metrics.live_lookups.labels(result).inc()
        return entry

    def snapshot(self) -> dict[str, ServiceAccountEntry]:
        """``"namespace/name"`` to entry, for the debug dump. Safe from another thread: the
        dict is copied in one step (no Python code runs during a dict copy, so the loop cannot
        change it halfway) before it is walked."""
        items = dict(self._reflector.items)
        return {f"{ns}/{name}": entry for (ns, name), entry in items.items()}

    def __len__(self) -> int:
        return len(self._reflector.items)

    async def wait_synced(self) -> None:
        await self._reflector.wait_synced()

    async def run(self) -> None:
        await self._reflector.run()

    def _parse(self, obj: Mapping[str, Any]) -> ServiceAccountEntry:
        annotations = (obj.get("metadata") or {}).get("annotations")
        return parse_service_account(annotations, self._settings)

    def _changed(self) -> None:
        if self._metrics is not None:
            self._metrics.cache_size.labels("serviceaccounts").set(len(self._reflector.items))
            self._metrics.used.set(1)

    def _skip(self, namespace: str, name: str, limit: str) -> None:
        """Count, log (once per interval) and raise ``LookupSkipped`` for this miss."""
        if self._metrics is not None:
            self._metrics.live_lookups.labels(limit).inc()
        suppressed = self._skip_log.allow()
        if suppressed is not None:
            logger.warning(
                "live ServiceAccount lookup skipped: lookups are at their limit",
                extra={
                    "namespace": namespace,
                    "service_account": name,
                    "reason": Reason.LIVE_LOOKUP_SKIPPED.value,
                    "limit": limit,
                    "similar_skips_not_logged": suppressed,
                },
            )
        raise LookupSkipped(
            AdmissionWarning(
                Reason.LIVE_LOOKUP_SKIPPED,
                f"ServiceAccount {name[:40]!r} is not cached yet and live lookups are at their "
                "limit; its annotations were not read",
            )
        )

    def _warn_lookup_failed(self, namespace: str, name: str, exc: ApiError) -> None:
        """One warning per interval: while the API server is down every miss fails the same way,
        and a line per admission request would bury everything else in the log."""
        suppressed = self._failure_log.allow()
        if suppressed is None:
            return
        logger.warning(
            "live ServiceAccount lookup failed",
            extra={
                "namespace": namespace,
                "service_account": name,
                "status": exc.status,
                "reason": exc.reason,
                "detail": exc.message,
                "similar_failures_not_logged": suppressed,
            },
        )

    def _forget(self, key: Key, fetch: asyncio.Task[Any]) -> None:
        if self._fetches.get(key) is fetch:
            del self._fetches[key]

    async def _fetch(self, key: Key) -> tuple[str, ServiceAccountEntry | None]:
        """GET one ServiceAccount; returns the metric label and the entry. Never raises."""
        namespace, name = key
        path = (
            f"/api/v1/namespaces/{quote(namespace, safe='')}/serviceaccounts/{quote(name, safe='')}"
        )
        try:
            obj = await self._api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return "not-found", None
            self._warn_lookup_failed(namespace, name, exc)
            return "error", None
        except Exception:
            # Waiters are admission requests: a bug here must cost a lookup, not a request.
            logger.exception(
                "live ServiceAccount lookup failed unexpectedly",
                extra={"namespace": namespace, "service_account": name},
            )
            return "error", None
        entry = self._parse(obj)
        # The watch may have delivered the object meanwhile; its copy is at least as new.
        entry = self._reflector.items.setdefault(key, entry)
        self._changed()
        logger.info(
            "ServiceAccount found by live lookup",
            extra={"namespace": namespace, "service_account": name},
        )
        return "found", entry


class ConfigMapSource:
    """The ``pod-identity-webhook`` ConfigMap in one namespace, parsed (difference 6 in the README).

    Absent or deleted means no entries (the reference kept deleted entries until restart). A
    document that is not JSON is logged and the previous mappings stay; skipped entries are
    logged once per change of the data.
    """

    def __init__(
        self,
        api: ListWatchApi,
        settings: MutationSettings,
        namespace: str,
        *,
        watch_timeout: float = 300.0,
        inactivity_timeout: float = 90.0,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        out_of_touch_limit: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current: ConfigMapMappings = EMPTY_CONFIG_MAP
        self._settings = settings
        self._namespace = namespace
        self._metrics = metrics
        self._parsed_data: str | None = None
        self._reflector: Reflector[ConfigMapMappings] = Reflector(
            api,
            f"/api/v1/namespaces/{quote(namespace, safe='')}/configmaps",
            self._parse,
            source="configmap",
            params={"fieldSelector": f"metadata.name={CONFIG_MAP_NAME}"},
            watch_timeout=watch_timeout,
            inactivity_timeout=inactivity_timeout,
            metrics=metrics,
            on_change=self._changed,
            sleep=sleep,
            random=random,
            out_of_touch_limit=out_of_touch_limit,
            clock=clock,
        )

    @property
    def synced(self) -> bool:
        return self._reflector.synced

    async def wait_synced(self) -> None:
        await self._reflector.wait_synced()

    async def run(self) -> None:
        await self._reflector.run()

    def _parse(self, obj: Mapping[str, Any]) -> ConfigMapMappings:
        data = (obj.get("data") or {}).get(CONFIG_MAP_KEY)
        if data == self._parsed_data:
            # A relist or an update of another key: same document, same result, no new logs.
            return self.current
        self._parsed_data = data
        log_extra = {"source": "configmap", "namespace": self._namespace}
        try:
            mappings, problems = parse_config_map(data, self._settings)
        except SourceError as exc:
            logger.warning(
                "ConfigMap ignored; keeping the previous entries",
                extra={**log_extra, "detail": str(exc)},
            )
            return self.current
        for problem in problems:
            logger.warning("ConfigMap entry problem", extra={**log_extra, "detail": problem})
        logger.info("ConfigMap loaded", extra={**log_extra, "entries": len(mappings)})
        return mappings

    def _changed(self) -> None:
        self.current = next(iter(self._reflector.items.values()), EMPTY_CONFIG_MAP)
        if not self._reflector.items:
            # Gone: if it comes back with the same data, parse (and log) it again.
            self._parsed_data = None
        if self._metrics is not None:
            self._metrics.cache_size.labels("configmap").set(len(self.current))
