"""The Helm chart installed into the real kube-apiserver. There are no kubelets or controllers, so
the chart's webhook is run here by ``irsa-webhook serve`` with the chart's ServiceAccount token
(exactly the chart's RBAC) and reached either through the chart's registration by URL or, for the
generated certificate, by the Service name its certificate is issued for."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cluster import (
    REPO,
    ControlPlane,
    dry_run_create,
    pod,
    service_account,
    token_kubeconfig,
    wait_until_mutating,
)
from loopback import free_port

pytestmark = pytest.mark.timeout(180)

CHART = REPO / "charts" / "irsa-webhook"
# Namespaces a release's webhook is restricted to (mutatingWebhook.namespaceSelector), so that no
# release here touches the pods of the other end-to-end tests, nor they ours.
SELECTOR_LABEL = "irsa-webhook-chart-e2e"
ROLE = "arn:aws:iam::111122223333:role/chart-e2e"
TOKEN_FILE = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"


def helm(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    home = plane.directory / "helm"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    command = [plane.env["HELM"], *args, "--kubeconfig", plane.kubeconfig]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result


def create_namespace(plane: ControlPlane, prefix: str, labels: dict[str, str]) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    plane.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )
    return name


def create(plane: ControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    result = plane.kubectl("create", "-o", "json", "-f", "-", stdin=orjson.dumps(body).decode())
    stored: dict[str, Any] = orjson.loads(result.stdout)
    return stored


def env_of(stored_pod: dict[str, Any]) -> dict[str, str]:
    container = stored_pod["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


@dataclass
class Release:
    plane: ControlPlane
    name: str
    namespace: str
    fullname: str
    selector: str
    values: Path
    directory: Path

    def chart_objects(self, kind: str) -> Any:
        return self.plane.get(
            kind, "-n", self.namespace, "-l", f"app.kubernetes.io/instance={self.name}"
        )

    def webhook_registration(self) -> dict[str, Any]:
        (webhook,) = self.plane.get("mutatingwebhookconfiguration", self.fullname)["webhooks"]
        registration: dict[str, Any] = webhook
        return registration


def install(plane: ControlPlane, directory: Path, prefix: str, values: dict[str, Any]) -> Release:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    namespace = create_namespace(plane, f"chart-{prefix}", {})
    selector = uuid.uuid4().hex[:12]
    values.setdefault("mutatingWebhook", {})["namespaceSelector"] = {
        "matchLabels": {SELECTOR_LABEL: selector}
    }
    values_file = directory / f"{name}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(plane, "install", name, str(CHART), "--namespace", namespace, "--values", str(values_file))
    return Release(plane, name, namespace, f"{name}-irsa-webhook", selector, values_file, directory)


@dataclass
class LocalWebhook:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def serve(
    release: Release,
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes,
    port: int,
    sni: str,
    *extra_args: str,
) -> LocalWebhook:
    """``irsa-webhook serve`` with the given certificate and the chart ServiceAccount's token,
    returned once /readyz answers 200 to a client that trusts ``ca_pem`` for the name ``sni``."""
    directory = release.directory / release.name
    directory.mkdir()
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    (account,) = release.chart_objects("serviceaccounts")["items"]
    kubeconfig = token_kubeconfig(
        release.plane, directory / "kubeconfig", release.namespace, account["metadata"]["name"]
    )
    log_path = directory / "webhook.log"
    command = [
        str(Path(sys.executable).parent / "irsa-webhook"),
        "serve",
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--port={port}",
        f"--metrics-port={free_port()}",
        f"--tls-cert={cert}",
        f"--tls-key={key}",
        f"--namespace={release.namespace}",
        "--log-format=json",
        "--shutdown-delay=0s",
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    webhook = LocalWebhook(f"https://127.0.0.1:{port}", process, log_path)
    context = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        with httpx.Client(verify=context, timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"irsa-webhook serve exited:\n{webhook.logs()[-3000:]}")
                try:
                    ready = client.get(f"{webhook.url}/readyz", extensions={"sni_hostname": sni})
                    if ready.status_code == 200:
                        return webhook
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"webhook never became ready:\n{webhook.logs()[-3000:]}")
                time.sleep(0.2)
    except BaseException:
        webhook.stop()
        raise


@contextmanager
def url_release_serving(
    plane: ControlPlane, directory: Path, prefix: str, values: dict[str, Any], *extra_args: str
) -> Iterator[Release]:
    """A release registered by URL (mutatingWebhook.url) at a webhook served here, with a
    certificate for 127.0.0.1 from our own CA given as pki.caBundle. The self-managed certificate
    names the Service, which has no pods here, so this is how the API server reaches the chart's
    registration."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    port = free_port()
    release = install(
        plane,
        directory,
        prefix,
        {
            **values,
            "mutatingWebhook": {"url": f"https://127.0.0.1:{port}/mutate"},
            "pki": {"caBundle": ca.cert_pem.bytes().decode()},
        },
    )
    try:
        webhook = serve(
            release,
            leaf.cert_chain_pems[0].bytes(),
            leaf.private_key_pem.bytes(),
            ca.cert_pem.bytes(),
            port,
            "127.0.0.1",
            *extra_args,
        )
        try:
            yield release
        finally:
            webhook.stop()
    finally:
        helm(plane, "uninstall", release.name, "--namespace", release.namespace)


