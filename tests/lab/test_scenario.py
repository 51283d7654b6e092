"""The seed's scenario end to end on the lab, the ways users break it, and doctor on each.

A pod of the lab image, with its ServiceAccount and only the lab's STS and S3 endpoints set,
reads an S3 object through the role ``iam bind`` made for it: boto3's default chain in the pod
uses what the webhook injected, the validating STS checks the real token. Each negative run
breaks one link and asserts the exact line the pod prints, which is what STS (or the SDK) said,
then runs ``irsa-webhook doctor`` on that very pod: it must FAIL the check of the broken link
and only that one, and the error it says the pod sees must be the pod's own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from doctoring import AWS_SIDE, CLUSTER_SIDE, HARDENED_TOKEN_VOLUME, report_of
from irsa_lab.lab import WEBHOOK_CONFIGURATION, WEBHOOK_NAMESPACE, Lab, wait_mutating
from irsa_lab.scenario import GREETING, PodRun, Scenario

pytestmark = pytest.mark.timeout(1800)

ERROR = "An error occurred ({code}) when calling the AssumeRoleWithWebIdentity operation: {message}"
NOT_AUTHORIZED = ERROR.format(
    code="AccessDenied", message="Not authorized to perform sts:AssumeRoleWithWebIdentity"
)
NO_CREDENTIALS = "Unable to locate credentials"
TOKEN_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"


@dataclass
class Bound:
    """The scenario set up: the chain published, a namespace whose ``s3-reader`` may read."""

    scenario: Scenario
    namespace: str


@pytest.fixture(scope="module")
def bound(lab: Lab) -> Iterator[Bound]:
    scenario = Scenario.of(lab)
    namespace = f"lab-{uuid.uuid4().hex[:6]}"
    scenario.publish()
    scenario.create_provider()
    scenario.put_greeting()
    scenario.namespace(namespace)
    scenario.service_account(namespace, "s3-reader")
    scenario.bind(namespace, "s3-reader", "lab-s3-reader")
    try:
        yield Bound(scenario, namespace)
    finally:
        scenario.kubectl("delete", "namespace", namespace, "--wait=false")


def failed_run(bound: Bound, account: str = "s3-reader", **spec: Any) -> PodRun:
    """A reader pod of ``account`` that failed; its last line is what it printed of the error."""
    run = bound.scenario.read_greeting(bound.namespace, account, **spec)
    assert run.phase == "Failed", run.output
    return run


def printed(run: PodRun) -> str:
    return run.output.strip().splitlines()[-1]


def diagnosis(bound: Bound, run: PodRun, namespace: str = "") -> dict[str, Any]:
    """doctor's JSON report on the pod that ran, by check id, and its failed ids."""
    report = report_of(
        bound.scenario.doctor("pod", run.name, namespace or bound.namespace, "--output", "json")
    )
    # doctor reached the lab's STS (AWS access configured): the probe ran in every case.
    assert report["checks"]["sts-probe"]["status"] != "skipped", report["checks"]["sts-probe"]
    return report


def assert_only(report: dict[str, Any], check: str, pod_saw: str) -> None:
    """``check`` is the one failure (the others pass, warn, or are skipped saying why), and the
    error doctor says the pod sees is the pod's."""
    assert report["failed"] == {check}, report["checks"]
    assert pod_saw in report["checks"][check]["symptom"], report["checks"][check]


def assert_probe_confirms(report: dict[str, Any], check: str, pod_saw: str) -> None:
    """The lab's STS refused doctor's probe as it refused the pod, and doctor says which
    failed check predicted it (a warning: the broken link is that check's)."""
    probe = report["checks"]["sts-probe"]
    assert (probe["status"], probe["symptom"]) == ("warn", pod_saw), probe
    assert probe["evidence"].endswith(f"(as {check} predicted)")


def test_the_pod_reads_the_object_and_doctor_passes_every_check(bound: Bound) -> None:
    run = bound.scenario.read_greeting(bound.namespace, "s3-reader")
    assert (run.phase, run.output) == ("Succeeded", GREETING)

    report = diagnosis(bound, run)

    assert report["failed"] == set()
    for check in (*CLUSTER_SIDE, *AWS_SIDE):
        assert report["checks"][check]["status"] == "ok", report["checks"][check]
    # Reached directly (the host routes to the pods): the https port, not the metrics one.
    assert "verified by the caBundle" in report["checks"]["webhook-reachable"]["evidence"]
    role = bound.scenario.role_arn("lab-s3-reader")
    assumed = role.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/")
    assert report["checks"]["sts-probe"]["evidence"].startswith(f"assumed {assumed}/")


