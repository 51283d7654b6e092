"""The AWS-backed commands: ``oidc publish`` and the ``iam`` family. Each reads the current
state, makes a plan, and carries it out (or, with ``--dry-run``, prints it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from irsa_webhook.aws.apply import export_config, plan_apply
from irsa_webhook.aws.binding import Binding, check_provider, plan_bind, plan_unbind
from irsa_webhook.aws.clusterconfig import parse_cluster_configs, render_cluster_config
from irsa_webhook.aws.provider import plan_provider
from irsa_webhook.aws.publish import object_keys, plan_publish
from irsa_webhook.aws.roles import (
    DEFAULT_AUDIENCE,
    BindingError,
    RoleRef,
    check_namespace,
    check_policy_arn,
    check_role_name,
    check_service_account,
    parse_role_arn,
)
from irsa_webhook.aws.session import connect
from irsa_webhook.issuer import cluster_issuer
from irsa_webhook.kubeclient import Cluster
from irsa_webhook.oidc import DISCOVERY_PATH, JWKS_PATH, IssuerError, validate_issuer
from irsa_webhook.oidc_command import issuer_and_keys, rendered_documents


def run(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        if arguments.command == "oidc":
            return _publish(arguments, out)
        action = {
            "create-provider": _create_provider,
            "bind": _bind,
            "unbind": _unbind,
            "apply": _apply,
            "export": _export,
        }
        return action[arguments.action](arguments, out, err)
    except BindingError as exc:
        raise IssuerError(str(exc)) from None


def _publish(arguments: argparse.Namespace, out: TextIO) -> int:
    issuer, keys = issuer_and_keys(arguments)
    aws = connect(arguments.profile, arguments.region)
    caller = aws.caller()
    discovery_key, jwks_key = object_keys(issuer, arguments.bucket)
    rendered = rendered_documents(issuer, keys)
    documents = {discovery_key: rendered[DISCOVERY_PATH], jwks_key: rendered[JWKS_PATH]}
    plan = plan_publish(aws, caller, arguments.bucket, aws.session.region_name, documents)
    plan.carry_out(out, arguments.dry_run)
    return 0


def resolve_issuer(given: str | None, cluster: Cluster | None) -> str:
    """``--issuer``, else the one the cluster's API server serves."""
    if given:
        return validate_issuer(given)
    if cluster is None:
        raise IssuerError("--issuer is required when the cluster is not used")
    return validate_issuer(cluster_issuer(cluster).issuer)


def _create_provider(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    audiences = list(dict.fromkeys(arguments.audience or [DEFAULT_AUDIENCE]))
    if arguments.issuer:
        issuer = validate_issuer(arguments.issuer)
    else:
        with Cluster.connect(arguments.kubeconfig) as cluster:
            issuer = resolve_issuer(None, cluster)
    aws = connect(arguments.profile, arguments.region)
    plan_provider(aws, aws.caller(), issuer, audiences).carry_out(out, arguments.dry_run)
    return 0


def _inline_policy(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BindingError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict) or "Statement" not in document:
        raise BindingError(f"{path} is not an IAM policy document (no Statement)")
    return document


def _bind(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    namespace = check_namespace(arguments.namespace)
    name = check_service_account(arguments.service_account)
    inline = _inline_policy(arguments.inline_policy)
    for arn in arguments.attach_policy_arn:
        check_policy_arn(arn)
    if arguments.permissions_boundary:
        check_policy_arn(arguments.permissions_boundary)
    if arguments.role_name:
        check_role_name(arguments.role_name)
    if arguments.issuer:
        validate_issuer(arguments.issuer)
    with Cluster.connect(arguments.kubeconfig) as cluster:
        issuer = resolve_issuer(arguments.issuer, cluster)
        aws = connect(arguments.profile, arguments.region)
        caller = aws.caller()
        if arguments.role_arn:
            role = parse_role_arn(arguments.role_arn, caller.partition, caller.account)
        else:
            role = RoleRef(caller.partition, caller.account, arguments.role_name)
        for arn in [*arguments.attach_policy_arn, arguments.permissions_boundary]:
            if arn:
                check_policy_arn(arn, caller.partition)
        provider = check_provider(aws, caller, issuer, arguments.audience)
        binding = Binding(
            namespace=namespace,
            service_account=name,
            role=role,
            managed_policies=tuple(dict.fromkeys(arguments.attach_policy_arn)),
            inline_policy=inline,
            permissions_boundary=arguments.permissions_boundary,
            audience=arguments.audience,
        )
        plan_bind(aws, cluster, issuer, provider, binding).carry_out(out, arguments.dry_run)
    return 0


def _unbind(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    namespace = check_namespace(arguments.namespace)
    name = check_service_account(arguments.service_account)
    with Cluster.connect(arguments.kubeconfig) as cluster:
        aws = connect(arguments.profile, arguments.region)
        plan = plan_unbind(aws, cluster, aws.caller(), namespace, name, arguments.delete_role)
        plan.carry_out(out, arguments.dry_run)
    return 0


def _apply(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = arguments.filename
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    configs = parse_cluster_configs(text, path)
    for config in configs:
        for warning in config.warnings:
            print(f"warning: {warning}", file=err)
    if arguments.issuer:
        validate_issuer(arguments.issuer)
    region = arguments.region or next((c.region for c in configs if c.region), None)
    with Cluster.connect(arguments.kubeconfig) as cluster:
        issuer = resolve_issuer(arguments.issuer, cluster)
        aws = connect(arguments.profile, region)
        caller = aws.caller()
        plan = plan_apply(aws, cluster, caller, issuer, configs, arguments.prune)
        plan.carry_out(out, arguments.dry_run)
    return 0


def _export(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if arguments.namespace:
        check_namespace(arguments.namespace)
    with Cluster.connect(arguments.kubeconfig) as cluster:
        issuer = resolve_issuer(arguments.issuer, cluster)
        aws = connect(arguments.profile, arguments.region)
        config = export_config(aws, cluster, aws.caller(), issuer, arguments.namespace)
    out.write(render_cluster_config(config))
    return 0
