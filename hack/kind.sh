#!/usr/bin/env bash
# Try irsa-webhook on a local kind cluster. Needs Docker, kind, kubectl, helm and openssl.
#
#   hack/kind.sh [up]    create the cluster (or reuse it), build and load the image, install the
#                        chart, start a demo pod and print what the webhook injected
#   hack/kind.sh down    delete the cluster (the signing key stays)
#
# Environment:
#   IRSA_KIND_CLUSTER     cluster name (default irsa-webhook)
#   IRSA_KIND_DIR         signing key and kind config (default ${IRSA_CACHE_DIR}/kind)
#   IRSA_KIND_ISSUER      service-account issuer URL (default https://kubernetes.default.svc.cluster.local)
#   IRSA_KIND_NODE_IMAGE  kindest/node image, to choose the Kubernetes version (default: kind's)
#   IRSA_KIND_ROLE_ARN    role ARN the demo ServiceAccount gets
#   KUBECTL, HELM         the binaries to use (default kubectl and helm from PATH)
#
# The service-account signing key is generated once and reused by every cluster made from it, so
# the issuer's public keys stay the same: publish the discovery document and JWKS under
# IRSA_KIND_ISSUER once (for example in S3) and IAM keeps trusting clusters you recreate.
# The webhook manages its own serving certificate (the chart's default): no cert-manager needed.
set -euo pipefail

IRSA_SCRIPT_NAME=kind.sh
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(cd "${IRSA_HACK_DIR}/.." && pwd)"
CLUSTER="${IRSA_KIND_CLUSTER:-irsa-webhook}"
CONTEXT="kind-${CLUSTER}"
DIR="${IRSA_KIND_DIR:-${IRSA_CACHE_DIR}/kind}"
ISSUER="${IRSA_KIND_ISSUER:-https://kubernetes.default.svc.cluster.local}"
NODE_IMAGE="${IRSA_KIND_NODE_IMAGE:-}"
ROLE_ARN="${IRSA_KIND_ROLE_ARN:-arn:aws:iam::111122223333:role/irsa-demo}"
KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
NAMESPACE=irsa-webhook
DEMO_NAMESPACE=irsa-demo

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
}

kc() {
  "${KUBECTL}" --context "${CONTEXT}" "$@"
}

# One RSA key for all clusters made from DIR: the API server signs tokens with sa.key and publishes
# sa.pub in its JWKS. kubeadm uses the files it finds at /etc/kubernetes/pki instead of making new ones.
ensure_signing_key() {
  mkdir -p "${DIR}"
  if [[ ! -f "${DIR}/sa.key" ]]; then
    irsa::log "generating the service-account signing key in ${DIR}"
    (umask 077 && openssl genrsa -out "${DIR}/sa.key" 2048 2>/dev/null)
    rm -f "${DIR}/sa.pub"
  fi
  if [[ ! -f "${DIR}/sa.pub" ]]; then
    openssl rsa -in "${DIR}/sa.key" -pubout -out "${DIR}/sa.pub" 2>/dev/null
  fi
}

# The kubeadm patch has no apiVersion: kind converts unversioned extraArgs maps for whichever kubeadm
# config version the node image uses.
write_kind_config() {
  cat >"${DIR}/kind-config.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraMounts:
      - hostPath: ${DIR}/sa.key
        containerPath: /etc/kubernetes/pki/sa.key
      - hostPath: ${DIR}/sa.pub
        containerPath: /etc/kubernetes/pki/sa.pub
    kubeadmConfigPatches:
      - |
        kind: ClusterConfiguration
        apiServer:
          extraArgs:
            service-account-issuer: ${ISSUER}
            service-account-key-file: /etc/kubernetes/pki/sa.pub
            service-account-signing-key-file: /etc/kubernetes/pki/sa.key
  - role: worker
  - role: worker
EOF
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
    irsa::log "reusing kind cluster ${CLUSTER} (delete it with: $0 down)"
    return
  fi
  local args=(create cluster --name "${CLUSTER}" --config "${DIR}/kind-config.yaml" --wait 180s)
  if [[ -n "${NODE_IMAGE}" ]]; then
    args+=(--image "${NODE_IMAGE}")
  fi
  irsa::log "creating kind cluster ${CLUSTER} (issuer ${ISSUER})"
  kind "${args[@]}"
}

