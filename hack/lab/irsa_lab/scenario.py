"""The seed's scenario on the lab: a pod reads an S3 object through its ServiceAccount's role.

The steps are the user's own commands: ``irsa-webhook oidc publish`` (the issuer documents into
the lab's S3), ``irsa-webhook iam create-provider`` and ``irsa-webhook iam bind`` (a role that
trusts one ServiceAccount and may read one object, the SA annotated with it). Then a pod of the
lab image runs with that ServiceAccount and only ``DIR/pod-aws-env.json`` (the lab's STS and S3
endpoints): boto3's default credential chain finds what the webhook injected, the validating
STS checks the token, and the pod prints the object, or the error STS gave.

``python -m irsa_lab scenario DIR`` runs it on a lab that is up (hack/demo.sh does); the lab's
tests run it too, and break one link at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import yaml

from irsa_lab.lab import NAMESPACE_LABEL, WEBHOOK_CONFIGURATION, Lab, read_env
from localnode.layout import REPO

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client

DATA_BUCKET = "irsa-lab-data"
DATA_KEY = "greeting.txt"
GREETING = "Hello from the lab's S3: this pod read me through its ServiceAccount's IAM role.\n"
POD_SECONDS = 180.0

# What runs in the pod: nothing but boto3's default chain, as an application would.
READER = """
import sys
import boto3
import botocore.exceptions
try:
    body = boto3.client("s3").get_object(Bucket=sys.argv[1], Key=sys.argv[2])["Body"]
except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
    print(error)
    sys.exit(1)
sys.stdout.write(body.read().decode())
"""


class ScenarioError(Exception):
    """A step of the scenario failed for a reason outside the chain (a command, a pod that
    never ran); the message carries the command's output."""


@dataclass(frozen=True)
class PodRun:
    """What the reader pod did: its name, its phase (Succeeded or Failed) and what it printed."""

    name: str
    phase: str
    output: str


@dataclass
class Scenario:
    """The lab's host environment (DIR/env) and the commands of the scenario on it."""

    lab: Lab
    env: dict[str, str]

    @classmethod
    def of(cls, lab: Lab) -> Scenario:
        return cls(lab, read_env(lab.env))

    @property
    def issuer(self) -> str:
        return self.env["ISSUER_URL"]

    def role_arn(self, role: str) -> str:
        sts = self.session().client("sts", endpoint_url=self.env["AWS_ENDPOINT_URL_STS"])
        return f"arn:aws:iam::{sts.get_caller_identity()['Account']}:role/{role}"

    # ------------------------------------------------------------- commands --

    def command(self, *argv: str, stdin: str | None = None) -> str:
        environment = {**os.environ, **self.env}
        result = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise ScenarioError(
                f"{' '.join(argv[:4])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def irsa_webhook(self, *args: str) -> str:
        return self.command(str(REPO / ".venv" / "bin" / "irsa-webhook"), *args)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.command(
            self.env["KUBECTL"], "--kubeconfig", self.env["KUBECONFIG"], *args, stdin=stdin
        )

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_REGION"],
        )

    def iam(self) -> IAMClient:
        return self.session().client("iam", endpoint_url=self.env["AWS_ENDPOINT_URL"])

    def s3(self) -> S3Client:
        return self.session().client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"])

    def doctor(
        self, kind: str, name: str, namespace: str, *args: str
    ) -> subprocess.CompletedProcess[str]:
        """``irsa-webhook doctor`` as a user runs it against the lab; exit 1 (a check failed)
        is a report like exit 0, anything else raises."""
        result = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "irsa-webhook"), "doctor", kind, name,
                "-n", namespace, "--webhook-configuration", WEBHOOK_CONFIGURATION, *args,
            ],
            capture_output=True, text=True, env={**os.environ, **self.env}, timeout=120,
            check=False,
        )  # fmt: skip
        if result.returncode not in (0, 1):
            raise ScenarioError(f"doctor could not run ({result.returncode}): {result.stderr}")
        return result

    # ---------------------------------------------------------------- steps --

    def publish(self, *keys: Path) -> None:
        """``oidc publish``: the cluster's keys, or ``keys`` (PEM files) instead."""
        source = [arg for key in keys for arg in ("--public-key", str(key))] or ["--from-cluster"]
        self.irsa_webhook(
            "oidc", "publish", "--bucket", self.env["LAB_BUCKET"], "--issuer", self.issuer,
            *source,
        )  # fmt: skip

    def create_provider(self, *audiences: str, issuer: str = "") -> None:
        """``iam create-provider`` for the issuer (or ``issuer``), with these audiences."""
        wanted = [arg for audience in audiences for arg in ("--audience", audience)]
        self.irsa_webhook("iam", "create-provider", "--issuer", issuer or self.issuer, *wanted)

    def delete_providers(self) -> None:
        iam = self.iam()
        for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])

    def put_greeting(self) -> None:
        s3 = self.s3()
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        if DATA_BUCKET not in existing:
            s3.create_bucket(Bucket=DATA_BUCKET)
        s3.put_object(Bucket=DATA_BUCKET, Key=DATA_KEY, Body=GREETING.encode())

    def namespace(self, name: str) -> None:
        self.kubectl("create", "namespace", name)
        self.kubectl("label", "namespace", name, f"{NAMESPACE_LABEL}=enabled")

    def service_account(self, namespace: str, name: str, role_arn: str = "") -> None:
        annotations = {"eks.amazonaws.com/role-arn": role_arn} if role_arn else {}
        document = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        }
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))

    def bind(self, namespace: str, account: str, role: str) -> None:
        """``iam bind``: a role trusting ``namespace``/``account`` that may read the greeting."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{DATA_BUCKET}/{DATA_KEY}",
                }
            ],
        }
        policy_file = self.lab.dir / f"policy-{role}.json"
        policy_file.write_text(json.dumps(policy))
        self.irsa_webhook(
            "iam", "bind", "--namespace", namespace, "--service-account", account,
            "--role-name", role, "--inline-policy", str(policy_file), "--issuer", self.issuer,
        )  # fmt: skip

    def read_greeting(
        self,
        namespace: str,
        account: str,
        env: Sequence[Mapping[str, str]] = (),
        **spec: Any,
    ) -> PodRun:
        """A pod of the lab image with ``account`` and only the lab's endpoints (and ``env``)
        reads the greeting; its phase and output once it has finished."""
        return self.run_pod(
            namespace, account, ["python3", "-c", READER, DATA_BUCKET, DATA_KEY], env, **spec
        )

    def run_pod(
        self,
        namespace: str,
        account: str,
        command: Sequence[str],
        env: Sequence[Mapping[str, str]] = (),
        **spec: Any,
    ) -> PodRun:
        """A pod of the lab image whose container ``reader`` runs ``command`` with the lab's
        endpoints and ``env``; ``spec`` adds to the pod's spec (its ``containers`` run beside
        the reader). The phase and the reader's output once the pod has finished."""
        name = f"reader-{uuid.uuid4().hex[:6]}"
        reader = {
            "name": "reader",
            "image": self.env["LAB_IMAGE"],
            "imagePullPolicy": "Never",
            "command": list(command),
            "env": [*json.loads(self.lab.pod_env.read_text()), *env],
        }
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                **spec,
                "serviceAccountName": account,
                "restartPolicy": "Never",
                "containers": [reader, *spec.get("containers", [])],
            },
        }
        self.kubectl("create", "-f", "-", stdin=json.dumps(pod))
        deadline = time.monotonic() + POD_SECONDS
        phase = ""
        while time.monotonic() < deadline:
            phase = self.kubectl(
                "get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}"
            )
            if phase in ("Succeeded", "Failed"):
                logs = self.kubectl("logs", name, "-n", namespace, "-c", "reader")
                return PodRun(name, phase, logs)
            time.sleep(0.5)
        raise ScenarioError(
            f"pod {namespace}/{name} still {phase or 'Pending'} after {POD_SECONDS:.0f} s"
        )


