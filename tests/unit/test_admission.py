"""The AdmissionReview envelope: what is refused (HTTP 400), what is let through, what we say."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from irsa_webhook.admission import (
    EnvelopeError,
    ReviewRequest,
    decode_review,
    encode_response,
)
from irsa_webhook.reasons import AdmissionWarning, Reason

UID = "0d6a3c6e-5d1b-4d5e-9f3a-6f7c1f0b2a11"
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "web-"},
    "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "nginx"}]},
}


def review(
    request: Any = None,
    api_version: str | None = "admission.k8s.io/v1",
    kind: str | None = "AdmissionReview",
) -> bytes:
    body: dict[str, Any] = {}
    if api_version is not None:
        body["apiVersion"] = api_version
    if kind is not None:
        body["kind"] = kind
    body["request"] = (
        {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "namespace": "blog",
            "object": POD,
        }
        if request is None
        else request
    )
    return orjson.dumps(body)


def pod_request(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": UID,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE",
        "namespace": "blog",
        "object": POD,
    }
    request.update(changes)
    return {key: value for key, value in request.items() if value is not None}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "empty body", id="empty"),
        pytest.param(b" \n\t", "empty body", id="whitespace"),
        pytest.param(b'{"request": ', "not valid JSON", id="broken-json"),
        pytest.param(b"\xff\xfe{}", "not valid JSON", id="invalid-utf8"),
        pytest.param(b"[]", "expected a JSON object", id="list"),
        pytest.param(b'"AdmissionReview"', "expected a JSON object", id="string"),
        pytest.param(b"null", "expected a JSON object", id="null"),
        pytest.param(b"{}", "has no request object", id="no-request"),
        pytest.param(review(request=[]), "has no request object", id="request-not-object"),
        pytest.param(
            review(api_version="admission.k8s.io/v2"), "apiVersion", id="wrong-api-version"
        ),
        pytest.param(review(api_version="v1"), "apiVersion", id="core-api-version"),
        pytest.param(review(kind="Pod"), "kind 'Pod' is not AdmissionReview", id="wrong-kind"),
        pytest.param(
            review(pod_request(object="a pod")), "request.object must be a Pod", id="object-string"
        ),
        pytest.param(
            review(pod_request(object=None)), "request.object must be a Pod", id="object-missing"
        ),
        pytest.param(review(pod_request(uid=5)), "request.uid must be a string", id="uid-number"),
        pytest.param(
            review(pod_request(namespace=["a"])), "request.namespace", id="namespace-list"
        ),
    ],
)
def test_a_body_that_is_not_a_usable_admission_review_is_a_400(body: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message) as raised:
        decode_review(body)

    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("pod_changes", "problem"),
    [
        ({"metadata": "web"}, "metadata must be an object"),
        (
            {"metadata": {"annotations": {"a": 1}}},
            "metadata.annotations must map strings to strings",
        ),
        ({"metadata": {"labels": ["a"]}}, "metadata.labels must map strings to strings"),
        ({"spec": []}, "spec must be an object"),
        ({"spec": {"serviceAccountName": 5}}, "spec.serviceAccountName must be a string"),
        ({"spec": {"nodeSelector": "windows"}}, "spec.nodeSelector must be an object"),
        ({"spec": {"os": "windows"}}, "spec.os must be an object"),
        ({"spec": {"containers": {"name": "a"}}}, "spec.containers must be a list of objects"),
        ({"spec": {"initContainers": ["a"]}}, "spec.initContainers must be a list of objects"),
        ({"spec": {"volumes": [None]}}, "spec.volumes must be a list of objects"),
        ({"spec": {"containers": [{"env": {"A": "1"}}]}}, "spec.containers[].env must be a list"),
        ({"spec": {"containers": [{"volumeMounts": ["x"]}]}}, "spec.containers[].volumeMounts"),
        # Names are looked up in sets: a list there once made the webhook answer 500.
        ({"spec": {"containers": [{"name": []}]}}, "spec.containers[].name must be a string"),
        ({"spec": {"initContainers": [{"name": {}}]}}, "spec.initContainers[].name must be"),
        ({"spec": {"volumes": [{"name": ["aws-iam-token"]}]}}, "spec.volumes[].name must be"),
        (
            {"spec": {"containers": [{"name": "a", "env": [{"name": ["AWS_ROLE_ARN"]}]}]}},
            "spec.containers[].env[].name must be a string",
        ),
        (
            {"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": {}}]}]}},
            "spec.containers[].volumeMounts[].name must be a string",
        ),
        (
            {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": []}
                    }
                }
            },
            "nodeSelectorTerms",
        ),
        (
            {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": "kubernetes.io/os"}]
                            }
                        }
                    }
                }
            },
            "nodeSelectorTerms",
        ),
    ],
)
def test_a_pod_with_fields_of_the_wrong_type_is_a_400_naming_the_field(
    pod_changes: dict[str, Any], problem: str
) -> None:
    pod = {**POD, **pod_changes}

    with pytest.raises(EnvelopeError, match=r"request\.object is not a valid Pod") as raised:
        decode_review(review(pod_request(object=pod)))

    assert problem in str(raised.value)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"operation": "UPDATE"}, id="update"),
        pytest.param({"operation": "DELETE", "object": None}, id="delete"),
        pytest.param({"operation": "CONNECT", "object": None}, id="connect"),
        pytest.param(
            {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}, id="deployment"
        ),
        pytest.param({"kind": {"group": "", "version": "v1", "kind": "Service"}}, id="service"),
        pytest.param(
            {"subResource": "ephemeralcontainers", "operation": "UPDATE"}, id="subresource"
        ),
        pytest.param({"subResource": "binding"}, id="binding-create"),
        pytest.param({"object": "not a pod", "operation": "UPDATE"}, id="update-with-junk-object"),
    ],
)
def test_anything_but_a_pod_create_is_allowed_without_a_pod(changes: dict[str, Any]) -> None:
    request = decode_review(review(pod_request(**changes)))

    assert request.pod is None
    assert request.uid == UID
    answer = orjson.loads(encode_response(request))
    assert answer["response"] == {"uid": UID, "allowed": True}


def test_a_request_without_kind_or_operation_is_treated_as_a_pod_create() -> None:
    request = decode_review(review(pod_request(kind=None, operation=None)))

    assert request.pod is not None


def test_the_request_namespace_overrides_the_pods_own() -> None:
    pod = {**POD, "metadata": {"name": "web-0", "namespace": "elsewhere"}}

    request = decode_review(review(pod_request(object=pod)))

    assert request.namespace == "blog"
    assert request.pod is not None
    assert request.pod["metadata"] == {"name": "web-0", "namespace": "elsewhere"}


@pytest.mark.parametrize(
    ("request_namespace", "pod_namespace", "expected"),
    [
        ("blog", None, "blog"),
        (None, "shop", "shop"),
        ("", "shop", "shop"),
        (None, None, "default"),
    ],
)
def test_the_namespace_comes_from_the_request_else_the_pod_else_default(
    request_namespace: str | None, pod_namespace: str | None, expected: str
) -> None:
    metadata = {"name": "web-0"} | ({} if pod_namespace is None else {"namespace": pod_namespace})
    body = pod_request(object={**POD, "metadata": metadata})
    body.pop("namespace")
    if request_namespace is not None:
        body["namespace"] = request_namespace

    request = decode_review(review(body))

    assert request.namespace == expected
    assert request.pod is not None
    assert request.pod["metadata"] == metadata


def test_decoding_never_changes_the_pod_it_was_given() -> None:
    pod = {**POD, "metadata": {"name": "web-0"}}
    body = review(pod_request(object=pod))

    request = decode_review(body)

    assert request.pod is not None
    assert "namespace" not in pod["metadata"]


@pytest.mark.parametrize(
    ("spec", "service_account"),
    [
        ({"serviceAccountName": "web"}, "web"),
        ({}, "default"),
        ({"serviceAccountName": ""}, "default"),
        ({"serviceAccount": "legacy"}, "default"),
    ],
)
def test_the_service_account_is_spec_service_account_name_or_default(
    spec: dict[str, Any], service_account: str
) -> None:
    request = decode_review(review(pod_request(object={**POD, "spec": spec})))

    assert request.service_account == service_account


@pytest.mark.parametrize(
    ("metadata", "name"),
    [
        ({"name": "web-0", "generateName": "web-"}, "web-0"),
        ({"generateName": "web-"}, "web-"),
        ({}, ""),
    ],
)
def test_the_pod_name_for_logs_falls_back_to_generate_name(
    metadata: dict[str, Any], name: str
) -> None:
    request = decode_review(review(pod_request(object={**POD, "metadata": metadata})))

    assert request.pod_name == name


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("admission.k8s.io/v1", "AdmissionReview"),
        ("admission.k8s.io/v1beta1", "AdmissionReview"),
        (None, "AdmissionReview"),
        (None, None),
    ],
)
def test_the_response_echoes_the_requests_type_meta_and_uid(
    api_version: str | None, kind: str | None
) -> None:
    request = decode_review(review(api_version=api_version, kind=kind))

    answer = orjson.loads(encode_response(request))

    assert answer.get("apiVersion") == api_version
    assert answer.get("kind") == kind
    assert ("apiVersion" in answer) == (api_version is not None)
    assert ("kind" in answer) == (kind is not None)
    assert answer["response"]["uid"] == UID


def test_a_patch_is_sent_as_base64_json_with_its_type() -> None:
    request = decode_review(review())
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]

    response = orjson.loads(encode_response(request, patch))["response"]

    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"], validate=True)) == patch


def test_no_patch_means_no_patch_fields_and_no_warnings_means_no_warnings_field() -> None:
    request = decode_review(review())

    response = orjson.loads(encode_response(request, [], []))["response"]

    assert response == {"uid": UID, "allowed": True}


@pytest.mark.parametrize(
    ("warning", "sent"),
    [
        ("short and fine", "short and fine"),
        ("two\nlines", "two lines"),
        ("tabs\tand  double  spaces\r\n", "tabs and double spaces"),
        ("x" * 119, "x" * 119),
        ("x" * 200, "x" * 117 + "..."),
        ("word " * 40, ("word " * 40)[:117] + "..."),
    ],
)
def test_warnings_are_sent_as_single_lines_of_at_most_120_characters(
    warning: str, sent: str
) -> None:
    request = decode_review(review())

    response = orjson.loads(
        encode_response(request, [], [as_warning(warning), as_warning("second")])
    )["response"]

    assert response["warnings"] == [sent, "second"]
    assert all(len(line) <= 120 and "\n" not in line for line in response["warnings"])


def test_a_review_request_can_be_answered_without_a_pod() -> None:
    request = ReviewRequest("admission.k8s.io/v1beta1", "AdmissionReview", UID, "blog", None)

    answer = orjson.loads(encode_response(request, [], [as_warning("note")]))

    assert answer == {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": True, "warnings": ["note"]},
    }


def as_warning(message: str) -> AdmissionWarning:
    return AdmissionWarning(Reason.NEAR_MISS_ANNOTATION, message)
