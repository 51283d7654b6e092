"""``irsa-webhook oidc documents`` and ``oidc verify``: no AWS, only the cluster and HTTPS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

import orjson

from irsa_webhook.issuer import ca_context, cluster_issuer, fetch_published
from irsa_webhook.kubeclient import Cluster
from irsa_webhook.oidc import (
    DISCOVERY_PATH,
    JWKS_PATH,
    IssuerError,
    PublicKey,
    discovery_document,
    jwks,
    key_id,
    load_public_keys,
    published_problems,
    validate_issuer,
)


def issuer_and_keys(arguments: argparse.Namespace) -> tuple[str, list[PublicKey]]:
    """The issuer and keys to publish: from key files (``--issuer`` required) or the cluster
    (``--issuer``, when given, must be the cluster's own)."""
    if not arguments.from_cluster:
        if not arguments.issuer:
            raise IssuerError("--issuer is required with --public-key")
        issuer = validate_issuer(arguments.issuer)
        keys: list[PublicKey] = []
        for path in arguments.public_key:
            keys.extend(load_public_keys(Path(path).read_bytes(), path))
        return issuer, keys
    with Cluster.connect(arguments.kubeconfig) as cluster:
        current = cluster_issuer(cluster)
    if arguments.issuer and arguments.issuer != current.issuer:
        raise IssuerError(
            f"the cluster's issuer is {current.issuer!r}, not {arguments.issuer!r}: its tokens "
            "carry the cluster's; fix --service-account-issuer or drop --issuer"
        )
    return validate_issuer(current.issuer), current.keys


def rendered_documents(issuer: str, keys: list[PublicKey]) -> dict[str, bytes]:
    """Path under the issuer to document, as published."""
    option = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    return {
        DISCOVERY_PATH: orjson.dumps(discovery_document(issuer, keys), option=option),
        JWKS_PATH: orjson.dumps(jwks(keys), option=option),
    }


def run(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if arguments.action == "documents":
        return _documents(arguments, out)
    return _verify(arguments, out, err)


def _documents(arguments: argparse.Namespace, out: TextIO) -> int:
    issuer, keys = issuer_and_keys(arguments)
    directory = Path(arguments.out)
    for path, content in rendered_documents(issuer, keys).items():
        target = directory / path
        if target.is_file() and target.read_bytes() == content:
            print(f"unchanged: {target}", file=out)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        print(f"done: wrote {target}", file=out)
    print(f"keys: {', '.join(key_id(key) for key in keys)}", file=out)
    return 0


def _verify(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if arguments.public_key:
        if not arguments.issuer:
            raise IssuerError("--issuer is required with --public-key")
        issuer = arguments.issuer
        keys: list[PublicKey] = []
        for path in arguments.public_key:
            keys.extend(load_public_keys(Path(path).read_bytes(), path))
    else:
        arguments.from_cluster = True
        issuer, keys = issuer_and_keys(arguments)
    published = fetch_published(issuer, ca_context(arguments.ca_bundle))
    kids = [key_id(key) for key in keys]
    problems = published_problems(issuer, published.discovery, published.jwks, kids)
    for warning in published.problems:
        print(f"warning: {warning}", file=err)
    if problems:
        raise IssuerError("; ".join(problems))
    print(f"ok: {issuer} serves its discovery document and JWKS anonymously over https", file=out)
    print(f"ok: the JWKS holds every current signing key ({', '.join(kids)})", file=out)
    return 0
