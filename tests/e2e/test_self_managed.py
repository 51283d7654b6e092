"""Self-managed certificates on the real kube-apiserver: the chart applied the GitOps way
(``helm template | kubectl apply``), two webhook replicas run by ``irsa-webhook serve`` with the
chart's ServiceAccount token (exactly the chart's RBAC) and the rendered Deployment's flags, and
the CA they agree on checked in the Secret, in the registration and on the wire."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography import x509
from test_chart import CHART, SELECTOR_LABEL, create_namespace, env_of, helm

from cluster import (
    ControlPlane,
    dry_run_create,
    pod,
    service_account,
    token_kubeconfig,
    webhook_configuration,
)
from loopback import free_port

pytestmark = pytest.mark.timeout(180)

ROLE = "arn:aws:iam::111122223333:role/self-managed"


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_replica(
    directory: Path, kubeconfig: Path, namespace: str, *args: str, port: int = 0
) -> Replica:
    """``irsa-webhook serve`` on loopback, returned once /readyz answers (it turns ready when it
    serves the Secret's pair; trust is what the tests check, so readiness is read unverified)."""
    port = port or free_port()
    log_path = directory / f"replica-{port}.log"
    command = [
        str(Path(sys.executable).parent / "irsa-webhook"),
        "serve",
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--port={port}",
        f"--metrics-port={free_port()}",
        f"--namespace={namespace}",
        "--log-format=json",
        "--shutdown-delay=0s",
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    replica = Replica(port, process, log_path)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"irsa-webhook serve exited:\n{replica.logs()[-3000:]}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                unverified.wrap_socket(raw) as tls,
            ):
                tls.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.1 200"):
                    return replica
        except OSError:
            pass
        if time.monotonic() > deadline:
            replica.stop()
            raise AssertionError(f"replica never became ready:\n{replica.logs()[-3000:]}")
        time.sleep(0.2)


def served_certificate(port: int, ca_bundle: str, server_name: str) -> x509.Certificate:
    """The certificate served on ``port``, verified as the API server does: against the
    registration's ``caBundle``, for the name it calls the webhook by."""
    context = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def wait_for(condition: Any, what: str, timeout: float = 30) -> float:
    """Poll ``condition`` until it is true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} within {timeout}s"
        time.sleep(0.1)
    return time.monotonic() - start


@dataclass
class AppliedRelease:
    plane: ControlPlane
    name: str
    namespace: str
    selector: str
    values: Path
    replicas: list[Replica]

    @property
    def fullname(self) -> str:
        return f"{self.name}-irsa-webhook"

    @property
    def service_name(self) -> str:
        return f"{self.fullname}.{self.namespace}.svc"

    def render(self, *settings: str) -> list[dict[str, Any]]:
        sets = [arg for setting in settings for arg in ("--set", setting)]
        rendered = helm(
            self.plane,
            "template",
            self.name,
            str(CHART),
            "--namespace",
            self.namespace,
            "--values",
            str(self.values),
            *sets,
        ).stdout
        return [doc for doc in yaml.safe_load_all(rendered) if doc]

    def apply(self, *settings: str) -> None:
        """What a GitOps tool does: render without the cluster and apply the result."""
        self.plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(self.render(*settings)))

    def secret_data(self) -> dict[str, str]:
        secret = self.plane.get("secret", f"{self.fullname}-pki", "-n", self.namespace)
        data: dict[str, str] = secret.get("data") or {}
        return data

    def ca_bundle(self) -> str | None:
        (webhook,) = self.plane.get("mutatingwebhookconfiguration", self.fullname)["webhooks"]
        value: str | None = webhook["clientConfig"].get("caBundle")
        return value


def self_managed_args(documents: list[dict[str, Any]]) -> list[str]:
    """The rendered Deployment's self-managed flags: the replicas run as the chart configures."""
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return [arg for arg in args if arg.startswith("--self-managed-")]


@pytest.fixture(scope="module")
def applied(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppliedRelease]:
    directory = tmp_path_factory.mktemp("self-managed")
    name = f"sm-{uuid.uuid4().hex[:6]}"
    namespace = create_namespace(control_plane, "chart-sm", {})
    selector = uuid.uuid4().hex[:12]
    values = directory / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"mutatingWebhook": {"namespaceSelector": {"matchLabels": {SELECTOR_LABEL: selector}}}}
        )
    )
    release = AppliedRelease(control_plane, name, namespace, selector, values, [])
    documents = release.render()
    release.apply()
    kubeconfig = token_kubeconfig(
        control_plane, directory / "kubeconfig", namespace, release.fullname
    )
    try:
        for _ in range(2):
            release.replicas.append(
                start_replica(directory, kubeconfig, namespace, *self_managed_args(documents))
            )
        yield release
    finally:
        for replica in release.replicas:
            replica.stop()
        control_plane.kubectl(
            "delete", "-f", "-", "--wait=false", stdin=yaml.safe_dump_all(documents), check=False
        )


def test_the_replicas_serve_one_certificate_that_the_registration_trusts(
    applied: AppliedRelease,
) -> None:
    wait_for(lambda: applied.ca_bundle() is not None, "the caBundle is patched in")
    data = applied.secret_data()
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert applied.ca_bundle() == data["ca.crt"]
    (ca,) = x509.load_pem_x509_certificates(base64.b64decode(data["ca.crt"]))
    stored = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    ca_bundle = applied.ca_bundle()
    assert ca_bundle is not None
    for replica in applied.replicas:
        served = served_certificate(replica.port, ca_bundle, applied.service_name)
        assert served == stored
        assert served.issuer == ca.subject


