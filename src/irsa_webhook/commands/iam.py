"""``irsa-webhook iam``: the IAM OIDC provider for the cluster's issuer, and roles that trust
exactly one ServiceAccount, on any cluster."""

from __future__ import annotations

import argparse

from irsa_webhook.commands import chain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)

    provider = actions.add_parser(
        "create-provider", help="create or update the IAM OIDC provider for the issuer"
    )
    provider.add_argument("--issuer", help="the issuer URL (default: the cluster's)")
    provider.add_argument(
        "--audience",
        action="append",
        default=[],
        help="a token audience the provider accepts (default sts.amazonaws.com); repeatable",
    )
    chain.cluster_and_aws(provider)

    bind = actions.add_parser(
        "bind", help="a role that trusts exactly one ServiceAccount, and the SA annotated with it"
    )
    chain.service_account(bind)
    role = bind.add_mutually_exclusive_group(required=True)
    role.add_argument("--role-name", help="the role to create or update")
    role.add_argument("--role-arn", help="the role to create or update, by ARN")
    bind.add_argument(
        "--attach-policy-arn", action="append", default=[], metavar="ARN", help="repeatable"
    )
    bind.add_argument("--inline-policy", metavar="FILE", help="a policy document (JSON)")
    bind.add_argument("--permissions-boundary", metavar="ARN")
    bind.add_argument("--issuer", help="the issuer URL (default: the cluster's)")
    bind.add_argument(
        "--audience",
        default="sts.amazonaws.com",
        help="the token audience the trust policy requires (default sts.amazonaws.com)",
    )
    chain.cluster_and_aws(bind)

    unbind = actions.add_parser(
        "unbind", help="remove the annotation and what bind attached (--delete-role: the role)"
    )
    chain.service_account(unbind)
    unbind.add_argument(
        "--delete-role", action="store_true", help="also delete the role, when bind created it"
    )
    chain.cluster_and_aws(unbind)

    apply = actions.add_parser(
        "apply",
        help="bind every iam.serviceAccounts entry of an eksctl ClusterConfig, on any cluster",
    )
    apply.add_argument(
        "-f", "--filename", required=True, help="the ClusterConfig YAML, - for stdin"
    )
    apply.add_argument(
        "--prune",
        action="store_true",
        help="also remove what an earlier apply of this config made and it no longer lists",
    )
    apply.add_argument("--issuer", help="the issuer URL (default: the cluster's)")
    chain.cluster_and_aws(apply)

    export = actions.add_parser(
        "export", help="print the ClusterConfig of what irsa-webhook has bound now"
    )
    export.add_argument("--namespace", "-n", help="only this namespace's ServiceAccounts")
    export.add_argument("--issuer", help="the issuer URL (default: the cluster's)")
    chain.kubeconfig(export)
    chain.aws_options(export)


def run(arguments: argparse.Namespace) -> int:
    return chain.guarded(arguments, chain.load_aws)
