"""The lab as a pytest fixture (a plugin, loaded by pyproject's addopts, so any test directory
can ask for ``lab``): ``hack/lab.sh up`` on the session's node, once per test module.

It shares the session's ``node_cluster`` (one node per host): its API server is switched to the
lab's issuer for the module and given its own back at the module's end, so the node tests that
follow see the issuer they were started with; the lab's webhook (release ``irsa-lab``) serves
only namespaces labelled ``irsa-lab=enabled``. See docs/lab.md.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from irsa_lab.lab import Lab, down, up
from localnode import procs
from nodecluster import NodeCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def lab(node_cluster: NodeCluster) -> Iterator[Lab]:
    """The lab, up: DIR/env and DIR/pod-aws-env.json written, the webhook ready."""
    # Not under pytest's basetemp, which any other pytest run on the host may prune while the
    # lab's daemons still log there (as the node's directory).
    running = Lab(Path(tempfile.mkdtemp(prefix="irsa-lab-")), node_cluster.directory)
    try:
        up(running)
        yield running
    finally:
        down(running)
        assert procs.pids_with(running.marker) == [], "the lab left processes behind"
        shutil.rmtree(running.dir)
