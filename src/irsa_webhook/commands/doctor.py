"""``irsa-webhook doctor pod|serviceaccount NAME -n NS``: check every link of the IRSA chain.

Read-only checks, cheap cluster-local ones first; exit 0 when none failed, 1 when one did, 2
when doctor could not run. The checks live in ``irsa_webhook.doctor``.
"""

from __future__ import annotations

import argparse
import sys

from irsa_webhook import flags
from irsa_webhook.doctor import WEBHOOK_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=("pod", "serviceaccount"), help="what to examine")
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--kubeconfig", default="", help="default: $KUBECONFIG, ~/.kube/config")
    parser.add_argument(
        "--webhook-configuration",
        default="",
        help=f"MutatingWebhookConfiguration to examine (default: the one with {WEBHOOK_NAME})",
    )
    parser.add_argument(
        "--ca-bundle",
        default="",
        help="CA file to trust for the issuer's https documents (default: $AWS_CA_BUNDLE, "
        "else the system's)",
    )
    flags.add_flags(parser, flags.MUTATION_FLAGS)


def run(arguments: argparse.Namespace) -> int:
    from irsa_webhook.doctor.command import run as run_doctor

    return run_doctor(arguments, sys.stdout, sys.stderr)
