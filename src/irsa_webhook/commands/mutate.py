"""``irsa-webhook mutate``: run one admission decision offline on files, the way users debug
"why was my pod not mutated". Warnings go to stderr.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import jsonpatch
import orjson
import yaml

from irsa_webhook import flags
from irsa_webhook.admission import EnvelopeError, decode_review, encode_response
from irsa_webhook.commands import UsageError
from irsa_webhook.config import CONFIG_MAP_KEY, MutationSettings
from irsa_webhook.decision import Sources, decide
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ConfigMapMappings,
    ContainerCredentialsConfig,
    ServiceAccountEntry,
    SourceError,
    parse_config_map,
    parse_container_credentials,
    parse_service_account,
)


class InputError(UsageError):
    """An input file of ``mutate`` cannot be used; the message is printed as one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Run one admission decision on files. Warnings go to stderr."
    parser.add_argument("--pod", required=True, help="pod YAML or JSON file, - for stdin")
    parser.add_argument(
        "--service-account",
        action="append",
        default=[],
        help="ServiceAccount file (several documents or a List allowed); repeatable",
    )
    parser.add_argument("--config-map", help="the pod-identity-webhook ConfigMap file")
    parser.add_argument(
        "--container-credentials-config", help="the EKS Pod Identity identities file (JSON)"
    )
    parser.add_argument("--output", choices=("pod", "patch", "review"), default="pod")
    flags.add_flags(parser, flags.MUTATION_FLAGS)


def run(arguments: argparse.Namespace) -> int:
    return run_mutate(arguments, sys.stdin, sys.stdout, sys.stderr)


def _load_documents(path: str, stdin: TextIO) -> list[Any]:
    try:
        text = stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise InputError(f"{path} is not YAML or JSON: {problem}") from None
    items: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List":
            items.extend(document.get("items") or [])
        else:
            items.append(document)
    return items


def _load_pod(path: str, stdin: TextIO) -> dict[str, Any]:
    documents = _load_documents(path, stdin)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise InputError(f"{path} must hold exactly one Pod object")
    pod = documents[0]
    if pod.get("kind", "Pod") != "Pod":
        raise InputError(f"{path} holds a {pod.get('kind')}, not a Pod")
    metadata = pod.get("metadata")
    if metadata is None or isinstance(metadata, dict):
        # The pod as the API server would hold it: in a namespace, ``default`` unless it says.
        metadata = metadata or {}
        pod["metadata"] = {**metadata, "namespace": metadata.get("namespace") or "default"}
    return pod


def _load_service_accounts(
    paths: Sequence[str], settings: MutationSettings, stdin: TextIO
) -> dict[tuple[str, str], ServiceAccountEntry]:
    entries: dict[tuple[str, str], ServiceAccountEntry] = {}
    for path in paths:
        for document in _load_documents(path, stdin):
            if not isinstance(document, dict) or document.get("kind") != "ServiceAccount":
                raise InputError(f"{path} holds something other than ServiceAccount objects")
            metadata = document.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            if not isinstance(annotations, dict) or not all(
                isinstance(value, str) for value in annotations.values()
            ):
                raise InputError(
                    f"{path}: annotations must map names to strings (quote numbers and booleans)"
                )
            key = (metadata.get("namespace") or "default", metadata.get("name") or "default")
            entries[key] = parse_service_account(annotations, settings)
    return entries


def _load_config_map(
    path: str | None, settings: MutationSettings, stdin: TextIO, stderr: TextIO
) -> ConfigMapMappings:
    if path is None:
        return EMPTY_CONFIG_MAP
    documents = _load_documents(path, stdin)
    if (
        len(documents) != 1
        or not isinstance(documents[0], dict)
        or documents[0].get("kind") != "ConfigMap"
    ):
        raise InputError(f"{path} must hold one ConfigMap")
    data = documents[0].get("data") or {}
    if not isinstance(data, dict) or not isinstance(data.get(CONFIG_MAP_KEY, ""), str):
        raise InputError(f"{path}: data.{CONFIG_MAP_KEY} must be a string of JSON")
    data = data.get(CONFIG_MAP_KEY)
    try:
        mappings, problems = parse_config_map(data, settings)
    except SourceError as exc:
        raise InputError(f"{path}: {exc}") from None
    for problem in problems:
        print(f"warning: {problem}", file=stderr)
    return mappings


def _load_container_credentials(path: str | None) -> ContainerCredentialsConfig:
    if path is None:
        return EMPTY_CONTAINER_CREDENTIALS
    try:
        return parse_container_credentials(Path(path).read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    except SourceError as exc:
        raise InputError(f"{path}: {exc}") from None


def run_mutate(arguments: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    settings = flags.mutation_settings(arguments)
    if settings.compose_role_arn and not settings.aws_partition:
        raise InputError(
            "--compose-role-arn needs --aws-partition and --aws-account-id here "
            "(only serve reads them from instance metadata)"
        )
    pod = _load_pod(arguments.pod, stdin)
    metadata = pod.get("metadata")
    entries = _load_service_accounts(arguments.service_account, settings, stdin)
    config_map = _load_config_map(arguments.config_map, settings, stdin, stderr)
    container_credentials = _load_container_credentials(arguments.container_credentials_config)

    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "irsa-webhook-mutate",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            # _load_pod defaulted it; a malformed metadata is decode_review's to report.
            "namespace": metadata.get("namespace") if isinstance(metadata, dict) else "",
            "object": pod,
        },
    }
    try:
        request = decode_review(orjson.dumps(review))
    except (EnvelopeError, TypeError) as exc:
        raise InputError(f"{arguments.pod}: {exc}") from None
    assert request.pod is not None
    sources = Sources(
        entry=entries.get((request.namespace, request.service_account)),
        config_map=config_map,
        container_credentials=container_credentials,
    )
    decision = decide(request, sources, settings, random.SystemRandom().randint)
    for warning in decision.warnings:
        print(f"warning: {warning.message}", file=stderr)
    if arguments.output == "patch":
        output: Any = decision.patch
    elif arguments.output == "review":
        output = orjson.loads(encode_response(request, decision.patch, decision.warnings))
    else:
        output = (
            jsonpatch.apply_patch(request.pod, decision.patch) if decision.patch else request.pod
        )
    stdout.write(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
