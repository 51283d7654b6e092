"""The HTTP layer on a real uvicorn over TLS on loopback, with in-memory identity sources."""

from __future__ import annotations

import base64
import contextlib
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import orjson
import pytest
import trustme

from irsa_webhook.app import WebhookState, create_metrics_app, create_webhook_app
from irsa_webhook.identity import ContainerCredentialsConfig, ServiceAccountEntry
from loopback import (
    ROLE,
    MemoryServiceAccounts,
    Pki,
    RunningServer,
    StaticContainerCredentials,
    make_state,
    run_server,
)


@dataclass
class Harness:
    state: WebhookState
    accounts: MemoryServiceAccounts
    webhook: RunningServer
    metrics: RunningServer
    client: httpx.Client
    pki: Pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    pki = Pki(trustme.CA(), tmp_path)
    pki.write(pki.issue())
    return pki


@pytest.fixture
def harness(pki: Pki) -> Iterator[Harness]:
    state, accounts = make_state(pki, max_request_bytes=64 * 1024)
    context = state.certificate.context  # type: ignore[attr-defined]
    with (
        run_server(create_webhook_app(state), context) as webhook,
        run_server(create_metrics_app(state)) as metrics,
        httpx.Client(verify=pki.client_context(), timeout=5) as client,
    ):
        yield Harness(state, accounts, webhook, metrics, client, pki)


def review(
    service_account: str = "s3", api_version: str = "admission.k8s.io/v1", **request: Any
) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "team-a"},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "busybox", "unknownField": {"kept": True}}],
        },
    }
    body: dict[str, Any] = {
        "uid": "2b1f9c3e-0000-4000-8000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
        "namespace": "team-a",
        "object": pod,
    }
    body.update(request)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": body}


def post(harness: Harness, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return harness.client.post(
        f"{harness.webhook.url}/mutate?timeout=10s",
        content=body,
        headers={"Content-Type": content_type},
    )


def test_an_annotated_pod_gets_a_patch_that_injects_the_role(harness: Harness) -> None:
    sent = review()
    response = post(harness, orjson.dumps(sent))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == sent["request"]["uid"]
    assert answer["response"]["allowed"] is True
    assert answer["response"]["patchType"] == "JSONPatch"
    patch = orjson.loads(base64.b64decode(answer["response"]["patch"]))
    pod = jsonpatch.apply_patch(sent["request"]["object"], patch)
    container = pod["spec"]["containers"][0]
    assert {"name": "AWS_ROLE_ARN", "value": ROLE} in container["env"]
    assert container["unknownField"] == {"kept": True}
    assert pod["spec"]["volumes"][0]["name"] == "aws-iam-token"


def test_a_v1beta1_review_is_answered_as_v1beta1(harness: Harness) -> None:
    response = post(harness, orjson.dumps(review(api_version="admission.k8s.io/v1beta1")))
    assert response.json()["apiVersion"] == "admission.k8s.io/v1beta1"


def test_content_type_parameters_are_accepted(harness: Harness) -> None:
    response = post(harness, orjson.dumps(review()), "application/json; charset=utf-8")
    assert response.status_code == 200


def test_another_content_type_gets_415_with_a_json_error(harness: Harness) -> None:
    response = post(harness, orjson.dumps(review()), "application/xml")
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    assert "application/json" in response.json()["error"]


def test_a_body_over_the_limit_gets_413(harness: Harness) -> None:
    big = review()
    big["request"]["object"]["metadata"]["annotations"] = {"filler": "x" * (80 * 1024)}
    response = post(harness, orjson.dumps(big))
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]