@pytest.fixture(scope="module")
def url_release(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    with url_release_serving(control_plane, tmp_path_factory.mktemp("chart-url"), "url", {}) as r:
        yield r


def selected_namespace(release: Release) -> str:
    namespace = create_namespace(release.plane, "chart-app", {SELECTOR_LABEL: release.selector})
    release.plane.apply(service_account(namespace, "app", {"eks.amazonaws.com/role-arn": ROLE}))
    wait_until_mutating(release.plane, namespace, "app")
    return namespace


def test_a_pod_in_a_selected_namespace_is_mutated_through_the_chart_registration(
    url_release: Release,
) -> None:
    namespace = selected_namespace(url_release)
    stored = create(url_release.plane, pod(namespace, "app", "app"))
    assert env_of(stored)["AWS_ROLE_ARN"] == ROLE
    assert env_of(stored)["AWS_WEB_IDENTITY_TOKEN_FILE"] == TOKEN_FILE
    volumes = {volume["name"]: volume for volume in stored["spec"]["volumes"]}
    assert volumes["aws-iam-token"]["projected"]["sources"][0]["serviceAccountToken"] == {
        "audience": "sts.amazonaws.com",
        "expirationSeconds": 86400,
        "path": "token",
    }


def test_pods_outside_the_selected_namespaces_or_with_the_skip_label_are_left_alone(
    url_release: Release,
) -> None:
    plane = url_release.plane
    selected = selected_namespace(url_release)
    skipped = pod(selected, "skipped", "app")
    skipped["metadata"]["labels"] = {"eks.amazonaws.com/skip-pod-identity-webhook": "true"}
    assert "AWS_ROLE_ARN" not in env_of(create(plane, skipped))

    other = create_namespace(plane, "chart-other", {SELECTOR_LABEL: "another-release"})
    plane.apply(service_account(other, "app", {"eks.amazonaws.com/role-arn": ROLE}))
    assert "AWS_ROLE_ARN" not in env_of(create(plane, pod(other, "app", "app")))


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "serviceaccounts", True),
        ("watch", "serviceaccounts", True),
        ("get", "serviceaccounts", True),
        ("update", "serviceaccounts", False),
        ("create", "serviceaccounts/token", False),
        ("get", "secrets", False),
        ("list", "configmaps", False),
        ("create", "pods", False),
    ],
)
def test_the_chart_service_account_may_read_service_accounts_and_nothing_else(
    url_release: Release, verb: str, resource: str, allowed: bool
) -> None:
    (account,) = url_release.chart_objects("serviceaccounts")["items"]
    user = f"system:serviceaccount:{url_release.namespace}:{account['metadata']['name']}"
    answer = url_release.plane.kubectl(
        "auth", "can-i", verb, resource, "--all-namespaces", "--as", user, check=False
    )
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


