"""The node's namespaces: a network namespace joined to the host by a veth pair, and a private
mount namespace. containerd, the kubelet and kube-proxy run inside both, so the bridge, the pod
interfaces, every iptables rule and each per-namespace sysctl they make exist only there and
vanish with the namespace when the last of them exits; nothing needs undoing on the host.

A *holder* process (``python3 -m localnode holder DIR``, run under ``unshare --net --mount``)
keeps the namespaces alive and holds the host-wide node lock; the daemons join it with nsenter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .layout import HOST_IP, HOST_VETH, NODE_IP, NODE_VETH, POD_CIDR, VETH_PREFIX, Layout
from .render import KUBELET_SYSCTLS, NODE_NAMESPACE_SYSCTLS

READY_FILE = "holder.ready"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def private_mounts(layout: Layout) -> None:
    """Inside the new mount namespace (propagation private): what the node's daemons write to
    fixed host paths lands in tmpfs or in DIR instead.

    - /run: containerd 1.6 hard-codes /run/containerd (shim sockets, runc state); CNI keeps the
      pods' network namespaces in /run/netns; iptables locks /run/xtables.lock.
    - /var/lib and /var/log: the kubelet hard-codes /var/lib/kubelet (device plugins, pod
      resources) and /var/log/containers; CNI caches results in /var/lib/cni.
    - the kernel-wide sysctls the kubelet sets (KUBELET_SYSCTLS) are masked by files.
    """
    for directory in ("/run", "/var/lib", "/var/log"):
        _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", directory)
    masks = layout.path("sysctl-masks")
    masks.mkdir(exist_ok=True)
    for key, wanted in KUBELET_SYSCTLS.items():
        target = Path("/proc/sys") / key
        try:
            current = target.read_text().strip()
        except OSError:
            continue
        if current == wanted:
            continue
        mask = masks / key.replace("/", ".")
        mask.write_text(wanted + "\n")
        _mount("--bind", str(mask), str(target))


def hold(layout: Layout, lock_fd: int) -> None:
    """The holder's body: set up the mounts, tell `up` it is ready, then wait for SIGTERM."""
    os.set_inheritable(lock_fd, False)
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{layout.dir}\n".encode(), 0)
    print("holder: private mounts", flush=True)
    private_mounts(layout)
    print("holder: ready", flush=True)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    (layout.node / READY_FILE).write_text(f"{os.getpid()}\n")
    while not stop:
        signal.pause()
    sys.exit(0)


def nsenter(holder: int) -> list[str]:
    """The argv prefix that runs a command inside the node's namespaces (nsenter execs, so the
    command keeps nsenter's pid)."""
    return ["nsenter", f"--target={holder}", "--net", "--mount", "--"]


def _ip(*args: str, holder: int | None = None) -> None:
    prefix = nsenter(holder) if holder is not None else []
    result = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def wire(holder: int) -> None:
    """Create the veth pair (the node end straight into the holder's namespace), address both
    ends, route the pod network to the node, and set the node namespace's own sysctls.

    The node namespace has no default route and the host forwards nothing: pods reach the node
    and the host end of the veth (the API server), and no further."""
    _ip("link", "add", HOST_VETH, "type", "veth", "peer", "name", NODE_VETH, "netns", str(holder))
    _ip("addr", "add", f"{HOST_IP}/{VETH_PREFIX}", "dev", HOST_VETH)
    _ip("link", "set", HOST_VETH, "up")
    _ip("link", "set", "lo", "up", holder=holder)
    _ip("addr", "add", f"{NODE_IP}/{VETH_PREFIX}", "dev", NODE_VETH, holder=holder)
    _ip("link", "set", NODE_VETH, "up", holder=holder)
    # The API server dials webhook pods at their endpoint IPs (--enable-aggregator-routing).
    _ip("route", "add", POD_CIDR, "via", NODE_IP, "dev", HOST_VETH)
    for key, value in NODE_NAMESPACE_SYSCTLS.items():
        command = [*nsenter(holder), "sh", "-c", f'echo {value} > "/proc/sys/{key}"']
        subprocess.run(command, check=True)


def host_link_exists() -> bool:
    return Path(f"/sys/class/net/{HOST_VETH}").exists()


def wait_link_gone(timeout: float) -> bool:
    """The veth goes with the node's network namespace, a moment after its last process."""
    deadline = time.monotonic() + timeout
    while host_link_exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
