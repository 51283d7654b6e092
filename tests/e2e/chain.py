"""Running the ``irsa-webhook`` CLI as a user does, in its own process, against the real API
server and moto's server; and reading state back with boto3 and kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aws_emulator import MotoServer
from cluster import ControlPlane

CLI = "from irsa_webhook.cli import main; raise SystemExit(main())"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    def fails_with(self, reason: str) -> bool:
        """Exit 1 with exactly one line on stderr that names ``reason``; no traceback."""
        lines = self.stderr.strip().splitlines()
        return (
            self.returncode == 1
            and len(lines) == 1
            and reason in lines[0]
            and "Traceback" not in self.stderr
        )


def irsa(*args: str, env: dict[str, str] | None = None) -> Outcome:
    """``irsa-webhook ARGS`` with ``env`` on top of a clean environment (no AWS_* from the host)."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    base.pop("KUBECONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "HOME": "/nonexistent", **(env or {})},
        check=False,
    )
    return Outcome(result.returncode, result.stdout, result.stderr)


def aws_env(moto: MotoServer, plane: ControlPlane) -> dict[str, str]:
    return {**moto.env, "KUBECONFIG": plane.kubeconfig}


def kubeconfig_with_server(plane: ControlPlane, path: Path, server: str) -> str:
    """The admin kubeconfig pointed at ``server`` (same CA and token)."""
    config = yaml.safe_load(Path(plane.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return str(path)


def role_or_none(moto: MotoServer, name: str) -> dict[str, Any] | None:
    """The IAM role ``name`` as moto has it, or None."""
    client = moto.client("iam")
    try:
        role: dict[str, Any] = client.get_role(RoleName=name)["Role"]
    except client.exceptions.NoSuchEntityException:
        return None
    return role


def attached(moto: MotoServer, name: str) -> set[str]:
    """The managed-policy ARNs attached to role ``name``."""
    answer = moto.client("iam").list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    return {policy["PolicyArn"] for policy in answer}


def sa_metadata(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    """The ServiceAccount's metadata as kubectl shows it, or None when it does not exist."""
    result = plane.kubectl("get", "sa", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    metadata: dict[str, Any] = json.loads(result.stdout)["metadata"]
    return metadata
