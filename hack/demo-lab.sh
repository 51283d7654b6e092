#!/usr/bin/env bash
# hack/demo.sh on a machine that can run a node (called by it; see its header): the offline IRSA
# lab (docs/lab.md) and the seed's scenario on it, ending with what a pod read from S3 through
# its ServiceAccount's IAM role.
# Usage: hack/demo-lab.sh [--keep]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
# shellcheck source=hack/lib.sh
. hack/lib.sh
keep="$(irsa::keep_flag "$@")"
say() { irsa::say "$@"; }

LAB="${IRSA_DEMO_DIR:-${REPO}/.cache/demo}/lab"
mkdir -p "${LAB}"

cleanup() {
  if [[ "${keep}" != true ]]; then
    say "stopping the lab (the host is left as it was)"
    hack/lab.sh down "${LAB}" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
say "the lab: a single-node cluster whose issuer is https://10.89.0.1/irsa-lab-oidc, moto (IAM, S3), the validating STS, the webhook installed with the chart (first time: ~30 min to build)"
hack/lab.sh up "${LAB}" >/dev/null
say "the scenario: oidc publish, iam create-provider, iam bind, then a pod that knows only the lab's STS and S3 endpoints; then a pod whose ServiceAccount the role does not trust, and irsa-webhook doctor on it"
PYTHONPATH="hack/lab:hack" .venv/bin/python -m irsa_lab scenario "${LAB}"

if [[ "${keep}" == true ]]; then
  cat >&2 <<EOF

The lab is still running. To use it:
  set -a; . ${LAB}/env; set +a
  \$KUBECTL get pods -A
Stop: hack/lab.sh down ${LAB}
EOF
fi
