"""eksctl's ``ClusterConfig`` (``eksctl.io/v1alpha5``) read for any cluster: its IAM part, each
``iam.serviceAccounts`` entry turned into what ``bind`` takes. Pure: text in, entries and
warnings out. Every field this tool does not use is named in a warning, never silently dropped;
an invalid entry is refused with its index and what to fix, before anything changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from irsa_webhook.aws.roles import (
    BindingError,
    check_namespace,
    check_policy_arn,
    check_role_name,
    check_service_account,
    default_role_name,
)

API_VERSION = "eksctl.io/v1alpha5"
KIND = "ClusterConfig"

_TOP_LEVEL = {"apiVersion", "kind", "metadata", "iam"}
_METADATA = {"name", "region", "tags"}
_IAM = {"withOIDC", "serviceAccounts"}
_ENTRY = {
    "metadata",
    "attachPolicyARNs",
    "attachPolicy",
    "permissionsBoundary",
    "roleName",
    "roleOnly",
    "tags",
}
_ENTRY_METADATA = {"name", "namespace", "labels", "annotations"}


@dataclass(frozen=True)
class ServiceAccountEntry:
    """One ``iam.serviceAccounts`` entry, validated."""

    namespace: str
    name: str
    role_name: str
    managed_policies: tuple[str, ...] = ()
    inline_policy: dict[str, Any] | None = None
    permissions_boundary: str | None = None
    role_only: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    with_oidc: bool
    service_accounts: tuple[ServiceAccountEntry, ...]
    region: str | None = None
    warnings: tuple[str, ...] = ()


def parse_cluster_configs(text: str, source: str) -> list[ClusterConfig]:
    """Every document of ``text``, each of which must be a ClusterConfig."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise BindingError(f"{source} is not YAML: {' '.join(str(exc).split())}") from None
    if not documents:
        raise BindingError(f"{source} holds no document")
    return [
        _config(document, f"{source} document {index}") for index, document in enumerate(documents)
    ]


def _config(document: Any, where: str) -> ClusterConfig:
    if (
        not isinstance(document, dict)
        or document.get("apiVersion") != API_VERSION
        or document.get("kind") != KIND
    ):
        found = (
            f"{document.get('apiVersion')}/{document.get('kind')}"
            if isinstance(document, dict)
            else type(document).__name__
        )
        raise BindingError(f"{where} is {found}, not an {API_VERSION} {KIND}")
    warnings = [_skipped(where, key) for key in document if key not in _TOP_LEVEL]
    metadata = _mapping(document.get("metadata"), f"{where}: metadata")
    warnings += [_skipped(where, f"metadata.{key}") for key in metadata if key not in _METADATA]
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise BindingError(f"{where}: metadata.name (the cluster's name) is required")
    region = metadata.get("region")
    cluster_tags = _strings(metadata.get("tags"), f"{where}: metadata.tags")
    iam = _mapping(document.get("iam"), f"{where}: iam")
    warnings += [_skipped(where, f"iam.{key}") for key in iam if key not in _IAM]
    with_oidc = iam.get("withOIDC", False)
    if not isinstance(with_oidc, bool):
        raise BindingError(f"{where}: iam.withOIDC must be true or false")
    entries_raw = iam.get("serviceAccounts") or []
    if not isinstance(entries_raw, list):
        raise BindingError(f"{where}: iam.serviceAccounts must be a list")
    entries = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(entries_raw):
        entry, entry_warnings = _entry(raw, f"{where}: iam.serviceAccounts[{index}]", name)
        key = (entry.namespace, entry.name)
        if key in seen:
            raise BindingError(
                f"{where}: iam.serviceAccounts[{index}]: {entry.namespace}/{entry.name} is "
                "listed twice"
            )
        seen.add(key)
        entries.append(
            ServiceAccountEntry(**{**entry.__dict__, "tags": {**cluster_tags, **entry.tags}})
        )
        warnings += entry_warnings
    return ClusterConfig(
        name=name,
        with_oidc=with_oidc,
        service_accounts=tuple(entries),
        region=region if isinstance(region, str) and region else None,
        warnings=tuple(warnings),
    )


