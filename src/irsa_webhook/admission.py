"""The AdmissionReview envelope: bytes in, a request we can act on, bytes out.

``admission.k8s.io/v1`` and ``v1beta1`` share one shape; we answer in the version received and
echo the request's TypeMeta (the reference's fix for its issue #225, docs/reference.md 9.1). A
body that is not an AdmissionReview is an ``EnvelopeError`` (HTTP 400, difference 2 in the README)
so the webhook's ``failurePolicy`` decides; the webhook itself never denies a pod.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from irsa_webhook.patch import Operation
from irsa_webhook.reasons import AdmissionWarning

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
MAX_WARNING_LENGTH = 120


class EnvelopeError(ValueError):
    """The body is not an AdmissionReview we can answer; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """The parts of an AdmissionReview the webhook needs."""

    api_version: str | None
    kind: str | None
    uid: str
    namespace: str
    """Where the pod is created: the request's, else the pod's own, else ``default``. It is
    passed beside the pod, never written into it: a patch computed from an altered copy may
    not apply to what the API server holds (no ``/metadata`` to add labels under)."""
    pod: dict[str, Any] | None
    """The pod to mutate, exactly as sent (the patch applies to it); None when the request is
    not a Pod CREATE (allowed unchanged)."""
    service_account: str = "default"

    @property
    def pod_name(self) -> str:
        """The pod's name, or its generateName prefix, for logs."""
        metadata = (self.pod or {}).get("metadata") or {}
        return str(metadata.get("name") or metadata.get("generateName") or "")


def decode_review(body: bytes) -> ReviewRequest:
    """Parse and check an AdmissionReview; raise ``EnvelopeError`` saying what is wrong."""
    if not body.strip():
        raise EnvelopeError("empty body: send an AdmissionReview JSON object")
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(review, dict):
        raise EnvelopeError("body is not an AdmissionReview: expected a JSON object")
    api_version = review.get("apiVersion")
    kind = review.get("kind")
    if api_version is not None and api_version not in API_VERSIONS:
        raise EnvelopeError(
            f"apiVersion {str(api_version)[:60]!r} is not supported; use admission.k8s.io/v1"
        )
    if kind is not None and kind != "AdmissionReview":
        raise EnvelopeError(f"kind {str(kind)[:60]!r} is not AdmissionReview")
    request = review.get("request")
    if not isinstance(request, dict):
        raise EnvelopeError("AdmissionReview has no request object")
    uid = request.get("uid", "")
    if not isinstance(uid, str):
        raise EnvelopeError("request.uid must be a string")
    namespace = request.get("namespace") or ""
    if not isinstance(namespace, str):
        raise EnvelopeError("request.namespace must be a string")

    if not _is_pod_create(request):
        return ReviewRequest(api_version, kind, uid, namespace or "default", None)
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise EnvelopeError("request.object must be a Pod object")
    problem = pod_shape_problem(pod)
    if problem:
        raise EnvelopeError(f"request.object is not a valid Pod: {problem}")
    metadata = pod.get("metadata") or {}
    # Pods created from generateName often lack a namespace; the request's is authoritative.
    namespace = namespace or metadata.get("namespace") or "default"
    service_account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    return ReviewRequest(api_version, kind, uid, namespace, pod, service_account)


def _is_pod_create(request: Mapping[str, Any]) -> bool:
    """Pod CREATE, or a request that does not say (the reference assumed Pod CREATE)."""
    kind = request.get("kind")
    if isinstance(kind, dict) and (kind.get("kind", "Pod"), kind.get("group", "")) != ("Pod", ""):
        return False
    if request.get("subResource"):
        return False
    return bool(request.get("operation", "CREATE") == "CREATE")


_LIST_OF_OBJECTS = ("containers", "initContainers", "ephemeralContainers", "volumes")


def pod_shape_problem(pod: Mapping[str, Any]) -> str | None:
    """Check the parts of a pod we read have the JSON types Kubernetes gives them."""
    metadata = pod.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return "metadata must be an object"
    for field_name in ("annotations", "labels"):
        values = (metadata or {}).get(field_name)
        if values is not None and not (
            isinstance(values, dict) and all(isinstance(v, str) for v in values.values())
        ):
            return f"metadata.{field_name} must map strings to strings"
    spec = pod.get("spec")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        return "spec must be an object"
    if not isinstance(spec.get("serviceAccountName") or "", str):
        return "spec.serviceAccountName must be a string"
    for name in ("nodeSelector", "os", "affinity"):
        if spec.get(name) is not None and not isinstance(spec[name], dict):
            return f"spec.{name} must be an object"
    for list_name in _LIST_OF_OBJECTS:
        items = spec.get(list_name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return f"spec.{list_name} must be a list of objects"
        if not _names_are_strings(items):
            return f"spec.{list_name}[].name must be a string"
    for list_name in ("containers", "initContainers"):
        for container in spec.get(list_name) or []:
            for field_name in ("env", "volumeMounts"):
                entries = container.get(field_name)
                if entries is not None and not (
                    isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
                ):
                    return f"spec.{list_name}[].{field_name} must be a list of objects"
                if not _names_are_strings(entries or ()):
                    return f"spec.{list_name}[].{field_name}[].name must be a string"
    return _affinity_problem(spec.get("affinity"))


def _names_are_strings(items: Iterable[Mapping[str, Any]]) -> bool:
    """Names are looked up in sets and dicts: a list or object there would be unhashable."""
    return all(isinstance(item.get("name", ""), str) for item in items)


def _affinity_problem(affinity: Any) -> str | None:
    node = (affinity or {}).get("nodeAffinity")
    if node is None:
        return None
    required = (
        node.get("requiredDuringSchedulingIgnoredDuringExecution") if isinstance(node, dict) else 0
    )
    if required is None:
        return None
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else 0
    if terms is None:
        return None
    if not isinstance(terms, list) or not all(
        isinstance(term, dict)
        and isinstance(term.get("matchExpressions") or [], list)
        and all(isinstance(e, dict) for e in term.get("matchExpressions") or [])
        for term in terms
    ):
        return "spec.affinity.nodeAffinity has malformed nodeSelectorTerms"
    return None


def encode_response(
    request: ReviewRequest,
    patch: Sequence[Operation] = (),
    warnings: Sequence[AdmissionWarning] = (),
) -> bytes:
    """An allowing AdmissionReview response, with the patch when there is one."""
    response: dict[str, Any] = {"uid": request.uid, "allowed": True}
    if patch:
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
        response["patchType"] = "JSONPatch"
    if warnings:
        response["warnings"] = [_one_line(warning.message) for warning in warnings]
    review: dict[str, Any] = {}
    if request.api_version is not None:
        review["apiVersion"] = request.api_version
    if request.kind is not None:
        review["kind"] = request.kind
    review["response"] = response
    return orjson.dumps(review)


def _one_line(warning: str) -> str:
    text = " ".join(warning.split())
    return text if len(text) <= MAX_WARNING_LENGTH else text[: MAX_WARNING_LENGTH - 3] + "..."


def error_body(message: str) -> bytes:
    """The JSON body of an HTTP error answer."""
    return orjson.dumps({"error": message})
