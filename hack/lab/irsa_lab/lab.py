"""``hack/lab.sh up|down DIR``: the whole offline IRSA chain on the single-node cluster.

``up`` starts, in DIR:

- the node (``hack/control-plane.sh start DIR/cluster --node``) with its API server's
  ``--service-account-issuer`` set to ``https://<host address>/<bucket>``, the lab's issuer (or,
  given a node that already runs, as the tests' session node, switches that one's API server to
  the lab's issuer; tokens it issued before stay accepted);
- moto (IAM, S3, the back end of STS) on the host end of the node's link, plain http;
- the issuer: moto's S3 objects of that bucket over TLS on port 443 of the same address, with a
  certificate of the cluster's CA;
- the validating STS before moto's;
- the webhook, installed with the chart as release ``irsa-lab``, ready, for the pods of
  namespaces labelled ``irsa-lab=enabled`` (so it never meets another test's webhook);

and writes DIR/env (for the host: the node's variables, ``ISSUER_URL`` and the AWS variables
that point boto3 and ``irsa-webhook`` at the lab) and DIR/pod-aws-env.json (the env entries
that point a pod's SDK at the lab's STS and S3; no credentials). Everything listens only on the
host end of the node's link: the host and the pods reach it, nothing beyond the machine does.
``down`` stops all of it; nothing of it stays on the host (DIR keeps its files, so the next
``up`` reuses the CA, the keys and the built images). On a node it did not start, ``down``
uninstalls the webhook and gives the API server its own issuer back, and leaves the node running.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localnode import procs
from localnode.layout import HOST_IP, REPO

BUCKET = "irsa-lab-oidc"
ISSUER_PORT = 443
REGION = "us-east-1"
WEBHOOK_NAMESPACE = "irsa-lab"
WEBHOOK_RELEASE = "irsa-lab"
WEBHOOK_CONFIGURATION = "irsa-lab-irsa-webhook"
"""The chart's full name for the release: its MutatingWebhookConfiguration and Deployment."""
NAMESPACE_LABEL = "irsa-lab"
"""Pods of namespaces labelled ``irsa-lab=enabled`` are sent to the lab's webhook."""
READY_SECONDS = 60.0
PROBE_NAMESPACE = "irsa-lab-probe"
PROBE_ROLE = "arn:aws:iam::123456789012:role/irsa-lab-probe"
"""The dry-run pod that proves the webhook answers names this role; nothing assumes it."""
DAEMONS = ("sts", "issuer", "moto")
"""In the order ``down`` stops them (the fronts before what they front)."""

# moto and the fronts run from the project's .venv, which has the aws extra and moto.
PYTHON = str(REPO / ".venv" / "bin" / "python")
LAB_PATH = f"{REPO / 'hack' / 'lab'}:{REPO / 'hack'}"


class LabError(Exception):
    """The lab cannot come up; the message says which part and where its log is."""


@dataclass(frozen=True)
class Lab:
    """The files of one lab directory, and the node it runs on."""

    dir: Path
    node_dir: Path | None = None
    """The cluster directory of a node that runs already; None: the lab's own, DIR/cluster."""

    @property
    def cluster(self) -> Path:
        return self.node_dir or self.dir / "cluster"

    @property
    def owns_node(self) -> bool:
        return self.node_dir is None

    @property
    def issuer(self) -> str:
        return f"https://{HOST_IP}/{BUCKET}"

    def pidfile(self, daemon: str) -> Path:
        return self.dir / f"{daemon}.pid"

    def log(self, daemon: str) -> Path:
        return self.dir / f"{daemon}.log"

    @property
    def ports(self) -> Path:
        return self.dir / "ports.json"

    @property
    def env(self) -> Path:
        return self.dir / "env"

    @property
    def pod_env(self) -> Path:
        return self.dir / "pod-aws-env.json"

    @property
    def marker(self) -> str:
        """What each daemon's command line carries, so only this lab's are ever signalled."""
        return str(self.dir)


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = value.strip("'\"")
    return values


