"""hack/localnode's pure parts: the rendered configuration, the env file, the image archives,
the component tokens and the host-state comparison. The node itself is tested in tests/node."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from localnode import archive, host, layout, node, render


def test_the_kubelet_config_is_yaml_that_serves_on_the_node_ip_and_trusts_the_test_ca(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(render.kubelet_config(layout.Layout(tmp_path), tmp_path / "ca.crt"))
    assert config["kind"] == "KubeletConfiguration"
    assert config["address"] == layout.NODE_IP
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["x509"]["clientCAFile"] == str(tmp_path / "ca.crt")
    assert config["containerRuntimeEndpoint"] == f"unix://{tmp_path}/node/containerd.sock"


def test_kube_proxy_leaves_the_host_wide_conntrack_settings_alone(tmp_path: Path) -> None:
    config = yaml.safe_load(render.kube_proxy_config(layout.Layout(tmp_path)))
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["conntrack"]["tcpEstablishedTimeout"] == "0s"
    assert config["clusterCIDR"] == layout.POD_CIDR


def test_the_cni_bridge_neither_masquerades_nor_leaves_the_pod_network(tmp_path: Path) -> None:
    (bridge,) = json.loads(render.cni_conflist(layout.Layout(tmp_path)))["plugins"]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [
        [{"subnet": layout.POD_CIDR, "gateway": layout.POD_GATEWAY}]
    ]


def test_chart_values_name_the_dev_image_and_never_pull_it() -> None:
    values = yaml.safe_load(render.chart_values(layout.WEBHOOK_IMAGE))
    assert values["image"] == {
        "repository": "localhost/irsa-webhook",
        "tag": "dev",
        "pullPolicy": "Never",
    }
    assert values["replicaCount"] == 2


def test_env_lines_refuse_values_a_shell_would_expand() -> None:
    assert render.env_lines({"A": "/x/y", "B": "localhost/a:b"}) == "A=/x/y\nB=localhost/a:b\n"
    for bad in ("$(id)", "a b", "x`y`", "q'uote"):
        with pytest.raises(ValueError, match="cannot write"):
            render.env_lines({"A": bad})


def test_component_tokens_are_added_once_and_keep_the_existing_users(tmp_path: Path) -> None:
    tokens_csv = tmp_path / "tokens.csv"
    tokens_csv.write_text('admin-1,admin,admin-uid,"system:masters"\n')
    first = node.ensure_component_tokens(tokens_csv)
    second = node.ensure_component_tokens(tokens_csv)
    assert first == second
    lines = tokens_csv.read_text().splitlines()
    assert lines[0] == 'admin-1,admin,admin-uid,"system:masters"'
    assert len(lines) == 1 + len(node.COMPONENT_USERS)
    kubelet_line = next(line for line in lines if line.startswith(first["kubelet"]))
    assert kubelet_line.endswith(f',system:node:{layout.NODE_NAME}-uid,"system:nodes"')


def test_an_image_archive_holds_the_tree_with_its_config_and_tag(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "tool").write_text("#!/bin/sh\n")
    (rootfs / "bin" / "tool").chmod(0o755)
    out = tmp_path / "image.tar"
    config = archive.ImageConfig(entrypoint=["/bin/tool"], user="1000:1000")
    archive.write_image("localhost/x:dev", rootfs, config, out)
    (entry,) = archive.read_manifest(out)
    assert entry["RepoTags"] == ["localhost/x:dev"]
    image_config = archive.read_config(out)
    assert image_config["config"] == {
        "Env": [archive.DEFAULT_PATH],
        "Entrypoint": ["/bin/tool"],
        "Cmd": None,
        "User": "1000:1000",
        "WorkingDir": "/",
    }
    with tarfile.open(out) as outer:
        layers = entry["Layers"]
        assert isinstance(layers, list)
        layer = outer.extractfile(layers[0])
        assert layer is not None
        with tarfile.open(fileobj=layer) as inner:
            tool = inner.getmember("bin/tool")
    assert tool.mode == 0o755
    assert tool.mtime == 0


def test_the_same_tree_gives_the_same_layer(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "f").write_text("x")
    first = archive.write_layer(rootfs, tmp_path / "a.tar")
    (rootfs / "f").touch()
    assert archive.write_layer(rootfs, tmp_path / "b.tar") == first


def test_host_state_differences_name_what_was_added_and_removed() -> None:
    before = host.HostState(("eth0", "lo"), (), ("proc /proc proc",), (), (("k", "1"),), (), ())
    after = host.HostState(("lo", "cni0"), (), ("proc /proc proc",), (), (("k", "2"),), (), ())
    assert before.differences(after) == {
        "interfaces": {"added": ["cni0"], "removed": ["eth0"]},
        "sysctls": {"added": ["('k', '2')"], "removed": ["('k', '1')"]},
    }
    assert before.differences(before) == {}
