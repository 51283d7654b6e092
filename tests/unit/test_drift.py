"""What a stored pod lacks of the webhook's injection (the reconciler's pure core), table-driven."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from irsa_webhook.admission import ReviewRequest
from irsa_webhook.config import MutationSettings
from irsa_webhook.decision import Sources, decide
from irsa_webhook.drift import (
    CREDENTIALS_ENV,
    POD_IDENTITY_LABEL,
    REGION_OR_STS_ENV,
    ROLE_CHANGED,
    TOKEN_MOUNT,
    TOKEN_VOLUME,
    Gap,
    Owner,
    describe,
    event_name,
    find_gap,
    owner_of,
)
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ConfigMapMappings,
    ContainerCredentialsConfig,
    Mode,
    ServiceAccountEntry,
    parse_config_map,
    parse_container_credentials,
    parse_service_account,
)

SETTINGS = MutationSettings()
ROLE = "arn:aws:iam::111122223333:role/app"
OTHER_ROLE = "arn:aws:iam::111122223333:role/old"
ANNOTATED = parse_service_account({"eks.amazonaws.com/role-arn": ROLE}, SETTINGS)
UNANNOTATED = parse_service_account({}, SETTINGS)
MISSING_ALL = (TOKEN_VOLUME, CREDENTIALS_ENV, TOKEN_MOUNT)


def pod(**spec: Any) -> dict[str, Any]:
    metadata = spec.pop("metadata", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "app-1",
            "namespace": "team",
            "uid": "0f1e2d3c",
            "creationTimestamp": "2026-12-01T20:00:00Z",
            **metadata,
        },
        "spec": {
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": "app:1"}],
            **spec,
        },
    }


def sources(
    entry: ServiceAccountEntry | None = ANNOTATED,
    config_map: ConfigMapMappings = EMPTY_CONFIG_MAP,
    container_credentials: ContainerCredentialsConfig = EMPTY_CONTAINER_CREDENTIALS,
) -> Any:
    def lookup(namespace: str, name: str) -> Sources:
        assert (namespace, name) == ("team", "app")
        return Sources(entry, config_map, container_credentials)

    return lookup


def admitted(stored: dict[str, Any], settings: MutationSettings = SETTINGS, **kwargs: Any) -> Any:
    """The pod as the webhook would have stored it, given these sources at creation."""
    gap_free = copy.deepcopy(stored)
    request = ReviewRequest("admission.k8s.io/v1", "AdmissionReview", "", "team", gap_free, "app")
    decision = decide(request, sources(**kwargs)("team", "app"), settings, lambda a, b: b)
    return jsonpatch.apply_patch(gap_free, decision.patch)


CONFIG_MAP, _ = parse_config_map(f'{{"team/app": {{"RoleARN": "{ROLE}"}}}}', SETTINGS)
CONTAINER_CREDENTIALS = parse_container_credentials(
    '{"identities": [{"namespace": "team", "serviceAccount": "app"}]}'
)
SKIP_APP = {"annotations": {"eks.amazonaws.com/skip-containers": "app"}}


@pytest.mark.parametrize(
    ("stored", "source", "reasons"),
    [
        pytest.param(pod(), sources(), MISSING_ALL, id="created-without-the-webhook"),
        pytest.param(admitted(pod()), sources(), None, id="admitted-by-the-webhook"),
        pytest.param(pod(), sources(UNANNOTATED), None, id="service-account-without-a-role"),
        pytest.param(pod(), sources(None), None, id="service-account-not-found"),
        pytest.param(
            pod(metadata={"labels": {"eks.amazonaws.com/skip-pod-identity-webhook": "true"}}),
            sources(),
            None,
            id="skip-label",
        ),
        pytest.param(
            pod(metadata={"deletionTimestamp": "2026-12-01T20:05:00Z"}),
            sources(),
            None,
            id="being-deleted",
        ),
        pytest.param(
            pod(), sources(UNANNOTATED, config_map=CONFIG_MAP), MISSING_ALL, id="config-map-entry"
        ),
        pytest.param(
            admitted(pod(), entry=UNANNOTATED, config_map=CONFIG_MAP),
            sources(UNANNOTATED, config_map=CONFIG_MAP),
            None,
            id="admitted-with-the-config-map-entry",
        ),
        pytest.param(
            pod(),
            sources(UNANNOTATED, container_credentials=CONTAINER_CREDENTIALS),
            (*MISSING_ALL, POD_IDENTITY_LABEL),
            id="container-credentials",
        ),
        pytest.param(
            admitted(pod(), container_credentials=CONTAINER_CREDENTIALS),
            sources(container_credentials=CONTAINER_CREDENTIALS),
            None,
            id="admitted-with-container-credentials",
        ),
        pytest.param(
            admitted(pod()),
            sources(container_credentials=CONTAINER_CREDENTIALS),
            (TOKEN_VOLUME, CREDENTIALS_ENV, TOKEN_MOUNT, POD_IDENTITY_LABEL),
            id="moved-to-container-credentials-after-creation",
        ),
        pytest.param(
            pod(metadata=SKIP_APP), sources(), (TOKEN_VOLUME,), id="skipped-container-needs-none"
        ),
        pytest.param(
            admitted(pod(metadata=SKIP_APP)), sources(), None, id="admitted-with-skip-containers"
        ),
        pytest.param(
            admitted(
                pod(),
                entry=parse_service_account({"eks.amazonaws.com/role-arn": OTHER_ROLE}, SETTINGS),
            ),
            sources(),
            (ROLE_CHANGED,),
            id="role-changed-since-creation",
        ),
        pytest.param(
            pod(
                containers=[
                    {
                        "name": "app",
                        "env": [{"name": "AWS_ROLE_ARN", "value": OTHER_ROLE}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
                volumes=[
                    {
                        "name": "aws-iam-token",
                        "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                    }
                ],
            ),
            sources(),
            (TOKEN_MOUNT, ROLE_CHANGED),
            id="a-role-the-user-set-differs-too",
        ),
    ],
)
def test_the_gap_is_what_the_webhook_would_still_inject(
    stored: dict[str, Any], source: Any, reasons: tuple[str, ...] | None
) -> None:
    gap = find_gap(stored, source, SETTINGS)
    assert (gap.reasons if gap else None) == reasons


def test_a_region_flag_added_after_creation_is_reported_as_region_env() -> None:
    regional = MutationSettings(aws_default_region="eu-west-1")
    gap = find_gap(admitted(pod()), sources(), regional)
    assert gap is not None
    assert gap.reasons == (REGION_OR_STS_ENV,)


def test_the_gap_names_the_pod_its_identity_and_its_owner() -> None:
    stored = pod(
        metadata={
            "labels": {"pod-template-hash": "5d8f7"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f7", "controller": True}],
        }
    )
    gap = find_gap(stored, sources(), SETTINGS)
    assert gap == Gap(
        namespace="team",
        pod="app-1",
        uid="0f1e2d3c",
        created="2026-12-01T20:00:00Z",
        service_account="app",
        role_arn=ROLE,
        mode=Mode.STS_WEB_IDENTITY,
        reasons=MISSING_ALL,
        owner=Owner("Deployment", "web"),
    )


@pytest.mark.parametrize(
    ("metadata", "owner"),
    [
        pytest.param({}, Owner("Pod", "p"), id="bare"),
        pytest.param(
            {
                "labels": {"pod-template-hash": "abc12"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "web-abc12", "controller": True}
                ],
            },
            Owner("Deployment", "web"),
            id="deployment-through-its-replicaset",
        ),
        pytest.param(
            {"ownerReferences": [{"kind": "ReplicaSet", "name": "web", "controller": True}]},
            Owner("ReplicaSet", "web"),
            id="replicaset-made-by-hand",
        ),
        pytest.param(
            {
                "labels": {"pod-template-hash": "zzz"},
                "ownerReferences": [
                    {"kind": "ReplicaSet", "name": "web-abc12", "controller": True}
                ],
            },
            Owner("ReplicaSet", "web-abc12"),
            id="hash-label-not-the-name-suffix",
        ),
        pytest.param(
            {"ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": True}]},
            Owner("StatefulSet", "db"),
            id="statefulset",
        ),
        pytest.param(
            {"ownerReferences": [{"kind": "DaemonSet", "name": "agent", "controller": True}]},
            Owner("DaemonSet", "agent"),
            id="daemonset",
        ),
        pytest.param(
            {"ownerReferences": [{"kind": "Job", "name": "backup-29", "controller": True}]},
            Owner("Job", "backup-29"),
            id="job",
        ),
        pytest.param(
            {"ownerReferences": [{"kind": "Deployment", "name": "x"}]},
            Owner("Pod", "p"),
            id="a-reference-that-is-not-the-controller",
        ),
    ],
)
def test_the_owner_comes_from_the_controller_reference(
    metadata: dict[str, Any], owner: Owner
) -> None:
    assert owner_of({"name": "p", **metadata}) == owner


def gap_of(owner: Owner, reasons: tuple[str, ...] = MISSING_ALL) -> Gap:
    return Gap("team", "app-1", "uid-1", "", "app", ROLE, Mode.STS_WEB_IDENTITY, reasons, owner)


@pytest.mark.parametrize(
    ("owner", "advice"),
    [
        (Owner("Deployment", "web"), "kubectl rollout restart -n team deployment/web"),
        (Owner("StatefulSet", "db"), "kubectl rollout restart -n team statefulset/db"),
        (Owner("DaemonSet", "agent"), "kubectl rollout restart -n team daemonset/agent"),
        (Owner("Job", "backup"), "delete Job backup and create it again"),
        (Owner("Pod", "app-1"), "It has no owner: delete it and create it again."),
        (Owner("Rollout", "canary"), "Restart its owner Rollout canary"),
    ],
)
def test_the_event_says_what_is_missing_and_how_to_fix_it(owner: Owner, advice: str) -> None:
    message = describe(gap_of(owner))
    assert "lacks the token volume, the credential variables and the token mount" in message
    assert f"role {ROLE}" in message
    assert advice in message


def test_a_changed_role_is_said_as_such() -> None:
    message = describe(gap_of(Owner("Deployment", "web"), (ROLE_CHANGED,)))
    assert "another AWS_ROLE_ARN than its ServiceAccount names now" in message
    assert "lacks" not in message


def test_the_event_name_is_stable_per_pod_and_reasons_and_valid_for_a_long_pod_name() -> None:
    owner = Owner("Pod", "p")
    assert event_name(gap_of(owner)) == event_name(gap_of(owner))
    assert event_name(gap_of(owner)) != event_name(gap_of(owner, (ROLE_CHANGED,)))
    long = Gap("team", "p" * 253, "u", "", "app", ROLE, Mode.STS_WEB_IDENTITY, MISSING_ALL, owner)
    assert len(event_name(long)) <= 253
