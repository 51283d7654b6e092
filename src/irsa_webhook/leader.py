"""One reconciler at a time among the webhook's replicas: a coordination.k8s.io Lease.

The rules are client-go's leader election, so ``kubectl get lease`` reads as users know it: the
holder renews ``renewTime`` every ``duration / 3``; another replica takes the Lease over only when
it has seen the record unchanged for a whole ``duration`` by its own clock (clocks of different
nodes are never compared); a holder that could not renew for ``2/3`` of the duration stops acting
before anyone may take over. Writes are PUTs with the read ``resourceVersion``, so of two replicas
racing for a free Lease exactly one wins (the other gets 409 Conflict).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from irsa_webhook.kubeapi import ApiError

logger = logging.getLogger(__name__)


class LeaseApi(Protocol):
    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]: ...

    async def send(
        self, method: str, path: str, body: Mapping[str, Any], content_type: str = ...
    ) -> dict[str, Any]: ...


def _micro_time(moment: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with exactly six fractional digits, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Holds or waits for the Lease ``namespace/name`` as ``identity``; see the module doc."""

    def __init__(
        self,
        api: LeaseApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.identity = identity
        self._api = api
        self._namespace = namespace
        self._name = name
        self._path = (
            f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}"
            f"/leases/{quote(name, safe='')}"
        )
        self._duration = duration
        self._clock = clock
        self._now = now
        self._on_change = on_change
        self._renewed_at: float | None = None
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._leading = asyncio.Event()

    def is_leader(self) -> bool:
        """True while our last successful renewal is younger than the renew deadline."""
        return (
            self._renewed_at is not None
            and self._clock() - self._renewed_at < self._duration * 2 / 3
        )

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def run(self) -> None:
        """Acquire and renew until cancelled; then release the Lease if we hold it."""
        try:
            while True:
                await self.try_acquire_or_renew()
                await asyncio.sleep(self._duration / 3)
        finally:
            if self.is_leader():
                await asyncio.shield(self.release())

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when we hold the Lease afterwards. Never raises on API errors."""
        try:
            held = await self._round()
        except ApiError as exc:
            held = False
            if exc.status != 409:  # a lost race is routine
                logger.warning(
                    "cannot read or write the reconciler Lease",
                    extra={
                        "lease": f"{self._namespace}/{self._name}",
                        "status": exc.status,
                        "reason": exc.reason,
                        "detail": exc.message,
                    },
                )
        if held:
            self._renewed_at = self._clock()
        self._set_leading(self.is_leader())
        return held

    async def release(self) -> None:
        """Hand the Lease back on shutdown so another replica need not wait for it to expire."""
        try:
            lease = await self._api.get(self._path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self._api.send("PUT", self._path, lease)
        except ApiError as exc:
            logger.info("could not release the reconciler Lease", extra={"status": exc.status})
        self._renewed_at = None
        self._set_leading(False)

    async def _round(self) -> bool:
        now = self._now()
        try:
            lease = await self._api.get(self._path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            await self._api.send("POST", self._path.rsplit("/", 1)[0], self._new_lease(now))
            logger.info("reconciler Lease created", extra={"holder": self.identity})
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        if holder and holder != self.identity:
            held_for = float(spec.get("leaseDurationSeconds") or self._duration)
            if self._clock() - self._observed_at < held_for:
                return False
        renewed = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self._duration)),
            "renewTime": _micro_time(now),
        }
        if holder != self.identity:
            renewed["acquireTime"] = _micro_time(now)
            # As client-go counts: every change of holder, from a free Lease too.
            renewed["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        lease["spec"] = renewed
        stored = await self._api.send("PUT", self._path, lease)
        stored_spec = stored.get("spec") or {}
        self._observed = (self.identity, str(stored_spec.get("renewTime") or ""))
        self._observed_at = self._clock()
        if holder != self.identity:
            logger.info(
                "reconciler Lease acquired", extra={"holder": self.identity, "previous": holder}
            )
        return True

    def _new_lease(self, now: datetime) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self._duration)),
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading.is_set():
            return
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
            logger.info("reconciler Lease lost; not acting", extra={"holder": self.identity})
        if self._on_change is not None:
            self._on_change(leading)
