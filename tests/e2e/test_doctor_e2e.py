"""``irsa-webhook doctor`` against the real API server and the session's webhook.

Each scenario breaks one link of the cluster side and expects doctor to FAIL on exactly the
checks for that link; the AWS checks are skipped here (no AWS configuration in the
environment) and are covered against moto and the lab elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from cluster import (
    ControlPlane,
    Webhook,
    make_namespace,
    pod,
    service_account,
    webhook_configuration,
)
from doctoring import (
    AWS_SIDE,
    CLUSTER_SIDE,
    HARDENED_TOKEN_VOLUME,
    anonymous_issuer_reads,
    create,
    doctor,
    doctor_json,
)
from loopback import free_port

ROLE = "arn:aws:iam::111122223333:role/reader"
ROLE_ANNOTATION = {"eks.amazonaws.com/role-arn": ROLE}


@pytest.fixture(scope="module")
def public_issuer(control_plane: ControlPlane) -> Iterator[None]:
    with anonymous_issuer_reads(control_plane):
        yield


@pytest.fixture
def namespace(control_plane: ControlPlane, webhook: Webhook, public_issuer: None) -> str:
    name = make_namespace(control_plane, "doctor")
    control_plane.apply(service_account(name, "reader", ROLE_ANNOTATION))
    return name


def test_a_healthy_pod_passes_every_cluster_check_and_skips_aws_without_configuration(
    control_plane: ControlPlane, namespace: str
) -> None:
    create(control_plane, pod(namespace, "web", "reader"))

    found = doctor_json(control_plane, "pod", "web", "-n", namespace)

    assert found["failed"] == set()
    for check in CLUSTER_SIDE:
        assert found["checks"][check]["status"] == "ok", found["checks"][check]
    for check in AWS_SIDE:
        assert found["checks"][check]["status"] == "skipped"
        assert found["checks"][check]["evidence"]
    assert "a dry-run pod was mutated" in found["checks"]["webhook-reachable"]["evidence"]
    assert "verifies the token" in found["checks"]["jwks-kid"]["evidence"]


def test_the_text_report_has_one_line_per_check_and_the_fix_under_a_failure(
    control_plane: ControlPlane, namespace: str
) -> None:
    spec = {
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"}],
            }
        ]
    }
    create(control_plane, pod(namespace, "keys", "reader", **spec))

    result = doctor(control_plane, "pod", "keys", "-n", namespace)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"doctor pod {namespace}/keys (ServiceAccount reader)"
    status_lines = [line for line in lines[1:-1] if not line.startswith(" ")]
    assert [line.split()[1] for line in status_lines] == [*CLUSTER_SIDE, *AWS_SIDE]
    failed = lines.index(next(line for line in lines if line.startswith("FAIL")))
    assert lines[failed].split()[1] == "credential-shadowing"
    assert "pod sees: no error: the SDK signs with the static keys" in lines[failed + 1]
    assert "fix: remove AWS_ACCESS_KEY_ID" in lines[failed + 2]
    assert lines[-1] == "failed: credential-shadowing"
    assert "AKIAEXAMPLE" not in result.stdout


def test_a_pod_created_before_its_service_account_was_annotated_fails_pod_mutated_only(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(service_account(namespace, "late", {}))
    created = create(control_plane, pod(namespace, "early", "late"))
    # Object times have whole seconds: annotate in a later second than the pod's creation.
    creation = datetime.fromisoformat(created["metadata"]["creationTimestamp"])
    deadline = time.monotonic() + 5
    while datetime.now(UTC) < creation + timedelta(seconds=1) and time.monotonic() < deadline:
        time.sleep(0.05)
    control_plane.kubectl(
        "annotate",
        "serviceaccount",
        "-n",
        namespace,
        "late",
        f"eks.amazonaws.com/role-arn={ROLE}",
    )

    found = doctor_json(control_plane, "pod", "early", "-n", namespace)

    assert found["failed"] == {"pod-mutated"}
    evidence = found["checks"]["pod-mutated"]["evidence"]
    assert "missing pod: volume aws-iam-token" in evidence
    assert "before the ServiceAccount's role was set at" in evidence
    assert found["checks"]["token-readable"]["status"] == "skipped"


def test_a_webhook_that_is_down_with_failure_policy_ignore_fails_open_and_doctor_says_so(
    control_plane: ControlPlane, webhook: Webhook, public_issuer: None
) -> None:
    label = "doctor-down"
    down = webhook_configuration(
        "doctor-down", f"https://127.0.0.1:{free_port()}", webhook.ca_bundle
    )
    down["webhooks"][0]["failurePolicy"] = "Ignore"
    down["webhooks"][0]["namespaceSelector"] = {"matchLabels": {label: "true"}}
    control_plane.apply(down)
    namespace = f"doctor-down-{os.getpid()}"
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {label: "true"}},
        },
        service_account(namespace, "reader", ROLE_ANNOTATION),
    )
    try:
        create(control_plane, pod(namespace, "web", "reader"))

        found = doctor_json(
            control_plane, "pod", "web", "-n", namespace, configuration="doctor-down"
        )
    finally:
        control_plane.kubectl("delete", "mutatingwebhookconfiguration", "doctor-down")
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false")

    assert found["failed"] == {"pod-mutated", "webhook-reachable"}
    assert "failurePolicy is Ignore (it failed open)" in found["checks"]["pod-mutated"]["evidence"]
    reachable = found["checks"]["webhook-reachable"]
    assert "cannot connect" in reachable["evidence"]
    assert "failurePolicy Ignore" in reachable["symptom"]


def test_a_token_file_a_non_root_user_cannot_read_fails_token_readable_only(
    control_plane: ControlPlane, namespace: str
) -> None:
    spec = {
        "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
        "containers": [
            {"name": "app", "image": "registry.k8s.io/pause:3.10"},
            {
                "name": "agent",
                "image": "registry.k8s.io/pause:3.10",
                "securityContext": {"runAsUser": 2000},
            },
        ],
        "volumes": [HARDENED_TOKEN_VOLUME],
    }
    create(control_plane, pod(namespace, "nonroot", "reader", **spec))

    found = doctor_json(control_plane, "pod", "nonroot", "-n", namespace)

    assert found["failed"] == {"token-readable"}
    readable = found["checks"]["token-readable"]
    assert "mode 0600 owner 0:0" in readable["evidence"]
    assert "container 'app' uid 1000" in readable["evidence"]
    assert "permission denied" in readable["symptom"]
    assert found["checks"]["pod-mutated"]["status"] == "ok"


def test_static_keys_in_the_pods_env_fail_credential_shadowing_only(
    control_plane: ControlPlane, namespace: str
) -> None:
    env = [
        {"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "secret-example"},
    ]
    spec = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "env": env}]}
    create(control_plane, pod(namespace, "keys", "reader", **spec))

    found = doctor_json(control_plane, "pod", "keys", "-n", namespace)

    assert found["failed"] == {"credential-shadowing"}
    shadowing = found["checks"]["credential-shadowing"]
    assert "container 'app' sets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in shadowing["evidence"]
    assert "secret-example" not in orjson.dumps(found["checks"]).decode()


def test_an_unannotated_service_account_fails_service_account_and_skips_the_chain(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.apply(service_account(namespace, "plain", {"eks.amazon.com/role-arn": ROLE}))

    found = doctor_json(control_plane, "serviceaccount", "plain", "-n", namespace)

    assert found["failed"] == {"service-account"}
    assert (
        "did you mean eks.amazonaws.com/role-arn" in found["checks"]["service-account"]["evidence"]
    )
    for check in ("pod-mutated", "token-readable", "credential-shadowing", *CLUSTER_SIDE[6:]):
        assert found["checks"][check]["status"] == "skipped"


def test_a_service_account_for_a_pod_yet_to_be_created_proves_the_webhook_with_a_dry_run(
    control_plane: ControlPlane, namespace: str
) -> None:
    before = control_plane.get("pods", "-n", namespace)["items"]

    found = doctor_json(control_plane, "serviceaccount", "reader", "-n", namespace)

    assert found["failed"] == set()
    assert "a dry-run pod was mutated" in found["checks"]["webhook-reachable"]["evidence"]
    assert found["checks"]["pod-mutated"]["status"] == "skipped"
    assert control_plane.get("pods", "-n", namespace)["items"] == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pod", "absent", "-n", "default"), "pod default/absent not found"),
    ],
)
def test_doctor_that_cannot_examine_anything_exits_2_with_one_line(
    control_plane: ControlPlane, args: tuple[str, ...], message: str
) -> None:
    result = doctor(control_plane, *args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"irsa-webhook doctor: {message}\n"


def test_doctor_without_cluster_credentials_exits_2(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBE"))}
    environ["HOME"] = str(tmp_path)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "irsa-webhook"), "doctor", "pod", "web"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("irsa-webhook doctor: no usable Kubernetes credentials")
