"""The node's configuration files, rendered from the layout (pure: no I/O)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from .layout import (
    NODE_IP,
    NODE_NAME,
    PAUSE_IMAGE,
    POD_CIDR,
    POD_GATEWAY,
    Layout,
)

# The sysctls the kubelet writes at start-up (its "kernel defaults"). They are global, not per
# network namespace, so the node's mount namespace masks each one that differs with a file
# holding the wanted value (see netns.py); the host's values stay as they are.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

# Per network namespace, so set inside the node's: routing for the pods and iptables on the
# bridge (kube-proxy's Service rules must see pod-to-pod traffic on cni0).
NODE_NAMESPACE_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


def containerd_config(layout: Layout) -> str:
    state = layout.path("containerd-state")
    root = layout.containerd_root
    return f"""version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{layout.containerd_socket}"
[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Root may lack CAP_SYS_RESOURCE (so on the CI VMs): runc then cannot give pause its
  # oom_score_adj of -998 and every sandbox fails. Never lower a score below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{layout.path("cni")}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.path("containerd-opt")}"
"""


def cni_conflist(layout: Layout) -> str:
    """A plain bridge with host-local IPAM: no masquerade, and the node's namespace has no
    default route, so pod traffic reaches the node, the host's veth end and nothing else."""
    config = {
        "cniVersion": "1.0.0",
        "name": "irsa-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.path("cni-ipam")),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def kubelet_config(layout: Layout, ca_cert: Path) -> str:
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hosts (such as the CI VMs) are refused by default since 1.35.
failCgroupV1: false
# containerd 1.6 cannot report its cgroup driver (no RuntimeConfig RPC); this must match it.
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{layout.containerd_socket}
address: {NODE_IP}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca_cert}}}
authorization: {{mode: Webhook}}
podLogsDir: {layout.path("pod-logs")}
failSwapOn: false
# No cluster DNS: pods get an empty resolv.conf rather than the host's resolvers.
resolvConf: ""
# A small test node on a busy disk: evict only when truly out of room, never collect images
# (they cannot be pulled back: there is no registry).
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%",
               nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusUpdateFrequency: 10s
"""


def kube_proxy_config(layout: Layout) -> str:
    return f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {layout.kubeconfig("kube-proxy")}
hostnameOverride: {NODE_NAME}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
mode: iptables
clusterCIDR: {POD_CIDR}
detectLocalMode: ClusterCIDR
nodePortAddresses: ["{NODE_IP}/32"]
iptables:
  localhostNodePorts: false
# Leave the (host-wide) conntrack limits and timeouts alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""


def kubeconfig(server: str, ca_cert: Path, user: str, token: str) -> str:
    ca = base64.b64encode(ca_cert.read_bytes()).decode() if ca_cert.exists() else ""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: irsa-test
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: irsa-test
  context: {{cluster: irsa-test, user: {user}}}
current-context: irsa-test
"""


def chart_values(webhook_image: str) -> str:
    """What `helm install ... -f DIR/chart-values.yaml` needs on this node."""
    repository, _, tag = webhook_image.rpartition(":")
    return f"""# Written by hack/control-plane.sh start DIR --node: chart values for this node.
image:
  repository: {repository}
  tag: {tag}
  # Imported into the node's containerd; there is no registry to pull from.
  pullPolicy: Never
replicaCount: 2
"""


def env_lines(values: dict[str, str]) -> str:
    """KEY=value lines, quoted for `set -a; . DIR/env` (only safe characters are used)."""
    for key, value in values.items():
        if not key.isidentifier() or any(c in value for c in "'\"$`\\\n "):
            raise ValueError(f"cannot write {key}={value!r} to an env file")
    return "".join(f"{key}={value}\n" for key, value in values.items())