def test_the_plain_manifests_pass_server_side_dry_run(control_plane: ControlPlane) -> None:
    namespace, *_ = yaml.safe_load_all((REPO / "deploy" / "namespace.yaml").read_text())
    # Namespaced objects cannot be dry-run into a namespace that is itself only dry-run.
    control_plane.apply(namespace)
    documents = [
        doc
        for doc in yaml.safe_load_all((REPO / "deploy" / "webhook.yaml").read_text())
        # This control plane has no cert-manager CRDs, so its Issuers and Certificates have no
        # API to be checked against; everything else must be accepted.
        if doc and not doc["apiVersion"].startswith("cert-manager.io/")
    ]
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "MutatingWebhookConfiguration", "ClusterRole"} <= kinds
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(documents)
    )
    assert result.stdout.count("(server dry run)") == len(documents)
    # The namespace enforces and warns at the restricted Pod Security level.
    assert "PodSecurity" not in result.stderr


def test_kube_system_and_the_release_namespace_are_not_sent_to_the_webhook(
    url_release: Release,
) -> None:
    plane = url_release.plane
    selected = selected_namespace(url_release)  # waits until an ordinary namespace is mutated
    assert env_of(create(plane, pod(selected, "app", "app")))["AWS_ROLE_ARN"] == ROLE
    label = f"{SELECTOR_LABEL}={url_release.selector}"
    for namespace in ("kube-system", url_release.namespace):
        # Selected by the user's namespaceSelector too, so only the exclusion keeps them out.
        plane.kubectl("label", "namespace", namespace, label)
        account = f"app-{uuid.uuid4().hex[:6]}"
        try:
            plane.apply(service_account(namespace, account, {"eks.amazonaws.com/role-arn": ROLE}))
            stored = create(plane, pod(namespace, account, account))
            assert "AWS_ROLE_ARN" not in env_of(stored), namespace
        finally:
            plane.kubectl("delete", "pod", account, "-n", namespace, "--wait=false", check=False)
            plane.kubectl("delete", "serviceaccount", account, "-n", namespace, check=False)
            plane.kubectl("label", "namespace", namespace, f"{SELECTOR_LABEL}-")


@pytest.fixture(scope="module")
def config_map_release(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """A release whose webhook takes roles from the chart's pod-identity-webhook ConfigMap, run
    with the chart's ConfigMap Role and nothing more."""
    values = {
        "config": {
            "podIdentityWebhookMap": {
                "enabled": True,
                "data": {"chart-app-*/mapped": {"RoleARN": ROLE}},
            }
        }
    }
    directory = tmp_path_factory.mktemp("chart-config-map")
    with url_release_serving(
        control_plane, directory, "cm", values, "--watch-config-map=true"
    ) as release:
        yield release


def test_the_config_map_role_reads_the_webhook_config_map_and_no_other(
    config_map_release: Release,
) -> None:
    release = config_map_release
    plane = release.plane
    namespace = create_namespace(plane, "chart-app", {SELECTOR_LABEL: release.selector})
    plane.apply(service_account(namespace, "mapped"))
    wait_until_mutating(plane, namespace, "mapped")
    assert env_of(create(plane, pod(namespace, "mapped", "mapped")))["AWS_ROLE_ARN"] == ROLE

    other = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "other-settings", "namespace": release.namespace},
        "data": {"password": "not for the webhook"},
    }
    plane.apply(other)
    (account,) = release.chart_objects("serviceaccounts")["items"]
    token = plane.kubectl(
        "create", "token", account["metadata"]["name"], "-n", release.namespace
    ).stdout.strip()
    configmaps = f"/api/v1/namespaces/{release.namespace}/configmaps"
    with httpx.Client(
        base_url=plane.url,
        verify=ssl.create_default_context(cafile=plane.ca_cert),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as client:
        assert client.get(f"{configmaps}/pod-identity-webhook").status_code == 200
        assert client.get(f"{configmaps}/other-settings").status_code == 403
        assert client.get(configmaps).status_code == 403
        by_name = {"fieldSelector": "metadata.name=pod-identity-webhook"}
        assert client.get(configmaps, params=by_name).status_code == 200


# PromQL vector selectors (metric{matchers}) and their label matchers, enough to read the
# chart's own alert expressions.
VECTOR_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}")
LABEL_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?')


