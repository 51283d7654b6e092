"""The webhook called by the real kube-apiserver: pods created with kubectl, stored pods read
back and checked field by field."""

from __future__ import annotations

import base64
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cluster import (
    ControlPlane,
    Webhook,
    make_namespace,
    pod,
    service_account,
    webhook_configuration,
)
from loopback import Pki, run_server

ROLE = "arn:aws:iam::111122223333:role/e2e-reader"
TOKEN_FILE = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"


def create(plane: ControlPlane, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create with kubectl; return the stored object and kubectl's stderr (its warnings)."""
    result = plane.kubectl("create", "-o", "json", "-f", "-", stdin=orjson.dumps(body).decode())
    return orjson.loads(result.stdout), result.stderr


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


@pytest.fixture
def namespace(control_plane: ControlPlane, webhook: Webhook) -> str:
    return make_namespace(control_plane)


def test_a_pod_of_an_annotated_service_account_is_stored_with_credentials(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(
        service_account(
            namespace,
            "s3",
            {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/token-expiration": "3600"},
        )
    )
    stored, _ = create(control_plane, pod(namespace, "app", "s3"))
    spec = stored["spec"]
    container = spec["containers"][0]
    assert env_of(container) == {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": TOKEN_FILE}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["aws-iam-token"] == {
        "name": "aws-iam-token",
        "readOnly": True,
        "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
    }
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["aws-iam-token"]["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "sts.amazonaws.com",
                "expirationSeconds": 3600,
                "path": "token",
            }
        }
    ]
    # The API server's own token volume and its mount are untouched.
    api_access = [name for name in volumes if name.startswith("kube-api-access-")]
    assert len(api_access) == 1
    assert api_access[0] in mounts
    assert (
        volumes[api_access[0]]["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token"
    )


def test_a_service_account_created_just_before_its_pod_still_gets_it_mutated(
    control_plane: ControlPlane, namespace: str
) -> None:
    for index in range(5):
        name = f"fresh-{index}"
        control_plane.apply(service_account(namespace, name, {"eks.amazonaws.com/role-arn": ROLE}))
        stored, _ = create(control_plane, pod(namespace, f"pod-{index}", name))
        assert env_of(stored["spec"]["containers"][0])["AWS_ROLE_ARN"] == ROLE


def test_unannotated_service_accounts_and_the_skip_label_leave_pods_untouched(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(service_account(namespace, "plain"))
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    stored, _ = create(control_plane, pod(namespace, "plain", "plain"))
    assert "env" not in stored["spec"]["containers"][0]
    assert not any(v["name"] == "aws-iam-token" for v in stored["spec"]["volumes"])

    skipped = pod(namespace, "skipped", "s3")
    skipped["metadata"]["labels"] = {"eks.amazonaws.com/skip-pod-identity-webhook": "true"}
    stored, _ = create(control_plane, skipped)
    assert "env" not in stored["spec"]["containers"][0]


def test_a_native_sidecar_keeps_its_fields_and_gets_credentials(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    sidecar = {
        "name": "proxy",
        "image": "registry.k8s.io/pause:3.10",
        "restartPolicy": "Always",
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3},
    }
    stored, _ = create(control_plane, pod(namespace, "sidecar", "s3", initContainers=[sidecar]))
    init = stored["spec"]["initContainers"][0]
    assert init["restartPolicy"] == "Always"
    assert init["startupProbe"]["exec"] == {"command": ["true"]}
    assert env_of(init)["AWS_ROLE_ARN"] == ROLE


def test_warnings_reach_the_kubectl_user(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    body = pod(namespace, "warned", "s3")
    body["metadata"]["annotations"] = {"eks.amazonaws.com/skip-containers": "sidecar"}
    _, stderr = create(control_plane, body)
    assert "Warning: pod eks.amazonaws.com/skip-containers names 'sidecar'" in stderr


@pytest.fixture
def container_adder(control_plane: ControlPlane, webhook: Webhook, tmp_path: Any) -> Iterator[None]:
    """A second webhook, called after ours, that adds a container (as Vault or Istio do)."""

    async def add_container(request: Request) -> Response:
        review = orjson.loads(await request.body())
        patch = [
            {
                "op": "add",
                "path": "/spec/containers/-",
                "value": {"name": "added", "image": "registry.k8s.io/pause:3.10"},
            }
        ]
        containers = review["request"]["object"]["spec"]["containers"]
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
        if not any(c["name"] == "added" for c in containers):
            response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
            response["patchType"] = "JSONPatch"
        return Response(
            orjson.dumps({**{k: review[k] for k in ("apiVersion", "kind")}, "response": response}),
            media_type="application/json",
        )

    pki = Pki(trustme.CA(), tmp_path)
    pki.write(pki.issue())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_path, pki.key_path)
    app = Starlette(routes=[Route("/mutate", add_container, methods=["POST"])])
    with run_server(app, context) as server:
        bundle = base64.b64encode(pki.ca.cert_pem.bytes()).decode()
        control_plane.apply(webhook_configuration("zz-adder", server.url, bundle, "Never"))
        try:
            yield
        finally:
            control_plane.kubectl("delete", "mutatingwebhookconfiguration", "zz-adder")


def test_a_container_added_by_a_later_webhook_gets_credentials_on_reinvocation(
    control_plane: ControlPlane, namespace: str, container_adder: None
) -> None:
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    deadline = time.monotonic() + 60
    while True:
        stored, _ = create(
            control_plane, pod(namespace, f"re-{int(time.monotonic() * 1000)}", "s3")
        )
        names = [c["name"] for c in stored["spec"]["containers"]]
        if "added" in names or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    containers = {c["name"]: c for c in stored["spec"]["containers"]}
    assert set(containers) == {"app", "added"}
    assert env_of(containers["added"])["AWS_ROLE_ARN"] == ROLE
    assert env_of(containers["app"])["AWS_ROLE_ARN"] == ROLE
    assert [v["name"] for v in stored["spec"]["volumes"]].count("aws-iam-token") == 1


def test_the_token_the_pod_would_get_verifies_against_the_issuer(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(
        service_account(
            namespace,
            "s3",
            {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/audience": "e2e-aud"},
        )
    )
    stored, _ = create(control_plane, pod(namespace, "token", "s3"))
    volume = next(v for v in stored["spec"]["volumes"] if v["name"] == "aws-iam-token")
    source = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "e2e-aud"
    token = control_plane.kubectl(
        "create",
        "token",
        "s3",
        "-n",
        namespace,
        "--audience",
        source["audience"],
        "--duration",
        f"{source['expirationSeconds']}s",
    ).stdout.strip()
    with control_plane.client() as client:
        discovery = client.get("/.well-known/openid-configuration").json()
        keys = client.get("/openid/v1/jwks").json()
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(keys)[header["kid"]]
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="e2e-aud", issuer=discovery["issuer"]
    )
    assert claims["sub"] == f"system:serviceaccount:{namespace}:s3"


@pytest.mark.timeout(180)
def test_the_api_server_saw_every_call_answered_and_none_failed(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    # Other tests of the session call the webhook too (some just after creating a
    # ServiceAccount, which waits for the cache): judge only this test's calls.
    before = _webhook_latency_buckets(control_plane)
    calls_before = admission_calls(control_plane, "irsa.e2e.irsa-webhook.dev")
    for index in range(10):
        create(control_plane, pod(namespace, f"fast-{index}", "s3"))
    after = _webhook_latency_buckets(control_plane)
    calls = admission_calls(control_plane, "irsa.e2e.irsa-webhook.dev")
    added = {key: calls[key] - calls_before.get(key, 0.0) for key in calls}
    # Every call answered 200 and none rejected, errored or failed open. The calls' series must
    # exist: the fail-open count alone exists only under failurePolicy Ignore, so the old check
    # that it was 0 held with no series at all.
    assert {key: value for key, value in added.items() if value} == {"code=200,rejected=false": 10}
    buckets = {le: count - before.get(le, 0.0) for le, count in after.items()}
    # The API server timed each call (how fast is the benchmark's to say: hack/bench.sh, e2e mode;
    # a latency bound here failed on loaded machines and proved nothing about the webhook).
    assert buckets["+Inf"] >= 10


OURS = 'name="irsa.e2e.irsa-webhook.dev"'


def _webhook_latency_buckets(control_plane: ControlPlane) -> dict[str, float]:
    """The API server's histogram of our webhook's CREATE calls: upper bound -> count."""
    with control_plane.client() as client:
        metrics = client.get("/metrics").text
    buckets = {}
    for line in metrics.splitlines():
        if (
            line.startswith("apiserver_admission_webhook_admission_duration_seconds_bucket")
            and OURS in line
            and 'operation="CREATE"' in line
        ):
            le = re.search(r'le="([^"]+)"', line)
            assert le is not None
            buckets[le.group(1)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _token_source(stored: dict[str, Any]) -> dict[str, Any]:
    volume = next(v for v in stored["spec"]["volumes"] if v["name"] == "aws-iam-token")
    source: dict[str, Any] = volume["projected"]["sources"][0]["serviceAccountToken"]
    return source


@pytest.mark.parametrize(
    ("annotation", "stored_seconds", "warned"),
    [
        ("600", 600, False),
        ("599", 600, True),
        ("4294967296", 2**32, False),
        ("4294967297", 2**32, True),
    ],
)
def test_token_lifetimes_are_clamped_to_exactly_what_the_api_server_accepts(
    control_plane: ControlPlane,
    namespace: str,
    annotation: str,
    stored_seconds: int,
    warned: bool,
) -> None:
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    body = pod(namespace, "lifetime", "s3")
    body["metadata"]["annotations"] = {"eks.amazonaws.com/token-expiration": annotation}

    stored, stderr = create(control_plane, body)

    assert _token_source(stored)["expirationSeconds"] == stored_seconds
    assert ("token-expiration" in stderr) is warned, stderr


@pytest.mark.parametrize(
    ("seconds", "accepted"), [(599, False), (600, True), (2**32, True), (2**32 + 1, False)]
)
def test_the_api_server_itself_accepts_token_lifetimes_from_600_to_2_to_the_32(
    control_plane: ControlPlane, namespace: str, seconds: int, accepted: bool
) -> None:
    # The webhook's bounds are only right if they are the API server's: ask it directly, with
    # a pod the webhook skips.
    control_plane.apply(service_account(namespace, "plain"))
    body = pod(namespace, "bound", "plain")
    body["metadata"]["labels"] = {"eks.amazonaws.com/skip-pod-identity-webhook": "true"}
    body["spec"]["volumes"] = [
        {
            "name": "token",
            "projected": {
                "sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": seconds}}]
            },
        }
    ]
    result = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=orjson.dumps(body).decode(), check=False
    )
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "expirationSeconds" in result.stderr


API_SERVER_IDLE_CONNECTION_TIMEOUT = 90.0
"""How long the API server's webhook client keeps an idle connection (Go's transport default)."""
IDLE = 82.0
"""Longer than the webhook's old 75 s keep-alive, shorter than the API server's 90 s."""


def connections_to(port: int) -> set[int]:
    """Client ports of the established TCP connections to ``port`` on loopback (/proc/net/tcp)."""
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(local.split(":")[1], 16) == port:
            peers.add(int(remote.split(":")[1], 16))
    return peers


def admission_calls(plane: ControlPlane, name: str) -> dict[str, float]:
    """The API server's calls to webhook ``name``: by ``code``/``rejected``, and its rejections."""
    with plane.client() as client:
        text = client.get("/metrics").text
    calls: dict[str, float] = {}
    for line in text.splitlines():
        if f'name="{name}"' not in line:
            continue
        series, value = line.rsplit(" ", 1)
        if series.startswith("apiserver_admission_webhook_request_total{"):
            code = re.search(r'code="(\d+)"', series)
            rejected = re.search(r'rejected="(\w+)"', series)
            assert code is not None, series
            assert rejected is not None, series
            key = f"code={code.group(1)},rejected={rejected.group(1)}"
            calls[key] = calls.get(key, 0.0) + float(value)
        elif series.startswith(
            (
                "apiserver_admission_webhook_rejection_count{",
                "apiserver_admission_webhook_fail_open_count{",
            )
        ):
            key = series.split("{", 1)[0]
            calls[key] = calls.get(key, 0.0) + float(value)
    return calls


@pytest.mark.slow
@pytest.mark.idle_connection
@pytest.mark.timeout(240)
def test_the_api_server_reuses_a_connection_idle_for_longer_than_75_seconds_without_a_failure(
    control_plane: ControlPlane, namespace: str, webhook: Webhook
) -> None:
    assert IDLE < API_SERVER_IDLE_CONNECTION_TIMEOUT
    port = int(webhook.url.rsplit(":", 1)[1])
    ours = "irsa.e2e.irsa-webhook.dev"
    control_plane.apply(service_account(namespace, "s3", {"eks.amazonaws.com/role-arn": ROLE}))
    create(control_plane, pod(namespace, "before-idle", "s3"))
    before = connections_to(port)
    assert before, "the API server keeps its connection to the webhook open"
    calls_before = admission_calls(control_plane, ours)

    time.sleep(IDLE)  # the idle time is what this test is about, not a margin
    stored, _ = create(control_plane, pod(namespace, "after-idle", "s3"))

    assert env_of(stored["spec"]["containers"][0])["AWS_ROLE_ARN"] == ROLE
    after = connections_to(port)
    assert after & before, f"no connection survived {IDLE:.0f} s idle: {before} then {after}"
    assert after <= before, f"the API server had to open a new connection: {after - before}"
    calls = admission_calls(control_plane, ours)
    added = {key: calls[key] - calls_before.get(key, 0.0) for key in calls}
    assert {key: value for key, value in added.items() if value} == {"code=200,rejected=false": 1}