def run(lab: Lab) -> tuple[Scenario, str, PodRun]:
    """The whole scenario on a lab that is up, in a namespace of its own; each step is said on
    stderr as the command a user would type. The scenario, the namespace and the reader's run."""
    scenario = Scenario.of(lab)
    namespace = f"lab-demo-{uuid.uuid4().hex[:6]}"
    bucket = scenario.env["LAB_BUCKET"]
    _say(f"irsa-webhook oidc publish --bucket {bucket} --issuer {scenario.issuer} --from-cluster")
    scenario.publish()
    _say(f"irsa-webhook iam create-provider --issuer {scenario.issuer}")
    scenario.create_provider()
    _say(f"s3://{DATA_BUCKET}/{DATA_KEY} put into the lab's S3")
    scenario.put_greeting()
    scenario.namespace(namespace)
    scenario.service_account(namespace, "s3-reader")
    _say(
        f"irsa-webhook iam bind --namespace {namespace} --service-account s3-reader "
        f"--role-name lab-s3-reader --inline-policy <s3:GetObject on s3://{DATA_BUCKET}/{DATA_KEY}>"
    )
    scenario.bind(namespace, "s3-reader", "lab-s3-reader")
    _say(
        f"a pod of {scenario.env['LAB_IMAGE']} as {namespace}/s3-reader, env "
        f"{', '.join(entry['name'] for entry in json.loads(lab.pod_env.read_text()))} only, "
        'runs boto3.client("s3").get_object(...); it prints:'
    )
    return scenario, namespace, scenario.read_greeting(namespace, "s3-reader")


def run_broken(
    scenario: Scenario, namespace: str
) -> tuple[PodRun, subprocess.CompletedProcess[str]]:
    """The commonest break: another ServiceAccount names the same role, whose trust policy
    names only s3-reader. Its pod's error, then doctor's text report on that pod."""
    role_arn = scenario.role_arn("lab-s3-reader")
    _say(
        f"kubectl annotate serviceaccount -n {namespace} intruder "
        f"eks.amazonaws.com/role-arn={role_arn}  (the role trusts only s3-reader); "
        "its pod prints:"
    )
    scenario.service_account(namespace, "intruder", role_arn)
    broken = scenario.read_greeting(namespace, "intruder")
    _say(f"irsa-webhook doctor pod {broken.name} -n {namespace}")
    return broken, scenario.doctor("pod", broken.name, namespace)


def _say(message: str) -> None:
    sys.stderr.write(f"[scenario] {message}\n")
    sys.stderr.flush()


def main(directory: str) -> int:
    """The scenario, then the broken pod and doctor on it; 0 when the first pod read the
    object, the second did not, and doctor found the broken link."""
    scenario, namespace, result = run(Lab(Path(directory).resolve()))
    sys.stdout.write(result.output)
    sys.stdout.flush()
    if result.phase != "Succeeded":
        return 1
    broken, report = run_broken(scenario, namespace)
    sys.stdout.write(broken.output.strip().splitlines()[-1] + "\n")
    sys.stdout.write(report.stdout)
    return 0 if (broken.phase, report.returncode) == ("Failed", 1) else 1
