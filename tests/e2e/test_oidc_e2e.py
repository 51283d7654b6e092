"""``irsa-webhook oidc documents|publish|verify`` against the real kube-apiserver (its key file,
its own JWKS) and moto's S3 server over https, read back with boto3 and anonymous GETs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aws_emulator import MotoServer
from chain import irsa, kubeconfig_with_server
from cluster import ControlPlane
from irsa_webhook.oidc import jwks, key_id, load_public_keys

# Each CLI run is a fresh interpreter loading boto3 and the kubernetes client; the first test
# also waits for the control plane and moto to start.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def bucket() -> str:
    """A bucket name of this test's own (the emulator is shared by the session)."""
    return f"irsa-oidc-{uuid.uuid4().hex[:12]}"


def bucket_exists(moto: MotoServer, name: str) -> bool:
    return name in {entry["Name"] for entry in s3(moto).list_buckets()["Buckets"]}


def s3(moto: MotoServer) -> Any:
    return moto.client("s3")


def sa_pub(plane: ControlPlane) -> str:
    return str(plane.directory / "sa.pub")


def api_server_documents(plane: ControlPlane) -> tuple[dict[str, Any], dict[str, Any]]:
    with plane.client() as http:
        discovery = http.get("/.well-known/openid-configuration").json()
        served = http.get("/openid/v1/jwks").json()
    return discovery, served


def test_the_jwks_of_the_key_file_is_the_api_servers_own(control_plane: ControlPlane) -> None:
    keys = load_public_keys(Path(sa_pub(control_plane)).read_bytes(), "sa.pub")
    _, served = api_server_documents(control_plane)
    assert jwks(keys) == served
    assert [entry["kid"] for entry in served["keys"]] == [key_id(keys[0])]


