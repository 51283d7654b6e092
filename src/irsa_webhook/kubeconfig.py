"""Where the API server is and how to prove who we are: a kubeconfig file (``--kubeconfig``) or
the pod's ServiceAccount, resolved as client-go resolves them, with ``--kube-api`` replacing the
server URL either way.

Written here rather than borrowed from the ``kubernetes`` package: its loader comes with its whole
synchronous client (urllib3, requests, oauthlib, dateutil), about 10 MB and most of a second of
start-up, for a few dozen lines of reading, and it runs exec plugins on the caller's thread.

Supported in a kubeconfig: the current context's cluster (``server``, ``certificate-authority``
and ``-data``, ``insecure-skip-tls-verify``, ``tls-server-name``, ``proxy-url``) and user
(``token``, ``tokenFile``, ``exec``, ``username``/``password``, ``client-certificate``/``-key``
and their ``-data``). Relative paths are relative to the kubeconfig's directory. The legacy
``auth-provider`` plugins (removed from kubectl) are refused with the way out.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from irsa_webhook.config import ConfigError
from irsa_webhook.credentials import (
    Credentials,
    ExecConfig,
    ExecPlugin,
    StaticCredentials,
    TokenFile,
    basic_authorization,
)
from irsa_webhook.tls import load_cert_chain_data

logger = logging.getLogger(__name__)

SERVICE_TOKEN_FILENAME = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_CERT_FILENAME = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


@dataclass(frozen=True, slots=True)
class Connection:
    """Everything ``KubeApi`` needs to reach and authenticate to one API server."""

    host: str
    verify: ssl.SSLContext | bool = True
    credentials: Credentials | None = None
    tls_server_name: str = ""
    """Name to check the server's certificate against (and send as SNI), when not the host's."""
    proxy: str = ""


def load_connection(
    kubeconfig: str = "",
    kube_api: str = "",
    *,
    token_path: str = SERVICE_TOKEN_FILENAME,
    ca_path: str = SERVICE_CERT_FILENAME,
    environ: Mapping[str, str] = os.environ,
) -> Connection:
    """The connection that ``--kubeconfig`` and ``--kube-api`` describe.

    Without ``kubeconfig`` the in-cluster ServiceAccount is used; outside a cluster a
    ``kube_api`` alone connects without credentials, as client-go does. ``token_path``,
    ``ca_path`` and ``environ`` exist for tests of the in-cluster branch. Raises ``ConfigError``
    naming what is missing or wrong.
    """
    if kubeconfig:
        connection = _from_kubeconfig(kubeconfig)
    else:
        in_cluster = _in_cluster(token_path, ca_path, environ)
        if isinstance(in_cluster, str):
            if not kube_api:
                raise ConfigError(
                    f"not in a cluster ({in_cluster}): pass --kubeconfig, or --kube-api"
                )
            # client-go does the same: a bare --kube-api outside a cluster is anonymous.
            logger.info("not in a cluster; connecting to --kube-api without credentials")
            return Connection(kube_api.rstrip("/"))
        connection = in_cluster
    if kube_api:
        return Connection(
            kube_api.rstrip("/"),
            connection.verify,
            connection.credentials,
            connection.tls_server_name,
            connection.proxy,
        )
    return connection


def _in_cluster(token_path: str, ca_path: str, environ: Mapping[str, str]) -> Connection | str:
    """The pod's ServiceAccount connection, or why there is none."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        return "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set"
    for path in (token_path, ca_path):
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return f"{path} is missing or empty"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 service address
    try:
        context = ssl.create_default_context(cafile=ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"the in-cluster CA {ca_path} cannot be used: {exc}") from None
    return Connection(f"https://{host}:{port}", context, TokenFile(token_path))


def _from_kubeconfig(path: str) -> Connection:
    # YAML only for this branch: a webhook in its cluster never reads a kubeconfig.
    import yaml

    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file)
    except OSError as exc:
        raise ConfigError(f"--kubeconfig {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(f"--kubeconfig {path} is not YAML: {problem}") from None
    reader = _Reader(path, document)
    cluster, user = reader.current()
    directory = os.path.dirname(os.path.abspath(path))

    server = reader.text(cluster, "server", "cluster").rstrip("/")
    if not server:
        raise ConfigError(f"--kubeconfig {path}: the current context's cluster has no server")
    context: ssl.SSLContext | None = None
    if server.startswith("https://"):
        context = _tls_context(reader, cluster, user, directory)
    credentials = _credentials(reader, cluster, user, directory, context)
    return Connection(
        server,
        context if context is not None else True,
        credentials,
        reader.text(cluster, "tls-server-name", "cluster"),
        reader.text(cluster, "proxy-url", "cluster"),
    )


def _tls_context(
    reader: _Reader, cluster: Mapping[str, Any], user: Mapping[str, Any], directory: str
) -> ssl.SSLContext:
    insecure = cluster.get("insecure-skip-tls-verify") is True
    ca_data = reader.data(cluster, "certificate-authority", directory)
    try:
        if insecure:
            # The user asked for it explicitly in the kubeconfig.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cadata=ca_data.decode() if ca_data else None)
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--kubeconfig {reader.path}: the certificate authority cannot be used: {exc}"
        ) from None
    certificate = reader.data(user, "client-certificate", directory)
    key = reader.data(user, "client-key", directory)
    if bool(certificate) != bool(key):
        raise ConfigError(
            f"--kubeconfig {reader.path}: client-certificate and client-key go together"
        )
    if certificate and key:
        try:
            load_cert_chain_data(context, certificate, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"--kubeconfig {reader.path}: the client certificate and key cannot be used "
                f"(both PEM, the key matching the certificate): {exc}"
            ) from None
    return context


