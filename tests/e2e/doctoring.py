"""Running ``irsa-webhook doctor`` as a user does, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from cluster import ControlPlane

CLUSTER_SIDE = (
    "service-account",
    "pod-mutated",
    "webhook-reachable",
    "token-readable",
    "credential-shadowing",
    "issuer-discovery",
    "issuer-match",
    "jwks-kid",
)
AWS_SIDE = ("provider-exists", "provider-audience", "trust-policy", "sts-probe")

HARDENED_TOKEN_VOLUME = {
    "name": "aws-iam-token",
    "projected": {
        "defaultMode": 0o600,
        "sources": [
            {
                "serviceAccountToken": {
                    "audience": "sts.amazonaws.com",
                    "expirationSeconds": 86400,
                    "path": "token",
                }
            }
        ],
    },
}
"""The webhook's token volume as a pod brings it itself, 0600 as some policies require: with
containers of two users the kubelet cannot give the file to both, so it stays root's."""


@contextmanager
def anonymous_issuer_reads(control_plane: ControlPlane) -> Iterator[None]:
    """Let anonymous clients read the issuer documents, as STS must (the k8s docs' binding)."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "doctor-e2e-issuer-discovery"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:service-account-issuer-discovery",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Group",
                "name": "system:unauthenticated",
            }
        ],
    }
    control_plane.apply(binding)
    try:
        yield
    finally:
        control_plane.kubectl("delete", "clusterrolebinding", "doctor-e2e-issuer-discovery")


def doctor(
    plane: ControlPlane,
    *args: str,
    configuration: str = "irsa",
    aws: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Doctor with the admin kubeconfig; AWS configuration only from ``aws``, none otherwise."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ["KUBECONFIG"] = plane.kubeconfig
    environ.update(aws or {})
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "irsa-webhook"),
            "doctor",
            *args,
            "--webhook-configuration",
            configuration,
            "--ca-bundle",
            plane.ca_cert,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )


def doctor_json(
    plane: ControlPlane,
    *args: str,
    configuration: str = "irsa",
    aws: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Doctor's JSON report, read by ``report_of``."""
    return report_of(doctor(plane, *args, "--output", "json", configuration=configuration, aws=aws))


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """A JSON report by check id, and the set of failed ids; the exit code agrees with it."""
    assert result.returncode in (0, 1), result.stderr
    checks = orjson.loads(result.stdout)
    assert [c["check"] for c in checks] == [*CLUSTER_SIDE, *AWS_SIDE]
    assert all(set(c) == {"check", "status", "evidence", "symptom", "fix"} for c in checks)
    by_id = {c["check"]: c for c in checks}
    failed = {c["check"] for c in checks if c["status"] == "fail"}
    assert result.returncode == (1 if failed else 0)
    return {"checks": by_id, "failed": failed}


def create(plane: ControlPlane, document: dict[str, Any]) -> dict[str, Any]:
    created = plane.kubectl(
        "create", "-o", "json", "-f", "-", stdin=orjson.dumps(document).decode()
    )
    return orjson.loads(created.stdout)  # type: ignore[no-any-return]
