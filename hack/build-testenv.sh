#!/usr/bin/env bash
# Build kube-apiserver and etcd for the integration tests from the Go module in
# hack/testenv (k8s.io/kubernetes + the etcd version Kubernetes pins).
#
#   hack/build-testenv.sh          # build if needed; print the binary folder
#
# Binaries go to ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/testenv/<k8s version>-<go.sum hash>/
# Nothing is rebuilt when both binaries already exist there. The folder is
# printed on the last stdout line; all other messages go to stderr.
#
# Needs Go (>= the go line of hack/testenv/go.mod) and the Go module proxy on a
# cold module cache. Cold build (empty GOCACHE): ~5 min on 2 cores, peak RSS
# 2.3 GB (the kube-apiserver link); relink with a warm GOCACHE: ~10 s.
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

have_binaries() {
  [[ -x "${OUT}/kube-apiserver" && -x "${OUT}/etcd" ]]
}

if have_binaries; then
  irsa::log "up to date: ${OUT}"
  echo "${OUT}"
  exit 0
fi

irsa::need go sha256sum
mkdir -p "${OUT}"
irsa::lock "${OUT}/.build.lock"
# Another build may have finished while we waited for the lock.
if have_binaries; then
  echo "${OUT}"
  exit 0
fi

TMP_SUFFIX=".tmp.$$"
cleanup() { rm -f "${OUT}/kube-apiserver${TMP_SUFFIX}" "${OUT}/etcd${TMP_SUFFIX}"; }
trap cleanup EXIT

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
if [[ ! -x "${OUT}/kube-apiserver" ]]; then
  irsa::log "building kube-apiserver ${K8S_VERSION} (cold GOCACHE: ~5 min on 2 cores) ..."
  go build -mod=readonly -trimpath -ldflags "${LDFLAGS}" -o "${OUT}/kube-apiserver${TMP_SUFFIX}" k8s.io/kubernetes/cmd/kube-apiserver
  "${OUT}/kube-apiserver${TMP_SUFFIX}" --version >&2
  mv -f "${OUT}/kube-apiserver${TMP_SUFFIX}" "${OUT}/kube-apiserver"
fi
if [[ ! -x "${OUT}/etcd" ]]; then
  irsa::log "building etcd ($(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' go.mod)) ..."
  go build -mod=readonly -trimpath -ldflags "-s -w" -o "${OUT}/etcd${TMP_SUFFIX}" go.etcd.io/etcd/server/v3
  "${OUT}/etcd${TMP_SUFFIX}" --version >&2
  mv -f "${OUT}/etcd${TMP_SUFFIX}" "${OUT}/etcd"
fi
irsa::log "built in $((SECONDS - start)) s: ${OUT}"
echo "${OUT}"