# Prints the image reference. The tag is the image ID, so a rebuilt image rolls the Deployment.
build_image() {
  irsa::log "building the image"
  docker build --tag irsa-webhook:dev "${ROOT}" >&2
  local id
  id="$(docker image inspect --format '{{.Id}}' irsa-webhook:dev)"
  id="${id#sha256:}"
  local image="irsa-webhook:dev-${id:0:12}"
  docker tag irsa-webhook:dev "${image}"
  kind load docker-image "${image}" --name "${CLUSTER}" >&2
  echo "${image}"
}

install_chart() {
  local image="$1"
  irsa::log "installing the chart (image ${image})"
  "${HELM}" upgrade --install irsa-webhook "${ROOT}/charts/irsa-webhook" \
    --kube-context "${CONTEXT}" \
    --namespace "${NAMESPACE}" --create-namespace \
    --set image.repository="${image%%:*}" \
    --set image.tag="${image#*:}" \
    --set image.pullPolicy=Never \
    --set config.defaultAwsRegion="${AWS_REGION:-us-east-1}" \
    --wait --timeout 5m
}

run_demo() {
  local image="$1"
  irsa::log "starting the demo pod in namespace ${DEMO_NAMESPACE}"
  kc create namespace "${DEMO_NAMESPACE}" --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc -n "${DEMO_NAMESPACE}" delete pod demo --ignore-not-found --wait >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: demo
  namespace: ${DEMO_NAMESPACE}
  annotations:
    eks.amazonaws.com/role-arn: ${ROLE_ARN}
---
apiVersion: v1
kind: Pod
metadata:
  name: demo
  namespace: ${DEMO_NAMESPACE}
spec:
  serviceAccountName: demo
  containers:
    - name: demo
      # The webhook's own image: already on the nodes, and it has python3 to read the token.
      image: ${image}
      imagePullPolicy: Never
      command: ["sleep", "3600"]
      securityContext:
        allowPrivilegeEscalation: false
        runAsNonRoot: true
        capabilities:
          drop: ["ALL"]
EOF
  kc -n "${DEMO_NAMESPACE}" wait pod/demo --for=condition=Ready --timeout=120s >/dev/null

  local role
  role="$(kc -n "${DEMO_NAMESPACE}" get pod demo \
    -o jsonpath='{.spec.containers[0].env[?(@.name=="AWS_ROLE_ARN")].value}')"
  if [[ "${role}" != "${ROLE_ARN}" ]]; then
    irsa::die "the demo pod was not mutated; see: kubectl --context ${CONTEXT} -n ${NAMESPACE} logs deploy/irsa-webhook"
  fi

  echo
  echo "Environment the webhook injected into pod ${DEMO_NAMESPACE}/demo:"
  kc -n "${DEMO_NAMESPACE}" get pod demo \
    -o jsonpath='{range .spec.containers[0].env[*]}  {.name}={.value}{"\n"}{end}'
  echo
  echo "Claims of the projected token the pod would give to STS:"
  kc -n "${DEMO_NAMESPACE}" exec demo -- python3 -c '
import base64, json, os
payload = open(os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"]).read().split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print(json.dumps({k: claims[k] for k in ("iss", "aud", "sub", "exp")}, indent=2))
'
  cat <<EOF

For AWS to accept this token, IAM needs an OIDC provider for ${ISSUER}: serve its discovery
document and keys there (kubectl --context ${CONTEXT} get --raw /.well-known/openid-configuration
and .../openid/v1/jwks), then trust system:serviceaccount:${DEMO_NAMESPACE}:demo in the role.
EOF
}

up() {
  irsa::need docker kind openssl "${KUBECTL}" "${HELM}"
  ensure_signing_key
  write_kind_config
  create_cluster
  local image
  image="$(build_image)"
  install_chart "${image}"
  run_demo "${image}"
}

down() {
  irsa::need kind
  kind delete cluster --name "${CLUSTER}"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  -h|--help) usage ;;
  *) usage; exit 2 ;;
esac
