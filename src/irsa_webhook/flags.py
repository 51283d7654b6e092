"""The command-line flags: reference names and defaults, each also read from the environment.

One table drives both ``serve`` and ``mutate`` so the two never disagree. A flag ``--foo-bar``
may also be set as ``IRSA_WEBHOOK_FOO_BAR``; the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from irsa_webhook.config import ConfigError, MutationSettings, ReconcileSettings, ServerSettings
from irsa_webhook.identity import clamp_token_expiration
from irsa_webhook.parsing import parse_bool, parse_duration, parse_int64

logger = logging.getLogger(__name__)

ENV_PREFIX = "IRSA_WEBHOOK_"


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    field: str
    parse: Callable[[str], Any]
    help: str
    is_bool: bool = False


def _str(value: str) -> str:
    return value


def _port(value: str) -> int:
    return int(parse_int64(value))


def _finite(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


MUTATION_FLAGS = (
    Flag(
        "--annotation-prefix",
        "annotation_prefix",
        _str,
        "prefix of the ServiceAccount and pod annotations",
    ),
    Flag("--token-audience", "token_audience", _str, "default audience of the projected token"),
    Flag("--token-mount-path", "token_mount_path", _str, "where the IRSA token is mounted"),
    Flag(
        "--token-expiration",
        "token_expiration",
        parse_int64,
        "default token lifetime in seconds (600..4294967296)",
    ),
    Flag(
        "--aws-default-region",
        "aws_default_region",
        _str,
        "inject AWS_REGION and AWS_DEFAULT_REGION with this value",
    ),
    Flag(
        "--sts-regional-endpoint",
        "sts_regional_endpoint",
        parse_bool,
        "inject AWS_STS_REGIONAL_ENDPOINTS=regional by default",
        is_bool=True,
    ),
    Flag(
        "--compose-role-arn",
        "compose_role_arn",
        parse_bool,
        "allow role-arn to be a bare role name",
        is_bool=True,
    ),
    Flag(
        "--aws-partition",
        "aws_partition",
        _str,
        "partition for --compose-role-arn (else instance metadata)",
    ),
    Flag(
        "--aws-account-id",
        "aws_account_id",
        _str,
        "account for --compose-role-arn (else instance metadata)",
    ),
    Flag(
        "--container-credentials-audience",
        "container_credentials_audience",
        _str,
        "EKS Pod Identity token audience",
    ),
    Flag(
        "--container-credentials-token-mount-path",
        "container_credentials_token_mount_path",
        _str,
        "EKS Pod Identity token mount path",
    ),
    Flag(
        "--container-credentials-token-volume-name",
        "container_credentials_token_volume_name",
        _str,
        "EKS Pod Identity volume name",
    ),
    Flag(
        "--container-credentials-token-path",
        "container_credentials_token_path",
        _str,
        "EKS Pod Identity token file name",
    ),
    Flag(
        "--container-credentials-full-uri",
        "container_credentials_full_uri",
        _str,
        "value of AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ),
)

SERVER_FLAGS = (
    Flag("--port", "port", _port, "TLS port of /mutate, /healthz and /readyz"),
    Flag("--metrics-port", "metrics_port", _port, "plain-HTTP port of /metrics"),
    Flag("--bind-address", "bind_address", _str, "address both servers listen on"),
    Flag("--kubeconfig", "kubeconfig", _str, "kubeconfig file (default: in-cluster)"),
    Flag("--kube-api", "kube_api", _str, "API server URL override"),
    Flag("--tls-cert", "tls_cert", _str, "serving certificate file, reloaded when it changes"),
    Flag("--tls-key", "tls_key", _str, "serving key file, reloaded when it changes"),
    Flag("--tls-min-version", "tls_min_version", _str, "1.2 or 1.3 (1.0 and 1.1 are refused)"),
    Flag(
        "--tls-cipher-suites",
        "tls_cipher_suites",
        _csv,
        "comma-separated IANA cipher suite names (TLS 1.2)",
    ),
    Flag("--namespace", "namespace", _str, "namespace of the pod-identity-webhook ConfigMap"),
    Flag(
        "--watch-config-map",
        "watch_config_map",
        parse_bool,
        "also read roles from the pod-identity-webhook ConfigMap",
        is_bool=True,
    ),
    Flag(
        "--watch-container-credentials-config",
        "watch_container_credentials_config",
        _str,
        "EKS Pod Identity identities file to watch",
    ),
    Flag(
        "--enable-debugging-handlers",
        "enable_debugging_handlers",
        parse_bool,
        "serve /debug/alpha/cache on the metrics port",
        is_bool=True,
    ),
    Flag(
        "--service-account-lookup-grace-period",
        "service_account_lookup_grace_period",
        parse_duration,
        "how long a cache miss may wait for a live GET (0 disables it)",
    ),
    Flag(
        "--resync-period",
        "resync_period",
        parse_duration,
        "accepted for compatibility; the watch keeps the cache current",
    ),
    Flag("--log-format", "log_format", _str, "text or json"),
    Flag("--log-level", "log_level", _str, "debug, info, warning or error"),
    Flag(
        "--readiness-requires-sync",
        "readiness_requires_sync",
        parse_bool,
        "/readyz waits for the first full sync",
        is_bool=True,
    ),
    Flag(
        "--cache-out-of-touch-limit",
        "cache_out_of_touch_limit",
        parse_duration,
        "a cache that has not heard from the API server this long is not synced (0: never)",
    ),
    Flag(
        "--max-request-bytes",
        "max_request_bytes",
        parse_int64,
        "larger admission requests get HTTP 413",
    ),
    Flag(
        "--max-header-bytes",
        "max_header_bytes",
        parse_int64,
        "larger URL plus header names and values get HTTP 431",
    ),
    Flag(
        "--read-timeout",
        "read_timeout",
        parse_duration,
        "a request's headers and body must arrive within this, else HTTP 408",
    ),
    Flag(
        "--max-connections",
        "max_connections",
        parse_int64,
        "concurrent connections before new ones are refused",
    ),
    Flag(
        "--keep-alive-timeout",
        "keep_alive_timeout",
        parse_duration,
        "idle keep-alive connections are closed after this (keep it above the API server's 90s)",
    ),
    Flag(
        "--shutdown-delay",
        "shutdown_delay",
        parse_duration,
        "after SIGTERM, serve unready this long before closing",
    ),
    Flag(
        "--shutdown-timeout",
        "shutdown_timeout",
        parse_duration,
        "upper bound on draining requests after SIGTERM",
    ),
    Flag(
        "--tls-reload-interval",
        "tls_reload_interval",
        parse_duration,
        "how often the cert files are checked",
    ),
    Flag(
        "--self-managed-cert-secret",
        "self_managed_cert_secret",
        _str,
        "keep a CA and serving certificate in this Secret of --namespace (instead of --tls-cert)",
    ),
    Flag(
        "--self-managed-cert-webhook-configuration",
        "self_managed_cert_webhook_configuration",
        _str,
        "MutatingWebhookConfiguration whose caBundle the self-managed CA is kept in",
    ),
    Flag(
        "--self-managed-cert-hosts",
        "self_managed_cert_hosts",
        _csv,
        "comma-separated DNS names and IPs of the self-managed serving certificate",
    ),
    Flag(
        "--self-managed-cert-lifetime",
        "self_managed_cert_lifetime",
        parse_duration,
        "lifetime of a self-managed serving certificate (renewed with a third left)",
    ),
    Flag(
        "--self-managed-ca-lifetime",
        "self_managed_ca_lifetime",
        parse_duration,
        "lifetime of the self-managed CA (renewed with a third left)",
    ),
)

RECONCILE_FLAGS = (
    Flag(
        "--reconcile",
        "mode",
        _str,
        "off, report (metric and Event per pod that missed its injection) or restart "
        "(also roll its Deployment, StatefulSet or DaemonSet)",
    ),
    Flag(
        "--reconcile-interval",
        "interval",
        parse_duration,
        "time between reconcile passes, and between two restarts of one owner",
    ),
    Flag(
        "--reconcile-restarts-per-minute",
        "restarts_per_minute",
        _finite,
        "most owners restarted per minute",
    ),
    Flag(
        "--reconcile-hold-after-miss",
        "hold_after_miss",
        parse_duration,
        "no restarts while a pod this young, created while the webhook was ready, lacks "
        "its injection (the API server fails open)",
    ),
    Flag(
        "--reconcile-lease-name",
        "lease_name",
        _str,
        "Lease in --namespace that lets one replica reconcile at a time",
    ),
    Flag(
        "--reconcile-lease-duration",
        "lease_duration",
        parse_duration,
        "how long the Lease holds without renewal",
    ),
    Flag(
        "--reconcile-webhook-configuration",
        "webhook_configuration",
        _str,
        "MutatingWebhookConfiguration registering this webhook: only pods it sends here count",
    ),
)

# Reference flags of the deprecated CSR mode and of klog: accepted so that existing manifests
# keep parsing, and otherwise ignored.
LEGACY_FLAGS = (
    Flag("--service-name", "legacy_service_name", _str, "ignored (CSR mode only)"),
    Flag("--tls-secret", "legacy_tls_secret", _str, "ignored (CSR mode only)"),
    Flag(
        "--logtostderr",
        "legacy_logtostderr",
        parse_bool,
        "ignored (logs go to stderr)",
        is_bool=True,
    ),
    Flag("--v", "legacy_verbosity", _str, "ignored; use --log-level"),
)


def _env_name(flag: Flag) -> str:
    return ENV_PREFIX + flag.name.removeprefix("--").replace("-", "_").upper()


def add_flags(parser: argparse.ArgumentParser, flags: tuple[Flag, ...]) -> None:
    for flag in flags:

        def parse(value: str, flag: Flag = flag) -> Any:
            try:
                return flag.parse(value)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        parse.__name__ = flag.name
        kwargs: dict[str, Any] = {
            "dest": flag.field,
            "type": parse,
            "default": None,
            "help": f"{flag.help} [env {_env_name(flag)}]",
        }
        if flag.is_bool:
            kwargs.update(nargs="?", const=True, metavar="true|false")
        parser.add_argument(flag.name, **kwargs)


def collect(
    namespace: argparse.Namespace, flags: tuple[Flag, ...], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Flag values given on the command line or in the environment (not the defaults)."""
    values: dict[str, Any] = {}
    for flag in flags:
        value = getattr(namespace, flag.field, None)
        if value is None and _env_name(flag) in environ:
            try:
                value = flag.parse(environ[_env_name(flag)])
            except ValueError as exc:
                raise ConfigError(f"{_env_name(flag)}: {exc}") from None
        if value is not None:
            values[flag.field] = value
    return values


def mutation_settings(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> MutationSettings:
    values = collect(namespace, MUTATION_FLAGS, os.environ if environ is None else environ)
    if "token_expiration" in values:
        values["token_expiration"], clamped = clamp_token_expiration(
            values["token_expiration"], "--token-expiration"
        )
        if clamped:
            logger.warning(clamped.message, extra={"reason": clamped.reason})
    return MutationSettings(**values)


def server_settings(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServerSettings:
    environ = os.environ if environ is None else environ
    values = collect(namespace, SERVER_FLAGS, environ)
    reconcile = ReconcileSettings(**collect(namespace, RECONCILE_FLAGS, environ))
    return ServerSettings(
        mutation=mutation_settings(namespace, environ), reconcile=reconcile, **values
    )
