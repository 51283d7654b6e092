"""The real ``irsa-webhook serve`` process under load: graceful shutdown and certificate rotation.

The process points at an API server that does not exist (``--readiness-requires-sync false``):
shutdown and TLS do not depend on it, and unknown ServiceAccounts are allowed unchanged.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
from cryptography import x509

from loopback import free_port, secret_volume, serial_of

IRSA_WEBHOOK = str(Path(sys.executable).parent / "irsa-webhook")
REVIEW = orjson.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "namespace": "team-a",
            "object": {"spec": {"serviceAccountName": "app", "containers": [{"name": "c"}]}},
        },
    }
)
HEADERS = {"Content-Type": "application/json"}


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    port: int
    ca: trustme.CA
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def client(self, keep_alive: bool = True) -> httpx.Client:
        limits = httpx.Limits(max_keepalive_connections=None if keep_alive else 0)
        return httpx.Client(verify=self.context(), timeout=10, limits=limits)

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return self.context().wrap_socket(raw, server_hostname="127.0.0.1")

    def served_serial(self) -> int:
        with self.connect() as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def start(
    directory: Path, ca: trustme.CA, *args: str, program: Sequence[str] = (IRSA_WEBHOOK,)
) -> Serve:
    if not (directory / "..data").exists():
        secret_volume(directory, ca.issue_cert("127.0.0.1"), 0)
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: not-a-real-token}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    port = free_port()
    log = directory / "serve.log"
    command = [
        *program,
        "serve",
        "--kubeconfig",
        str(kubeconfig),
        "--bind-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(free_port()),
        "--tls-cert",
        str(directory / "tls.crt"),
        "--tls-key",
        str(directory / "tls.key"),
        "--readiness-requires-sync",
        "false",
        "--log-format",
        "json",
        *args,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    serve = Serve(process, port, ca, log)
    deadline = time.monotonic() + 20
    with serve.client() as client:
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if client.get(f"{serve.url}/readyz").status_code == 200:
                    return serve
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)


@pytest.fixture
def running(tmp_path: Path, ca: trustme.CA, request: pytest.FixtureRequest) -> Iterator[Serve]:
    serve = start(tmp_path, ca, *request.param)
    try:
        yield serve
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
        serve.process.wait(timeout=10)


@dataclass
class Load:
    """Client threads posting /mutate until told to stop; every outcome is recorded."""

    serve: Serve
    threads: int = 4
    keep_alive: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _run(self) -> None:
        with self.serve.client(self.keep_alive) as client:
            for _ in range(100_000):
                if self.stop.is_set():
                    return
                try:
                    response = client.post(
                        f"{self.serve.url}/mutate", content=REVIEW, headers=HEADERS
                    )
                    self.statuses.append(response.status_code)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.02)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def send_half_a_request(tls: ssl.SSLSocket) -> None:
    tls.sendall(
        b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(REVIEW)}\r\n\r\n".encode()
        + REVIEW[:20]
    )


@pytest.mark.parametrize(
    "running", [("--shutdown-delay", "1s", "--shutdown-timeout", "5s")], indirect=True
)
def test_sigterm_turns_unready_first_answers_every_accepted_request_and_exits_0(
    running: Serve,
) -> None:
    with running.client() as probe, Load(running) as load:
        while len(load.statuses) < 50:
            assert not load.errors, load.errors
            time.sleep(0.05)
        in_flight = running.connect()
        send_half_a_request(in_flight)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        # The first /readyz after SIGTERM already fails: endpoints drop us during the delay.
        assert probe.get(f"{running.url}/readyz").status_code == 503
        # Load keeps arriving for a while after readiness fails, as it does in a cluster.
        answered = len(load.statuses)
        wait_until(lambda: len(load.statuses) >= answered + 20, 10, "answers after SIGTERM")
        load.stop.set()
    # The in-flight request finishes after the listeners closed and is still answered.
    wait_until(lambda: refuses_connections(running.port), 10, "the listener closed")
    assert time.monotonic() - signalled >= 1.0, "the listener closed before --shutdown-delay"
    in_flight.sendall(REVIEW[20:])
    in_flight.settimeout(10)
    head = in_flight.recv(4096)
    in_flight.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert running.process.wait(timeout=10) == 0
    assert load.errors == []
    assert set(load.statuses) == {200}
    assert "stopped" in running.log.read_text()


@pytest.mark.parametrize(
    "running", [("--shutdown-delay", "0s", "--shutdown-timeout", "2s")], indirect=True
)
def test_a_client_that_never_finishes_does_not_hold_shutdown_past_its_timeout(
    running: Serve,
) -> None:
    with running.connect() as stuck, running.client() as probe:
        send_half_a_request(stuck)
        # A request sent after it is answered: the server's loop has read the half request.
        assert probe.get(f"{running.url}/healthz").status_code == 200
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=15) == 0
    # Liveness bound, not speed: delay 0 s + timeout 2 s + process teardown.
    assert time.monotonic() - signalled < 10


@pytest.mark.parametrize(
    "running", [("--shutdown-delay", "0s", "--shutdown-timeout", "2s")], indirect=True
)
def test_idle_connections_that_ignore_close_notify_do_not_hold_shutdown_past_its_timeout(
    running: Serve,
) -> None:
    # These clients never read, so they never answer the server's TLS close_notify: uvicorn
    # waits for them until --shutdown-timeout (a Go client reads and closes at once).
    idle = [running.connect() for _ in range(20)]
    try:
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=15) == 0
        assert time.monotonic() - signalled < 10
    finally:
        for tls in idle:
            tls.close()


def wait_for_serial(serve: Serve, serial: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if serve.served_serial() == serial:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("running", [("--tls-reload-interval", "0.5s")], indirect=True)
def test_a_rotated_certificate_is_served_within_the_reload_interval_without_failed_requests(
    running: Serve, tmp_path: Path, ca: trustme.CA
) -> None:
    with Load(running, threads=2, keep_alive=False) as fresh, Load(running, threads=2) as reused:
        for generation in range(1, 4):
            leaf = ca.issue_cert("127.0.0.1")
            secret_volume(tmp_path, leaf, generation)
            # Reload interval 0.5 s, plus slack for a loaded 2-core machine.
            assert wait_for_serial(running, serial_of(leaf), 5), f"rotation {generation}"
        # Both kinds of client keep going on the last certificate.
        after = [len(fresh.statuses), len(reused.statuses)]
        wait_until(
            lambda: len(fresh.statuses) > after[0] + 5 and len(reused.statuses) > after[1] + 5,
            10,
            "answers after the last rotation",
        )
    for load in (fresh, reused):
        assert load.errors == []
        assert len(load.statuses) > 10
        assert set(load.statuses) == {200}


@pytest.mark.parametrize("running", [("--tls-reload-interval", "0.5s")], indirect=True)
def test_a_mismatched_key_pair_keeps_the_previous_certificate_under_load(
    running: Serve, tmp_path: Path, ca: trustme.CA
) -> None:
    before = running.served_serial()
    good, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    broken = tmp_path / "..broken"
    broken.mkdir()
    good.cert_chain_pems[0].write_to_path(str(broken / "tls.crt"))
    other.private_key_pem.write_to_path(str(broken / "tls.key"))
    with Load(running, threads=2, keep_alive=False) as load:
        temporary = tmp_path / "..data_tmp"
        temporary.symlink_to(broken.name)
        os.replace(temporary, tmp_path / "..data")
        deadline = time.monotonic() + 10
        while "certificate reload failed" not in running.log.read_text():
            assert time.monotonic() < deadline, "the broken rotation was never noticed"
            time.sleep(0.1)
        assert running.served_serial() == before
    assert load.errors == []
    assert set(load.statuses) == {200}


FAULT = """
import asyncio, os, sys
from irsa_webhook.cli import main
from {module} import {cls}

