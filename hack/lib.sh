# shellcheck shell=bash
# Shared helpers for the hack/ scripts. Source it, do not run it.
#
# Conventions: diagnostics go to stderr; a script's result (a path, an env
# file) goes to stdout, on its last line.

# shellcheck disable=SC2034  # used by the scripts that source this file
IRSA_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IRSA_CACHE_DIR="${IRSA_CACHE_DIR:-${HOME}/.cache/irsa-webhook}"
export IRSA_CACHE_DIR

irsa::log() {
  printf '[%s] %s\n' "${IRSA_SCRIPT_NAME:-$(basename "$0")}" "$*" >&2
}

irsa::die() {
  irsa::log "ERROR: $*"
  exit 1
}

# irsa::need CMD... : fail with a clear message when a command is missing.
irsa::need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || irsa::die "required command not found: $c"
  done
}

# irsa::short_hash FILE : first 12 hex digits of the file's sha256.
irsa::short_hash() {
  sha256sum "$1" | cut -c1-12
}

# irsa::lock FILE : take an exclusive lock on FD 9 (released when the script
# exits). A no-op when flock(1) is missing.
irsa::lock() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$1"
    if ! flock -n 9; then
      irsa::log "waiting for lock $1"
      flock 9
    fi
  fi
}

# irsa::say MESSAGE : a demo step's heading, on stderr.
irsa::say() {
  printf '\n\033[1m== %s\033[0m\n' "$*" >&2
}

# irsa::keep_flag [ARG] : prints true for --keep, false for nothing; usage and exit 2 otherwise.
irsa::keep_flag() {
  case "${1:-}" in
    --keep) echo true ;;
    "") echo false ;;
    *) echo "usage: hack/demo.sh [--keep]" >&2; exit 2 ;;
  esac
}

# irsa::demo_service_account [LABEL] : the demos' namespace (labelled LABEL=enabled when given)
# and its ServiceAccount annotated with a role, as YAML for kubectl apply.
irsa::demo_service_account() {
  local labels="{}"
  [[ -n "${1:-}" ]] && labels="{$1: enabled}"
  cat <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: ${labels}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: s3-reader
  namespace: demo
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/s3-reader
    eks.amazonaws.com/sts-regional-endpoints: "true"
YAML
}

# irsa::wait_mutated KUBECTL SECONDS POD : until a dry-run create of the pod document POD comes
# back with AWS_ROLE_ARN, i.e. the API server's call to the webhook answers (a Deployment's
# status can still show the pods of a node's previous run as available); fails after SECONDS.
irsa::wait_mutated() {
  local client="$1" seconds="$2" pod="$3"
  local deadline=$((SECONDS + seconds))
  until echo "${pod}" | "${client}" create --dry-run=server -o json -f - 2>/dev/null \
    | grep -q AWS_ROLE_ARN; do
    if ((SECONDS >= deadline)); then
      irsa::log "the webhook did not mutate a dry-run pod within ${seconds} s"
      return 1
    fi
    sleep 0.5
  done
}
