"""doctor's cluster-local checks, as pure functions of the objects the API server stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonpatch
import pytest

from irsa_webhook.config import MutationSettings
from irsa_webhook.decision import Sources
from irsa_webhook.doctor.pod_checks import (
    annotation_set_at,
    check_credential_shadowing,
    check_pod_mutated,
    check_service_account,
    check_token_readable,
)
from irsa_webhook.doctor.report import Status
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    parse_service_account,
    resolve_identity,
)
from irsa_webhook.injection_check import InjectionCheck, check_injection
from irsa_webhook.registration import WebhookRegistration

SETTINGS = MutationSettings()
ROLE = "arn:aws:iam::123456789012:role/reader"
REGISTRATION = WebhookRegistration(
    "pod-identity-webhook.amazonaws.com",
    "Ignore",
    {
        "matchExpressions": [
            {"key": "eks.amazonaws.com/skip-pod-identity-webhook", "operator": "DoesNotExist"}
        ]
    },
    {},
)


def sources(annotations: dict[str, str]) -> Sources:
    return Sources(
        parse_service_account(annotations, SETTINGS), EMPTY_CONFIG_MAP, EMPTY_CONTAINER_CREDENTIALS
    )


def service_account_check(annotations: dict[str, str] | None) -> Any:
    entry = parse_service_account(annotations, SETTINGS) if annotations is not None else None
    identity = resolve_identity(
        "team-a", "reader", entry, EMPTY_CONFIG_MAP, EMPTY_CONTAINER_CREDENTIALS, SETTINGS
    )
    stored = None if annotations is None else {"metadata": {"annotations": annotations}}
    return check_service_account("team-a", "reader", stored, entry, identity, SETTINGS)


def a_pod(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"serviceAccountName": "reader", "containers": [{"name": "app"}]}
    body.update(spec)
    return {
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "creationTimestamp": "2026-12-01T10:00:00Z",
        },
        "spec": body,
    }


def mutated(pod: dict[str, Any]) -> tuple[dict[str, Any], InjectionCheck]:
    found = sources({"eks.amazonaws.com/role-arn": ROLE})
    stored = jsonpatch.apply_patch(pod, list(check_injection(pod, found, SETTINGS).patch))
    return stored, check_injection(stored, found, SETTINGS)


# --- service-account ----------------------------------------------------------------------------


def test_a_service_account_with_a_role_arn_passes_with_the_role_as_evidence() -> None:
    result = service_account_check({"eks.amazonaws.com/role-arn": ROLE})

    assert result.status is Status.OK
    assert ROLE in result.evidence
    assert "audience sts.amazonaws.com" in result.evidence


@pytest.mark.parametrize(
    ("annotations", "evidence", "symptom"),
    [
        (None, "team-a/reader not found", "not found"),
        ({}, "no eks.amazonaws.com/role-arn annotation", "NoCredentialsError"),
        (
            {"eks.amazon.com/role-arn": ROLE},
            "did you mean eks.amazonaws.com/role-arn",
            "NoCredentialsError",
        ),
        ({"eks.amazonaws.com/role-arn": "reader"}, "not arn:<partition>", "Request ARN is invalid"),
        (
            {"eks.amazonaws.com/role-arn": "arn:aws:iam::12345:role/x"},
            "not arn:",
            "Request ARN is invalid",
        ),
    ],
)
def test_a_broken_service_account_fails_with_the_pods_error(
    annotations: dict[str, str] | None, evidence: str, symptom: str
) -> None:
    result = service_account_check(annotations)

    assert result.status is Status.FAIL
    assert evidence in result.evidence
    assert symptom in result.symptom
    assert result.fix


def test_a_near_miss_next_to_a_valid_role_is_a_warning() -> None:
    result = service_account_check(
        {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/token-expiraton": "3600"}
    )
    assert result.status is Status.WARN


# --- pod-mutated ----------------------------------------------------------------------------------


def test_a_mutated_pod_passes() -> None:
    stored, injection = mutated(a_pod())

    result = check_pod_mutated(stored, injection, REGISTRATION, {}, None)

    assert result.status is Status.OK
    assert f"AWS_ROLE_ARN={ROLE}" in result.evidence


def test_a_pod_created_before_the_annotation_says_so_with_both_times() -> None:
    pod = a_pod()
    injection = check_injection(pod, sources({"eks.amazonaws.com/role-arn": ROLE}), SETTINGS)
    annotated = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)

    result = check_pod_mutated(pod, injection, REGISTRATION, {}, annotated)

    assert result.status is Status.FAIL
    assert "missing pod: volume aws-iam-token; container 'app': env AWS_ROLE_ARN" in result.evidence
    assert (
        "created at 2026-12-01T10:00:00+00:00, before the ServiceAccount's role was set at "
        "2026-12-01T11:00:00+00:00" in result.evidence
    )
    assert "NoCredentialsError" in result.symptom
    assert "delete the pod" in result.fix


@pytest.mark.parametrize(
    ("labels", "registration", "namespace_labels", "reason"),
    [
        (
            {"eks.amazonaws.com/skip-pod-identity-webhook": "true"},
            REGISTRATION,
            {},
            "carries the label",
        ),
        ({}, None, {}, "no MutatingWebhookConfiguration"),
        (
            {},
            WebhookRegistration("w", "Fail", {"matchLabels": {"irsa": "on"}}, {}),
            {},
            "objectSelector",
        ),
        (
            {},
            WebhookRegistration("w", "Fail", {}, {"matchLabels": {"irsa": "on"}}),
            {},
            "namespaceSelector",
        ),
        ({}, REGISTRATION, {}, "failed open"),
        ({}, WebhookRegistration("w", "Fail", {}, {}), {}, "answered without injecting"),
    ],
)
def test_a_pod_the_webhook_missed_names_the_likely_reason(
    labels: dict[str, str],
    registration: WebhookRegistration | None,
    namespace_labels: dict[str, str],
    reason: str,
) -> None:
    pod = a_pod()
    pod["metadata"]["labels"] = labels
    injection = check_injection(pod, sources({"eks.amazonaws.com/role-arn": ROLE}), SETTINGS)

    result = check_pod_mutated(pod, injection, registration, namespace_labels, None)

    assert result.status is Status.FAIL
    assert reason in result.evidence


def test_a_missed_pod_whose_service_account_mutates_now_was_created_too_early() -> None:
    pod = a_pod()
    injection = check_injection(pod, sources({"eks.amazonaws.com/role-arn": ROLE}), SETTINGS)

    result = check_pod_mutated(pod, injection, REGISTRATION, {}, None, mutates_now=True)

    assert result.status is Status.FAIL
    assert "the webhook mutates a new pod of this ServiceAccount now (dry-run)" in result.evidence
    assert "created before the ServiceAccount's role was set" in result.evidence
    assert "delete the pod" in result.fix


def test_a_pod_of_an_unannotated_service_account_is_not_judged() -> None:
    pod = a_pod()
    result = check_pod_mutated(
        pod, check_injection(pod, sources({}), SETTINGS), REGISTRATION, {}, None
    )
    assert result.status is Status.SKIPPED


def test_the_annotation_time_comes_from_managed_fields() -> None:
    account = {
        "metadata": {
            "managedFields": [
                {"time": "2026-12-01T09:00:00Z", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
                {
                    "time": "2026-12-01T11:00:00Z",
                    "fieldsV1": {
                        "f:metadata": {"f:annotations": {"f:eks.amazonaws.com/role-arn": {}}}
                    },
                },
            ]
        }
    }
    assert annotation_set_at(account, "eks.amazonaws.com/role-arn") == datetime(
        2026, 12, 1, 11, 0, tzinfo=UTC
    )
    assert annotation_set_at({}, "eks.amazonaws.com/role-arn") is None


# --- token-readable -------------------------------------------------------------------------------


def readable(**spec: Any) -> Any:
    stored, injection = mutated(a_pod(**spec))
    return check_token_readable(stored, injection, SETTINGS)


TOKEN_TABLE = [
    # (pod spec, status, evidence) with the kubelet's (1.19+) mode and owner rules
    ({}, Status.OK, "mode 0644 owner 0:0"),
    ({"securityContext": {"runAsUser": 1000}}, Status.OK, "mode 0600 owner 1000:0"),
    ({"securityContext": {"fsGroup": 2000}}, Status.OK, "mode 0640 owner 0:2000"),
    (
        {
            "securityContext": {"runAsUser": 1000},
            "containers": [
                {"name": "app"},
                {"name": "sidecar", "securityContext": {"runAsUser": 2000}},
            ],
            "volumes": [
                {
                    "name": "aws-iam-token",
                    "projected": {
                        "defaultMode": 0o600,
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": "sts.amazonaws.com",
                                    "path": "token",
                                }
                            }
                        ],
                    },
                }
            ],
        },
        Status.FAIL,
        "mode 0600 owner 0:0",
    ),
    (
        {
            "containers": [{"name": "app", "securityContext": {"runAsNonRoot": True}}],
            "volumes": [
                {
                    "name": "aws-iam-token",
                    "projected": {
                        "defaultMode": 0o400,
                        "sources": [{"serviceAccountToken": {"path": "token"}}],
                    },
                }
            ],
        },
        Status.FAIL,
        "uid image default",
    ),
    (
        {
            "volumes": [
                {
                    "name": "aws-iam-token",
                    "projected": {
                        "defaultMode": 0o400,
                        "sources": [{"serviceAccountToken": {"path": "token"}}],
                    },
                }
            ]
        },
        Status.WARN,
        "readable only if the image's user or group fits",
    ),
    (
        {
            "securityContext": {"fsGroup": 3000},
            "containers": [
                {"name": "a", "securityContext": {"runAsUser": 1}},
                {"name": "b", "securityContext": {"runAsUser": 2}},
            ],
            "volumes": [
                {
                    "name": "aws-iam-token",
                    "projected": {
                        "defaultMode": 0o400,
                        "sources": [{"serviceAccountToken": {"path": "token"}}],
                    },
                }
            ],
        },
        Status.OK,
        "mode 0640 owner 0:3000",
    ),
    (
        {
            "containers": [
                {
                    "name": "a",
                    "securityContext": {"runAsUser": 0, "capabilities": {"drop": ["ALL"]}},
                },
                {"name": "b", "securityContext": {"runAsUser": 5}},
            ],
            "volumes": [
                {
                    "name": "aws-iam-token",
                    "projected": {
                        "defaultMode": 0o600,
                        "sources": [{"serviceAccountToken": {"path": "token"}}],
                    },
                }
            ],
        },
        Status.FAIL,
        "container 'b' uid 5",
    ),
]


@pytest.mark.parametrize(("spec", "status", "evidence"), TOKEN_TABLE)
def test_token_readable_follows_the_kubelets_mode_and_owner(
    spec: dict[str, Any], status: Status, evidence: str
) -> None:
    result = readable(**spec)

    assert result.status is status, result.evidence
    assert evidence in result.evidence
    if status is Status.FAIL:
        assert "permission denied" in result.symptom
        assert "fsGroup" in result.fix


def test_token_readable_is_skipped_for_a_pod_without_the_token_volume() -> None:
    pod = a_pod()
    injection = check_injection(pod, sources({"eks.amazonaws.com/role-arn": ROLE}), SETTINGS)
    assert check_token_readable(pod, injection, SETTINGS).status is Status.SKIPPED


# --- credential-shadowing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "status", "evidence"),
    [
        ({"name": "app"}, Status.OK, "no static keys"),
        (
            {
                "name": "app",
                "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": "AKIA"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {}},
                ],
            },
            Status.FAIL,
            "sets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
        ),
        (
            {"name": "app", "env": [{"name": "AWS_PROFILE", "value": "dev"}]},
            Status.WARN,
            "sets AWS_PROFILE",
        ),
        (
            {"name": "app", "envFrom": [{"secretRef": {"name": "keys"}}]},
            Status.WARN,
            "takes env from secret 'keys'",
        ),
        (
            {"name": "app", "volumeMounts": [{"name": "c", "mountPath": "/root/.aws"}]},
            Status.WARN,
            "mounts /root/.aws",
        ),
    ],
)
def test_credential_shadowing_names_what_the_sdk_reads_before_web_identity(
    container: dict[str, Any], status: Status, evidence: str
) -> None:
    result = check_credential_shadowing(a_pod(containers=[container]), [])

    assert result.status is status
    assert evidence in result.evidence


def test_static_keys_in_a_skipped_container_do_not_count() -> None:
    container = {"name": "legacy", "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIA"}]}
    result = check_credential_shadowing(a_pod(containers=[container]), ["legacy"])
    assert result.status is Status.OK
