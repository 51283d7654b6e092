"""Bring the node up and down: the control plane (hack/control-plane.sh) on the host end of the
veth, kube-controller-manager and kube-scheduler beside it, and containerd, the kubelet and
kube-proxy inside the node's namespaces (netns.py)."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import host, images, log, netns, procs, render
from .layout import (
    BUSYBOX_IMAGE,
    HACK_DIR,
    HOST_IP,
    HOST_VETH,
    LAB_IMAGE,
    NODE_IP,
    NODE_NAME,
    PAUSE_IMAGE,
    POD_CIDR,
    WEBHOOK_IMAGE,
    Layout,
    host_lock_path,
)

CONTROL_PLANE = HACK_DIR / "control-plane.sh"

# Users of the static token file (tokens.csv) the node's components authenticate as; the API
# server's bootstrap RBAC and its Node authorizer give each what it needs, nothing more.
COMPONENT_USERS = {
    "kubelet": ("system:node:" + NODE_NAME, "system:nodes"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kube-proxy": ("system:kube-proxy", ""),
}

# kube-apiserver flags for a cluster with a node (added to hack/control-plane.sh's own).
APISERVER_NODE_ARGS = (
    # The `kubernetes` Service's endpoint is the API server's address on the veth (lease
    # reconciler), so pods reach it through kube-proxy as in any cluster.
    "--endpoint-reconciler-type=lease",
    # Webhooks and aggregated APIs are called at their Service's endpoint IPs: the host has no
    # kube-proxy, only a route to the pod network.
    "--enable-aggregator-routing=true",
    "--authorization-mode=Node",
    "--kubelet-preferred-address-types=InternalIP",
)

# Host-side daemons first, so that stopping goes in the reverse order of need.
HOST_DAEMONS = ("kube-controller-manager", "kube-scheduler")
NODE_DAEMONS = ("containerd", "kubelet", "kube-proxy")


class NodeError(RuntimeError):
    """A failure with a one-line explanation for the user."""


def _deadline(seconds: float) -> Callable[[], bool]:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def _last_line(argv: list[str]) -> str:
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{Path(argv[0]).name} failed (exit {result.returncode})")
    return result.stdout.strip().splitlines()[-1]


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value.strip("'")
    return env


def k8s_version() -> str:
    text = (HACK_DIR / "testenv" / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes (v\d+\.\d+\.\d+)", text, re.MULTILINE)
    if match is None:
        raise NodeError("cannot read the k8s.io/kubernetes version from hack/testenv/go.mod")
    return match.group(1)


# ------------------------------------------------------------------------ credentials --


def ensure_component_tokens(tokens_csv: Path) -> dict[str, str]:
    """Add a static token per node component to tokens.csv (once); return component -> token."""
    lines = tokens_csv.read_text().splitlines()
    by_user = {}
    for line in lines:
        fields = line.split(",")
        if len(fields) >= 2:
            by_user[fields[1]] = fields[0]
    tokens = {}
    for component, (user, group) in COMPONENT_USERS.items():
        if user not in by_user:
            token = f"{component}-{secrets.token_hex(16)}"
            line = f"{token},{user},{user}-uid" + (f',"{group}"' if group else "")
            lines.append(line)
            by_user[user] = token
        tokens[component] = by_user[user]
    tokens_csv.write_text("\n".join(lines) + "\n")
    return tokens


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise NodeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def ensure_kubelet_client_cert(layout: Layout) -> tuple[Path, Path]:
    """The API server's client certificate for the kubelet (logs, exec), signed by the test CA."""
    crt, key = (
        layout.path("apiserver-kubelet-client.crt"),
        layout.path("apiserver-kubelet-client.key"),
    )
    if crt.exists() and key.exists():
        return crt, key
    ext = layout.path("kubelet-client.ext")
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    csr = layout.path("kubelet-client.csr")
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        cwd=layout.node,
    )
    _openssl(
        "x509",
        "-req",
        "-sha256",
        "-days",
        "3650",
        "-in",
        str(csr),
        "-CA",
        str(layout.dir / "ca.crt"),
        "-CAkey",
        str(layout.dir / "ca.key"),
        "-set_serial",
        "0x" + secrets.token_hex(16),
        "-extfile",
        str(ext),
        "-out",
        str(crt),
        cwd=layout.node,
    )
    csr.unlink()
    ext.unlink()
    key.chmod(0o600)
    return crt, key


