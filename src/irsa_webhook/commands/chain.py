"""What the ``oidc`` and ``iam`` commands share: their common options, and how a failure
becomes one line. Only argparse at import time: what runs a command is imported when it runs,
so ``serve`` never loads boto3 or the AWS code."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from typing import TextIO

EXIT_FAILURE = 1


class MissingExtra(Exception):
    """boto3 is not installed (the ``aws`` extra); the message says what to install."""


def key_sources(parser: argparse.ArgumentParser, *, required: bool) -> None:
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


def kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default="",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
    )


def aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="AWS profile (default: boto3's standard configuration)")
    parser.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")


def dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def cluster_and_aws(parser: argparse.ArgumentParser) -> None:
    """``--kubeconfig``, ``--profile``, ``--region`` and ``--dry-run``: every AWS command's."""
    kubeconfig(parser)
    aws_options(parser)
    dry_run(parser)


def service_account(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", required=True)
    parser.add_argument("--service-account", required=True)


Runner = Callable[[argparse.Namespace, TextIO, TextIO], int]
Loaded = tuple[Runner, tuple[type[Exception], ...]]
"""A command's function and the exception types that are its user-facing failures."""


def guarded(arguments: argparse.Namespace, load: Callable[[], Loaded]) -> int:
    """Runs the command ``load()`` imports; a failure is one line on stderr and exit 1."""
    from irsa_webhook.kubeclient import ClusterError
    from irsa_webhook.oidc import IssuerError

    failures: tuple[type[Exception], ...] = (IssuerError, ClusterError, OSError, MissingExtra)
    try:
        runner, own_failures = load()
        failures = (*failures, *own_failures)
        return runner(arguments, sys.stdout, sys.stderr)
    except failures as exc:
        print(f"irsa-webhook {arguments.command} {arguments.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def load_aws() -> Loaded:
    """The AWS commands' entry point, or ``MissingExtra`` when boto3 is not installed."""
    if importlib.util.find_spec("boto3") is None:
        raise MissingExtra(
            "the oidc publish and iam commands need boto3: pip install 'irsa-webhook[aws]'"
        )
    from irsa_webhook.aws import commands
    from irsa_webhook.aws.session import AwsError

    return commands.run, (AwsError,)
