"""End-to-end helpers: the real kube-apiserver (hack/control-plane.sh), real kubectl, and the
webhook run by ``irsa-webhook serve`` with exactly the chart's RBAC, registered through a
MutatingWebhookConfiguration that points at it by URL."""

from __future__ import annotations

import base64
import shlex
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import trustme
import yaml

from loopback import free_port

REPO = Path(__file__).resolve().parents[2]
E2E_LABEL = "irsa-webhook-e2e"
WEBHOOK_NAMESPACE = "irsa-system"
WEBHOOK_SERVICE_ACCOUNT = "irsa-webhook"


@dataclass
class ControlPlane:
    directory: Path
    env: dict[str, str]

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    @property
    def url(self) -> str:
        return self.env["APISERVER_URL"]

    @property
    def ca_cert(self) -> str:
        return self.env["CA_CERT"]

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [self.env["KUBECTL"], "--kubeconfig", kubeconfig or self.kubeconfig, *args]
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{shlex.join(command[3:])} failed ({result.returncode}): {result.stderr}"
            )
        return result

    def apply(self, *documents: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))

    def get(self, *args: str) -> Any:
        return orjson.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=self.ca_cert),
            headers={"Authorization": f"Bearer {self.env['ADMIN_TOKEN']}"},
            timeout=30,
        )

    def etcd(self) -> Etcd:
        return Etcd(self.env["ETCD_URL"])


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class Etcd:
    """The control plane's etcd, through its v3 JSON gateway (plain HTTP on ETCD_URL).

    For faults behind the API server's back: writes it did not make, compaction. kube-apiserver
    keeps objects under ``/registry/<resource>/<namespace>/<name>``; it writes protobuf but reads
    JSON too, so ``put_object`` stores an object as any API server of the cluster could have.
    Every call returns the store's revision after it.
    """

    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=30)

    def __enter__(self) -> Etcd:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(f"/v3/{method}", json=body)
        answer: dict[str, Any] = response.json()
        if response.status_code != 200 or "error" in answer or "code" in answer:
            raise AssertionError(f"etcd {method} failed ({response.status_code}): {answer}")
        return answer

    def revision(self) -> int:
        """The current revision (a range read of an absent key)."""
        return int(
            self._call("kv/range", {"key": _b64("/"), "count_only": True})["header"]["revision"]
        )

    def put(self, key: str, value: str | bytes) -> int:
        return int(
            self._call("kv/put", {"key": _b64(key), "value": _b64(value)})["header"]["revision"]
        )

    def put_object(self, key: str, obj: dict[str, Any]) -> int:
        return self.put(key, orjson.dumps(obj))

    def delete(self, key: str) -> int:
        """Deletes ``key``; asserts that it existed."""
        answer = self._call("kv/deleterange", {"key": _b64(key)})
        assert int(answer.get("deleted", 0)) == 1, f"etcd had no {key}"
        return int(answer["header"]["revision"])

    def compact(self, revision: int) -> None:
        """Forgets every revision before ``revision``: watches from older ones get 410 Gone."""
        self._call("kv/compaction", {"revision": str(revision), "physical": True})

    def read_at(self, key: str, revision: int) -> dict[str, Any]:
        """The raw gateway answer to reading ``key`` as of ``revision`` (an error if compacted)."""
        response = self._http.post(
            "/v3/kv/range", json={"key": _b64(key), "revision": str(revision)}
        )
        answer: dict[str, Any] = response.json()
        return answer


def leaked_secrets(plane: ControlPlane, webhook: Webhook, *extra: str) -> list[str]:
    """What of the tokens, keys and pod contents that must never be logged is in the webhook's
    log (the default level): its own token, the admin token, PEM blocks, pod bodies."""
    logs = webhook.logs()
    kubeconfig = yaml.safe_load((webhook.directory / "kubeconfig").read_text())
    forbidden = (
        kubeconfig["users"][0]["user"].get("token", ""),
        plane.env["ADMIN_TOKEN"],
        "BEGIN",
        "PRIVATE KEY",
        "managedFields",
        '"containers"',
        "registry.k8s.io/pause",
        *extra,
    )
    return [secret[:12] + "..." for secret in forbidden if secret and secret in logs]


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key:
            env[key] = shlex.split(value)[0] if value else ""
    return env


