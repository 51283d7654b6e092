#!/usr/bin/env bash
# The offline IRSA lab on the single-node cluster: moto as IAM, S3 and STS's back end, an https
# issuer served from moto's S3, the validating STS, and the webhook installed with the chart.
# Usage:
#   hack/lab.sh up DIR     bring it up (root, Linux; builds the node when missing); prints DIR/env
#   hack/lab.sh down DIR   stop all of it (DIR keeps its files for the next up)
# DIR/env: KEY=value lines for the host (set -a; . DIR/env; set +a): the node's variables,
# ISSUER_URL, and AWS_ENDPOINT_URL* / region / test keys / CA bundle for boto3 and irsa-webhook.
# DIR/pod-aws-env.json: env entries pointing a pod's SDK at the lab's STS and S3.
# The logic is Python (hack/lab/irsa_lab/lab.py); docs/lab.md explains the lab.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}:${2:-}" in
  up:?* | down:?*) ;;
  *) sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
hack/bootstrap.sh
PYTHONPATH="hack/lab:hack" exec .venv/bin/python -m irsa_lab "$1" "$2"
