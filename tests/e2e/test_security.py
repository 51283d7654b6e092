"""Security properties of the real ``irsa-webhook serve`` behind the real kube-apiserver: TLS
floor, what each port serves, what reaches the logs, and what a ServiceAccount annotation can
inject into a pod."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import httpx
import orjson
import pytest

from cluster import (
    ControlPlane,
    Webhook,
    leaked_secrets,
    make_namespace,
    pod,
    service_account,
)

REVIEW = orjson.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "object": {"spec": {"containers": [{"name": "c"}]}}},
    }
)
DOCUMENTED_ENV = {
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
}
TOKEN_VOLUME = "aws-iam-token"


def client_context(webhook: Webhook) -> ssl.SSLContext:
    context = ssl.create_default_context()
    webhook.ca.configure_trust(context)
    return context


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_below_1_2_is_refused_by_the_serving_process(
    webhook: Webhook, version: ssl.TLSVersion
) -> None:
    context = client_context(webhook)
    context.minimum_version = version
    context.maximum_version = version
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{webhook.url}/healthz", verify=context)
    context = client_context(webhook)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert httpx.get(f"{webhook.url}/healthz", verify=context).status_code == 200


def test_the_metrics_port_does_not_serve_mutate_or_health(webhook: Webhook) -> None:
    response = httpx.post(
        f"{webhook.metrics_url}/mutate",
        content=REVIEW,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 404
    assert "response" not in response.text
    assert httpx.get(f"{webhook.metrics_url}/metrics").status_code == 200


def test_the_tls_port_does_not_answer_plain_http(webhook: Webhook) -> None:
    plain = webhook.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{plain}/mutate", content=REVIEW, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("path", ["/debug/alpha/cache", "/docs", "/openapi.json", "/redoc"])
def test_debug_and_documentation_endpoints_are_absent_by_default(
    webhook: Webhook, path: str
) -> None:
    assert httpx.get(f"{webhook.metrics_url}{path}").status_code == 404
    response = httpx.get(f"{webhook.url}{path}", verify=client_context(webhook))
    assert response.status_code == 404


def test_logs_at_the_default_level_hold_no_token_key_or_pod_body(
    control_plane: ControlPlane, webhook: Webhook
) -> None:
    namespace = make_namespace(control_plane, "logs")
    control_plane.apply(
        service_account(
            namespace, "s3", {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/x"}
        ),
        service_account(namespace, "plain"),
    )
    secret_marker = "do-not-log-this-env-value"
    for index, account in enumerate(["s3", "plain", "s3"]):
        body = pod(namespace, f"p{index}", account)
        body["spec"]["containers"][0]["env"] = [{"name": "SECRET", "value": secret_marker}]
        # A warning makes the decision an info line (routine ones are debug), so the default
        # level has decision lines to check.
        body["metadata"]["annotations"] = {
            "secret": secret_marker,
            "eks.amazonaws.com/skip-containers": "no-such-container",
        }
        control_plane.kubectl("create", "-f", "-", stdin=orjson.dumps(body).decode())
    # Broken bodies take the error path, which logs a reason, never the body.
    for broken in (b'{"request": {"object": "' + secret_marker.encode(), b"\xff" + REVIEW):
        response = httpx.post(
            f"{webhook.url}/mutate",
            content=broken,
            headers={"Content-Type": "application/json"},
            verify=client_context(webhook),
        )
        assert response.status_code == 400

    logs = webhook.logs()
    assert f'"namespace":"{namespace}"' in logs  # the warned decisions were logged at all
    assert leaked_secrets(control_plane, webhook, secret_marker) == []


HOSTILE_ROLE_ARNS = [
    "arn:aws:iam::111122223333:role/x\nAWS_SECRET_ACCESS_KEY=leak",
    'arn:aws:iam::111122223333:role/x","value":"injected"},{"name":"LD_PRELOAD","value":"/x.so',
    '{"op":"add","path":"/spec/hostNetwork","value":true}',
    "../../etc/passwd",
    "$(cat /etc/shadow)",
    "x" * 4000,
    "",
]


def apply_json(plane: ControlPlane, document: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", stdin=orjson.dumps(document).decode())


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env") or []}


@pytest.mark.parametrize("role_arn", HOSTILE_ROLE_ARNS, ids=range(len(HOSTILE_ROLE_ARNS)))
def test_a_hostile_role_arn_annotation_injects_only_the_documented_env_and_volume(
    control_plane: ControlPlane, webhook: Webhook, role_arn: str
) -> None:
    namespace = make_namespace(control_plane, "hostile")
    # JSON, not YAML: the values must reach the API server as the exact strings.
    apply_json(
        control_plane,
        service_account(
            namespace,
            "evil",
            {
                "eks.amazonaws.com/role-arn": role_arn,
                "eks.amazonaws.com/audience": '../../x","path":"/etc',
                "eks.amazonaws.com/token-expiration": "1e99",
                "eks.amazonaws.com/sts-regional-endpoints": "true\n- op: add",
            },
        ),
    )
    sent = pod(namespace, "victim", "evil")
    created = orjson.loads(
        control_plane.kubectl(
            "create", "-o", "json", "-f", "-", stdin=orjson.dumps(sent).decode()
        ).stdout
    )
    spec = created["spec"]
    assert spec.get("hostNetwork") is not True
    container = spec["containers"][0]
    env = env_of(container)
    added = set(env)
    assert added <= DOCUMENTED_ENV
    volumes = {volume["name"] for volume in spec.get("volumes") or []}
    assert volumes - {TOKEN_VOLUME} <= {
        name for name in volumes if name.startswith("kube-api-access")
    }
    if not role_arn:
        assert added == set()
        return
    assert env["AWS_ROLE_ARN"] == role_arn
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"].startswith("/var/run/secrets/eks.amazonaws.com/")
    mounts = {mount["name"]: mount for mount in container.get("volumeMounts") or []}
    assert mounts[TOKEN_VOLUME]["mountPath"] == "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    (token_volume,) = [v for v in spec["volumes"] if v["name"] == TOKEN_VOLUME]
    (projection,) = token_volume["projected"]["sources"]
    token = projection["serviceAccountToken"]
    # The audience is data in one field; the path is the webhook's own.
    assert token["audience"] == '../../x","path":"/etc'
    assert token["path"] == "token"
    assert 600 <= token["expirationSeconds"] <= 2**32
