"""Real servers on loopback for tests: the webhook's own uvicorn wiring, run in a thread."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from cryptography import x509

from irsa_webhook.app import WebhookState
from irsa_webhook.config import MutationSettings, ServerSettings
from irsa_webhook.httpserver import HttpServer, uvicorn_config
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ConfigMapMappings,
    ContainerCredentialsConfig,
    ServiceAccountEntry,
    parse_service_account,
)
from irsa_webhook.metrics import Metrics
from irsa_webhook.tls import CertificateReloader, create_context

ROLE = "arn:aws:iam::111122223333:role/s3-reader"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def secret_volume(directory: Path, leaf: trustme.LeafCert, generation: int) -> None:
    """Lay out files the way the kubelet updates a Secret volume: an atomic ..data swap."""
    data = directory / f"..gen{generation}"
    data.mkdir()
    leaf.cert_chain_pems[0].write_to_path(str(data / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(data / "tls.key"))
    temporary = directory / "..data_tmp"
    temporary.symlink_to(data.name)
    os.replace(temporary, directory / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


@dataclass
class RunningServer:
    server: HttpServer
    port: int
    thread: threading.Thread

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


@contextmanager
def run_server(
    app: Any, context: ssl.SSLContext | None = None, settings: ServerSettings | None = None
) -> Iterator[RunningServer]:
    """Serve ``app`` with the production uvicorn configuration on a free loopback port."""
    settings = settings or ServerSettings(bind_address="127.0.0.1", port=0, metrics_port=0)
    server = HttpServer(uvicorn_config(app, settings, 0, context))
    with serve_in_thread(server) as (port, thread):
        yield RunningServer(server, port, thread)


@contextmanager
def serve_in_thread(server: uvicorn.Server) -> Iterator[tuple[int, threading.Thread]]:
    """Run ``server`` in a thread on a free loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the loopback server did not start")
        time.sleep(0.01)
    try:
        yield port, thread
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Pki:
    """A test CA and a serving certificate for 127.0.0.1, written to files."""

    ca: trustme.CA
    directory: Any
    cert_path: str = field(init=False)
    key_path: str = field(init=False)

    def __post_init__(self) -> None:
        self.cert_path = str(self.directory / "tls.crt")
        self.key_path = str(self.directory / "tls.key")

    def issue(self, *names: str) -> trustme.LeafCert:
        return self.ca.issue_cert(*(names or ("127.0.0.1", "localhost")))

    def write(self, leaf: trustme.LeafCert) -> None:
        leaf.cert_chain_pems[0].write_to_path(self.cert_path)
        leaf.private_key_pem.write_to_path(self.key_path)

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@dataclass
class MemoryServiceAccounts:
    """ServiceAccounts held in a dict: the HTTP layer's view of the cache, without the API."""

    entries: dict[tuple[str, str], ServiceAccountEntry] = field(default_factory=dict)
    synced: bool = True
    lookups: int = 0

    def get(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self.entries.get((namespace, name))

    async def lookup(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        self.lookups += 1
        return self.entries.get((namespace, name))

    def snapshot(self) -> dict[str, ServiceAccountEntry]:
        return {f"{ns}/{name}": entry for (ns, name), entry in self.entries.items()}


@dataclass
class StaticConfigMap:
    synced: bool = True
    current: ConfigMapMappings = EMPTY_CONFIG_MAP


@dataclass
class StaticContainerCredentials:
    synced: bool = True
    current: ContainerCredentialsConfig = EMPTY_CONTAINER_CREDENTIALS


def make_state(pki: Pki, **overrides: Any) -> tuple[WebhookState, MemoryServiceAccounts]:
    settings = MutationSettings()
    accounts = MemoryServiceAccounts()
    accounts.entries[("team-a", "s3")] = parse_service_account(
        {"eks.amazonaws.com/role-arn": ROLE}, settings
    )
    accounts.entries[("team-a", "plain")] = parse_service_account({}, settings)
    context = create_context("1.2", ())
    reloader = CertificateReloader(context, pki.cert_path, pki.key_path)
    reloader.load()
    state = WebhookState(
        settings=settings,
        service_accounts=accounts,
        config_map=StaticConfigMap(),
        container_credentials=StaticContainerCredentials(),
        certificate=reloader,
        metrics=Metrics(),
        **overrides,
    )
    return state, accounts
