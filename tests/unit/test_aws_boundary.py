"""The webhook never needs AWS: ``serve``'s import path loads neither boto3 nor the AWS code,
and the AWS commands say what to install when the ``aws`` extra is missing."""

from __future__ import annotations

import subprocess
import sys

from chain_probe import FORBIDDEN, loaded_after


def test_serve_and_the_cli_parser_load_no_aws_code() -> None:
    loaded = loaded_after("from irsa_webhook import cli, server; cli.parse_arguments(['serve'])")
    assert loaded & FORBIDDEN == set()


def test_the_aws_free_oidc_commands_load_no_aws_code() -> None:
    loaded = loaded_after(
        "import sys; from irsa_webhook import cli; "
        "cli.main(['oidc', 'documents', '--issuer', 'http://x', '--public-key', 'k', '--out', 'd'])"
    )
    assert loaded & FORBIDDEN == set()


def test_the_aws_commands_without_boto3_say_which_extra_to_install() -> None:
    # None in sys.modules is Python's "this module is not there", as without the extra.
    program = (
        "import sys\n"
        "sys.modules['boto3'] = sys.modules['botocore'] = None\n"
        "from irsa_webhook.cli import main\n"
        "raise SystemExit(main(['oidc', 'publish', '--issuer', 'https://x.example', "
        "'--bucket', 'b', '--public-key', 'k']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "irsa-webhook oidc publish: the oidc publish and iam commands need boto3: "
        "pip install 'irsa-webhook[aws]'"
    ]
