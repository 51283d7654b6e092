"""``irsa-webhook doctor``: walk every link of a pod's IRSA chain and name the broken one.

Checks run in order, cheap cluster-local ones first (``CHECK_IDS``). Each check is a pure
function over facts gathered at the edges (``gather`` for the API server, ``aws_side`` for AWS,
which imports boto3 only when it runs); ``report`` renders the results. Doctor is read-only: it
reads objects, mints a short token with TokenRequest and creates a pod with ``dryRun=All``, none
of which changes the cluster; on AWS it only reads IAM and calls STS unsigned.
"""

from __future__ import annotations

import argparse

from irsa_webhook import flags

WEBHOOK_NAME = "pod-identity-webhook.amazonaws.com"
"""The webhook's name in its MutatingWebhookConfiguration (the chart keeps the reference's)."""

CHECK_IDS = (
    "service-account",
    "pod-mutated",
    "webhook-reachable",
    "token-readable",
    "credential-shadowing",
    "issuer-discovery",
    "issuer-match",
    "jwks-kid",
    "provider-exists",
    "provider-audience",
    "trust-policy",
    "sts-probe",
)
"""Stable ids, in the order the checks run; scripts match on them."""


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
