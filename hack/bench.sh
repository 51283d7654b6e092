#!/usr/bin/env bash
# The webhook against the floor of its own stack (figures in bench/RESULTS.md).
#
# Usage:
#   hack/bench.sh            side by side (5 rounds) + end-to-end pod creates; RESULT line last
#   hack/bench.sh --quick    the same, 3 short rounds and 50 pods: about 90 s
#   hack/bench.sh --startup  only start-up to ready and RSS idle, webhook vs floor, RSS by layer
#   hack/bench.sh --scale    1k/10k/50k ServiceAccounts: first sync, RSS, lookup, watch burst
#   hack/bench.sh --profile  the webhook under pyinstrument (a scratch venv) at saturation
#   hack/bench.sh --hotpath  in-process: where a request's CPU goes (bench/hotpath.py), no plane
#   hack/bench.sh --reconcile  reconcile passes over 10k pods: API server requests and duration
#
# Installs what it needs, as the tests do (hack/bootstrap.sh; the control plane builds on first use).
# Starts a throw-away control plane (hack/control-plane.sh) in a temporary DIR, or
# uses IRSA_BENCH_PLANE=DIR when set (kept running; SAs created there stay).
# Environment: IRSA_BENCH_RATE (fixed rate, default 500/s),
# IRSA_BENCH_SIZES (scale sizes, default 1000,10000,50000), IRSA_BENCH_PODS (--reconcile,
# default 10000), IRSA_BENCH_WEBHOOK_ARGS
# (extra `irsa-webhook serve` flags, for experiments).
set -euo pipefail

IRSA_SCRIPT_NAME=bench.sh
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//' >&2
}

mode=bench
quick=()
case "${1:-}" in
  "") ;;
  --quick) quick=(--quick) ;;
  --scale) mode=scale ;;
  --startup) mode=startup ;;
  --profile) mode=profile ;;
  --hotpath) mode=hotpath ;;
  --reconcile) mode=reconcile ;;
  -h | --help) usage; exit 0 ;;
  *) usage; exit 2 ;;
esac

REPO="$(cd "${IRSA_HACK_DIR}/.." && pwd)"
PYTHON="${REPO}/.venv/bin/python"
"${IRSA_HACK_DIR}/bootstrap.sh"
# The servers under test (webhook and floors) run from an environment with the runtime
# dependencies only, as in the image: with the dev tools' packages present (rich, pygments),
# httpx imports its own CLI and costs start-up and megabytes that no pod pays.
SERVE_VENV="${REPO}/.venv-serve"
UV_PROJECT_ENVIRONMENT="${SERVE_VENV}" UV_NO_DEFAULT_GROUPS=1 "${IRSA_HACK_DIR}/bootstrap.sh"
SERVE_PYTHON="${SERVE_VENV}/bin/python"
# Bytecode compiled ahead, as the image does at build time (UV_COMPILE_BYTECODE): otherwise a
# venv whose Python never writes .pyc files (PYTHONDONTWRITEBYTECODE) compiles every module on
# every start, and start-up would measure the compiler rather than the webhook.
"${SERVE_PYTHON}" -m compileall -q -j 0 \
  "$("${SERVE_PYTHON}" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  "${REPO}/src" "${REPO}/bench" >/dev/null

if [[ "${mode}" == hotpath ]]; then
  cd "${REPO}"
  exec "${PYTHON}" -m bench.hotpath
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/irsa-bench.XXXXXX")"
PLANE="${IRSA_BENCH_PLANE:-}"
own_plane=false
cleanup() {
  if [[ "${own_plane}" == true ]]; then
    "${IRSA_HACK_DIR}/control-plane.sh" stop "${PLANE}" >/dev/null 2>&1 || true
  fi
  rm -rf "${WORK}"
}
trap cleanup EXIT

if [[ -z "${PLANE}" ]]; then
  PLANE="${WORK}/plane"
  own_plane=true
fi
irsa::log "control plane in ${PLANE}"
"${IRSA_HACK_DIR}/control-plane.sh" start "${PLANE}" >/dev/null

if [[ "${mode}" == profile ]]; then
  # pyinstrument is no project dependency: install it once, outside the project venv, with the
  # system python3 (the same CPython minor version as .venv) and put it on PYTHONPATH.
  site="${IRSA_CACHE_DIR}/bench-profiler"
  if ! PYTHONPATH="${site}" "${PYTHON}" -c 'import pyinstrument' 2>/dev/null; then
    irsa::need python3
    python3 -m venv "${site}.venv"
    "${site}.venv/bin/pip" install -q --target "${site}" pyinstrument
  fi
  export PYTHONPATH="${site}"
fi

cd "${REPO}"
if [[ "${mode}" == reconcile ]]; then
  # Not exec: the EXIT trap stops the control plane this script started.
  "${PYTHON}" -m bench.reconcile --plane "${PLANE}" --pods "${IRSA_BENCH_PODS:-10000}"
  exit 0
fi
"${PYTHON}" -m bench.run --plane "${PLANE}" --work "${WORK}" --mode "${mode}" "${quick[@]}" \
  --rate "${IRSA_BENCH_RATE:-500}" --sizes "${IRSA_BENCH_SIZES:-1000,10000,50000}" \
  --serve-python "${SERVE_PYTHON}"
if [[ "${mode}" == startup ]]; then
  "${SERVE_PYTHON}" -m bench.memory
fi
