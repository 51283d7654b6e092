"""The mutation core: pod + identity + settings -> JSON Patch + warnings. Pure: no I/O.

The rules are the reference webhook's (docs/reference.md section 3), read from plain JSON dicts
so that fields this code has never heard of pass through untouched. The input pod is never
modified. The patch is emitted as the rules apply, one operation per change and nothing else
(difference 1 in the README: minimal patches): lists are only appended to, or prepended to for
the token volume, and a list or object is added whole only where the pod has none. Building a
mutated copy and diffing it cost three times as much on the hot path; the tests keep such a
differ as the oracle that this patch must agree with (``tests/unit/test_patch_emission.py``).
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from irsa_webhook.config import (
    CONTAINER_CREDENTIALS_LABEL,
    DEFAULT_TOKEN_EXPIRATION,
    IRSA_TOKEN_FILE,
    IRSA_VOLUME_NAME,
    MutationSettings,
)
from irsa_webhook.identity import (
    SKIP_CONTAINERS,
    TOKEN_EXPIRATION,
    Identity,
    Mode,
    clamp_token_expiration,
)
from irsa_webhook.parsing import parse_csv_record, parse_int64
from irsa_webhook.patch import Operation, escape
from irsa_webhook.reasons import AdmissionWarning, Reason

Pod = dict[str, Any]
_MISSING: Any = object()
RandomInt = Callable[[int, int], int]
"""Uniform integer in [a, b] inclusive, like ``random.Random.randint``; injectable for tests."""

JITTER_MIN = 79200
"""Container-credentials tokens of exactly one day are spread over [22 h, 24 h] (reference)."""

_WEB_IDENTITY_VARS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
_CONTAINER_CREDENTIALS_VARS = (
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
_REGION_VARS = ("AWS_DEFAULT_REGION", "AWS_REGION")
_STS_VAR = "AWS_STS_REGIONAL_ENDPOINTS"
_OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What gets injected, after every precedence rule: the same for all containers of a pod."""

    mode: Mode
    volume_name: str
    mount_path: str
    token_path_in_volume: str
    token_file: str
    """The value of the token-file env var (Windows form on Windows pods)."""
    audience: str
    token_expiration: int
    credential_env: tuple[tuple[str, str], tuple[str, str]]
    regional_sts: bool
    region: str


@dataclass(slots=True)
class MutationResult:
    patch: list[Operation] = field(default_factory=list)
    """RFC 6902 operations that turn the input pod into the mutated one."""
    warnings: list[AdmissionWarning] = field(default_factory=list)
    mutated: list[str] = field(default_factory=list)
    """Names of containers (init first) that received something."""
    skipped: list[str] = field(default_factory=list)
    """Names of containers left alone by the skip-containers annotation."""
    token_expiration: int = 0


def mutate_pod(
    pod: Mapping[str, Any],
    identity: Identity,
    settings: MutationSettings,
    random_int: RandomInt,
) -> MutationResult:
    """Inject ``identity`` into every container of ``pod`` not named in skip-containers."""
    warnings = list(identity.warnings)
    metadata: Mapping[str, Any] = pod.get("metadata") or {}
    annotations: Mapping[str, Any] = metadata.get("annotations") or {}
    spec: Mapping[str, Any] = pod.get("spec") or {}

    credentials = _credentials(identity, annotations, spec, settings, random_int, warnings)
    skip = _skip_set(annotations, spec, settings, warnings)

    result = MutationResult(warnings=warnings)
    result.token_expiration = credentials.token_expiration
    patch = result.patch

    if credentials.mode is Mode.CONTAINER_CREDENTIALS:
        _label_operations(pod, patch)

    raw_spec = pod.get("spec", _MISSING)
    if not isinstance(raw_spec, dict):
        # No spec at all (or null): nothing to inject into but the volume.
        op = "add" if raw_spec is _MISSING else "replace"
        patch.append(
            {"op": op, "path": "/spec", "value": {"volumes": [_token_volume(credentials)]}}
        )
        return result

    if not _has_token_volume(spec, credentials, warnings):
        # The reference inserts at the front; keeping that makes our stored pods identical to its.
        _grow(patch, spec, "/spec", "volumes", [_token_volume(credentials)], prepend=True)
    injection = _Injection.of(credentials)
    for list_name in ("initContainers", "containers"):
        containers = spec.get(list_name)
        if not containers:
            continue
        for index, container in enumerate(containers):
            name = container.get("name", "")
            if name in skip:
                result.skipped.append(name)
            elif _container_operations(
                container, f"/spec/{list_name}/{index}", credentials, injection, warnings, patch
            ):
                result.mutated.append(name)
    return result


def _grow(
    patch: list[Operation],
    parent: Mapping[str, Any],
    parent_path: str,
    key: str,
    items: list[Any],
    *,
    prepend: bool = False,
) -> None:
    """Operations that put ``items`` into the list ``parent[key]`` (``key`` needs no escaping)."""
    path = f"{parent_path}/{key}"
    current = parent.get(key, _MISSING)
    if current is _MISSING:
        patch.append({"op": "add", "path": path, "value": items})
    elif not isinstance(current, list):  # null
        patch.append({"op": "replace", "path": path, "value": items})
    elif prepend and current:
        patch += [
            {"op": "add", "path": f"{path}/{index}", "value": item}
            for index, item in enumerate(items)
        ]
    else:
        end = f"{path}/-"
        patch += [{"op": "add", "path": end, "value": item} for item in items]