def alert_selector(release: Release, alert: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The API server series the chart's alert selects, read from the rendered PrometheusRule
    (this control plane has no Prometheus Operator to install it into)."""
    rendered = helm(
        release.plane,
        "template",
        release.name,
        str(CHART),
        "--namespace",
        release.namespace,
        "--values",
        str(release.values),
        "--set",
        "metrics.prometheusRule.enabled=true",
    ).stdout
    (rule_object,) = [
        doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "PrometheusRule"
    ]
    (group,) = rule_object["spec"]["groups"]
    (rule,) = [rule for rule in group["rules"] if rule.get("alert") == alert]
    (selector,) = [
        (metric, body)
        for metric, body in VECTOR_SELECTOR.findall(rule["expr"])
        if metric.startswith("apiserver_")
    ]
    metric, body = selector
    matchers = [
        (name, operator, orjson.loads(value))
        for name, operator, value in LABEL_MATCHER.findall(body)
    ]
    assert matchers, f"no label matchers in {rule['expr']!r}"
    return metric, matchers


def selected_total(plane: ControlPlane, metric: str, matchers: list[tuple[str, str, str]]) -> float:
    with plane.client() as client:
        exposition = client.get("/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        if family.name != metric:
            continue
        # The parser names counter samples <family>_total; Prometheus keeps the exposed name.
        for sample in family.samples:
            if sample.name in (metric, f"{metric}_total") and all(
                _label_matches(sample.labels.get(name, ""), operator, value)
                for name, operator, value in matchers
            ):
                total += sample.value
    return total


def _label_matches(actual: str, operator: str, value: str) -> bool:
    if operator == "=":
        return actual == value
    if operator == "!=":
        return actual != value
    found = re.fullmatch(value, actual) is not None
    return found if operator == "=~" else not found


@pytest.mark.parametrize(
    ("failure_policy", "alert", "admitted"),
    [
        pytest.param("Ignore", "IrsaWebhookFailedOpen", True, id="fail-open"),
        pytest.param("Fail", "IrsaWebhookCallsFailing", False, id="rejected"),
    ],
)
def test_an_unreachable_webhook_shows_in_the_api_server_series_its_alert_selects(
    control_plane: ControlPlane,
    tmp_path: Path,
    failure_policy: str,
    alert: str,
    admitted: bool,
) -> None:
    # No webhook runs for this release: its Service has no pods, so every call fails.
    release = install(
        control_plane, tmp_path, "down", {"mutatingWebhook": {"failurePolicy": failure_policy}}
    )
    try:
        metric, matchers = alert_selector(release, alert)
        namespace = create_namespace(control_plane, "chart-app", {SELECTOR_LABEL: release.selector})
        control_plane.apply(service_account(namespace, "app", {"eks.amazonaws.com/role-arn": ROLE}))
        before = selected_total(control_plane, metric, matchers)
        deadline = time.monotonic() + 60
        # The registration reaches the API server asynchronously: create until it is called.
        while True:
            result = dry_run_create(control_plane, pod(namespace, "app", "app"))
            if selected_total(control_plane, metric, matchers) > before:
                break
            assert time.monotonic() < deadline, f"{metric} {matchers} never rose above {before}"
        assert (result.returncode == 0) is admitted, result.stderr
        if admitted:
            assert "AWS_ROLE_ARN" not in env_of(orjson.loads(result.stdout))
    finally:
        helm(control_plane, "uninstall", release.name, "--namespace", release.namespace)