async def run(self):
    while not os.path.exists(sys.argv[1]):
        await asyncio.sleep(0.05)
    raise RuntimeError("injected fault")

{cls}.run = run
sys.exit(main(sys.argv[2:]))
"""
"""``irsa-webhook`` with one background task replaced by one that fails when a file appears."""


@pytest.mark.parametrize(
    ("module", "cls", "task", "args"),
    [
        ("irsa_webhook.cache", "ServiceAccountCache", "serviceaccounts cache", ()),
        ("irsa_webhook.cache", "ConfigMapSource", "configmap cache", ("--watch-config-map",)),
        ("irsa_webhook.tls", "CertificateReloader", "certificate reload", ()),
        (
            "irsa_webhook.filewatch",
            "ContainerCredentialsSource",
            "container-credentials file watch",
            ("--watch-container-credentials-config", "/nonexistent/identities.json"),
        ),
    ],
    ids=["serviceaccounts", "configmap", "certificate", "file-watch"],
)
def test_a_background_task_that_fails_fails_healthz_and_the_process_exits_1(
    tmp_path: Path, ca: trustme.CA, module: str, cls: str, task: str, args: tuple[str, ...]
) -> None:
    trigger = tmp_path / "fail-now"
    program = [sys.executable, "-c", FAULT.format(module=module, cls=cls), str(trigger)]
    serve = start(tmp_path, ca, "--shutdown-delay", "10s", *args, program=program)
    try:
        with serve.client() as client:
            assert client.get(f"{serve.url}/healthz").status_code == 200
            trigger.touch()
            deadline = time.monotonic() + 10
            while (health := client.get(f"{serve.url}/healthz")).status_code == 200:
                assert time.monotonic() < deadline, "/healthz still 200 after the task failed"
                time.sleep(0.05)
        assert health.status_code == 503
        assert health.json() == {
            "status": "failed",
            "reasons": [f"{task} task ended: RuntimeError"],
        }
        assert serve.process.wait(timeout=30) == 1
        ended = [
            record
            for record in map(orjson.loads, serve.log.read_text().splitlines())
            if record.get("msg", "").startswith("background task ended")
        ]
        assert [record["task"] for record in ended] == [task]
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
        serve.process.wait(timeout=10)