def _label_operations(pod: Mapping[str, Any], patch: list[Operation]) -> None:
    """Set the container-credentials label, creating labels or metadata where there are none."""
    metadata = pod.get("metadata", _MISSING)
    if not isinstance(metadata, dict):
        op = "add" if metadata is _MISSING else "replace"
        patch.append(
            {
                "op": op,
                "path": "/metadata",
                "value": {"labels": {CONTAINER_CREDENTIALS_LABEL: "enabled"}},
            }
        )
        return
    labels = metadata.get("labels", _MISSING)
    if not isinstance(labels, dict):
        op = "add" if labels is _MISSING else "replace"
        labels_value = {CONTAINER_CREDENTIALS_LABEL: "enabled"}
        patch.append({"op": op, "path": "/metadata/labels", "value": labels_value})
        return
    current = labels.get(CONTAINER_CREDENTIALS_LABEL, _MISSING)
    if current == "enabled":
        return
    patch.append(
        {
            "op": "add" if current is _MISSING else "replace",
            "path": f"/metadata/labels/{escape(CONTAINER_CREDENTIALS_LABEL)}",
            "value": "enabled",
        }
    )


def _credentials(
    identity: Identity,
    annotations: Mapping[str, Any],
    spec: Mapping[str, Any],
    settings: MutationSettings,
    random_int: RandomInt,
    warnings: list[AdmissionWarning],
) -> Credentials:
    # Token expiration precedence: pod annotation > ServiceAccount annotation > ConfigMap > flag.
    expiration = identity.token_expiration
    key = settings.annotation(TOKEN_EXPIRATION)
    raw = annotations.get(key)
    if raw is not None:
        try:
            expiration, clamped = clamp_token_expiration(parse_int64(str(raw)), f"pod {key}")
        except ValueError:
            warnings.append(
                AdmissionWarning(
                    Reason.TOKEN_EXPIRATION_NOT_A_NUMBER,
                    f"pod {key} {str(raw)[:40]!r} is not whole seconds; using {expiration}",
                )
            )
        else:
            if clamped:
                warnings.append(clamped)

    if identity.mode is Mode.CONTAINER_CREDENTIALS:
        if expiration == DEFAULT_TOKEN_EXPIRATION:
            expiration = random_int(JITTER_MIN, DEFAULT_TOKEN_EXPIRATION)
        volume_name = settings.container_credentials_token_volume_name
        mount_path = settings.container_credentials_token_mount_path
        token_name = settings.container_credentials_token_path
    else:
        volume_name = IRSA_VOLUME_NAME
        mount_path = settings.token_mount_path
        token_name = IRSA_TOKEN_FILE

    token_file = _token_file(mount_path, token_name, is_windows(spec))
    if identity.mode is Mode.CONTAINER_CREDENTIALS:
        credential_env = (
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", settings.container_credentials_full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file),
        )
    else:
        credential_env = (
            ("AWS_ROLE_ARN", identity.role_arn),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
        )
    return Credentials(
        mode=identity.mode,
        volume_name=volume_name,
        mount_path=mount_path,
        token_path_in_volume=token_name,
        token_file=token_file,
        audience=identity.audience,
        token_expiration=expiration,
        credential_env=credential_env,
        regional_sts=identity.regional_sts,
        region=settings.aws_default_region,
    )


@functools.lru_cache(maxsize=16)
def _token_file(mount_path: str, token_name: str, windows: bool) -> str:
    """The token file's path as the containers see it. It depends only on the settings and the
    pod's OS, so it is computed once per combination, not per admission request."""
    token_file = _clean_path(posixpath.join(mount_path, token_name))
    return "C:" + token_file.replace("/", "\\") if windows else token_file


