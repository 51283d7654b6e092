"""The AWS-backed commands: ``oidc publish`` and the ``iam`` family."""

from __future__ import annotations

import argparse
from typing import TextIO

from irsa_webhook.aws.publish import object_keys, plan_publish
from irsa_webhook.aws.session import connect
from irsa_webhook.oidc import DISCOVERY_PATH, JWKS_PATH
from irsa_webhook.oidc_command import issuer_and_keys, rendered_documents


def run(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if arguments.command == "oidc":
        return _publish(arguments, out)
    raise AssertionError(f"no such command: {arguments.command} {arguments.action}")


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
