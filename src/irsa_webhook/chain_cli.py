"""The ``oidc`` and ``iam`` commands' arguments. Only argparse here: what runs a command is
imported when that command is invoked, so ``serve`` never loads boto3 or the AWS code."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any, TextIO

EXIT_FAILURE = 1


class MissingExtra(Exception):
    """boto3 is not installed (the ``aws`` extra); the message says what to install."""


def add_commands(commands: Any) -> None:
    """Adds ``oidc`` and ``iam`` to the top-level subparsers."""
    _add_oidc(commands)


def _key_sources(parser: argparse.ArgumentParser, *, required: bool) -> None:
    keys = parser.add_mutually_exclusive_group(required=required)
    keys.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="FILE",
        help="a PEM file of --service-account-key-file (public keys, certificates or a private "
        "key); repeat to publish old and new keys during a rotation",
    )
    keys.add_argument(
        "--from-cluster",
        action="store_true",
        help="take the keys (and the issuer) from the cluster's API server",
    )


def _kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default="",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )


def _aws(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="AWS profile (default: boto3's standard configuration)")
    parser.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")


def _dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def _add_oidc(commands: Any) -> None:
    oidc = commands.add_parser(
        "oidc", help="build, publish and verify the cluster's OIDC issuer documents"
    )
    actions = oidc.add_subparsers(dest="action", required=True)

    documents = actions.add_parser(
        "documents", help="write the discovery document and the JWKS to a directory"
    )
    documents.add_argument("--issuer", help="the public issuer URL (--service-account-issuer)")
    _key_sources(documents, required=True)
    documents.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    _kubeconfig(documents)

    publish = actions.add_parser(
        "publish", help="put both documents into S3, readable by anyone (bucket policy, no ACLs)"
    )
    publish.add_argument("--issuer", help="the public issuer URL (--service-account-issuer)")
    publish.add_argument("--bucket", required=True)
    _key_sources(publish, required=True)
    _kubeconfig(publish)
    _aws(publish)
    _dry_run(publish)

    verify = actions.add_parser(
        "verify",
        help="fetch both documents anonymously as STS does and check the cluster's keys",
    )
    verify.add_argument("--issuer", help="the public issuer URL (default: the cluster's)")
    verify.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="FILE",
        help="check these keys instead of the cluster's",
    )
    verify.add_argument(
        "--ca-bundle", help="CA certificates to trust (default: $AWS_CA_BUNDLE, else the system's)"
    )
    _kubeconfig(verify)


def _add_iam(commands: Any) -> None:
    iam = commands.add_parser(
        "iam", help="the IAM OIDC provider and roles for ServiceAccounts, on any cluster"
    )
    actions = iam.add_subparsers(dest="action", required=True)

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
    _kubeconfig(provider)
    _aws(provider)
    _dry_run(provider)

    bind = actions.add_parser(
        "bind", help="a role that trusts exactly one ServiceAccount, and the SA annotated with it"
    )
    _service_account(bind)
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
    _kubeconfig(bind)
    _aws(bind)
    _dry_run(bind)

    unbind = actions.add_parser(
        "unbind", help="remove the annotation and what bind attached (--delete-role: the role)"
    )
    _service_account(unbind)
    unbind.add_argument(
        "--delete-role", action="store_true", help="also delete the role, when bind created it"
    )
    _kubeconfig(unbind)
    _aws(unbind)
    _dry_run(unbind)


def _service_account(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", required=True)
    parser.add_argument("--service-account", required=True)


def run(arguments: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Runs an ``oidc`` or ``iam`` command; a failure is one line on ``err`` and exit 1."""
    from irsa_webhook.kubeclient import ClusterError
    from irsa_webhook.oidc import IssuerError

    failures: tuple[type[Exception], ...] = (IssuerError, ClusterError, OSError, MissingExtra)
    try:
        if arguments.command == "oidc" and arguments.action != "publish":
            from irsa_webhook import oidc_command

            return oidc_command.run(arguments, out, err)
        if importlib.util.find_spec("boto3") is None:
            raise MissingExtra(
                "the oidc publish and iam commands need boto3: pip install 'irsa-webhook[aws]'"
            )
        from irsa_webhook.aws import commands
        from irsa_webhook.aws.session import AwsError

        failures = (*failures, AwsError)
        return commands.run(arguments, out, err)
    except failures as exc:
        print(f"irsa-webhook {arguments.command} {arguments.action}: {exc}", file=err)
        return EXIT_FAILURE