def chart_rbac(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The chart's own ServiceAccount and RBAC, rendered by the real helm."""
    helm = plane.env["HELM"]
    rendered = subprocess.run(
        [
            helm,
            "template",
            "irsa-webhook",
            str(REPO / "charts" / "irsa-webhook"),
            "--namespace",
            namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc.get("kind") in kinds]


def token_kubeconfig(plane: ControlPlane, path: Path, namespace: str, account: str) -> Path:
    """A kubeconfig holding a TokenRequest token for ``account``: exactly its RBAC."""
    token = plane.kubectl(
        "create", "token", account, "-n", namespace, "--duration", "2h"
    ).stdout.strip()
    return kubeconfig_for(plane, path, account, {"token": token})


def kubeconfig_for(plane: ControlPlane, path: Path, name: str, user: dict[str, Any]) -> Path:
    """A kubeconfig for ``plane`` whose only user, ``name``, authenticates as ``user`` says."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {"server": plane.url, "certificate-authority": plane.ca_cert},
                    }
                ],
                "users": [{"name": name, "user": user}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
                "current-context": "e2e",
            }
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class Webhook:
    plane: ControlPlane
    url: str
    metrics_url: str
    ca: trustme.CA
    process: subprocess.Popen[bytes]
    log_path: Path
    directory: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca.cert_pem.bytes()).decode()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(f"{self.metrics_url}/metrics", timeout=10).text


def start_webhook(plane: ControlPlane, directory: Path, kubeconfig: Path, *args: str) -> Webhook:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "tls.crt", directory / "tls.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    port, metrics_port = free_port(), free_port()
    log_path = directory / "webhook.log"
    command = [
        str(Path(sys.executable).parent / "irsa-webhook"),
        "serve",
        "--kubeconfig",
        str(kubeconfig),
        "--bind-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--log-format",
        "json",
        "--service-account-lookup-grace-period",
        "3s",
        "--shutdown-delay",
        "0s",
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    webhook = Webhook(
        plane,
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{metrics_port}",
        ca,
        process,
        log_path,
        directory,
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"irsa-webhook serve exited:\n{webhook.logs()[-3000:]}")
        try:
            if httpx.get(f"{webhook.url}/readyz", verify=context, timeout=2).status_code == 200:
                return webhook
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.terminate()
            raise AssertionError(f"webhook never became ready:\n{webhook.logs()[-3000:]}")
        time.sleep(0.2)


def webhook_configuration(
    name: str, url: str, ca_bundle: str, reinvocation: str = "IfNeeded"
) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.e2e.irsa-webhook.dev",
                "clientConfig": {"url": f"{url}/mutate", "caBundle": ca_bundle},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                "admissionReviewVersions": ["v1", "v1beta1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "reinvocationPolicy": reinvocation,
                "namespaceSelector": {"matchLabels": {E2E_LABEL: "enabled"}},
                "objectSelector": {
                    "matchExpressions": [
                        {
                            "key": "eks.amazonaws.com/skip-pod-identity-webhook",
                            "operator": "DoesNotExist",
                        }
                    ]
                },
            }
        ],
    }


def make_namespace(plane: ControlPlane, prefix: str = "e2e") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {E2E_LABEL: "enabled"}},
        }
    )
    return name


def service_account(
    namespace: str, name: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
    }


def pod(namespace: str, name: str, account: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serviceAccountName": account,
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
    }
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def dry_run_create(plane: ControlPlane, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``kubectl create --dry-run=server``: admission runs, webhooks included; nothing is stored."""
    return plane.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        stdin=orjson.dumps(body).decode(),
        check=False,
    )


def wait_until_mutating(plane: ControlPlane, namespace: str, account: str) -> None:
    """Webhook configurations reach the API server asynchronously: probe with dry-run."""
    probe = pod(namespace, "probe", account)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = dry_run_create(plane, probe)
        if result.returncode == 0 and "AWS_ROLE_ARN" in result.stdout:
            return
        time.sleep(0.5)
    raise AssertionError("the webhook configuration never took effect")


def review(namespace: str, account: str, uid: str = "u") -> bytes:
    """An AdmissionReview for a pod of ``account``, as the API server would send it."""
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "namespace": namespace,
                "object": pod(namespace, "p", account),
            },
        }
    )


def role_of(response: httpx.Response) -> str | None:
    """The AWS_ROLE_ARN the webhook's patch injects, or None without a patch."""
    answer = response.json()["response"]
    if "patch" not in answer:
        return None
    for operation in orjson.loads(base64.b64decode(answer["patch"])):
        values = (
            operation["value"] if isinstance(operation["value"], list) else [operation["value"]]
        )
        for value in values:
            if isinstance(value, dict) and value.get("name") == "AWS_ROLE_ARN":
                return str(value["value"])
            for item in value.get("env", []) if isinstance(value, dict) else []:
                if item.get("name") == "AWS_ROLE_ARN":
                    return str(item["value"])
    return None


def client(webhook: Webhook) -> httpx.Client:
    """A client that trusts the webhook's serving certificate."""
    context = ssl.create_default_context()
    webhook.ca.configure_trust(context)
    return httpx.Client(verify=context, timeout=15)
