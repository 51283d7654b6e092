"""``python -m irsa_lab up|down DIR`` (what ``hack/lab.sh`` runs) and ``sts|issuer ...``, the
lab's two servers, each in the foreground (what ``up`` starts)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from irsa_webhook.logs import configure


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m irsa_lab")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "bring the lab up in DIR"),
        ("down", "stop the lab of DIR"),
        ("scenario", "a pod reads an S3 object through its role, on the lab of DIR"),
    ):
        commands.add_parser(name, help=text).add_argument("dir", help="the lab's directory")

    sts = commands.add_parser("sts", help="the validating STS before moto's")
    sts.add_argument("--host", required=True, help="address to listen on")
    sts.add_argument("--port", type=int, required=True)
    sts.add_argument("--moto-url", required=True, help="moto server, e.g. http://10.88.0.1:5000")
    sts.add_argument("--region", default="us-east-1", help="region of the lab's IAM client")
    sts.add_argument(
        "--ca-bundle",
        default=None,
        help="CA certificates trusted for issuers and moto over https (default: the system's)",
    )

    issuer = commands.add_parser("issuer", help="moto's S3 objects over https, path style")
    issuer.add_argument("--host", required=True)
    issuer.add_argument("--port", type=int, default=443)
    issuer.add_argument("--moto-url", required=True)
    issuer.add_argument("--tls-cert", required=True)
    issuer.add_argument("--tls-key", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure("text", "info")
    if args.command in ("up", "down"):
        from irsa_lab import lab

        return lab.main([args.command, args.dir])
    if args.command == "scenario":
        from irsa_lab import scenario

        return scenario.main(args.dir)
    if args.command == "sts":
        from irsa_lab import sts_server
        from irsa_lab.iam_directory import MotoDirectory
        from irsa_lab.issuer_keys import HttpsKeySource
        from irsa_lab.serving import server
        from irsa_lab.trust import IamTrustPolicy

        validator = sts_server.Validator(
            MotoDirectory(args.moto_url, args.region, args.ca_bundle),
            HttpsKeySource(args.ca_bundle),
            IamTrustPolicy(),
        )
        app = sts_server.create_app(validator, args.moto_url, args.ca_bundle)
        server(app, args.host, args.port).run()
    else:
        from irsa_lab import issuer_server
        from irsa_lab.serving import server, tls_context

        context = tls_context(args.tls_cert, args.tls_key)
        server(issuer_server.create_app(args.moto_url), args.host, args.port, context).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
