"""Process wiring for ``irsa-webhook serve``: sources, TLS, two uvicorn servers, shutdown.

One process, one event loop: the ServiceAccount cache lives here, so scaling is by replicas.
On SIGTERM, /readyz turns unready first, the servers stop accepting after ``shutdown delay``,
in-flight requests finish within ``--shutdown-timeout``, and the process exits 0.

The background tasks (the caches' watches, the certificate reload, the file watch) never end on
their own: each retries what fails. One that ends anyway, with an exception or without, would
leave a pod that answers from a frozen cache or an old certificate and looks healthy. So its
end fails /healthz and shuts the process down with exit code 1, and the kubelet restarts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import ssl
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from irsa_webhook import logs
from irsa_webhook.app import WebhookState, create_metrics_app, create_webhook_app
from irsa_webhook.cache import ConfigMapSource, ServiceAccountCache
from irsa_webhook.config import ConfigError, ServerSettings
from irsa_webhook.filewatch import ContainerCredentialsSource
from irsa_webhook.httpserver import HttpServer, uvicorn_config
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ConfigMapMappings,
    ContainerCredentialsConfig,
)
from irsa_webhook.imds import partition_and_account
from irsa_webhook.kubeapi import KubeApi
from irsa_webhook.kubeconfig import Connection, load_connection
from irsa_webhook.metrics import Metrics
from irsa_webhook.tls import CertificateError, CertificateReloader, create_context

if TYPE_CHECKING:
    from irsa_webhook.selfmanaged import SelfManagedCertificate

logger = logging.getLogger(__name__)


class _StaticConfigMap:
    """The ConfigMap source when ``--watch-config-map`` is off."""

    synced = True
    current: ConfigMapMappings = EMPTY_CONFIG_MAP


class _StaticContainerCredentials:
    """The container-credentials source when no file is watched."""

    synced = True
    current: ContainerCredentialsConfig = EMPTY_CONTAINER_CREDENTIALS


def serve(settings: ServerSettings) -> int:
    logs.configure(settings.log_format, settings.log_level)
    try:
        settings = _with_composed_account(settings)
        context = create_context(settings.tls_min_version, settings.tls_cipher_suites)
        connection = load_connection(settings.kubeconfig, settings.kube_api)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    return asyncio.run(_serve(settings, context, connection))


def _with_composed_account(settings: ServerSettings) -> ServerSettings:
    mutation = settings.mutation
    if not mutation.compose_role_arn or mutation.aws_partition:
        return settings
    partition, account = partition_and_account()
    return dataclasses.replace(
        settings,
        mutation=dataclasses.replace(mutation, aws_partition=partition, aws_account_id=account),
    )


async def _serve(settings: ServerSettings, context: ssl.SSLContext, connection: Connection) -> int:
    metrics = Metrics()
    metrics.used.set(1)
    api = KubeApi.from_connection(connection)
    reloader = _certificate_source(settings, api, context, metrics)
    service_accounts = ServiceAccountCache(
        api,
        settings.mutation,
        grace_period=settings.service_account_lookup_grace_period,
        watch_timeout=settings.watch_timeout,
        inactivity_timeout=settings.watch_inactivity_timeout,
        metrics=metrics,
        out_of_touch_limit=settings.cache_out_of_touch_limit,
    )
    config_map: Any = _StaticConfigMap()
    container_credentials: Any = _StaticContainerCredentials()
    tasks: dict[str, Coroutine[Any, Any, None]] = {
        "serviceaccounts cache": service_accounts.run(),
        "certificate reload": reloader.run(),
    }
    if settings.watch_config_map:
        config_map = ConfigMapSource(
            api,
            settings.mutation,
            settings.namespace,
            watch_timeout=settings.watch_timeout,
            inactivity_timeout=settings.watch_inactivity_timeout,
            metrics=metrics,
            out_of_touch_limit=settings.cache_out_of_touch_limit,
        )
        tasks["configmap cache"] = config_map.run()
    if settings.watch_container_credentials_config:
        container_credentials = ContainerCredentialsSource(
            settings.watch_container_credentials_config, metrics=metrics
        )
        container_credentials.load_once()
        tasks["container-credentials file watch"] = container_credentials.run()

    state = WebhookState(
        settings=settings.mutation,
        service_accounts=service_accounts,
        config_map=config_map,
        container_credentials=container_credentials,
        certificate=reloader,
        metrics=metrics,
        max_request_bytes=settings.max_request_bytes,
        readiness_requires_sync=settings.readiness_requires_sync,
        enable_debugging_handlers=settings.enable_debugging_handlers,
    )
    if settings.reconcile.mode != "off":
        tasks.update(_reconciler_tasks(settings, api, state, metrics))
    webhook = HttpServer(
        uvicorn_config(create_webhook_app(state), settings, settings.port, context)
    )
    metrics_server = HttpServer(
        uvicorn_config(create_metrics_app(state), settings, settings.metrics_port, None)
    )

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    # Everything allocated so far (imports, apps, settings) lives as long as the process:
    # moving it out of the collector's generations keeps full collections, which the
    # request path's allocations trigger, from re-scanning it.
    gc.collect()
    gc.freeze()
    background = [asyncio.create_task(task, name=name) for name, task in tasks.items()]
    servers = [asyncio.create_task(webhook.serve()), asyncio.create_task(metrics_server.serve())]
    logger.info(
        "serving",
        extra={"port": settings.port, "metrics_port": settings.metrics_port},
    )
    stop_wait = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait(
        [stop_wait, *servers, *background], return_when=asyncio.FIRST_COMPLETED
    )
    exit_code = 0
    ended = [task for task in background if task in done]
    if ended:
        for task in ended:
            _report_ended(task, state)
        exit_code = 1
    elif stop_wait not in done:
        logger.error("a server stopped unexpectedly; shutting down")
        exit_code = 1
    state.draining = True
    logger.info("shutting down: unready now, draining in-flight requests")
    await asyncio.sleep(settings.shutdown_delay)
    webhook.should_exit = True
    metrics_server.should_exit = True
    await asyncio.gather(*servers, return_exceptions=True)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await api.aclose()
    logger.info("stopped")
    return exit_code


def _reconciler_tasks(
    settings: ServerSettings, api: KubeApi, state: WebhookState, metrics: Metrics
) -> dict[str, Coroutine[Any, Any, None]]:
    """The Lease elector and the reconciler, which acts only while the elector holds the Lease."""
    # Imported only with --reconcile on (it is off by default): ~0.25 MB of idle memory.
    from irsa_webhook.leader import LeaseElector
    from irsa_webhook.reconciler import Reconciler

    # The pod name (HOSTNAME) says which replica holds the Lease; the suffix keeps two
    # processes with one name (a restarted container) from both believing they hold it.
    identity = f"{os.environ.get('HOSTNAME') or 'irsa-webhook'}_{uuid.uuid4().hex[:8]}"
    elector = LeaseElector(
        api,
        settings.namespace,
        settings.reconcile.lease_name,
        identity,
        duration=settings.reconcile.lease_duration,
        on_change=lambda leading: _leading_changed(metrics, leading),
    )
    reconciler = Reconciler(
        api,
        settings.mutation,
        settings.reconcile,
        service_accounts=state.service_accounts,
        config_map=state.config_map,
        container_credentials=state.container_credentials,
        elector=elector,
        not_ready_reasons=state.not_ready_reasons,
        metrics=metrics,
    )
    logger.info(
        "reconciler on",
        extra={"mode": settings.reconcile.mode, "interval": settings.reconcile.interval},
    )
    return {"reconciler lease": elector.run(), "reconciler": reconciler.run()}


def _certificate_source(
    settings: ServerSettings, api: KubeApi, context: ssl.SSLContext, metrics: Metrics
) -> CertificateReloader | SelfManagedCertificate:
    if settings.self_managed_cert_secret:
        # Only this mode issues certificates, and only it needs the cryptography package
        # (~8 MB and a tenth of a second at start-up): imported when it is chosen.
        from irsa_webhook.pki import Lifetimes
        from irsa_webhook.selfmanaged import SelfManagedCertificate

        return SelfManagedCertificate(
            api,
            context,
            namespace=settings.namespace,
            secret=settings.self_managed_cert_secret,
            webhook_configuration=settings.self_managed_cert_webhook_configuration,
            hosts=settings.self_managed_cert_hosts,
            lifetimes=Lifetimes(
                settings.self_managed_cert_lifetime, settings.self_managed_ca_lifetime
            ),
            metrics=metrics,
            watch_timeout=settings.watch_timeout,
            inactivity_timeout=settings.watch_inactivity_timeout,
        )
    reloader = CertificateReloader(
        context, settings.tls_cert, settings.tls_key, metrics, settings.tls_reload_interval
    )
    try:
        reloader.load()
    except CertificateError as exc:
        logger.error("not ready until the certificate loads: %s", exc)
    return reloader


def _leading_changed(metrics: Metrics, leading: bool) -> None:
    metrics.reconcile_leader.set(1 if leading else 0)
    if not leading:
        # Only the Lease holder's counts are current; a former holder must not keep reporting.
        metrics.reconcile_missing.clear()


def _report_ended(task: asyncio.Task[None], state: WebhookState) -> None:
    """Fail /healthz with the task's name, and log how it ended."""
    name = task.get_name()
    exc = task.exception()
    state.failures.append(f"{name} task ended" + (f": {type(exc).__name__}" if exc else ""))
    logger.error(
        "background task ended; shutting down so that the process is restarted",
        extra={"task": name},
        exc_info=exc,
    )