def up(lab: Lab) -> None:
    lab.dir.mkdir(parents=True, exist_ok=True)
    _start_node(lab)
    cluster = read_env(lab.cluster / "env")
    if cluster.get("APISERVER_ADDRESS") != HOST_IP:
        raise LabError(f"the node's API server is not at {HOST_IP}: {lab.cluster / 'env'}")
    ports = _ports(lab)
    cert, key = _issuer_certificate(lab, Path(cluster["CA_CERT"]), Path(cluster["CA_KEY"]))
    moto_url = f"http://{HOST_IP}:{ports['moto']}"
    _daemon(
        lab,
        "moto",
        [str(REPO / "tests" / "aws_emulator.py"), HOST_IP, str(ports["moto"])],
        f"{moto_url}/moto-api/",
    )
    _daemon(
        lab,
        "issuer",
        [
            "-m", "irsa_lab", "issuer", "--host", HOST_IP, "--port", str(ISSUER_PORT),
            "--moto-url", moto_url, "--tls-cert", str(cert), "--tls-key", str(key),
        ],
        f"https://{HOST_IP}:{ISSUER_PORT}/{BUCKET}/.well-known/openid-configuration",
        ca_bundle=cluster["CA_CERT"],
    )  # fmt: skip
    _daemon(
        lab,
        "sts",
        [
            "-m", "irsa_lab", "sts", "--host", HOST_IP, "--port", str(ports["sts"]),
            "--moto-url", moto_url, "--region", REGION, "--ca-bundle", cluster["CA_CERT"],
        ],
        f"http://{HOST_IP}:{ports['sts']}/?Action=GetCallerIdentity",
    )  # fmt: skip
    _write_env(lab, cluster, ports)
    _install_webhook(lab, cluster)
    wait_mutating(cluster)


def down(lab: Lab) -> None:
    for daemon in DAEMONS:
        procs.stop(lab.pidfile(daemon), lab.marker)
    if not (lab.cluster / "env").exists():
        return
    if lab.owns_node:
        _control_plane("stop", lab.cluster)
        return
    cluster = read_env(lab.cluster / "env")
    _run(
        [
            cluster["HELM"], "uninstall", WEBHOOK_RELEASE, "--kubeconfig", cluster["KUBECONFIG"],
            "--namespace", WEBHOOK_NAMESPACE, "--ignore-not-found", "--wait",
        ]
    )  # fmt: skip
    _switch_issuer(lab, "")


