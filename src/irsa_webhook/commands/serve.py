"""``irsa-webhook serve``: run the admission webhook server.

Only the flags are imported to parse the command line; the server and its libraries are
imported when it starts.
"""

from __future__ import annotations

import argparse

from irsa_webhook import __version__, flags
from irsa_webhook.config import ConfigError
from irsa_webhook.parsing import parse_bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--in-cluster",
        type=_bool_arg,
        nargs="?",
        const=True,
        default=False,
        metavar="true|false",
        help="the reference's deprecated CSR mode; only false is accepted",
    )
    parser.add_argument("--version", action="version", version=f"irsa-webhook {__version__}")
    flags.add_flags(parser, flags.SERVER_FLAGS)
    flags.add_flags(parser, flags.MUTATION_FLAGS)
    flags.add_flags(parser, flags.RECONCILE_FLAGS)
    flags.add_flags(parser, flags.LEGACY_FLAGS)


def _bool_arg(value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(arguments: argparse.Namespace) -> int:
    if arguments.in_cluster:
        raise ConfigError(
            "--in-cluster=true (the reference's CSR mode) is not supported: mount a serving "
            "certificate and pass --tls-cert and --tls-key (the Helm chart does this)"
        )
    settings = flags.server_settings(arguments)
    from irsa_webhook.server import serve

    return serve(settings)
