"""Settings: one frozen field per command-line flag, validated once at start-up.

Names and defaults follow the reference webhook's flags (docs/reference.md section 1), so an
existing deployment's arguments keep their meaning. Validation errors are ``ConfigError`` and
name the flag.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

MIN_TOKEN_EXPIRATION = 600
"""The API server rejects projected tokens shorter than ten minutes."""

MAX_TOKEN_EXPIRATION = 2**32
"""The API server rejects ``expirationSeconds`` above 2^32 (its check is ``> math.MaxUint32``
on an int64, so 4294967296 itself passes; the end-to-end tests ask it at both edges)."""

DEFAULT_TOKEN_EXPIRATION = 86400

IRSA_VOLUME_NAME = "aws-iam-token"
IRSA_TOKEN_FILE = "token"
CONTAINER_CREDENTIALS_LABEL = "eks.amazonaws.com/pod-identity"
SKIP_LABEL = "eks.amazonaws.com/skip-pod-identity-webhook"
CONFIG_MAP_NAME = "pod-identity-webhook"
CONFIG_MAP_KEY = "config"


class ConfigError(ValueError):
    """A flag or setting has a value we cannot run with; the message names the flag to fix."""


@dataclass(frozen=True, slots=True)
class MutationSettings:
    """Everything the pure mutation core needs; shared by ``serve`` and ``mutate``."""

    annotation_prefix: str = "eks.amazonaws.com"
    """Prefix of every ServiceAccount and pod annotation we read (``<prefix>/role-arn``)."""
    token_audience: str = "sts.amazonaws.com"
    """Audience of the projected token when the ServiceAccount names none."""
    token_mount_path: str = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    """Where the IRSA token volume is mounted in each container."""
    token_expiration: int = DEFAULT_TOKEN_EXPIRATION
    """Default ``expirationSeconds`` of the projected token, clamped to the API server's range."""
    aws_default_region: str = ""
    """When set, injected as ``AWS_DEFAULT_REGION`` and ``AWS_REGION``."""
    sts_regional_endpoint: bool = False
    """Default for injecting ``AWS_STS_REGIONAL_ENDPOINTS=regional``."""
    compose_role_arn: bool = False
    """Let ``role-arn`` be a bare role name, composed into an ARN with partition and account."""
    aws_partition: str = ""
    """Partition used by ``--compose-role-arn`` (``aws``, ``aws-cn``, ...)."""
    aws_account_id: str = ""
    """Account used by ``--compose-role-arn``."""
    container_credentials_audience: str = "pods.eks.amazonaws.com"
    container_credentials_token_mount_path: str = (
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
    )
    container_credentials_token_volume_name: str = "eks-pod-identity-token"
    container_credentials_token_path: str = "eks-pod-identity-token"
    container_credentials_full_uri: str = "http://169.254.170.23/v1/credentials"

    def __post_init__(self) -> None:
        if not self.annotation_prefix or "/" in self.annotation_prefix:
            raise ConfigError(
                f"--annotation-prefix {self.annotation_prefix!r} must be a non-empty DNS prefix "
                "without '/', like eks.amazonaws.com"
            )
        for flag, path in (
            ("--token-mount-path", self.token_mount_path),
            (
                "--container-credentials-token-mount-path",
                self.container_credentials_token_mount_path,
            ),
        ):
            if not path.startswith("/"):
                raise ConfigError(f"{flag} {path!r} must be an absolute path")
        if self.compose_role_arn and bool(self.aws_partition) != bool(self.aws_account_id):
            raise ConfigError(
                "--aws-partition and --aws-account-id go together; give both, or neither to "
                "read them from instance metadata"
            )
        if self.aws_account_id and not (
            len(self.aws_account_id) == 12 and self.aws_account_id.isdigit()
        ):
            raise ConfigError(f"--aws-account-id {self.aws_account_id!r} must be 12 digits")

    def annotation(self, name: str) -> str:
        """The full annotation key for ``name`` under the configured prefix."""
        return f"{self.annotation_prefix}/{name}"