def test_a_pod_of_another_service_account_with_the_same_role_fails_trust_policy(
    bound: Bound,
) -> None:
    role_arn = bound.scenario.role_arn("lab-s3-reader")
    bound.scenario.service_account(bound.namespace, "intruder", role_arn)
    run = failed_run(bound, "intruder")
    assert printed(run) == NOT_AUTHORIZED

    report = diagnosis(bound, run)

    assert_only(report, "trust-policy", NOT_AUTHORIZED)
    assert (
        f"system:serviceaccount:{bound.namespace}:intruder"
        in (report["checks"]["trust-policy"]["evidence"])
    )
    assert_probe_confirms(report, "trust-policy", NOT_AUTHORIZED)


def test_a_trust_policy_for_another_namespace_fails_trust_policy(bound: Bound) -> None:
    other = f"lab-other-{uuid.uuid4().hex[:6]}"
    bound.scenario.namespace(other)
    try:
        bound.scenario.service_account(other, "s3-reader")
        bound.scenario.bind(other, "s3-reader", "lab-other-namespace")
        # This namespace's SA now names the role that trusts only the other namespace's SA.
        role_arn = bound.scenario.role_arn("lab-other-namespace")
        bound.scenario.service_account(bound.namespace, "borrower", role_arn)
        run = failed_run(bound, "borrower")
        assert printed(run) == NOT_AUTHORIZED

        report = diagnosis(bound, run)
    finally:
        bound.scenario.kubectl("delete", "namespace", other, "--wait=false")

    assert_only(report, "trust-policy", NOT_AUTHORIZED)
    evidence = report["checks"]["trust-policy"]["evidence"]
    assert f"'system:serviceaccount:{bound.namespace}:borrower' does not match " in evidence
    assert f"'system:serviceaccount:{other}:s3-reader'" in evidence
    assert_probe_confirms(report, "trust-policy", NOT_AUTHORIZED)


@pytest.fixture
def providers(bound: Bound) -> Iterator[Scenario]:
    """The test may replace the IAM OIDC provider; the right one is back afterwards."""
    try:
        yield bound.scenario
    finally:
        bound.scenario.delete_providers()
        bound.scenario.create_provider()


def test_a_provider_without_the_audience_fails_provider_audience(
    bound: Bound, providers: Scenario
) -> None:
    providers.delete_providers()
    providers.create_provider("amazonaws.com")
    run = failed_run(bound)
    incorrect = ERROR.format(code="InvalidIdentityToken", message="Incorrect token audience")
    assert printed(run) == incorrect

    report = diagnosis(bound, run)

    assert_only(report, "provider-audience", incorrect)
    assert "['amazonaws.com']" in report["checks"]["provider-audience"]["evidence"]
    assert_probe_confirms(report, "provider-audience", incorrect)


def test_a_provider_for_the_issuer_with_a_trailing_slash_fails_issuer_match(
    bound: Bound, providers: Scenario
) -> None:
    providers.delete_providers()
    # The issuer typed with a trailing slash (as the AWS CLI adds one): another provider to IAM.
    providers.create_provider(issuer=providers.issuer + "/")
    run = failed_run(bound)
    not_found = ERROR.format(
        code="InvalidIdentityToken",
        message=f"No OpenIDConnect provider found in your account for {providers.issuer}",
    )
    assert printed(run) == not_found

    report = diagnosis(bound, run)

    assert_only(report, "issuer-match", not_found)
    assert "(a trailing slash differs)" in report["checks"]["issuer-match"]["evidence"]
    assert report["checks"]["provider-exists"]["status"] == "warn"
    assert_probe_confirms(report, "issuer-match", not_found)


def test_a_published_jwks_missing_the_current_key_fails_jwks_kid(
    bound: Bound, tmp_path: Path
) -> None:
    stranger = tmp_path / "other.pub"
    stranger.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    bound.scenario.publish(stranger)
    no_key = ERROR.format(
        code="InvalidIdentityToken",
        message="Couldn't retrieve verification key from your identity provider,  please "
        "reference AssumeRoleWithWebIdentity documentation for requirements",
    )
    try:
        run = failed_run(bound)
        assert printed(run) == no_key

        report = diagnosis(bound, run)
    finally:
        bound.scenario.publish()

    assert_only(report, "jwks-kid", no_key)
    assert "is not in the public JWKS" in report["checks"]["jwks-kid"]["evidence"]
    assert_probe_confirms(report, "jwks-kid", no_key)