def _entry(raw: Any, where: str, cluster: str) -> tuple[ServiceAccountEntry, list[str]]:
    entry = _mapping(raw, where)
    warnings = [_skipped(where, key) for key in entry if key not in _ENTRY]
    metadata = _mapping(entry.get("metadata"), f"{where}.metadata")
    warnings += [
        _skipped(where, f"metadata.{key}") for key in metadata if key not in _ENTRY_METADATA
    ]
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise BindingError(f"{where}: metadata.name is required")
    namespace = metadata.get("namespace", "default")
    try:
        check_service_account(name)
        check_namespace(namespace if isinstance(namespace, str) else repr(namespace))
        policies = entry.get("attachPolicyARNs") or []
        if not isinstance(policies, list):
            raise BindingError("attachPolicyARNs must be a list of policy ARNs")
        for arn in policies:
            check_policy_arn(str(arn))
        boundary = entry.get("permissionsBoundary")
        if boundary is not None:
            check_policy_arn(str(boundary))
        role_name = entry.get("roleName") or default_role_name(cluster, namespace, name)
        check_role_name(str(role_name))
        inline = entry.get("attachPolicy")
        if inline is not None and (not isinstance(inline, dict) or "Statement" not in inline):
            raise BindingError("attachPolicy must be an IAM policy document with a Statement")
        role_only = entry.get("roleOnly", False)
        if not isinstance(role_only, bool):
            raise BindingError("roleOnly must be true or false")
    except BindingError as exc:
        raise BindingError(f"{where}: {exc}") from None
    return (
        ServiceAccountEntry(
            namespace=namespace,
            name=name,
            role_name=str(role_name),
            managed_policies=tuple(dict.fromkeys(str(arn) for arn in policies)),
            inline_policy=inline,
            permissions_boundary=str(boundary) if boundary is not None else None,
            role_only=role_only,
            labels=_strings(metadata.get("labels"), f"{where}.metadata.labels"),
            annotations=_strings(metadata.get("annotations"), f"{where}.metadata.annotations"),
            tags=_strings(entry.get("tags"), f"{where}.tags"),
        ),
        warnings,
    )


def _skipped(where: str, key: str) -> str:
    return f"{where}: {key} is not supported by irsa-webhook (EKS-only or not IAM); skipped"


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BindingError(f"{where} must be a mapping")
    return value


def _strings(value: Any, where: str) -> dict[str, str]:
    mapping = _mapping(value, where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise BindingError(f"{where} must map names to strings (quote numbers and booleans)")
    return dict(mapping)


def render_cluster_config(config: ClusterConfig) -> str:
    """The YAML of ``config`` (``iam export``), in eksctl's field names."""
    entries = []
    for entry in config.service_accounts:
        metadata: dict[str, Any] = {"name": entry.name, "namespace": entry.namespace}
        if entry.labels:
            metadata["labels"] = entry.labels
        if entry.annotations:
            metadata["annotations"] = entry.annotations
        item: dict[str, Any] = {"metadata": metadata, "roleName": entry.role_name}
        if entry.managed_policies:
            item["attachPolicyARNs"] = list(entry.managed_policies)
        if entry.inline_policy is not None:
            item["attachPolicy"] = entry.inline_policy
        if entry.permissions_boundary:
            item["permissionsBoundary"] = entry.permissions_boundary
        if entry.role_only:
            item["roleOnly"] = True
        if entry.tags:
            item["tags"] = entry.tags
        entries.append(item)
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": config.name},
        "iam": {"withOIDC": config.with_oidc, "serviceAccounts": entries},
    }
    return yaml.safe_dump(document, sort_keys=False)
