"""What the webhook would inject into a stored pod now, against what the pod has."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from irsa_webhook.config import MutationSettings
from irsa_webhook.decision import Sources
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    parse_config_map,
    parse_service_account,
)
from irsa_webhook.injection_check import (
    InjectionState,
    check_injection,
    describe_patch,
    selector_matches,
)

SETTINGS = MutationSettings()
ROLE = "arn:aws:iam::123456789012:role/reader"
OTHER_ROLE = "arn:aws:iam::123456789012:role/writer"


def sources(role_arn: str | None) -> Sources:
    annotations = {"eks.amazonaws.com/role-arn": role_arn} if role_arn else {}
    return Sources(
        entry=parse_service_account(annotations, SETTINGS),
        config_map=EMPTY_CONFIG_MAP,
        container_credentials=EMPTY_CONTAINER_CREDENTIALS,
    )


def a_pod(**annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "team-a", "annotations": annotations},
        "spec": {
            "serviceAccountName": "reader",
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "app"}, {"name": "sidecar"}],
        },
    }


def as_stored(pod: dict[str, Any], role_arn: str) -> dict[str, Any]:
    """The pod after the webhook mutated it for ``role_arn``, as the API server stores it."""
    result = check_injection(pod, sources(role_arn), SETTINGS)
    return jsonpatch.apply_patch(pod, list(result.patch))  # type: ignore[no-any-return]


def test_a_pod_the_webhook_mutated_is_as_expected() -> None:
    result = check_injection(as_stored(a_pod(), ROLE), sources(ROLE), SETTINGS)

    assert result.state is InjectionState.AS_EXPECTED
    assert result.injected_before
    assert result.identity is not None
    assert result.identity.role_arn == ROLE


def test_a_pod_created_before_its_service_account_was_annotated_misses_everything() -> None:
    result = check_injection(a_pod(), sources(ROLE), SETTINGS)

    assert result.state is InjectionState.MISSING
    assert not result.injected_before
    everything = "env AWS_ROLE_ARN, env AWS_WEB_IDENTITY_TOKEN_FILE, mount aws-iam-token"
    assert result.missing == (
        "pod: volume aws-iam-token",
        f"container 'setup': {everything}",
        f"container 'app': {everything}",
        f"container 'sidecar': {everything}",
    )


def test_a_container_added_after_the_mutation_is_the_only_one_missing() -> None:
    pod = as_stored(a_pod(), ROLE)
    pod["spec"]["containers"].append({"name": "late"})

    result = check_injection(pod, sources(ROLE), SETTINGS)

    assert result.state is InjectionState.MISSING
    assert result.missing == (
        "container 'late': env AWS_ROLE_ARN, env AWS_WEB_IDENTITY_TOKEN_FILE, mount aws-iam-token",
    )


def test_a_role_changed_on_the_service_account_after_creation_is_a_stale_role() -> None:
    result = check_injection(as_stored(a_pod(), ROLE), sources(OTHER_ROLE), SETTINGS)

    assert result.state is InjectionState.STALE_ROLE
    assert result.stale[0] == (
        f"container 'setup' has AWS_ROLE_ARN {ROLE!r}; the webhook would inject {OTHER_ROLE!r} now"
    )
    assert len(result.stale) == 3


def test_an_unannotated_service_account_expects_nothing() -> None:
    result = check_injection(a_pod(), sources(None), SETTINGS)

    assert result.state is InjectionState.NOT_EXPECTED
    assert result.identity is None
    assert result.patch == ()


def test_containers_named_in_skip_containers_are_not_missing() -> None:
    pod = a_pod(**{"eks.amazonaws.com/skip-containers": "sidecar,setup"})
    stored = as_stored(pod, ROLE)

    result = check_injection(stored, sources(ROLE), SETTINGS)

    assert result.state is InjectionState.AS_EXPECTED
    assert sorted(result.skipped) == ["setup", "sidecar"]
    assert "env" not in stored["spec"]["containers"][1]


def test_a_config_map_entry_is_an_identity_like_an_annotation() -> None:
    config_map, _ = parse_config_map(f'{{"team-a/reader": {{"RoleARN": "{ROLE}"}}}}', SETTINGS)
    from_map = Sources(None, config_map, EMPTY_CONTAINER_CREDENTIALS)

    assert check_injection(a_pod(), from_map, SETTINGS).state is InjectionState.MISSING
    stored = as_stored(a_pod(), ROLE)
    assert check_injection(stored, from_map, SETTINGS).state is InjectionState.AS_EXPECTED


def test_the_webhooks_settings_decide_what_is_expected() -> None:
    regional = MutationSettings(aws_default_region="eu-west-1")
    stored = as_stored(a_pod(), ROLE)

    result = check_injection(stored, sources(ROLE), regional)

    assert result.state is InjectionState.MISSING
    assert result.missing[0] == "container 'setup': env AWS_DEFAULT_REGION, env AWS_REGION"


def test_a_patch_that_creates_lists_is_described_by_their_items() -> None:
    patch: list[dict[str, Any]] = [
        {"op": "add", "path": "/spec", "value": {"volumes": [{"name": "aws-iam-token"}]}},
        {"op": "add", "path": "/metadata/labels/eks.amazonaws.com~1pod-identity", "value": "x"},
    ]
    assert describe_patch(patch, {}) == (
        "pod: volume aws-iam-token, label eks.amazonaws.com/pod-identity",
    )


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {}, True),
        ({}, {"a": "b"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}, {"skip": ""}, False),
        ({"matchExpressions": [{"key": "k", "operator": "Exists"}]}, {"k": "v"}, True),
        ({"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}, {}, False),
        ({"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}, {"k": "v"}, True),
        ({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]}]},
            {"k": "v"},
            False,
        ),
        (
            {"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]},
            {"k": "2"},
            False,
        ),
        (
            {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
            {"a": "1"},
            False,
        ),
    ],
)
def test_label_selectors_match_as_kubernetes_defines_them(
    selector: dict[str, Any] | None, labels: dict[str, str], matches: bool
) -> None:
    assert selector_matches(selector, labels) is matches
