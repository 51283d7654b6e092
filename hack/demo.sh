#!/usr/bin/env bash
# The README's first command. On a machine that can run a node (Linux, root, cgroups, overlayfs):
# a real single-node cluster, the Helm chart installed with the image built from this checkout,
# and a pod of an annotated ServiceAccount that runs and prints what it sees (its AWS env and its
# token's claims) (hack/demo-node.sh); then the offline IRSA lab (hack/demo-lab.sh, docs/lab.md)
# and a pod that reads an S3 object through its ServiceAccount's IAM role, its credentials from a
# validating STS. Elsewhere it says why in one line and shows the API-server-only demo: the
# webhook run locally, registered with a real kube-apiserver, and the stored pod's injected fields.
# Usage: hack/demo.sh [--keep]
#   --keep  leave the lab (or the control plane and the webhook) running and print how to use it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
# shellcheck source=hack/lib.sh
. hack/lib.sh
keep="$(irsa::keep_flag "$@")"
say() { irsa::say "$@"; }

DEMO="${IRSA_DEMO_DIR:-${REPO}/.cache/demo}"
mkdir -p "${DEMO}"

if reason="$(PYTHONPATH=hack python3 -m localnode preflight)"; then
  # One node at a time on a host: the first demo's node is stopped before the lab starts its own.
  hack/demo-node.sh false
  exec hack/demo-lab.sh "$@"
fi
say "no node on this machine (${reason}): the API-server-only demo"

say "installing Python dependencies, building kube-apiserver and etcd when missing"
hack/bootstrap.sh
hack/control-plane.sh start "${DEMO}/cluster" >/dev/null
set -a
# shellcheck source=/dev/null
. "${DEMO}/cluster/env"
set +a
export KUBECONFIG

cleanup() {
  if [[ "${keep}" != true ]]; then
    [[ -f "${DEMO}/webhook.pid" ]] && kill "$(cat "${DEMO}/webhook.pid")" 2>/dev/null || true
    rm -f "${DEMO}/webhook.pid"
    hack/control-plane.sh stop "${DEMO}/cluster" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

say "starting irsa-webhook serve on https://127.0.0.1:18443"
# The webhook's serving certificate, issued by the control plane's test CA.
if [[ ! -f "${DEMO}/tls.crt" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=irsa-webhook-demo" \
    -CA "${CA_CERT}" -CAkey "${CA_KEY}" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "${DEMO}/tls.key" -out "${DEMO}/tls.crt" 2>/dev/null
fi
if [[ -f "${DEMO}/webhook.pid" ]] && kill -0 "$(cat "${DEMO}/webhook.pid")" 2>/dev/null; then
  kill "$(cat "${DEMO}/webhook.pid")"
  sleep 1
fi
.venv/bin/irsa-webhook serve --kubeconfig "${KUBECONFIG}" --bind-address 127.0.0.1 \
  --port 18443 --metrics-port 18999 --tls-cert "${DEMO}/tls.crt" --tls-key "${DEMO}/tls.key" \
  --aws-default-region eu-west-1 --shutdown-delay 0s >"${DEMO}/webhook.log" 2>&1 &
echo $! >"${DEMO}/webhook.pid"
for _ in $(seq 1 100); do
  curl -fsS --cacert "${CA_CERT}" https://127.0.0.1:18443/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS --cacert "${CA_CERT}" https://127.0.0.1:18443/readyz >/dev/null \
  || { tail -20 "${DEMO}/webhook.log" >&2; exit 1; }

say "registering the MutatingWebhookConfiguration"
"${KUBECTL}" apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: irsa-webhook-demo}
webhooks:
- name: pod-identity.irsa-webhook.dev
  clientConfig: {url: "https://127.0.0.1:18443/mutate", caBundle: "$(base64 -w0 "${CA_CERT}")"}
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  admissionReviewVersions: [v1, v1beta1]
  sideEffects: None
  failurePolicy: Ignore
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 10
  namespaceSelector: {matchLabels: {irsa-webhook-demo: enabled}}
  objectSelector:
    matchExpressions: [{key: eks.amazonaws.com/skip-pod-identity-webhook, operator: DoesNotExist}]
YAML

say "creating an annotated ServiceAccount and a pod with kubectl"
irsa::demo_service_account irsa-webhook-demo | "${KUBECTL}" apply -f - >/dev/null
"${KUBECTL}" -n demo delete pod app --ignore-not-found >/dev/null
pod_yaml='{"apiVersion":"v1","kind":"Pod","metadata":{"name":"app","namespace":"demo"},
  "spec":{"serviceAccountName":"s3-reader","containers":[{"name":"app","image":"amazon/aws-cli"}]}}'
irsa::wait_mutated "${KUBECTL}" 10 "${pod_yaml}"
echo "${pod_yaml}" | "${KUBECTL}" create -f - >/dev/null

say "what the API server stored for pod demo/app"
"${KUBECTL}" -n demo get pod app -o json | .venv/bin/python -c '
import json, sys
pod = json.load(sys.stdin)
container = pod["spec"]["containers"][0]
print("environment of container %r:" % container["name"])
for item in container.get("env", []):
    print("  %-28s %s" % (item["name"], item.get("value", "")))
print("volume mounts:")
for mount in container.get("volumeMounts", []):
    print("  %-28s %s%s" % (mount["name"], mount["mountPath"], " (read-only)" if mount.get("readOnly") else ""))
for volume in pod["spec"]["volumes"]:
    if volume["name"] == "aws-iam-token":
        token = volume["projected"]["sources"][0]["serviceAccountToken"]
        print("projected token volume %r: audience %s, expires after %ss, file %s" % (
            volume["name"], token.get("audience"), token["expirationSeconds"], token["path"]))
'

if [[ "${keep}" == true ]]; then
  cat >&2 <<EOF

Everything is still running. To use it:
  export KUBECONFIG=${KUBECONFIG}
  export PATH=${BIN_DIR}:\$PATH
  kubectl -n demo get pod app -o yaml
  curl -s http://127.0.0.1:18999/metrics | grep pod_identity_webhook
Webhook log: ${DEMO}/webhook.log
Stop: kill \$(cat ${DEMO}/webhook.pid); hack/control-plane.sh stop ${DEMO}/cluster
EOF
fi
