#!/usr/bin/env bash
# The one command that tests everything: installs dependencies, builds the control plane when
# missing, then runs lint, type checks and all tests (end-to-end included).
# Usage: hack/test.sh [--unit] [pytest args...]
#   --unit  skip the end-to-end tests (only allowed outside CI; CI always runs everything)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

unit_only=false
if [[ "${1:-}" == "--unit" ]]; then
  unit_only=true
  shift
fi
if [[ -n "${CI:-}" && "${unit_only}" == true ]]; then
  echo "[test] --unit is not allowed in CI: the end-to-end tests must run" >&2
  exit 2
fi

hack/bootstrap.sh

echo "[test] ruff" >&2
.venv/bin/ruff check src tests bench hack/lab hack/localnode
.venv/bin/ruff format --check src tests bench hack/lab hack/localnode
echo "[test] mypy --strict" >&2
.venv/bin/mypy
echo "[test] import layers (lint-imports)" >&2
.venv/bin/lint-imports --no-cache >/dev/null

if [[ "${unit_only}" == true ]]; then
  exec .venv/bin/pytest -m "not e2e" "$@"
fi

if ! command -v go >/dev/null 2>&1; then
  echo "[test] Go is not installed: the end-to-end tests build kube-apiserver and etcd from" \
    "Go modules (hack/testenv). Install Go >= 1.26, or run 'hack/test.sh --unit' locally." >&2
  exit 1
fi
echo "[test] building the cluster's binaries and tools when missing (first time: 6-30 min, by load)" >&2
hack/build-testenv.sh >/dev/null
hack/tools.sh >/dev/null
# The node tests (tests/node) need root and Linux; CI has both and must run them.
if reason="$(PYTHONPATH=hack python3 -m localnode preflight)"; then
  echo "[test] node: Debian packages and images when missing (first time: 1-10 min, by load)" >&2
  PYTHONPATH=hack python3 -m localnode packages
  PYTHONPATH=hack python3 -m localnode images >/dev/null
elif [[ -n "${CI:-}" ]]; then
  echo "[test] CI must run the node tests, but: ${reason}" >&2
  exit 1
else
  echo "[test] skipping the node tests: ${reason}" >&2
fi
exec .venv/bin/pytest --cov --cov-report=term "$@"
