"""Self-managed serving certificates: the webhook keeps its own CA and serving certificate in a
Secret and its CA in the ``caBundle`` of its MutatingWebhookConfiguration, so no cert-manager is
needed and no render of the chart (``helm template``, a GitOps sync) can replace the CA.

It watches both objects (by name, so RBAC can be limited to them) and, on every change and when
a renewal falls due, brings them in line with ``pki``'s rules: issue what is missing or due, write
the Secret, serve its pair from memory, and patch a ``caBundle`` someone else wiped or changed.

Replicas need no leader: they write the one Secret with its ``resourceVersion``, so when two renew
at once the API server accepts one write and the other gets 409 Conflict, reads the winner's
certificates and serves those. Before patching a ``caBundle``, a replica reads the Secret again,
so one that has not yet seen a newer CA never puts the older one back.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random as _random
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from cryptography import x509

from irsa_webhook import pki
from irsa_webhook.cache import ListWatchApi, Reflector
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.metrics import Metrics
from irsa_webhook.registration import CONFIGURATIONS_PATH
from irsa_webhook.tls import CertificateError, load_pem_pair

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 3600.0
"""The longest a replica waits between two checks when nothing happens: a missed watch event
costs at most this long."""

RETRY_START = 1.0
RETRY_CAP = 60.0


class CertificateApi(ListWatchApi, Protocol):
    """The reads of a ``Reflector`` plus the writes; ``KubeApi`` provides them."""

    async def send(
        self, method: str, path: str, body: Any, content_type: str = "application/json"
    ) -> dict[str, Any]: ...


def _raw(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj


class SelfManagedCertificate:
    """Keeps ``context`` serving the Secret's pair and the registration trusting its CA.

    ``loaded`` turns true once a pair is served (readiness waits for it). ``run`` loops until
    cancelled; API errors are logged and retried with backoff.
    """

    def __init__(
        self,
        api: CertificateApi,
        context: ssl.SSLContext,
        *,
        namespace: str,
        secret: str,
        webhook_configuration: str,
        hosts: tuple[str, ...],
        lifetimes: pki.Lifetimes,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        watch_timeout: float = 300.0,
        inactivity_timeout: float = 90.0,
    ) -> None:
        self.loaded = False
        self.not_after: float | None = None
        self._api = api
        self._context = context
        self._namespace = namespace
        self._secret_name = secret
        self._configuration_name = webhook_configuration
        self._hosts = hosts
        self._lifetimes = lifetimes
        self._metrics = metrics
        self._clock = clock
        self._random = random
        self._secret_path = (
            f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(secret, safe='')}"
        )
        self._wake = asyncio.Event()
        self._written: Mapping[str, Any] | None = None
        """The Secret as our last write or read returned it, newer than the watch's until the
        watch reports a change."""
        self._served: bytes | None = None
        self._secrets: Reflector[Mapping[str, Any]] = Reflector(
            api,
            f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets",
            _raw,
            source="certificate-secret",
            params={"fieldSelector": f"metadata.name={secret}"},
            on_change=self._secret_changed,
            watch_timeout=watch_timeout,
            inactivity_timeout=inactivity_timeout,
            metrics=metrics,
        )
        self._configurations: Reflector[Mapping[str, Any]] = Reflector(
            api,
            CONFIGURATIONS_PATH,
            _raw,
            source="webhook-configuration",
            params={"fieldSelector": f"metadata.name={webhook_configuration}"},
            on_change=self._wake.set,
            watch_timeout=watch_timeout,
            inactivity_timeout=inactivity_timeout,
            metrics=metrics,
        )

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._secrets.run())
            tasks.create_task(self._configurations.run())
            tasks.create_task(self._keep_in_line())

    async def reconcile(self) -> float:
        """One pass over both objects; returns the seconds until the next renewal is due."""
        bundle = await self._current_bundle()
        self._serve(bundle)
        await self._ensure_ca_bundle(bundle)
        due = pki.next_renewal(bundle, self._lifetimes).timestamp() - self._clock()
        return max(0.0, due)

    async def _keep_in_line(self) -> None:
        await self._secrets.wait_synced()
        await self._configurations.wait_synced()
        delay = RETRY_START
        while True:
            self._wake.clear()
            try:
                wait = min(await self.reconcile(), RESYNC_SECONDS)
                delay = RETRY_START
            except ApiError as exc:
                logger.warning(
                    "self-managed certificate: API call failed; retrying",
                    extra={
                        "status": exc.status,
                        "reason": exc.reason,
                        "detail": exc.message,
                        "retry_in": delay,
                    },
                )
                wait, delay = delay * (0.5 + self._random()), min(RETRY_CAP, delay * 2)
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _secret_changed(self) -> None:
        self._written = None
        self._wake.set()

    def _known_secret(self) -> Mapping[str, Any] | None:
        if self._written is not None:
            return self._written
        return self._secrets.items.get((self._namespace, self._secret_name))

    async def _current_bundle(self) -> pki.Bundle:
        """The Secret's bundle, after issuing and writing whatever ``pki.plan`` says is due."""
        secret = self._known_secret()
        while True:
            now = self._now()
            bundle, problem = _read(secret)
            renewal = pki.plan(bundle, self._hosts, self._lifetimes, now)
            if renewal is pki.Renewal.NOTHING and bundle is not None:
                return bundle
            renewed = pki.renew(
                bundle, renewal, self._hosts, self._lifetimes, now, self._configuration_name
            )
            logger.info(
                "self-managed certificate: issuing",
                extra={"renewal": renewal.value, "secret": self._secret_name, "reason": problem},
            )
            try:
                self._written = await self._write(secret, renewed)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                # Another replica wrote first: take what it wrote, and check that instead.
                logger.info("self-managed certificate: another replica renewed first")
                secret = self._written = await self._read_secret()
                continue
            return renewed

    async def _write(self, secret: Mapping[str, Any] | None, bundle: pki.Bundle) -> dict[str, Any]:
        if secret is None:
            # No Secret yet (the chart creates an empty one; without the chart we create it).
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": self._secret_name, "namespace": self._namespace},
                "type": "Opaque",
                "data": pki.secret_data(bundle),
            }
            path = f"/api/v1/namespaces/{quote(self._namespace, safe='')}/secrets"
            return await self._api.send("POST", path, body)
        # A PUT with the resourceVersion we read: only one of racing replicas can win.
        metadata = {
            key: value for key, value in secret["metadata"].items() if key != "managedFields"
        }
        body = {
            **secret,
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "data": pki.secret_data(bundle),
        }
        return await self._api.send("PUT", self._secret_path, body)

    async def _read_secret(self) -> dict[str, Any] | None:
        try:
            return await self._api.get(self._secret_path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _serve(self, bundle: pki.Bundle) -> None:
        certificate_pem = bundle.certificate_pem
        if certificate_pem == self._served:
            return
        try:
            load_pem_pair(self._context, certificate_pem, bundle.key_pem)
        except CertificateError as exc:
            # read_bundle checked the pair; this is OpenSSL refusing it, which retrying won't fix.
            logger.error("self-managed certificate: %s", exc)
            if self._metrics is not None:
                self._metrics.certificate_reloads.labels("error").inc()
            return
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        self._served = certificate_pem
        self.loaded = True
        self.not_after = certificate.not_valid_after_utc.timestamp()
        if self._metrics is not None:
            self._metrics.certificate_expiry.set(self.not_after)
            self._metrics.certificate_reloads.labels("success").inc()
        logger.info(
            "serving certificate loaded",
            extra={
                "source": "self-managed",
                "serial": f"{certificate.serial_number:x}",
                "not_after": certificate.not_valid_after_utc.isoformat(),
            },
        )

    async def _ensure_ca_bundle(self, bundle: pki.Bundle) -> None:
        configuration = self._configurations.items.get(("", self._configuration_name))
        if configuration is None:
            logger.warning(
                "self-managed certificate: the webhook configuration does not exist",
                extra={"webhook_configuration": self._configuration_name},
            )
            return
        expected = pki.ca_bundle(bundle, self._now())
        webhooks = configuration.get("webhooks") or []
        stale = [
            index
            for index, webhook in enumerate(webhooks)
            if not pki.ca_bundle_matches(
                (webhook.get("clientConfig") or {}).get("caBundle"), expected
            )
        ]
        if not stale:
            return
        # Read the Secret again: if another replica renewed the CA meanwhile, the next pass
        # patches its bundle, never this older one.
        latest = await self._read_secret()
        latest_bundle, _ = _read(latest)
        if latest_bundle is None or pki.ca_bundle(latest_bundle, self._now()) != expected:
            self._written = latest
            self._wake.set()
            return
        operations: list[dict[str, Any]] = []
        for index in stale:
            # The test makes the patch fail rather than land on another webhook if the list
            # changed since we read it.
            operations.append(
                {"op": "test", "path": f"/webhooks/{index}/name", "value": webhooks[index]["name"]}
            )
            operations.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": expected}
            )
        path = f"{CONFIGURATIONS_PATH}/{quote(self._configuration_name, safe='')}"
        await self._api.send("PATCH", path, operations, "application/json-patch+json")
        logger.info(
            "self-managed certificate: caBundle patched",
            extra={"webhook_configuration": self._configuration_name, "webhooks": len(stale)},
        )

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)


def _read(secret: Mapping[str, Any] | None) -> tuple[pki.Bundle | None, str]:
    """The Secret's bundle, or None and why it is unusable."""
    try:
        return pki.read_bundle(None if secret is None else secret.get("data")), "due"
    except pki.BundleError as exc:
        return None, str(exc)