RECONCILE_MODES = ("off", "report", "restart")


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """The reconciler of pods that missed their injection (``--reconcile*``); off by default."""

    mode: str = "off"
    """off, report (metric and Events) or restart (also roll Deployments, StatefulSets and
    DaemonSets)."""
    interval: float = 300.0
    """Seconds between passes over the pods; also the least time between two restarts of one
    owner."""
    restarts_per_minute: float = 5.0
    """At most this many owners are restarted per minute (a token bucket of that size)."""
    hold_after_miss: float = 600.0
    """No restarts while a pod created this recently, after this webhook turned ready, lacks its
    injection: that means the API server is not reaching the webhook (it fails open), and a
    restart would only recreate pods without credentials."""
    lease_name: str = "irsa-webhook-reconciler"
    """The Lease in ``--namespace`` that lets one replica act at a time."""
    lease_duration: float = 15.0
    """Seconds a Lease holder may go without renewing before another replica takes over."""
    webhook_configuration: str = ""
    """The MutatingWebhookConfiguration that registers this webhook: only the pods it sends to the
    webhook are considered. Empty: the scope is unknown, so nothing is written or restarted."""

    def __post_init__(self) -> None:
        if self.mode not in RECONCILE_MODES:
            raise ConfigError(f"--reconcile {self.mode!r} must be off, report or restart")
        if self.interval < 1:
            raise ConfigError("--reconcile-interval must be at least 1s, like 5m")
        if self.restarts_per_minute <= 0:
            raise ConfigError("--reconcile-restarts-per-minute must be positive, like 5")
        if self.hold_after_miss < 0:
            raise ConfigError("--reconcile-hold-after-miss must not be negative")
        if not self.lease_name:
            raise ConfigError("--reconcile-lease-name must not be empty")
        if self.lease_duration < 3:
            raise ConfigError("--reconcile-lease-duration must be at least 3s")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Settings of ``irsa-webhook serve``: the mutation settings plus process wiring."""

    mutation: MutationSettings = field(default_factory=MutationSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    port: int = 443
    metrics_port: int = 9999
    bind_address: str = "0.0.0.0"  # noqa: S104 - a webhook in a pod must listen on its pod IP
    kubeconfig: str = ""
    kube_api: str = ""
    tls_cert: str = "/etc/webhook/certs/tls.crt"
    tls_key: str = "/etc/webhook/certs/tls.key"
    tls_min_version: str = "1.2"
    tls_cipher_suites: tuple[str, ...] = ()
    tls_reload_interval: float = 10.0
    """How often the cert files are checked for a change (seconds)."""
    self_managed_cert_secret: str = ""
    """Secret in ``namespace`` holding the self-managed CA and serving certificate; setting it
    turns the mode on, and ``tls_cert``/``tls_key`` are then not read."""
    self_managed_cert_webhook_configuration: str = ""
    """MutatingWebhookConfiguration whose ``caBundle`` the self-managed CA is kept in."""
    self_managed_cert_hosts: tuple[str, ...] = ()
    """DNS names and IP addresses the self-managed serving certificate is issued for."""
    self_managed_cert_lifetime: float = 365 * 86400.0
    """Lifetime of a self-managed serving certificate; renewed with a third of it left."""
    self_managed_ca_lifetime: float = 10 * 365 * 86400.0
    """Lifetime of the self-managed CA; renewed with a third of it left."""
    namespace: str = "eks"
    """Namespace of the ``pod-identity-webhook`` ConfigMap (the reference default)."""
    watch_config_map: bool = False
    watch_container_credentials_config: str = ""
    enable_debugging_handlers: bool = False
    service_account_lookup_grace_period: float = 1.0
    resync_period: float = 60.0
    log_format: str = "text"
    log_level: str = "info"
    readiness_requires_sync: bool = True
    max_request_bytes: int = 4 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    """Largest URL plus header names and values of a request; larger ones get HTTP 431."""
    max_connections: int = 1000
    keep_alive_timeout: float = 120.0
    """Idle keep-alive connections are closed after this (seconds). Longer than the 90 s the API
    server's webhook client keeps an idle connection: the client must be the one to close it, or
    a POST it sends just as we close lands on a dead connection and fails the admission."""
    read_timeout: float = 10.0
    """A request's headers and body must arrive within this (seconds), else HTTP 408 and close.

    Counted from the connection for its first request, then from each request's first byte; the
    idle time between keep-alive requests is ``keep_alive_timeout``'s.
    """
    shutdown_delay: float = 2.0
    """After SIGTERM, keep serving (unready) this long so endpoints stop sending us requests."""
    shutdown_timeout: float = 20.0
    """Upper bound on draining in-flight requests after SIGTERM."""
    watch_timeout: float = 300.0
    """Server-side timeout of one watch request; the watch resumes from the last version."""
    watch_inactivity_timeout: float = 90.0
    """Reconnect when a watch delivers nothing, not even a bookmark, for this long."""
    cache_out_of_touch_limit: float = 300.0
    """A cache that has not heard from the API server (a list, any watch event, bookmarks
    included) for this long is no longer synced, so /readyz fails; 0 never. Bookmarks arrive
    about once a minute on a healthy watch."""

    def __post_init__(self) -> None:
        for flag, port in (("--port", self.port), ("--metrics-port", self.metrics_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{flag} {port} is not a TCP port (0-65535)")
        if self.port == self.metrics_port and self.port != 0:
            raise ConfigError("--port and --metrics-port must differ")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"--log-format {self.log_format!r} must be text or json")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"--log-level {self.log_level!r} must be debug, info, warning or error"
            )
        if self.service_account_lookup_grace_period < 0:
            raise ConfigError("--service-account-lookup-grace-period must not be negative")
        if self.max_request_bytes < 1024:
            raise ConfigError("--max-request-bytes must be at least 1024")
        if self.max_header_bytes < 1024:
            raise ConfigError("--max-header-bytes must be at least 1024")
        if self.cache_out_of_touch_limit < 0:
            raise ConfigError("--cache-out-of-touch-limit must not be negative (0 disables it)")
        if self.read_timeout <= 0:
            raise ConfigError("--read-timeout must be positive, like 10s")
        self._validate_self_managed()
        if (
            self.watch_container_credentials_config
            and not self.watch_container_credentials_config.startswith("/")
        ):
            raise ConfigError("--watch-container-credentials-config must be an absolute path")

    def _validate_self_managed(self) -> None:
        if not self.self_managed_cert_secret:
            if self.self_managed_cert_webhook_configuration or self.self_managed_cert_hosts:
                raise ConfigError(
                    "--self-managed-cert-webhook-configuration and --self-managed-cert-hosts "
                    "need --self-managed-cert-secret, which turns self-managed certificates on"
                )
            return
        if not self.self_managed_cert_webhook_configuration or not self.self_managed_cert_hosts:
            raise ConfigError(
                "--self-managed-cert-secret needs --self-managed-cert-webhook-configuration (the "
                "MutatingWebhookConfiguration to keep the CA in) and --self-managed-cert-hosts "
                "(the names the API server calls the webhook by)"
            )
        for host in self.self_managed_cert_hosts:
            if not _is_host(host):
                raise ConfigError(
                    f"--self-managed-cert-hosts: {host!r} is neither an IP address nor a DNS name "
                    "(letters, digits, '-' and '.', like irsa-webhook.irsa-webhook.svc)"
                )
        for flag, lifetime in (
            ("--self-managed-cert-lifetime", self.self_managed_cert_lifetime),
            ("--self-managed-ca-lifetime", self.self_managed_ca_lifetime),
        ):
            if lifetime < 1:
                raise ConfigError(f"{flag} must be at least 1s, like 8760h")


_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name of RFC 1123 labels (what a serving certificate can name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return 0 < len(host) <= 253 and all(
            _DNS_LABEL.fullmatch(label) for label in host.split(".")
        )
    return True
