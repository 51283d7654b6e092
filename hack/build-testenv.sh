#!/usr/bin/env bash
# Build the test cluster's binaries from the Go module in hack/testenv (k8s.io/kubernetes + the
# etcd version Kubernetes pins): kube-apiserver and etcd for the control plane, and
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy for the node.
#
#   hack/build-testenv.sh          # build if needed; print the binary folder
#
# Binaries go to ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/testenv/<k8s version>-<go.sum hash>/
# Nothing is rebuilt when all six binaries already exist there. The folder is
# printed on the last stdout line; all other messages go to stderr.
#
# Needs Go (>= the go line of hack/testenv/go.mod) and the Go module proxy on a
# cold module cache. Cold build (empty GOCACHE): see hack/testenv/README.md (the
# kubelet and controller-manager dominate); relink with a warm GOCACHE: ~1 min.
set -euo pipefail

IRSA_SCRIPT_NAME=build-testenv.sh
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -gt 0 ]]; then
  case "$1" in
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) irsa::log "usage: $0   (takes no arguments)"; exit 2 ;;
  esac
fi

MODDIR="${IRSA_HACK_DIR}/testenv"
[[ -f "${MODDIR}/go.mod" && -f "${MODDIR}/go.sum" ]] || irsa::die "missing ${MODDIR}/go.mod or go.sum"

K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "${MODDIR}/go.mod")"
[[ "${K8S_VERSION}" =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || irsa::die "cannot parse the k8s.io/kubernetes version from go.mod (got '${K8S_VERSION}')"
K8S_MAJOR="${BASH_REMATCH[1]}"
K8S_MINOR="${BASH_REMATCH[2]}"

OUT="${IRSA_CACHE_DIR}/testenv/${K8S_VERSION}-$(irsa::short_hash "${MODDIR}/go.sum")"

# The control plane (kube-apiserver, etcd) and the node (hack/control-plane.sh start DIR --node):
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy. All from the same k8s.io/kubernetes.
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
BINARIES=("${K8S_COMMANDS[@]}" etcd)

missing_binaries() {
  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "${OUT}/${b}" ]] || echo "${b}"
  done
}

if [[ -z "$(missing_binaries)" ]]; then
  irsa::log "up to date: ${OUT}"
  echo "${OUT}"
  exit 0
fi

irsa::need go sha256sum
mkdir -p "${OUT}"
irsa::lock "${OUT}/.build.lock"
# Another build may have finished while we waited for the lock.
if [[ -z "$(missing_binaries)" ]]; then
  echo "${OUT}"
  exit 0
fi

STAGE="${OUT}/.stage.$$"
trap 'rm -rf "${STAGE}"' EXIT
mkdir -p "${STAGE}"

# Same -X pairs as kubernetes' hack/lib/version.sh; without them the server
# reports v0.0.0-master+$Format:%H$.
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
  LDFLAGS+=" -X ${pkg}.gitMajor=${K8S_MAJOR}"
  LDFLAGS+=" -X ${pkg}.gitMinor=${K8S_MINOR}"
  LDFLAGS+=" -X ${pkg}.gitTreeState=clean"
done

export CGO_ENABLED=0 GOWORK=off
cd "${MODDIR}"

start=${SECONDS}
# Module downloads are listed once, as a count, instead of a line per module.
irsa::log "Go modules (cold module cache: ~0.6 GB to download) ..."
if ! download_log="$(go mod download -x 2>&1)"; then
  grep -v '^# ' <<<"${download_log}" | tail -n 20 >&2
  irsa::die "go mod download failed"
fi
irsa::log "Go modules ready ($(grep -c '^# get .*: 200' <<<"${download_log}" || true) files fetched)"
mapfile -t missing < <(missing_binaries)
packages=()
for b in "${missing[@]}"; do
  case "${b}" in
    etcd) ;;
    *) packages+=("k8s.io/kubernetes/cmd/${b}") ;;
  esac
done
if [[ ${#packages[@]} -gt 0 ]]; then
  # One go build for all of them: they share most packages, and 2 cores stay busy.
  irsa::log "building ${missing[*]/etcd/} ${K8S_VERSION} (cold GOCACHE: ~5 min on 2 idle cores, ~25 on busy ones; warm: ~1 min) ..."
  go build -mod=readonly -trimpath -ldflags "${LDFLAGS}" -o "${STAGE}/" "${packages[@]}"
fi
if [[ " ${missing[*]} " == *" etcd "* ]]; then
  irsa::log "building etcd ($(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' go.mod)) ..."
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "${STAGE}/etcd" go.etcd.io/etcd/server/v3
fi
for b in "${missing[@]}"; do
  "${STAGE}/${b}" --version >&2
  mv -f "${STAGE}/${b}" "${OUT}/${b}"
done
irsa::log "built in $((SECONDS - start)) s: ${OUT}"
echo "${OUT}"
