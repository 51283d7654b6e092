"""Edge rules of the mutation core: Windows detection, path cleaning, jitter, purity."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from irsa_webhook.config import MutationSettings
from irsa_webhook.identity import Identity, Mode
from irsa_webhook.mutation import MutationResult, _clean_path, is_windows, mutate_pod

WINDOWS = {"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}


def required_terms(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": list(term)} for term in terms]
                }
            }
        }
    }


@pytest.mark.parametrize(
    ("spec", "windows"),
    [
        pytest.param({}, False, id="nothing"),
        pytest.param({"os": {"name": "windows"}}, True, id="os-name"),
        pytest.param({"os": {"name": "linux"}}, False, id="os-linux"),
        pytest.param({"os": None}, False, id="os-null"),
        pytest.param({"nodeSelector": {"kubernetes.io/os": "windows"}}, True, id="node-selector"),
        pytest.param(
            {"nodeSelector": {"beta.kubernetes.io/os": "windows"}}, True, id="beta-node-selector"
        ),
        pytest.param(
            {"nodeSelector": {"kubernetes.io/os": "Windows"}},
            False,
            id="selector-is-case-sensitive",
        ),
        pytest.param({"nodeSelector": {"kubernetes.io/os": "linux"}}, False, id="selector-linux"),
        pytest.param(
            {"nodeSelector": {"node.kubernetes.io/windows-build": "10.0.20348"}},
            False,
            id="other-label",
        ),
        pytest.param(required_terms([WINDOWS]), True, id="affinity-windows-only"),
        pytest.param(
            required_terms([{**WINDOWS, "key": "beta.kubernetes.io/os"}]),
            True,
            id="affinity-beta-label",
        ),
        pytest.param(
            required_terms(
                [WINDOWS, {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
            ),
            True,
            id="affinity-windows-and-arch",
        ),
        pytest.param(required_terms([WINDOWS], [WINDOWS]), True, id="affinity-every-term-windows"),
        pytest.param(
            required_terms([WINDOWS], [{**WINDOWS, "values": ["linux"]}]),
            False,
            id="affinity-or-linux",
        ),
        pytest.param(
            required_terms([{**WINDOWS, "values": ["windows", "linux"]}]),
            False,
            id="affinity-either-os",
        ),
        pytest.param(
            required_terms([{**WINDOWS, "operator": "NotIn"}]), False, id="affinity-not-in"
        ),
        pytest.param(required_terms([]), False, id="affinity-empty-term"),
        pytest.param(required_terms(), False, id="affinity-no-terms"),
        pytest.param(
            {
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 1, "preference": {"matchExpressions": [WINDOWS]}}
                        ]
                    }
                }
            },
            False,
            id="affinity-only-preferred",
        ),
    ],
)
def test_windows_pods_are_recognised_by_os_selectors_and_required_affinity(
    spec: dict[str, Any], windows: bool
) -> None:
    assert is_windows(spec) is windows


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("/var/run/secrets/token", "/var/run/secrets/token"),
        ("/var/run//secrets/token", "/var/run/secrets/token"),
        ("/var/run/secrets/", "/var/run/secrets"),
        ("//var/run", "/var/run"),
        ("///var/run", "/var/run"),
        ("//", "/"),
        ("/", "/"),
        ("/a/./b/../c/token", "/a/c/token"),
        ("/../a", "/a"),
        ("/a/b/../../..", "/"),
        ("a/../..", ".."),
        ("./a", "a"),
        ("", "."),
    ],
)
def test_clean_path_follows_go_path_clean(path: str, cleaned: str) -> None:
    assert _clean_path(path) == cleaned


IRSA = Identity(
    Mode.STS_WEB_IDENTITY,
    "arn:aws:iam::123456789012:role/r",
    "sts.amazonaws.com",
    False,
    86400,
    "service-account",
)
CC = Identity(
    Mode.CONTAINER_CREDENTIALS, "", "pods.eks.amazonaws.com", False, 86400, "container-credentials"
)
SETTINGS = MutationSettings()


def a_pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "annotations": annotations or {}},
        "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "app", "image": "a"}, {"name": "skip-me", "image": "s"}],
        },
    }


def mutated(pod: dict[str, Any], result: MutationResult) -> dict[str, Any]:
    patched: dict[str, Any] = jsonpatch.apply_patch(pod, result.patch)
    return patched


def token_expiration(pod: dict[str, Any]) -> int:
    source = pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    return int(source["expirationSeconds"])


def test_container_credentials_jitter_draws_from_22_to_24_hours() -> None:
    calls: list[tuple[int, int]] = []

    def random_int(low: int, high: int) -> int:
        calls.append((low, high))
        return 80123

    pod = a_pod()
    result = mutate_pod(pod, CC, SETTINGS, random_int)

    assert calls == [(79200, 86400)]
    assert token_expiration(mutated(pod, result)) == 80123
    assert result.token_expiration == 80123


@pytest.mark.parametrize(
    ("identity", "annotations", "expected"),
    [
        pytest.param(IRSA, {}, 86400, id="irsa-one-day-is-not-jittered"),
        pytest.param(
            CC, {"eks.amazonaws.com/token-expiration": "86399"}, 86399, id="cc-other-value"
        ),
        pytest.param(
            CC, {"eks.amazonaws.com/token-expiration": "86400"}, 1, id="cc-explicit-one-day"
        ),
    ],
)
def test_only_a_container_credentials_one_day_token_is_jittered(
    identity: Identity, annotations: dict[str, str], expected: int
) -> None:
    pod = a_pod(annotations)
    result = mutate_pod(pod, identity, SETTINGS, lambda low, high: 1)

    assert token_expiration(mutated(pod, result)) == expected


def test_mutation_leaves_its_input_alone_and_patches_only_what_it_changes() -> None:
    pod = a_pod({"eks.amazonaws.com/skip-containers": "skip-me"})
    before = copy.deepcopy(pod)

    result = mutate_pod(pod, IRSA, SETTINGS, lambda low, high: low)

    assert pod == before
    # The first three levels of every path: which list or container each operation touches.
    touched = {"/".join(operation["path"].split("/")[:4]) for operation in result.patch}
    assert touched == {"/spec/volumes", "/spec/initContainers/0", "/spec/containers/0"}
    assert result.mutated == ["init", "app"]
    assert result.skipped == ["skip-me"]
