#!/usr/bin/env bash
# hack/demo.sh on a machine that can run a node (called by it; see its header).
# Usage: hack/demo-node.sh true|false   (keep the cluster running afterwards)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
keep="${1:-false}"
# shellcheck source=hack/lib.sh
. hack/lib.sh
say() { irsa::say "$@"; }

DEMO="${IRSA_DEMO_DIR:-${REPO}/.cache/demo}"
CLUSTER="${DEMO}/node-cluster"
mkdir -p "${DEMO}"

say "installing Python dependencies; building the cluster's binaries and images when missing (first time: ~30 min)"
hack/bootstrap.sh
cleanup() {
  if [[ "${keep}" != true ]]; then
    say "stopping the cluster (the host is left as it was)"
    hack/control-plane.sh stop "${CLUSTER}" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
say "starting a single-node cluster: etcd, kube-apiserver, controller-manager, scheduler, kubelet"
hack/control-plane.sh start "${CLUSTER}" --node >/dev/null
set -a
# shellcheck source=/dev/null
. "${CLUSTER}/env"
set +a
export KUBECONFIG
"${KUBECTL}" get nodes -o wide >&2

say "helm install charts/irsa-webhook with ${WEBHOOK_IMAGE} (built from this checkout's Dockerfile)"
started=${SECONDS}
"${HELM}" upgrade --install irsa charts/irsa-webhook -n irsa-system --create-namespace \
  -f "${CHART_VALUES}" --set config.defaultAwsRegion=eu-west-1 --wait --timeout 300s >/dev/null
"${KUBECTL}" -n irsa-system get pods -o wide >&2
echo "webhook pods ready $((SECONDS - started)) s after helm install" >&2

say "an annotated ServiceAccount, and a pod of it that prints what it sees"
irsa::demo_service_account "" | "${KUBECTL}" apply -f - >/dev/null
"${KUBECTL}" -n demo delete pod app --ignore-not-found --wait=true >/dev/null
pod_yaml="$(cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: demo}
spec:
  serviceAccountName: s3-reader
  restartPolicy: Never
  containers:
  - name: app
    image: ${LAB_IMAGE}
    imagePullPolicy: Never
    command:
    - python3
    - -c
    - |
      import base64, json, os
      print("pod %s runs as uid %d" % (open("/etc/hostname").read().strip(), os.getuid()))
      for key in sorted(os.environ):
          if key.startswith("AWS_"):
              print("  %-28s %s" % (key, os.environ[key]))
      token = open(os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"]).read()
      payload = token.split(".")[1]
      claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
      print("my token (%d bytes), projected by the kubelet:" % len(token))
      print("  aud %s, sub %s, valid %d s" % (claims["aud"], claims["sub"], claims["exp"] - claims["iat"]))
      print("  iss %s" % claims["iss"])
      import boto3
      print("boto3 %s would call AssumeRoleWithWebIdentity with it" % boto3.__version__)
YAML
)"
irsa::wait_mutated "${KUBECTL}" 180 "${pod_yaml}"
echo "${pod_yaml}" | "${KUBECTL}" apply -f - >/dev/null
for _ in $(seq 1 300); do
  phase="$("${KUBECTL}" -n demo get pod app -o jsonpath='{.status.phase}')"
  [[ "${phase}" == Succeeded || "${phase}" == Failed ]] && break
  sleep 0.2
done
say "kubectl -n demo logs app"
"${KUBECTL}" -n demo logs app
[[ "${phase}" == Succeeded ]] || { echo "the pod ended ${phase}" >&2; exit 1; }

if [[ "${keep}" == true ]]; then
  cat >&2 <<EOF

Everything is still running. To use it:
  export KUBECONFIG=${KUBECONFIG}
  export PATH=${BIN_DIR}:\$PATH
  kubectl get pods -A -o wide
Stop (leaves the host as it was): hack/control-plane.sh stop ${CLUSTER}
EOF
fi