def _clean_path(path: str) -> str:
    """Go's ``path.Clean``: unlike ``posixpath.normpath`` it also collapses a leading ``//``."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def is_windows(spec: Mapping[str, Any]) -> bool:
    """Windows pods, from ``spec.os``, the OS node selectors, or a Windows-only node affinity."""
    if (spec.get("os") or {}).get("name") == "windows":
        return True
    selector = spec.get("nodeSelector") or {}
    if any(selector.get(label) == "windows" for label in _OS_LABELS):
        return True
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = affinity.get("nodeSelectorTerms") or []
    # Terms are ORed: the pod is Windows-only when every term requires a Windows node.
    return bool(terms) and all(_term_requires_windows(term) for term in terms)


def _term_requires_windows(term: Mapping[str, Any]) -> bool:
    for expression in term.get("matchExpressions") or []:
        if (
            expression.get("key") in _OS_LABELS
            and expression.get("operator") == "In"
            and expression.get("values") == ["windows"]
        ):
            return True
    return False


def _skip_set(
    annotations: Mapping[str, Any],
    spec: Mapping[str, Any],
    settings: MutationSettings,
    warnings: list[AdmissionWarning],
) -> frozenset[str]:
    key = settings.annotation(SKIP_CONTAINERS)
    raw = annotations.get(key)
    if raw is None:
        return frozenset()
    try:
        names = frozenset(name for name in parse_csv_record(str(raw)) if name)
    except ValueError as exc:
        warnings.append(
            AdmissionWarning(Reason.SKIP_CONTAINERS_MALFORMED, f"pod {key} ignored: {exc}")
        )
        return frozenset()
    present = {
        container.get("name")
        for list_name in ("initContainers", "containers")
        for container in spec.get(list_name) or []
    }
    for name in sorted(names - present):
        warnings.append(
            AdmissionWarning(
                Reason.SKIP_CONTAINERS_NO_SUCH_CONTAINER,
                f"pod {key} names {name[:40]!r}, which matches no container",
            )
        )
    return names


def _has_token_volume(
    spec: Mapping[str, Any], credentials: Credentials, warnings: list[AdmissionWarning]
) -> bool:
    for volume in spec.get("volumes") or []:
        if volume.get("name") == credentials.volume_name:
            if not _is_token_volume(volume):
                warnings.append(
                    AdmissionWarning(
                        Reason.RESERVED_VOLUME_NAME,
                        f"volume {credentials.volume_name[:40]!r} has the token's reserved name "
                        "but is no projected token; SDKs read the wrong file",
                    )
                )
            return True
    return False


def _token_volume(credentials: Credentials) -> dict[str, Any]:
    token: dict[str, Any] = {}
    if credentials.audience:
        token["audience"] = credentials.audience
    token["expirationSeconds"] = credentials.token_expiration
    token["path"] = credentials.token_path_in_volume
    return {
        "name": credentials.volume_name,
        "projected": {"sources": [{"serviceAccountToken": token}]},
    }


def _is_token_volume(volume: Mapping[str, Any]) -> bool:
    sources = (volume.get("projected") or {}).get("sources") or []
    return any("serviceAccountToken" in source for source in sources)


@dataclass(frozen=True, slots=True)
class _Injection:
    """The env entries and mount a container may receive: the same for every container of a
    pod, so they are built once and shared by every operation that adds them."""

    sts: list[dict[str, str]]
    region: list[dict[str, str]]
    credential: list[dict[str, str]]
    credential_names: tuple[str, str]
    mount: dict[str, Any]

    @classmethod
    def of(cls, credentials: Credentials) -> _Injection:
        return cls(
            sts=[{"name": _STS_VAR, "value": "regional"}] if credentials.regional_sts else [],
            region=[{"name": name, "value": credentials.region} for name in _REGION_VARS]
            if credentials.region
            else [],
            credential=[
                {"name": name, "value": value} for name, value in credentials.credential_env
            ],
            credential_names=(
                _CONTAINER_CREDENTIALS_VARS
                if credentials.mode is Mode.CONTAINER_CREDENTIALS
                else _WEB_IDENTITY_VARS
            ),
            mount={
                "name": credentials.volume_name,
                "readOnly": True,
                "mountPath": credentials.mount_path,
            },
        )


def _container_operations(
    container: Mapping[str, Any],
    path: str,
    credentials: Credentials,
    injection: _Injection,
    warnings: list[AdmissionWarning],
    patch: list[Operation],
) -> bool:
    """Add this container's operations to ``patch``; False when it needs none."""
    env: list[Mapping[str, Any]] = container.get("env") or []
    present = {variable.get("name"): variable for variable in env}
    names = present.keys()
    credentials_defined = not names.isdisjoint(injection.credential_names)
    region_defined = not names.isdisjoint(_REGION_VARS)
    sts_defined = _STS_VAR in present

    if credentials_defined and not _is_ours(present, credentials):
        set_names = " and ".join(name for name in injection.credential_names if name in present)
        warnings.append(
            AdmissionWarning(
                Reason.USER_SET_CREDENTIALS,
                f"container {container.get('name', '')!r} sets {set_names} itself; "
                "the webhook injected no credentials into it",
            )
        )
    # The reference leaves a container completely alone (no mount either) in this case.
    if credentials_defined and region_defined and sts_defined:
        return False

    additions = [
        *(() if sts_defined else injection.sts),
        *(() if region_defined else injection.region),
        *(() if credentials_defined else injection.credential),
    ]
    volume_name = credentials.volume_name
    needs_mount = not any(
        mount.get("name") == volume_name for mount in container.get("volumeMounts") or ()
    )
    if additions:
        _grow(patch, container, path, "env", additions)
    if needs_mount:
        _grow(patch, container, path, "volumeMounts", [injection.mount])
    return bool(additions) or needs_mount


def _is_ours(present: Mapping[Any, Mapping[str, Any]], credentials: Credentials) -> bool:
    """True when the credential variables are exactly what we inject (a reinvocation)."""
    return all(
        (present.get(name) or {}).get("value") == value
        for name, value in credentials.credential_env
    )