def test_applying_the_rendered_chart_again_keeps_the_ca(applied: AppliedRelease) -> None:
    wait_for(lambda: applied.ca_bundle() is not None, "the caBundle is patched in")
    before, bundle_before = applied.secret_data(), applied.ca_bundle()
    for setting in ("config.logLevel=debug", "config.logLevel=info"):
        applied.apply(setting)
        assert applied.secret_data() == before
        assert applied.ca_bundle() == bundle_before


@pytest.mark.parametrize("wipe", ["json-patch", "replace"])
def test_a_wiped_ca_bundle_is_restored_within_seconds(applied: AppliedRelease, wipe: str) -> None:
    wait_for(lambda: applied.ca_bundle() is not None, "the caBundle is patched in")
    expected = applied.ca_bundle()
    if wipe == "json-patch":
        applied.plane.kubectl(
            "patch",
            "mutatingwebhookconfiguration",
            applied.fullname,
            "--type=json",
            "-p",
            '[{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]',
        )
    else:
        # What helm upgrade --force or a GitOps "replace" does: the rendered object as is.
        (registration,) = [
            doc for doc in applied.render() if doc["kind"] == "MutatingWebhookConfiguration"
        ]
        applied.plane.kubectl("replace", "-f", "-", stdin=yaml.safe_dump(registration))
    took = wait_for(lambda: applied.ca_bundle() == expected, "the caBundle is restored", 10)
    print(f"caBundle restored after {wipe} in {took:.2f}s")


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("update", "secrets/{pki}", True),
        ("get", "secrets/{pki}", True),
        ("get", "secrets/other", False),
        ("list", "secrets", False),
        ("create", "secrets", False),
        ("delete", "secrets/{pki}", False),
        ("patch", "mutatingwebhookconfigurations/{name}", True),
        ("patch", "mutatingwebhookconfigurations/other", False),
        ("list", "mutatingwebhookconfigurations", False),
        ("delete", "mutatingwebhookconfigurations/{name}", False),
    ],
)
def test_the_self_managed_service_account_may_touch_only_its_secret_and_registration(
    applied: AppliedRelease, verb: str, resource: str, allowed: bool
) -> None:
    user = f"system:serviceaccount:{applied.namespace}:{applied.fullname}"
    target = resource.format(pki=f"{applied.fullname}-pki", name=applied.fullname)
    answer = applied.plane.kubectl(
        "auth", "can-i", verb, target, "-n", applied.namespace, "--as", user, check=False
    )
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


def test_short_lived_certificates_renew_while_the_api_server_keeps_calling(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Serving certificates of 6 s and a CA of 24 s, renewed by two replicas sharing a Secret that
    neither exists yet; the API server calls one of them by URL with failurePolicy Fail, so any
    moment it does not trust the served certificate fails a pod creation."""
    plane = control_plane
    namespace = create_namespace(plane, "sm-renew", {})
    name = f"sm-renew-{uuid.uuid4().hex[:6]}"
    registration = webhook_configuration(name, "https://127.0.0.1:1", "")
    (webhook,) = registration["webhooks"]
    del webhook["clientConfig"]["caBundle"]
    webhook["namespaceSelector"] = {"matchLabels": {SELECTOR_LABEL: name}}
    args = [
        f"--self-managed-cert-secret={name}",
        f"--self-managed-cert-webhook-configuration={name}",
        "--self-managed-cert-hosts=127.0.0.1",
        "--self-managed-cert-lifetime=6s",
        "--self-managed-ca-lifetime=24s",
    ]
    kubeconfig = Path(plane.kubeconfig)
    replicas: list[Replica] = []
    try:
        port = free_port()
        webhook["clientConfig"]["url"] = f"https://127.0.0.1:{port}/mutate"
        plane.apply(registration)
        apps = create_namespace(plane, "sm-renew-app", {SELECTOR_LABEL: name})
        plane.apply(service_account(apps, "app", {"eks.amazonaws.com/role-arn": ROLE}))
        replicas.append(start_replica(tmp_path, kubeconfig, namespace, *args, port=port))
        replicas.append(start_replica(tmp_path, kubeconfig, namespace, *args))

        serials: set[int] = set()
        cas: set[int] = set()
        admitted = 0
        deadline = time.monotonic() + 90
        # Two CA renewals and the serving renewals between them, each observed while pods go on
        # being created through the API server.
        while len(cas) < 3 or len(serials) < 6:
            assert time.monotonic() < deadline, f"saw {len(cas)} CAs, {len(serials)} certificates"
            data = (
                orjson.loads(
                    plane.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout
                ).get("data")
                or {}
            )
            if data:
                serials.add(
                    x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).serial_number
                )
                cas.add(
                    x509.load_pem_x509_certificates(base64.b64decode(data["ca.crt"]))[
                        0
                    ].serial_number
                )
            result = dry_run_create(plane, pod(apps, "app", "app"))
            if result.returncode == 0 and env_of(orjson.loads(result.stdout)).get("AWS_ROLE_ARN"):
                admitted += 1
            elif admitted:
                # Once the first call got through, every later one must, across every renewal.
                raise AssertionError(f"a pod creation failed after a renewal: {result.stderr}")
        assert admitted > 0
    finally:
        for replica in replicas:
            replica.stop()
        plane.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)
