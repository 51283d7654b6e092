"""The ``irsa-webhook`` command: a table of subcommands, each in its own module.

A subcommand's module is imported only when that subcommand runs, so ``serve`` does not pay at
start-up for what ``mutate``, the AWS tools or ``doctor`` need (YAML, jsonpatch, boto3), and
``irsa-webhook --help`` imports none of them.

To add a subcommand, add one ``Command`` line to ``COMMANDS`` naming a module that defines
``add_arguments(parser)`` and ``run(arguments) -> int`` (``irsa_webhook/commands/mutate.py`` is
a short example). ``run`` raises ``ConfigError`` or ``UsageError`` for bad input: it is printed
as one line and the exit code is 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from irsa_webhook import __version__
from irsa_webhook.commands import EXIT_USAGE, UsageError
from irsa_webhook.config import ConfigError


class CommandModule(Protocol):
    """What a subcommand's module provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, arguments: argparse.Namespace) -> int: ...


@dataclass(frozen=True, slots=True)
class Command:
    module: str
    """Imported only when this subcommand is the one invoked."""
    help: str
    """One line for ``irsa-webhook --help`` (shown without importing the module)."""

    def load(self) -> CommandModule:
        return cast(CommandModule, importlib.import_module(self.module))


COMMANDS: dict[str, Command] = {
    "serve": Command("irsa_webhook.commands.serve", "run the admission webhook server"),
    "mutate": Command(
        "irsa_webhook.commands.mutate", "mutate a pod file offline and print the result"
    ),
    "oidc": Command(
        "irsa_webhook.commands.oidc",
        "build, publish (S3) and verify the cluster's OIDC issuer documents",
    ),
    "iam": Command(
        "irsa_webhook.commands.iam",
        "the IAM OIDC provider, and roles bound to ServiceAccounts, on any cluster",
    ),
    "doctor": Command(
        "irsa_webhook.commands.doctor",
        "check every link of a pod's IRSA chain and say which one is broken",
    ),
}


def parse_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, CommandModule | None]:
    """The parsed arguments and the invoked subcommand's module (imported here, only that one).

    Exits through argparse on ``--help``, ``--version`` and usage errors, as argparse does.
    """
    parser = argparse.ArgumentParser(
        prog="irsa-webhook",
        description="Kubernetes admission webhook that gives pods AWS IAM identities (IRSA).",
    )
    parser.add_argument("--version", action="version", version=f"irsa-webhook {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}"
    )
    invoked = _invoked_command(argv)
    module = None
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=command.help, description=command.help)
        if name == invoked:
            module = command.load()
            module.add_arguments(subparser)
    return parser.parse_args(argv), module


def _invoked_command(argv: Sequence[str]) -> str | None:
    """The subcommand's name: the first word that is not an option (the top level has only
    options without values: ``--help``, ``--version``)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    arguments, module = parse_arguments(sys.argv[1:] if argv is None else argv)
    assert module is not None  # argparse has exited unless a known subcommand was given
    try:
        return module.run(arguments)
    except (ConfigError, UsageError) as exc:
        print(f"irsa-webhook: {exc}", file=sys.stderr)
        return EXIT_USAGE
