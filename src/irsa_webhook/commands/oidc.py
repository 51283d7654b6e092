"""``irsa-webhook oidc documents|publish|verify``: the cluster's OIDC issuer documents, built
with kube-apiserver's ``kid``, published to S3, and checked as STS reads them."""

from __future__ import annotations

import argparse

from irsa_webhook.commands import chain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)

    documents = actions.add_parser(
        "documents", help="write the discovery document and the JWKS to a directory"
    )
    documents.add_argument("--issuer", help="the public issuer URL (--service-account-issuer)")
    chain.key_sources(documents, required=True)
    documents.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    chain.kubeconfig(documents)

    publish = actions.add_parser(
        "publish", help="put both documents into S3, readable by anyone (bucket policy, no ACLs)"
    )
    publish.add_argument("--issuer", help="the public issuer URL (--service-account-issuer)")
    publish.add_argument("--bucket", required=True)
    chain.key_sources(publish, required=True)
    chain.cluster_and_aws(publish)

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
    chain.kubeconfig(verify)


def run(arguments: argparse.Namespace) -> int:
    if arguments.action == "publish":
        return chain.guarded(arguments, chain.load_aws)
    return chain.guarded(arguments, _load_local)


def _load_local() -> chain.Loaded:
    from irsa_webhook import oidc_command

    return oidc_command.run, ()