def test_a_chunked_body_over_the_limit_gets_413(harness: Harness) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = harness.client.post(
        f"{harness.webhook.url}/mutate",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b'{"request": ', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b"{}", "has no request"),
        (b'{"request": {"uid": "u", "object": "pod"}}', "must be a Pod object"),
        (b'{"apiVersion": "v1", "request": {}}', "is not supported"),
    ],
)
def test_a_body_that_is_not_an_admission_review_gets_400(
    harness: Harness, body: bytes, message: str
) -> None:
    response = post(harness, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_an_update_is_allowed_without_a_patch(harness: Harness) -> None:
    response = post(harness, orjson.dumps(review(operation="UPDATE")))
    assert response.status_code == 200
    assert response.json()["response"] == {
        "uid": "2b1f9c3e-0000-4000-8000-000000000001",
        "allowed": True,
    }


def test_a_missing_service_account_is_allowed_unchanged_and_counted(harness: Harness) -> None:
    response = post(harness, orjson.dumps(review(service_account="ghost")))
    assert "patch" not in response.json()["response"]
    assert harness.accounts.lookups == 1
    metrics = harness.client.get(f"{harness.metrics.url}/metrics").text
    assert "pod_identity_webhook_missing_sa_count 1.0" in metrics


def test_metrics_use_the_reference_names(harness: Harness) -> None:
    post(harness, orjson.dumps(review()))
    metrics = harness.client.get(f"{harness.metrics.url}/metrics").text
    assert 'http_request_count{code="200",path="/mutate",verb="POST"} 1.0' in metrics
    assert 'pod_identity_webhook_pod_count{method="sts_web_identity"} 1.0' in metrics
    assert "http_request_latencies_bucket" in metrics
    assert 'irsa_webhook_admission_decisions_total{outcome="mutated"} 1.0' in metrics


def test_the_metrics_port_does_not_serve_mutate_or_debug_by_default(harness: Harness) -> None:
    assert post_to(harness.client, f"{harness.metrics.url}/mutate").status_code == 404
    assert harness.client.get(f"{harness.metrics.url}/debug/alpha/cache").status_code == 404


def post_to(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(
        url, content=orjson.dumps(review()), headers={"Content-Type": "application/json"}
    )


def test_the_debug_cache_dump_is_served_only_when_enabled(pki: Pki) -> None:
    state, _ = make_state(pki, enable_debugging_handlers=True)
    with run_server(create_metrics_app(state)) as metrics:
        dump = httpx.get(f"{metrics.url}/debug/alpha/cache").json()
    assert dump["team-a/s3"]["RoleARN"] == ROLE


def test_readyz_reports_why_it_is_not_ready(harness: Harness) -> None:
    assert harness.client.get(f"{harness.webhook.url}/readyz").status_code == 200
    harness.accounts.synced = False
    response = harness.client.get(f"{harness.webhook.url}/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["serviceaccounts not synced yet"]
    harness.accounts.synced = True
    harness.state.draining = True
    assert harness.client.get(f"{harness.webhook.url}/readyz").json()["reasons"] == [
        "shutting down"
    ]
    assert harness.client.get(f"{harness.webhook.url}/healthz").status_code == 200


def test_mutate_only_answers_post(harness: Harness) -> None:
    assert harness.client.get(f"{harness.webhook.url}/mutate").status_code == 405


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(harness: Harness) -> None:
    server_context = harness.webhook.server.config.ssl
    assert server_context is not None
    assert server_context.minimum_version == ssl.TLSVersion.TLSv1_2
    context = harness.pki.client_context()
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        httpx.get(f"{harness.webhook.url}/healthz", verify=context)


def test_tls_1_2_is_accepted(harness: Harness) -> None:
    context = harness.pki.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert httpx.get(f"{harness.webhook.url}/healthz", verify=context).status_code == 200


def test_the_debug_cache_dump_does_not_hold_up_the_event_loop(pki: Pki) -> None:
    state, _ = make_state(pki, enable_debugging_handlers=True)
    dumping, released = threading.Event(), threading.Event()

    def slow_snapshot() -> dict[str, ServiceAccountEntry]:
        dumping.set()
        released.wait(30)
        return {}

    with (
        run_server(create_metrics_app(state, dump=slow_snapshot)) as metrics,
        ThreadPoolExecutor(1) as pool,
    ):
        try:
            dump = pool.submit(httpx.get, f"{metrics.url}/debug/alpha/cache", timeout=30)
            assert dumping.wait(10)
            # The dump is still being made: the loop answers other requests meanwhile.
            assert httpx.get(f"{metrics.url}/metrics", timeout=5).status_code == 200
        finally:
            released.set()
        assert dump.result().json() == {}


def test_a_pod_without_metadata_in_container_credentials_mode_gets_a_patch_that_applies(
    pki: Pki,
) -> None:
    # The API server always sends metadata, but the envelope must not invent any: the patch
    # is applied to the object as sent, so a namespace written into a copy made it invalid.
    state, _ = make_state(pki)
    state.container_credentials = StaticContainerCredentials(
        current=ContainerCredentialsConfig(frozenset({("team-a", "s3")}))
    )
    sent = review()
    del sent["request"]["object"]["metadata"]
    context = state.certificate.context  # type: ignore[attr-defined]
    with (
        run_server(create_webhook_app(state), context) as webhook,
        httpx.Client(verify=pki.client_context(), timeout=5) as client,
    ):
        response = client.post(f"{webhook.url}/mutate", json=sent)

    answer = response.json()["response"]
    patch = orjson.loads(base64.b64decode(answer["patch"]))
    pod = jsonpatch.apply_patch(sent["request"]["object"], patch)
    assert pod["metadata"] == {"labels": {"eks.amazonaws.com/pod-identity": "enabled"}}
    assert pod["spec"]["volumes"][0]["name"] == "eks-pod-identity-token"
