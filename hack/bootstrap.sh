#!/usr/bin/env bash
# Creates .venv with the locked Python dependencies (uv, from PyPI). Idempotent and quiet.
# Usage: hack/bootstrap.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UV_VERSION=0.13.8
UV_HOME="${IRSA_CACHE_DIR:-${HOME}/.cache/irsa-webhook}/uv-${UV_VERSION}"
if [[ ! -x "${UV_HOME}/bin/uv" ]]; then
  echo "[bootstrap] installing uv ${UV_VERSION} into ${UV_HOME}" >&2
  python3 -m venv "${UV_HOME}"
  "${UV_HOME}/bin/pip" install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
# The machine's Python 3.11 is enough; never download an interpreter.
UV_PYTHON_DOWNLOADS=never "${UV_HOME}/bin/uv" sync --frozen --all-extras --quiet