def _credentials(
    reader: _Reader,
    cluster: Mapping[str, Any],
    user: Mapping[str, Any],
    directory: str,
    context: ssl.SSLContext | None,
) -> Credentials | None:
    """The user's credentials, in the kubernetes client's order: token, exec, basic auth."""
    if "auth-provider" in user:
        name = (user.get("auth-provider") or {}).get("name", "")
        raise ConfigError(
            f"--kubeconfig {reader.path}: auth-provider {name!r} is not supported (kubectl "
            "dropped these plugins); use an exec credential plugin such as kubelogin"
        )
    token = reader.text(user, "token", "user")
    if token:
        return StaticCredentials(f"Bearer {token}")
    token_file = reader.text(user, "tokenFile", "user")
    if token_file:
        return TokenFile(os.path.join(directory, token_file))
    if "exec" in user:
        return ExecPlugin(_exec_config(reader, cluster, user["exec"], directory), context)
    username = reader.text(user, "username", "user")
    password = reader.text(user, "password", "user")
    if username and password:
        return StaticCredentials(basic_authorization(username, password))
    return None


def _exec_config(
    reader: _Reader, cluster: Mapping[str, Any], section: Any, directory: str
) -> ExecConfig:
    if not isinstance(section, dict):
        raise reader.error("the user's exec must be a mapping")
    api_version = reader.text(section, "apiVersion", "exec")
    command = reader.text(section, "command", "exec")
    if not api_version or not command:
        raise reader.error("the user's exec needs command and apiVersion")
    args = section.get("args") or []
    env = section.get("env") or []
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise reader.error("exec args must be a list of strings")
    if not isinstance(env, list) or not all(
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("value"), str)
        for item in env
    ):
        raise reader.error("exec env must be a list of {name, value} strings")
    plugin_cluster = None
    if section.get("provideClusterInfo") is True:
        # The cluster as the kubernetes client hands it over, with the plugin's own settings
        # (the client.authentication.k8s.io/exec extension) as ``config``.
        plugin_cluster = dict(cluster)
        for extension in cluster.get("extensions") or ():
            if (
                isinstance(extension, dict)
                and extension.get("name") == "client.authentication.k8s.io/exec"
            ):
                plugin_cluster["config"] = extension.get("extension")
                break
    return ExecConfig(
        api_version=api_version,
        command=command,
        args=tuple(args),
        env=tuple((item["name"], item["value"]) for item in env),
        cluster=plugin_cluster,
        directory=directory,
    )


class _Reader:
    """Typed access to a kubeconfig document; every problem is a ``ConfigError`` naming the
    file and the field."""

    def __init__(self, path: str, document: Any) -> None:
        self.path = path
        if not isinstance(document, dict):
            raise self.error("a kubeconfig must be a mapping with clusters, users and contexts")
        self._document = document

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"--kubeconfig {self.path}: {problem}")

    def current(self) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """The current context's cluster and user sections (the user may be empty)."""
        name = self._document.get("current-context")
        if not name or not isinstance(name, str):
            raise self.error("no current-context")
        context = self._named("contexts", name, "context")
        cluster_name = context.get("cluster")
        if not isinstance(cluster_name, str) or not cluster_name:
            raise self.error(f"context {name!r} names no cluster")
        cluster = self._named("clusters", cluster_name, "cluster")
        user_name = context.get("user")
        user: Mapping[str, Any] = {}
        if isinstance(user_name, str) and user_name:
            user = self._named("users", user_name, "user", required=False)
        return cluster, user

    def _named(
        self, section: str, name: str, key: str, *, required: bool = True
    ) -> Mapping[str, Any]:
        for item in self._document.get(section) or ():
            if isinstance(item, dict) and item.get("name") == name:
                value = item.get(key) or {}
                if not isinstance(value, dict):
                    raise self.error(f"{section} entry {name!r} must hold a {key} mapping")
                return value
        if required:
            raise self.error(f"no {section} entry named {name!r}")
        return {}

    def text(self, section: Mapping[str, Any], key: str, where: str) -> str:
        value = section.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(f"{where} {key} must be a string")
        return value

    def data(self, section: Mapping[str, Any], key: str, directory: str) -> bytes:
        """``key-data`` (base64) or the file ``key`` names; empty when neither is set."""
        encoded = self.text(section, f"{key}-data", key)
        if encoded:
            try:
                return base64.b64decode(encoded)
            except (binascii.Error, ValueError):
                raise self.error(f"{key}-data is not base64") from None
        name = self.text(section, key, key)
        if not name:
            return b""
        file_path = os.path.join(directory, name)
        try:
            with open(file_path, "rb") as file:
                return file.read()
        except OSError as exc:
            raise self.error(f"{key} {file_path}: {exc.strerror or exc}") from None
