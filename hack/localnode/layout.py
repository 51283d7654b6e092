"""Where the node lives: its fixed addresses and the files it keeps in DIR/node.

Only one node can run on a host (the kubelet and containerd use fixed host paths such as the
``kubepods`` cgroups), so the addresses are constants and a host-wide lock guards them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "irsa-node"

# A veth pair joins the host to the node's own network namespace. The host end carries the
# API server's address; the node end is the node IP the kubelet registers and serves on.
HOST_VETH = "irsa-node0"
NODE_VETH = "eth0"
HOST_IP = "10.89.0.1"
NODE_IP = "10.89.0.2"
VETH_PREFIX = 30

# Pods live on the cni0 bridge inside the node's namespace; the host routes them over the veth.
POD_CIDR = "10.88.0.0/16"
POD_GATEWAY = "10.88.0.1"
# The control plane's --service-cluster-ip-range (hack/control-plane.sh); the `kubernetes`
# Service is its first address.
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"

# Images imported into the node's containerd; pods use them with imagePullPolicy: Never.
PAUSE_IMAGE = "localhost/pause:dev"
BUSYBOX_IMAGE = "localhost/busybox:dev"
WEBHOOK_IMAGE = "localhost/irsa-webhook:dev"
LAB_IMAGE = "localhost/irsa-lab:dev"

HACK_DIR = Path(__file__).resolve().parents[1]
REPO = HACK_DIR.parent


def cache_dir() -> Path:
    """The project's cache, shared by all checkouts (as hack/lib.sh computes it)."""
    configured = os.environ.get("IRSA_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "irsa-webhook"


def host_lock_path() -> Path:
    """Held by the node's namespace holder for as long as the node exists."""
    return cache_dir() / "node.lock"


@dataclass(frozen=True)
class Layout:
    """The files of one cluster directory (the DIR of hack/control-plane.sh)."""

    dir: Path

    @property
    def node(self) -> Path:
        return self.dir / "node"

    def path(self, name: str) -> Path:
        return self.node / name

    @property
    def env(self) -> Path:
        """KEY=value lines that hack/control-plane.sh appends to DIR/env."""
        return self.node / "env"

    @property
    def chart_values(self) -> Path:
        return self.dir / "chart-values.yaml"

    @property
    def containerd_root(self) -> Path:
        """containerd's content store and snapshots: in the cache, shared by the node of every
        cluster directory (one at a time), so the images are unpacked once, not at each start."""
        return cache_dir() / "node" / "containerd"

    @property
    def imported(self) -> Path:
        """The image tars containerd_root already holds."""
        return cache_dir() / "node" / "imported"

    @property
    def containerd_socket(self) -> Path:
        return self.node / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.node / "kubelet"

    def pidfile(self, daemon: str) -> Path:
        return self.node / f"{daemon}.pid"

    def log(self, daemon: str) -> Path:
        return self.node / f"{daemon}.log"

    def kubeconfig(self, component: str) -> Path:
        return self.node / f"{component}.kubeconfig"