def test_documents_from_the_cluster_and_from_the_key_file_agree_with_the_api_server(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = control_plane
    from_file = irsa(
        "oidc", "documents", "--issuer", plane.url, "--public-key", sa_pub(plane),
        "--out", str(tmp_path / "file"),
    )  # fmt: skip
    from_cluster = irsa(
        "oidc", "documents", "--from-cluster", "--kubeconfig", plane.kubeconfig,
        "--out", str(tmp_path / "cluster"),
    )  # fmt: skip
    assert from_file.returncode == 0, from_file.stderr
    assert from_cluster.returncode == 0, from_cluster.stderr
    discovery, served = api_server_documents(plane)
    for directory in ("file", "cluster"):
        written = tmp_path / directory
        assert json.loads((written / ".well-known/openid-configuration").read_text()) == discovery
        assert json.loads((written / "openid/v1/jwks").read_text()) == served
    assert "done: wrote" in from_cluster.stdout


def test_documents_for_a_public_issuer_point_the_jwks_uri_there_not_at_the_api_server(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    issuer = "https://oidc.example.com/cluster-1"
    outcome = irsa(
        "oidc", "documents", "--issuer", issuer, "--public-key", sa_pub(control_plane),
        "--out", str(tmp_path),
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr
    discovery = json.loads((tmp_path / ".well-known/openid-configuration").read_text())
    assert discovery["issuer"] == issuer
    assert discovery["jwks_uri"] == f"{issuer}/openid/v1/jwks"


def test_a_second_documents_run_changes_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    args = ("oidc", "documents", "--from-cluster", "--kubeconfig", control_plane.kubeconfig)
    assert irsa(*args, "--out", str(tmp_path)).returncode == 0
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    again = irsa(*args, "--out", str(tmp_path))
    assert again.returncode == 0
    assert again.stdout.count("unchanged:") == 2
    assert {path: path.stat().st_mtime_ns for path in before} == before


def test_an_issuer_other_than_the_clusters_is_refused(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    outcome = irsa(
        "oidc", "documents", "--from-cluster", "--kubeconfig", control_plane.kubeconfig,
        "--issuer", control_plane.url + "/", "--out", str(tmp_path),
    )  # fmt: skip
    assert outcome.fails_with("the cluster's issuer is")
    assert list(tmp_path.iterdir()) == []


def test_a_cluster_without_a_discovery_endpoint_is_refused(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # kube-apiserver registers no discovery route for an issuer that is not an https URL, and
    # answers 404 there; this API server answers the same 404 below a path it does not serve.
    kubeconfig = kubeconfig_with_server(
        control_plane, tmp_path / "kubeconfig", control_plane.url + "/no-discovery-here"
    )
    outcome = irsa(
        "oidc", "documents", "--from-cluster", "--kubeconfig", kubeconfig,
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert outcome.fails_with("serves no /.well-known/openid-configuration")
    assert not (tmp_path / "out").exists()


def test_an_identity_that_may_not_read_discovery_gets_the_api_servers_answer(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    config["users"][0]["user"]["token"] = control_plane.env["WEBHOOK_TOKEN"]
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    outcome = irsa(
        "oidc", "documents", "--from-cluster", "--kubeconfig", str(tmp_path / "kubeconfig"),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert outcome.fails_with("403")


def publish_args(
    moto: MotoServer, plane: ControlPlane, bucket: str, *extra: str
) -> tuple[str, ...]:
    return (
        "oidc", "publish", "--issuer", f"{moto.url}/{bucket}", "--bucket", bucket,
        "--public-key", sa_pub(plane), *extra,
    )  # fmt: skip


def test_publish_puts_both_documents_world_readable_and_nothing_else(
    moto: MotoServer, bucket: str, control_plane: ControlPlane
) -> None:
    outcome = irsa(*publish_args(moto, control_plane, bucket), env=moto.env)
    assert outcome.returncode == 0, outcome.stderr
    client = s3(moto)
    for key in (".well-known/openid-configuration", "openid/v1/jwks"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "application/json"
        assert head["CacheControl"] == "public, max-age=300"
    policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"] == [
        {
            "Sid": "IrsaWebhookPublicOidcDocuments",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": [
                f"arn:aws:s3:::{bucket}/.well-known/openid-configuration",
                f"arn:aws:s3:::{bucket}/openid/v1/jwks",
            ],
        }
    ]
    block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    }
    # Anonymous reads: the two documents yes, any other object of the bucket no.
    client.put_object(Bucket=bucket, Key="private.txt", Body=b"secret")
    with httpx.Client(verify=moto.trust()) as http:
        published = http.get(f"{moto.url}/{bucket}/openid/v1/jwks")
        assert published.status_code == 200
        _, served = api_server_documents(control_plane)
        assert published.json() == served
        assert http.get(f"{moto.url}/{bucket}/private.txt").status_code == 403


def test_publish_then_verify_round_trips_and_a_second_publish_changes_nothing(
    moto: MotoServer, bucket: str, control_plane: ControlPlane
) -> None:
    assert irsa(*publish_args(moto, control_plane, bucket), env=moto.env).returncode == 0
    again = irsa(*publish_args(moto, control_plane, bucket), env=moto.env)
    assert again.returncode == 0
    assert "nothing to change" in again.stdout
    verified = irsa(
        "oidc", "verify", "--issuer", f"{moto.url}/{bucket}", "--public-key",
        sa_pub(control_plane), "--ca-bundle", moto.ca_bundle,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "ok: the JWKS holds every current signing key" in verified.stdout


def test_verify_names_a_signing_key_missing_from_the_published_jwks(
    moto: MotoServer, bucket: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    assert irsa(*publish_args(moto, control_plane, bucket), env=moto.env).returncode == 0
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    new_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "new.pub").write_bytes(
        new_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    outcome = irsa(
        "oidc", "verify", "--issuer", f"{moto.url}/{bucket}", "--public-key",
        sa_pub(control_plane), "--public-key", str(tmp_path / "new.pub"),
        "--ca-bundle", moto.ca_bundle,
    )  # fmt: skip
    assert outcome.fails_with(f"the cluster's signing key {key_id(new_key)} is not in")


def test_publish_dry_run_prints_the_plan_and_creates_nothing(
    moto: MotoServer, bucket: str, control_plane: ControlPlane
) -> None:
    outcome = irsa(*publish_args(moto, control_plane, bucket, "--dry-run"), env=moto.env)
    assert outcome.returncode == 0, outcome.stderr
    assert f"would: create bucket s3://{bucket}" in outcome.stdout
    assert f"would: put s3://{bucket}/openid/v1/jwks" in outcome.stdout
    assert not bucket_exists(moto, bucket)


@pytest.mark.parametrize(
    ("issuer", "env_drop", "reason"),
    [
        ("http://localhost/bucket", (), "is not an https URL"),
        (None, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "no AWS credentials"),
    ],
)
def test_publish_refuses_bad_input_with_one_line_and_changes_nothing(
    moto: MotoServer,
    bucket: str,
    control_plane: ControlPlane,
    issuer: str | None,
    env_drop: tuple[str, ...],
    reason: str,
) -> None:
    args = list(publish_args(moto, control_plane, bucket))
    if issuer:
        args[args.index("--issuer") + 1] = issuer
    env = {key: value for key, value in moto.env.items() if key not in env_drop}
    outcome = irsa(*args, env=env)
    assert outcome.fails_with(reason), outcome
    assert not bucket_exists(moto, bucket)


def test_verify_reads_the_api_server_itself_as_an_issuer_anonymously(
    control_plane: ControlPlane,
) -> None:
    # The k8s docs' way to publish without a bucket: let anyone read the discovery endpoints.
    plane = control_plane
    plane.kubectl(
        "create", "clusterrolebinding", "e2e-anonymous-discovery",
        "--clusterrole=system:service-account-issuer-discovery", "--group=system:unauthenticated",
    )  # fmt: skip
    try:
        outcome = irsa(
            "oidc", "verify", "--kubeconfig", plane.kubeconfig, "--ca-bundle", plane.ca_cert
        )
    finally:
        plane.kubectl("delete", "clusterrolebinding", "e2e-anonymous-discovery")
    assert outcome.returncode == 0, outcome.stderr
    assert f"ok: {plane.url} serves" in outcome.stdout


def test_verify_of_an_issuer_nobody_may_read_says_so(control_plane: ControlPlane) -> None:
    outcome = irsa(
        "oidc", "verify", "--kubeconfig", control_plane.kubeconfig,
        "--ca-bundle", control_plane.ca_cert,
    )  # fmt: skip
    assert outcome.fails_with("answered 403 to an anonymous request")