# ------------------------------------------------------------------------------- lock --


class HostLock:
    """One node per host: an flock on the cache's node.lock, handed to the namespace holder,
    which keeps it for the node's life."""

    def __init__(self, directory: Path | None, wait: float = 0) -> None:
        """WAIT: seconds to wait for another directory's node to stop (IRSA_NODE_WAIT; tests
        on a machine shared by several checkouts take turns). DIRECTORY None only waits."""
        path = host_lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        expired = _deadline(wait)
        said = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                owner = lock_owner() or "another cluster directory"
                if expired():
                    os.close(self.fd)
                    raise NodeError(
                        f"a node already runs on this host (cluster {owner}); only one can, as"
                        " the kubelet uses host-wide paths. Stop it first: hack/control-plane.sh"
                        f" stop {owner}"
                    ) from None
                if not said:
                    log.step("waiting up to %d s for the node of %s to stop", wait, owner)
                    said = True
                time.sleep(1)
        if directory is not None:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{directory}\n".encode(), 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_owner() -> str | None:
    """The cluster directory whose node holds the host lock, if any."""
    path = host_lock_path()
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return path.read_text().strip() or "?"
    finally:
        os.close(fd)
    return None


# ------------------------------------------------------------------------------ kubectl --


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str) -> None:
        self.argv = [binary, "--kubeconfig", kubeconfig]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def output(self, *args: str) -> str:
        result = self.run(*args, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""


# --------------------------------------------------------------------------------- up --


class Node:
    def __init__(self, directory: Path) -> None:
        self.layout = Layout(directory.resolve())
        self.marker = str(self.layout.dir) + "/"

    # ------------------------------------------------------------------ queries --

    def holder(self) -> int | None:
        return procs.running(self.layout.pidfile("holder"), self.marker)

    def daemon(self, name: str) -> int | None:
        return procs.running(self.layout.pidfile(name), self.marker)

    # --------------------------------------------------------------------- up --

    def up(self) -> None:
        layout = self.layout
        layout.node.mkdir(parents=True, exist_ok=True)
        reason = host.why_no_node()
        if reason is not None:
            raise NodeError(reason)
        host.ensure_packages()
        if self.holder() is not None and all(
            self.daemon(d) for d in (*HOST_DAEMONS, *NODE_DAEMONS)
        ):
            log.step("node %s already runs for %s", NODE_NAME, layout.dir)
            self._start_control_plane(refresh_only=True)
            self._write_outputs()
            return
        lock = HostLock(layout.dir, float(os.environ.get("IRSA_NODE_WAIT", "0")))
        try:
            self.down(quiet=True)
            log.step("binaries (hack/build-testenv.sh, hack/tools.sh)")
            testenv = Path(_last_line([str(HACK_DIR / "build-testenv.sh")]))
            node_images = images.all_images(k8s_version())
            pki_env = {**os.environ, "IRSA_APISERVER_ADDRESS": HOST_IP}
            subprocess.run([str(CONTROL_PLANE), "pki", str(layout.dir)], check=True, env=pki_env)
            tokens = ensure_component_tokens(layout.dir / "tokens.csv")
            self._start_holder(lock)
            lock.close()
            env = self._start_control_plane()
            self._write_configs(env, tokens)
            self._start_host_daemons(testenv)
            self._start_node_daemons(testenv, node_images)
            self._wait_ready()
            self._write_outputs()
        except BaseException:
            lock.close()
            log.step("start failed; stopping what runs")
            self.down(quiet=True)
            raise

    def _start_holder(self, lock: HostLock) -> None:
        layout = self.layout
        (layout.node / netns.READY_FILE).unlink(missing_ok=True)
        argv = [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-m",
            "localnode",
            "holder",
            self.marker,
            str(lock.fd),
        ]
        os.set_inheritable(lock.fd, True)
        env = {**os.environ, "PYTHONPATH": str(HACK_DIR)}
        pid = procs.launch(
            argv, layout.pidfile("holder"), layout.log("holder"), pass_fds=[lock.fd], env=env
        )
        ready = layout.node / netns.READY_FILE
        expired = _deadline(60)
        while not ready.exists():
            if not procs.alive(pid, self.marker) or expired():
                state = procs.describe(pid)
                raise NodeError(
                    f"the node's namespace holder did not start ({state}): " + self._tail("holder")
                )
            time.sleep(0.02)
        netns.wire(pid)

    def _start_control_plane(self, refresh_only: bool = False) -> dict[str, str]:
        """hack/control-plane.sh start, bound to the host end of the veth."""
        extra = os.environ.get("IRSA_APISERVER_EXTRA_ARGS", "")
        crt, key = ensure_kubelet_client_cert(self.layout)
        node_args = [
            *APISERVER_NODE_ARGS,
            f"--kubelet-client-certificate={crt}",
            f"--kubelet-client-key={key}",
        ]
        env = {
            **os.environ,
            "IRSA_APISERVER_ADDRESS": HOST_IP,
            "IRSA_APISERVER_EXTRA_ARGS": " ".join([*node_args, extra]).strip(),
        }
        if not refresh_only:
            log.step("control plane on %s (hack/control-plane.sh start)", HOST_IP)
        result = subprocess.run(
            [str(CONTROL_PLANE), "start", str(self.layout.dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            raise NodeError("hack/control-plane.sh start failed (see above)")
        return read_env(self.layout.dir / "env")

    def _write_configs(self, env: dict[str, str], tokens: dict[str, str]) -> None:
        layout = self.layout
        ca = layout.dir / "ca.crt"
        for sub in ("cni", "pod-logs", "kubelet", "cni-ipam"):
            layout.path(sub).mkdir(exist_ok=True)
        for component, token in tokens.items():
            user = COMPONENT_USERS[component][0]
            path = layout.kubeconfig(component)
            path.write_text(render.kubeconfig(env["APISERVER_URL"], ca, user, token))
            path.chmod(0o600)
        layout.path("containerd.toml").write_text(render.containerd_config(layout))
        (layout.path("cni") / "10-irsa-node.conflist").write_text(render.cni_conflist(layout))
        layout.path("kubelet.yaml").write_text(render.kubelet_config(layout, ca))
        layout.path("kube-proxy.yaml").write_text(render.kube_proxy_config(layout))

    def _start_host_daemons(self, testenv: Path) -> None:
        layout = self.layout
        log.step("kube-controller-manager, kube-scheduler")
        procs.launch(
            [
                str(testenv / "kube-controller-manager"),
                f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
                "--secure-port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={layout.dir / 'sa.key'}",
                f"--root-ca-file={layout.dir / 'ca.crt'}",
                f"--cluster-signing-cert-file={layout.dir / 'ca.crt'}",
                f"--cluster-signing-key-file={layout.dir / 'ca.key'}",
                "--v=1",
            ],
            layout.pidfile("kube-controller-manager"),
            layout.log("kube-controller-manager"),
        )
        procs.launch(
            [
                str(testenv / "kube-scheduler"),
                f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
                "--secure-port=0",
                "--leader-elect=false",
                "--v=1",
            ],
            layout.pidfile("kube-scheduler"),
            layout.log("kube-scheduler"),
        )

    def _ctr(self, *args: str) -> list[str]:
        return [
            "ctr",
            "--address",
            str(self.layout.containerd_socket),
            "--namespace",
            "k8s.io",
            *args,
        ]

    def _start_node_daemons(self, testenv: Path, node_images: list[images.Image]) -> None:
        layout = self.layout
        holder = self.holder()
        if holder is None:
            raise NodeError("the node's namespace holder is gone")
        inside = netns.nsenter(holder)
        log.step("containerd (in the node's namespaces)")
        procs.launch(
            [*inside, "containerd", "--config", str(layout.path("containerd.toml"))],
            layout.pidfile("containerd"),
            layout.log("containerd"),
        )
        expired = _deadline(30)
        while (
            subprocess.run(self._ctr("version"), capture_output=True, check=False).returncode != 0
        ):
            if self.daemon("containerd") is None or expired():
                raise NodeError("containerd did not start: " + self._tail("containerd"))
            time.sleep(0.1)
        self._import_images(node_images)
        log.step("kubelet, kube-proxy (in the node's namespaces)")
        kubectl = self._kubectl()
        # A Node object left by an earlier run would look Ready before this kubelet reports.
        kubectl.run("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false", check=False)
        procs.launch(
            [
                *inside,
                str(testenv / "kubelet"),
                f"--config={layout.path('kubelet.yaml')}",
                f"--kubeconfig={layout.kubeconfig('kubelet')}",
                f"--root-dir={layout.kubelet_root}",
                f"--cert-dir={layout.kubelet_root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
            layout.pidfile("kubelet"),
            layout.log("kubelet"),
        )
        procs.launch(
            [
                *inside,
                str(testenv / "kube-proxy"),
                f"--config={layout.path('kube-proxy.yaml')}",
                "--v=1",
            ],
            layout.pidfile("kube-proxy"),
            layout.log("kube-proxy"),
        )

    def _import_images(self, node_images: list[images.Image]) -> None:
        record = self.layout.imported
        record.parent.mkdir(parents=True, exist_ok=True)
        done = set(record.read_text().split()) if record.exists() else set()
        listed = subprocess.run(
            self._ctr("images", "ls", "-q"), capture_output=True, text=True, check=False
        )
        present = set(listed.stdout.split())
        for image in node_images:
            if image.tar.name in done and image.name in present:
                continue
            log.step("importing %s", image.name)
            result = subprocess.run(
                self._ctr("images", "import", str(image.tar)),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise NodeError(f"ctr images import {image.tar}: {result.stderr.strip()}")
            done.add(image.tar.name)
        record.write_text("\n".join(sorted(done)) + "\n")

    def _kubectl(self) -> Kubectl:
        env = read_env(self.layout.dir / "env")
        return Kubectl(env["KUBECTL"], env["KUBECONFIG"])

    def _wait_ready(self) -> None:
        kubectl = self._kubectl()
        expired = _deadline(float(os.environ.get("IRSA_NODE_READY_TIMEOUT", "120")))
        ready = '{.status.conditions[?(@.type=="Ready")].status}'
        while kubectl.output("get", "node", NODE_NAME, "-o", f"jsonpath={ready}") != "True":
            for daemon in NODE_DAEMONS + HOST_DAEMONS:
                if self.daemon(daemon) is None:
                    raise NodeError(f"{daemon} exited: " + self._tail(daemon))
            if expired():
                raise NodeError("node not Ready in time: " + self._tail("kubelet"))
            time.sleep(0.25)
        log.step("node %s Ready", NODE_NAME)
        # What the controller-manager makes in each namespace, which pods need.
        expired = _deadline(60)
        while not (
            kubectl.output("get", "serviceaccount", "default", "-o", "name")
            and kubectl.output("get", "configmap", "kube-root-ca.crt", "-o", "name")
        ):
            if expired():
                raise NodeError(
                    "no default ServiceAccount: " + self._tail("kube-controller-manager")
                )
            time.sleep(0.25)

    def _write_outputs(self) -> None:
        layout = self.layout
        layout.chart_values.write_text(render.chart_values(WEBHOOK_IMAGE))
        values = {
            "NODE_NAME": NODE_NAME,
            "NODE_IP": NODE_IP,
            "POD_CIDR": POD_CIDR,
            "WEBHOOK_IMAGE": WEBHOOK_IMAGE,
            "LAB_IMAGE": LAB_IMAGE,
            "BUSYBOX_IMAGE": BUSYBOX_IMAGE,
            "PAUSE_IMAGE": PAUSE_IMAGE,
            "CHART_VALUES": str(layout.chart_values),
            "CONTAINERD_ADDRESS": str(layout.containerd_socket),
        }
        layout.env.write_text(render.env_lines(values))
        env_file = layout.dir / "env"
        base = [
            line for line in env_file.read_text().splitlines() if line.split("=")[0] not in values
        ]
        env_file.write_text("\n".join(base) + "\n" + layout.env.read_text())
        sys.stdout.write(env_file.read_text())

    def _tail(self, daemon: str, lines: int = 15) -> str:
        try:
            text = self.layout.log(daemon).read_text(errors="replace").splitlines()
        except OSError:
            return f"(no {daemon} log)"
        return f"last lines of {self.layout.log(daemon)}:\n" + "\n".join(text[-lines:])

    # ------------------------------------------------------------------- down --

    def down(self, quiet: bool = False) -> None:
        """Stop the node's daemons and everything they made on the host (the control plane's
        etcd and kube-apiserver are hack/control-plane.sh stop's)."""
        layout = self.layout
        if not layout.node.exists():
            return
        # The host-wide state (pods' cgroups, the veth) belongs to whichever directory holds the
        # host lock; never touch another directory's node.
        owner = lock_owner()
        ours = self.holder() is not None or owner is None or Path(owner) == layout.dir
        if not quiet:
            log.step("stopping node %s", NODE_NAME)
        procs.stop(layout.pidfile("kubelet"), self.marker)
        procs.stop(layout.pidfile("kube-proxy"), self.marker)
        if ours:
            self._kill_pods()
            self._forget_containers()
        procs.stop(layout.pidfile("containerd"), self.marker)
        for shim in procs.pids_with(str(layout.containerd_socket)):
            procs.signal_pid(shim, signal.SIGKILL)
        for daemon in HOST_DAEMONS:
            procs.stop(layout.pidfile(daemon), self.marker)
        # Before the veth goes: on SIGTERM the API server removes its own endpoint from the
        # `kubernetes` Service through its address there, and hangs 20 s if it is gone.
        subprocess.run([str(CONTROL_PLANE), "stop-apiserver", str(layout.dir)], check=False)
        procs.stop(layout.pidfile("holder"), self.marker)
        if ours:
            if not netns.wait_link_gone(10):
                raise NodeError(f"{HOST_VETH} still exists after the node's namespace ended")
            remove_pod_cgroups()
        layout.env.unlink(missing_ok=True)
        (layout.node / netns.READY_FILE).unlink(missing_ok=True)

    def _forget_containers(self) -> None:
        """Delete this run's containers (and their snapshots) from the shared containerd root,
        keeping only the images for the next start."""
        if self.daemon("containerd") is None:
            return
        listed = subprocess.run(
            self._ctr("containers", "ls", "-q"), capture_output=True, text=True, check=False
        )
        for container in listed.stdout.split():
            subprocess.run(
                self._ctr("tasks", "rm", "-f", container), capture_output=True, check=False
            )
            subprocess.run(
                self._ctr("containers", "rm", container), capture_output=True, check=False
            )

    def _kill_pods(self) -> None:
        """SIGKILL every container process (they live in the kubepods cgroups) and wait."""
        expired = _deadline(30)
        while pids := pod_pids():
            for pid in pids:
                procs.signal_pid(pid, signal.SIGKILL)
            if expired():
                raise NodeError(f"pod processes survived SIGKILL: {pids[:10]}")
            time.sleep(0.05)

    def status(self) -> bool:
        ok = True
        for daemon in ("holder", *HOST_DAEMONS, *NODE_DAEMONS):
            pid = procs.running(self.layout.pidfile(daemon), self.marker)
            print(f"{daemon}: " + (f"running (pid {pid})" if pid else "not running"))
            ok = ok and pid is not None
        return ok


POD_CGROUP = "kubepods"


def _pod_cgroup_dirs() -> list[Path]:
    """The kubepods cgroup directories of every hierarchy, children before parents. runc
    removes a container's as it exits, so directories may vanish while we walk."""
    found = []
    for hierarchy in host.CGROUP_ROOT.iterdir():
        top = hierarchy / POD_CGROUP
        for parent, _, _ in os.walk(top, topdown=False):
            found.append(Path(parent))
    return found


def pod_pids() -> list[int]:
    pids: set[int] = set()
    for directory in _pod_cgroup_dirs():
        try:
            pids.update(int(x) for x in (directory / "cgroup.procs").read_text().split())
        except OSError:
            continue
    return sorted(pids)


def remove_pod_cgroups() -> None:
    """rmdir the kubelet's kubepods cgroup trees (children first), in every hierarchy."""
    for directory in _pod_cgroup_dirs():
        try:
            directory.rmdir()
        except FileNotFoundError:
            pass
        except OSError as error:
            raise NodeError(f"cannot remove cgroup {directory}: {error}") from None