def _run(argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run a step of the lab's set-up, its progress on our stderr; a failure is a ``LabError``
    (what went wrong is in that progress, just above)."""
    result = subprocess.run(
        argv, input=stdin, stdout=subprocess.PIPE, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise LabError(f"{Path(argv[0]).name} {argv[1]} failed ({result.returncode})")
    return result.stdout


def _say(message: str) -> None:
    sys.stderr.write(f"[lab] {message}\n")
    sys.stderr.flush()


def _control_plane(command: str, cluster: Path, *args: str, issuer: str | None = None) -> None:
    env = {**os.environ}
    if issuer is not None:
        env["IRSA_SA_ISSUER"] = issuer
    _run([str(REPO / "hack" / "control-plane.sh"), command, str(cluster), *args], env)


def _start_node(lab: Lab) -> None:
    if lab.owns_node:
        _say(f"the node, its API server's issuer {lab.issuer}")
        _control_plane("start", lab.cluster, "--node", issuer=lab.issuer)
    elif read_env(lab.cluster / "env").get("SA_ISSUER") != lab.issuer:
        _say(f"the node's API server restarted with the issuer {lab.issuer}")
        _switch_issuer(lab, lab.issuer)


def _switch_issuer(lab: Lab, issuer: str) -> None:
    """Restart the node's API server with ``issuer`` ("" = its own URL); etcd, the node and
    the pods keep running."""
    _control_plane("stop-apiserver", lab.cluster)
    _control_plane("start-apiserver", lab.cluster, issuer=issuer)


def _ports(lab: Lab) -> dict[str, int]:
    """moto's and the STS's ports on the host address: kept across ``up``s, new when taken."""
    try:
        ports: dict[str, int] = json.loads(lab.ports.read_text())
    except (OSError, ValueError):
        ports = {}
    for daemon in ("moto", "sts"):
        if procs.running(lab.pidfile(daemon), lab.marker) is None and not _free(ports.get(daemon)):
            ports[daemon] = _free_port()
    lab.ports.write_text(json.dumps(ports))
    return ports


def _free(port: int | None) -> bool:
    if port is None:
        return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST_IP, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST_IP, 0))
        port: int = sock.getsockname()[1]
        return port


def _issuer_certificate(lab: Lab, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """A serving certificate for the issuer's address, from the cluster's CA (made once)."""
    cert, key = lab.dir / "issuer.crt", lab.dir / "issuer.key"
    if cert.exists() and key.exists():
        return cert, key
    authority = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    private = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issued = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "irsa-lab issuer")]))
        .issuer_name(authority.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST_IP))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _daemon(
    lab: Lab, name: str, argv: list[str], probe: str, *, ca_bundle: str | None = None
) -> None:
    """Start ``name`` unless it runs, then wait until ``probe`` answers at all."""
    pidfile = lab.pidfile(name)
    if procs.running(pidfile, lab.marker) is None:
        _say(f"{name}: {probe.split('?')[0]} (log {lab.log(name)})")
        env = {**os.environ, "PYTHONPATH": LAB_PATH}
        # python ignores an -X option it does not know; this one names the lab on the command
        # line, so that down (procs.running) finds exactly this lab's daemons.
        procs.launch(
            [PYTHON, "-X", f"irsa-lab={lab.marker}", *argv], pidfile, lab.log(name), env=env
        )
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=ca_bundle) if ca_bundle else False
    )
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(verify=verify, timeout=2) as http:
        while time.monotonic() < deadline:
            if procs.running(pidfile, lab.marker) is None:
                raise LabError(f"{name} exited; see {lab.log(name)}")
            try:
                http.get(probe)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
    raise LabError(f"{name} did not answer {probe} in {READY_SECONDS:.0f} s; see {lab.log(name)}")


def _write_env(lab: Lab, cluster: dict[str, str], ports: dict[str, int]) -> None:
    moto_url = f"http://{HOST_IP}:{ports['moto']}"
    sts_url = f"http://{HOST_IP}:{ports['sts']}"
    host = {
        **cluster,
        "LAB_DIR": str(lab.dir),
        "LAB_NAMESPACE_LABEL": f"{NAMESPACE_LABEL}=enabled",
        "ISSUER_URL": lab.issuer,
        "LAB_BUCKET": BUCKET,
        "LAB_CA_BUNDLE": cluster["CA_CERT"],
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ENDPOINT_URL_STS": sts_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CA_BUNDLE": cluster["CA_CERT"],
        "STS_URL": sts_url,
        "MOTO_URL": moto_url,
    }
    lab.env.write_text("".join(f"{key}={value}\n" for key, value in host.items()))
    pod = [
        {"name": "AWS_ENDPOINT_URL_STS", "value": sts_url},
        {"name": "AWS_ENDPOINT_URL_S3", "value": moto_url},
    ]
    lab.pod_env.write_text(json.dumps(pod, indent=2) + "\n")


def _install_webhook(lab: Lab, cluster: dict[str, str]) -> None:
    _say(f"the webhook: helm upgrade --install {WEBHOOK_RELEASE} charts/irsa-webhook --wait")
    _run(
        [
            cluster["HELM"], "upgrade", "--install", WEBHOOK_RELEASE,
            str(REPO / "charts" / "irsa-webhook"), "--kubeconfig", cluster["KUBECONFIG"],
            "--namespace", WEBHOOK_NAMESPACE, "--create-namespace",
            "-f", cluster["CHART_VALUES"], "--set", f"config.defaultAwsRegion={REGION}",
            "--set", f"mutatingWebhook.namespaceSelector.matchLabels.{NAMESPACE_LABEL}=enabled",
            "--wait", "--timeout", "5m",
        ]
    )  # fmt: skip


def wait_mutating(cluster: Mapping[str, str]) -> None:
    """Until the API server's call to the webhook mutates a dry-run pod. helm's --wait trusts
    the Deployment's status, which on a node started again from its old state still counts the
    pods of before as available until the node controller learns otherwise."""
    kubectl = [cluster["KUBECTL"], "--kubeconfig", cluster["KUBECONFIG"]]
    documents = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": PROBE_NAMESPACE, "labels": {NAMESPACE_LABEL: "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": "probe",
                "namespace": PROBE_NAMESPACE,
                "annotations": {"eks.amazonaws.com/role-arn": PROBE_ROLE},
            },
        },
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": PROBE_NAMESPACE},
        "spec": {"serviceAccountName": "probe", "containers": [{"name": "probe", "image": "x"}]},
    }
    _run(
        [*kubectl, "apply", "-f", "-"],
        stdin=json.dumps({"kind": "List", "apiVersion": "v1", "items": documents}),
    )
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            answer = subprocess.run(
                [*kubectl, "create", "--dry-run=server", "-o", "json", "-f", "-"],
                input=json.dumps(pod), capture_output=True, text=True, check=False,
            )  # fmt: skip
            if "AWS_ROLE_ARN" in answer.stdout:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"the webhook did not mutate a dry-run pod within {READY_SECONDS:.0f} s "
                    f"of helm's --wait: {answer.stderr.strip() or 'created without credentials'}"
                )
            time.sleep(0.5)
    finally:
        _run([*kubectl, "delete", "namespace", PROBE_NAMESPACE, "--wait=false"])


def main(argv: list[str]) -> int:
    lab = Lab(Path(argv[1]).resolve())
    try:
        (up if argv[0] == "up" else down)(lab)
    except LabError as error:
        sys.stderr.write(f"[lab] {error}\n")
        return 1
    if argv[0] == "up":
        sys.stdout.write(lab.env.read_text())
    return 0
