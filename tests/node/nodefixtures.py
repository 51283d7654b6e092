"""Node fixtures (a pytest plugin, loaded by pyproject's addopts so every test directory can use
them): one real single-node cluster per test session (hack/control-plane.sh start DIR --node),
shared by every test that asks for ``node_cluster``. See README.md beside this file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import REPO
from nodecluster import NodeCluster, Release, host_differences, host_snapshot, why_no_node


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    node_items = [item for item in items if "/node/" in str(item.path)]
    for item in node_items:
        item.add_marker(pytest.mark.node)
        item.add_marker(pytest.mark.e2e)
    # Last, so that the session's node (torn down at the session's end) runs only while they do,
    # not beside every other test.
    others = [item for item in items if "/node/" not in str(item.path)]
    items[:] = others + node_items


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    """The session's node: Ready, with the dev images imported. It is the only node the host can
    have; the host state is compared before start and after stop (teardown fails on a leftover)."""
    reason = why_no_node()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the node tests, but: {reason}")
        pytest.skip(f"no node on this machine: {reason}")
    # On a machine shared by several checkouts, another one's node may run: wait for it to
    # stop, so that the host is seen without any node.
    wait = os.environ.get("IRSA_NODE_WAIT", "1200")
    free = subprocess.run(
        [sys.executable, "-m", "localnode", "wait-free", wait],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "hack")},
    )
    if free.returncode != 0:
        pytest.fail(free.stderr.strip())
    before = host_snapshot()
    # Not under pytest's basetemp: every pytest run on the host prunes old basetemps, and this
    # directory must outlive the runs of others while the node uses it.
    directory = Path(tempfile.mkdtemp(prefix="irsa-node-"))
    script = str(REPO / "hack" / "control-plane.sh")
    env = {**os.environ, "IRSA_NODE_WAIT": wait}
    started = subprocess.run(
        [script, "start", str(directory), "--node"],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"hack/control-plane.sh start --node failed:\n{started.stderr[-4000:]}")
        yield NodeCluster.at(directory)
    finally:
        stopped = subprocess.run(
            [script, "stop", str(directory)], capture_output=True, text=True, timeout=300
        )
        assert stopped.returncode == 0, f"stop failed:\n{stopped.stderr[-3000:]}"
        leftovers = host_differences(before, host_snapshot())
        assert leftovers == {}, f"the node left this on the host: {leftovers}"
        shutil.rmtree(directory)


@pytest.fixture(scope="session")
def node_webhook(node_cluster: NodeCluster) -> Iterator[Release]:
    """charts/irsa-webhook installed on the node with DIR/chart-values.yaml (the dev image, two
    replicas), mutating the namespaces made by ``webhook_namespace``."""
    release = Release(node_cluster, "irsa", "irsa-system")
    release.install()
    try:
        yield release
    finally:
        release.uninstall()
