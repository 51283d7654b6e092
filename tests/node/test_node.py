"""The node itself: Ready, running pods from the local images, pods reaching the API server the
way in-cluster clients do, and the API server reaching a webhook through its Service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from cluster import REPO
from localnode import archive
from nodecluster import NodeCluster, Release, annotated_service_account, webhook_namespace

pytestmark = pytest.mark.timeout(900)

ROLE = "arn:aws:iam::111122223333:role/node-test"


def test_the_cluster_has_one_ready_node_at_the_node_ip(node_cluster: NodeCluster) -> None:
    nodes = node_cluster.get("nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node_cluster.node_name]
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    addresses = {a["type"]: a["address"] for a in nodes[0]["status"]["addresses"]}
    assert addresses["InternalIP"] == node_cluster.env["NODE_IP"]


def test_a_busybox_pod_runs_and_kubectl_reads_its_log(node_cluster: NodeCluster) -> None:
    log = node_cluster.run_pod("default", node_cluster.busybox_image, ["echo", "hello from a pod"])
    assert log.strip() == "hello from a pod"


IN_CLUSTER_CLIENT = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
context = ssl.create_default_context(cafile=sa + "ca.crt")
url = "https://%s:%s/version" % (os.environ["KUBERNETES_SERVICE_HOST"],
                                 os.environ["KUBERNETES_SERVICE_PORT"])
token = open(sa + "token").read()
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
version = json.load(urllib.request.urlopen(request, context=context, timeout=10))
print(json.dumps({"host": os.environ["KUBERNETES_SERVICE_HOST"], "version": version["gitVersion"]}))
"""


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    node_cluster: NodeCluster,
) -> None:
    log = node_cluster.run_pod(
        "default", node_cluster.lab_image, ["python3", "-c", IN_CLUSTER_CLIENT]
    )
    seen = json.loads(log)
    service = node_cluster.get("service", "-n", "default", "kubernetes")
    assert seen["host"] == service["spec"]["clusterIP"]
    version = json.loads(node_cluster.kubectl("get", "--raw", "/version").stdout)
    assert seen["version"] == version["gitVersion"]


def test_the_lab_image_has_a_current_boto3_and_runs_as_uid_1000(node_cluster: NodeCluster) -> None:
    log = node_cluster.run_pod(
        "default",
        node_cluster.lab_image,
        ["python3", "-c", "import os, boto3; print(os.getuid(), boto3.__version__)"],
    )
    uid, version = log.split()
    assert uid == "1000"
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 44)


def test_a_pod_of_an_annotated_service_account_gets_a_verified_token_from_the_chart_webhook(
    node_cluster: NodeCluster, node_webhook: Release
) -> None:
    configuration = node_cluster.get("mutatingwebhookconfiguration", node_webhook.deployment)
    client_config = configuration["webhooks"][0]["clientConfig"]
    assert "url" not in client_config
    assert client_config["service"]["name"] == node_webhook.deployment
    namespace = webhook_namespace(node_cluster, "token")
    annotated_service_account(node_cluster, namespace, "app", ROLE)
    log = node_cluster.run_pod(
        namespace,
        node_cluster.busybox_image,
        ["sh", "-c", 'echo "$AWS_ROLE_ARN"; cat "$AWS_WEB_IDENTITY_TOKEN_FILE"'],
        service_account="app",
    )
    role, token = log.split()
    assert role == ROLE
    with node_cluster.client() as api:
        jwks = api.get("/openid/v1/jwks").raise_for_status().json()
    header = jwt.get_unverified_header(token)
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="sts.amazonaws.com",
        issuer=node_cluster.env["SA_ISSUER"],
    )
    assert claims["sub"] == f"system:serviceaccount:{namespace}:app"
    assert claims["exp"] - claims["iat"] == 86400
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_second_node_on_the_same_host_is_refused_and_the_first_keeps_running(
    node_cluster: NodeCluster, tmp_path: Path
) -> None:
    second = subprocess.run(
        [str(REPO / "hack" / "control-plane.sh"), "start", str(tmp_path / "second"), "--node"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "IRSA_NODE_WAIT": "0"},
    )
    assert second.returncode == 1
    assert f"a node already runs on this host (cluster {node_cluster.directory}" in second.stderr
    assert not (tmp_path / "second" / "env").exists()
    ready = '{.status.conditions[?(@.type=="Ready")].status}'
    status = node_cluster.kubectl("get", "node", node_cluster.node_name, "-o", f"jsonpath={ready}")
    assert status.stdout == "True"


@pytest.mark.usefixtures("node_cluster")  # the same preflight: buildah needs root and Linux
def test_the_webhook_image_is_the_dockerfiles_user_entrypoint_and_environment() -> None:
    """The image the node runs is built by buildah from the project's Dockerfile itself; its
    config says what the Dockerfile's runtime stage says."""
    listed = subprocess.run(
        [sys.executable, "-m", "localnode", "images"],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONPATH": str(REPO / "hack")},
        check=True,
    )
    tars = dict(line.split() for line in listed.stdout.splitlines())
    config = archive.read_config(Path(tars["localhost/irsa-webhook:dev"]))["config"]
    assert isinstance(config, dict)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["irsa-webhook"]
    assert config["Cmd"] == ["serve"]
    assert "IRSA_WEBHOOK_PORT=8443" in config["Env"]
    assert any(e.startswith("PATH=/opt/venv/bin:") for e in config["Env"])