def test_a_pod_created_before_its_service_account_was_annotated_fails_pod_mutated(
    bound: Bound,
) -> None:
    bound.scenario.service_account(bound.namespace, "late")
    run = failed_run(bound, "late")
    assert printed(run) == NO_CREDENTIALS
    # The role is made and the ServiceAccount annotated (iam bind) after the pod ran.
    bound.scenario.bind(bound.namespace, "late", "lab-late")

    report = diagnosis(bound, run)

    assert_only(report, "pod-mutated", NO_CREDENTIALS)
    assert (
        "before the ServiceAccount's role was set at"
        in (report["checks"]["pod-mutated"]["evidence"])
    )
    # The rest of the chain is sound: a pod created now would read.
    assert report["checks"]["sts-probe"]["status"] == "ok"


@pytest.fixture
def webhook_down(bound: Bound) -> Iterator[None]:
    """The lab's webhook scaled to nothing (its failurePolicy is the chart's Ignore); scaled
    back and ready afterwards."""
    scenario = bound.scenario
    deployment = ("deployment", WEBHOOK_CONFIGURATION, "-n", WEBHOOK_NAMESPACE)
    replicas = scenario.kubectl("get", *deployment, "-o", "jsonpath={.spec.replicas}")
    scenario.kubectl("scale", *deployment, "--replicas=0")
    try:
        deadline = time.monotonic() + 120
        while scenario.kubectl(
            "get", "endpointslices", "-n", WEBHOOK_NAMESPACE,
            "-l", f"kubernetes.io/service-name={WEBHOOK_CONFIGURATION}",
            "-o", "jsonpath={.items[*].endpoints[*].addresses}",
        ).strip():  # fmt: skip
            assert time.monotonic() < deadline, "the webhook's endpoints stayed"
            time.sleep(0.5)
        yield
    finally:
        scenario.kubectl("scale", *deployment, f"--replicas={replicas}")
        scenario.kubectl("rollout", "status", *deployment, "--timeout=180s")
        # Ready pods are not yet the API server's endpoints: wait until it mutates again.
        wait_mutating(scenario.env)


def test_a_webhook_that_is_down_fails_open_and_doctor_says_so(
    bound: Bound, webhook_down: None
) -> None:
    failure_policy = bound.scenario.kubectl(
        "get", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION,
        "-o", "jsonpath={.webhooks[0].failurePolicy}",
    )  # fmt: skip
    assert failure_policy == "Ignore"
    run = failed_run(bound)
    assert printed(run) == NO_CREDENTIALS

    report = diagnosis(bound, run)

    # Two things to do, so two failures: the webhook to start, and this pod to create again.
    assert report["failed"] == {"pod-mutated", "webhook-reachable"}, report["checks"]
    assert (
        "failurePolicy is Ignore (it failed open)" in (report["checks"]["pod-mutated"]["evidence"])
    )
    reachable = report["checks"]["webhook-reachable"]
    assert "the Service has no ready endpoints" in reachable["evidence"]
    assert NO_CREDENTIALS in reachable["symptom"]


def test_a_token_file_a_non_root_user_cannot_read_fails_token_readable(bound: Bound) -> None:
    # A hardened token volume (0600, as some policies require) and containers of two users:
    # the kubelet cannot give the file to both, so it stays root's.
    sidecar = {
        "name": "sidecar",
        "image": bound.scenario.env["LAB_IMAGE"],
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", "pass"],
        "securityContext": {"runAsUser": 2000},
    }
    run = failed_run(
        bound,
        securityContext={"runAsUser": 1000, "runAsNonRoot": True},
        containers=[sidecar],
        volumes=[HARDENED_TOKEN_VOLUME],
    )
    assert printed(run) == f"PermissionError: [Errno 13] Permission denied: '{TOKEN_PATH}'"

    report = diagnosis(bound, run)

    assert_only(report, "token-readable", "PermissionError: [Errno 13] Permission denied")
    evidence = report["checks"]["token-readable"]["evidence"]
    assert "mode 0600 owner 0:0" in evidence
    assert "container 'reader' uid 1000" in evidence


def test_static_keys_in_the_pods_env_shadow_the_role_and_fail_credential_shadowing(
    bound: Bound,
) -> None:
    keys = [
        {"name": "AWS_ACCESS_KEY_ID", "value": "AKIAIOSFODNN7EXAMPLE"},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "lab-static-secret"},
    ]
    # The pod's SDK takes the keys over the injected role: the credentials' source says so.
    run = bound.scenario.run_pod(
        bound.namespace,
        "s3-reader",
        ["python3", "-c", "import boto3; print(boto3.Session().get_credentials().method)"],
        keys,
    )
    assert (run.phase, run.output.strip()) == ("Succeeded", "env")

    report = diagnosis(bound, run)

    assert_only(report, "credential-shadowing", "the SDK signs with the static keys")
    evidence = report["checks"]["credential-shadowing"]["evidence"]
    assert "container 'reader' sets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in evidence
    assert "lab-static-secret" not in str(report["checks"])
    assert report["checks"]["sts-probe"]["status"] == "ok"
