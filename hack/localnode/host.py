"""Facts about the host: can it run a node (preflight), which Debian packages the node needs,
and a snapshot of the host state the node must leave as it found it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import log

# containerd + runc + CNI plugins run the pods; busybox-static, gcc/libc6-dev (static pause),
# debootstrap and buildah make the images; iptables serves kube-proxy; iproute2 and util-linux
# (unshare, nsenter) make the namespaces.
PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "iproute2",
    "util-linux",
    "busybox-static",
    "gcc",
    "libc6-dev",
    "debootstrap",
    "buildah",
)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def why_no_node() -> str | None:
    """One line saying why this machine cannot run the node, or None when it can (packages
    aside: they are installed on demand)."""
    if platform.system() != "Linux":
        return f"the node needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "the node needs root (containerd, runc, network namespaces, mounts)"
    if not CGROUP_ROOT.is_dir() or not any(CGROUP_ROOT.iterdir()):
        return "the node needs cgroups mounted at /sys/fs/cgroup"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        return "cannot read /proc/filesystems"
    if "overlay" not in filesystems:
        return "the node needs the overlay file system (containerd's overlayfs snapshotter)"
    if shutil.which("dpkg") is None and missing_commands():
        return "the node needs Debian packages (" + ", ".join(PACKAGES) + ")"
    return None


REQUIRED_COMMANDS = (
    "containerd",
    "ctr",
    "runc",
    "iptables",
    "ip",
    "nsenter",
    "unshare",
    "gcc",
    "debootstrap",
    "buildah",
)


def missing_commands() -> list[str]:
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge")
    if not Path("/bin/busybox").exists():
        missing.append("/bin/busybox")
    return missing


def missing_packages() -> list[str]:
    missing = []
    for package in PACKAGES:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.stdout.strip() != "install ok installed":
            missing.append(package)
    return missing


def ensure_packages() -> None:
    """apt-get install what is missing (apt-get update first, as on a fresh machine)."""
    missing = missing_packages()
    if not missing:
        return
    log.step("installing Debian packages: %s", " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-2000:]}")


# --------------------------------------------------------------------------- host state --

# Host-wide sysctls the kubelet, kube-proxy or the CNI plugins would change if they ran in the
# host's namespaces.
WATCHED_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
)


@dataclass(frozen=True)
class HostState:
    interfaces: tuple[str, ...]
    routes: tuple[str, ...]
    mounts: tuple[str, ...]
    iptables: tuple[str, ...]
    sysctls: tuple[tuple[str, str], ...]
    cgroups: tuple[str, ...]
    paths: tuple[str, ...]

    def differences(self, other: HostState) -> dict[str, dict[str, list[str]]]:
        """What OTHER has that self lacks (`added`) and the reverse (`removed`), per kind."""
        result = {}
        for name in self.__dataclass_fields__:
            mine, theirs = set(getattr(self, name)), set(getattr(other, name))
            if mine != theirs:
                result[name] = {
                    "added": sorted(map(str, theirs - mine)),
                    "removed": sorted(map(str, mine - theirs)),
                }
        return result


def _lines(argv: list[str]) -> tuple[str, ...]:
    if shutil.which(argv[0]) is None:
        return ()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return tuple(sorted(line for line in result.stdout.splitlines() if line.strip()))


# Paths the kubelet and the CNI plugins write when they run in the host's mount namespace.
WATCHED_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
)


def snapshot() -> HostState:
    mounts = tuple(
        sorted(
            " ".join(line.split()[:3])
            for line in Path("/proc/self/mounts").read_text().splitlines()
        )
    )
    sysctls = []
    for key in WATCHED_SYSCTLS:
        try:
            sysctls.append((key, (Path("/proc/sys") / key).read_text().strip()))
        except OSError:
            sysctls.append((key, "<absent>"))
    cgroups = tuple(
        sorted(
            str(p.relative_to(CGROUP_ROOT))
            for hierarchy in CGROUP_ROOT.iterdir()
            if hierarchy.is_dir()
            for p in [hierarchy, *hierarchy.iterdir()]
            if p.is_dir()
        )
    )
    return HostState(
        interfaces=tuple(sorted(os.listdir("/sys/class/net"))),
        routes=_lines(["ip", "route", "show", "table", "all"]),
        mounts=mounts,
        iptables=_lines(["iptables-save"])
        and tuple(line for line in _lines(["iptables-save"]) if not line.startswith("#")),
        sysctls=tuple(sysctls),
        cgroups=cgroups,
        paths=tuple(p for p in WATCHED_PATHS if os.path.lexists(p)),
    )
