#!/usr/bin/env bash
# A throw-away Kubernetes control plane (etcd + kube-apiserver, no controllers,
# no scheduler, no kubelet) for the integration tests, or with --node a whole
# single-node cluster (see hack/localnode/README.md).
#
# Usage:
#   hack/control-plane.sh start DIR             start etcd + kube-apiserver, wait for /readyz
#   hack/control-plane.sh start DIR --node      the same plus kube-controller-manager,
#                                               kube-scheduler and a kubelet node (root, Linux)
#   hack/control-plane.sh stop DIR [--kill]     stop all of it (SIGTERM; --kill: SIGKILL)
#   hack/control-plane.sh status DIR            exit 0 iff both run and are ready
#   hack/control-plane.sh stop-apiserver DIR [--kill]
#                                               stop only kube-apiserver (etcd keeps running)
#   hack/control-plane.sh start-apiserver DIR   restart kube-apiserver on the same port/etcd
#
# `start` builds the binaries (hack/build-testenv.sh) and installs kubectl/helm
# (hack/tools.sh) when they are missing, then writes into DIR:
#   ca.crt ca.key            test CA (also signs apiserver.crt; reuse it for the webhook)
#   apiserver.crt/.key       serving cert for its address, 127.0.0.1, ::1, localhost
#   sa.key sa.pub            RSA-2048 service-account signing key (RS256 tokens)
#   tokens.csv               static tokens: admin (system:masters), irsa-webhook (no groups)
#   kubeconfig               admin kubeconfig (CA and token embedded)
#   env                      KEY=value lines (APISERVER_URL, ADMIN_TOKEN, KUBECTL, ...);
#                            `set -a; . DIR/env; set +a`. Also printed on stdout.
#   etcd/ etcd.log etcd.pid apiserver.log apiserver.pid
# DIR is state: a second `start` after `stop` reuses certificates, tokens, the
# etcd data and (when still free) the ports. Remove DIR for a fresh cluster.
# `start` on a running, ready control plane only prints the env.
#
# Environment: IRSA_CACHE_DIR (binary cache), IRSA_READY_TIMEOUT (s, default 90),
# IRSA_APISERVER_V (klog verbosity, default 1),
# IRSA_APISERVER_EXTRA_ARGS (space-separated extra kube-apiserver flags; kept in
# DIR/apiserver.args for restarts while unset),
# IRSA_APISERVER_ADDRESS (the one address it binds and advertises, default 127.0.0.1;
# the node sets it to its host-side veth address, kept in DIR/env for restarts),
# IRSA_SA_ISSUER (the --service-account-issuer tokens get, default the API server's own URL,
# which stays accepted; the lab sets an https URL it serves; jwks_uri = issuer/openid/v1/jwks;
# kept in DIR/env for restarts while unset; set and empty goes back to the default).
set -euo pipefail

IRSA_SCRIPT_NAME=control-plane.sh
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n '6,15p' "$0" | sed 's/^# \{0,1\}//' >&2
}

READY_TIMEOUT="${IRSA_READY_TIMEOUT:-90}"
PORT_ATTEMPTS=5

# ---------------------------------------------------------------- helpers --

# Wall clock in ms, and "seconds since T0" with one decimal.
now_ms() { local t="${EPOCHREALTIME/[.,]/}"; echo "$((t / 1000))"; }
elapsed_since() { local d=$(($(now_ms) - $1)); printf '%d.%d' "$((d / 1000))" "$((d % 1000 / 100))"; }

# proc_ok NAME PID: PID is alive (not a zombie), runs the binary of NAME
# (etcd | apiserver), and its command line references DIR -- so a recycled pid
# or another test's control plane is never touched.
proc_ok() {
  local name="$1" pid="$2" state argv0 cmdline
  if [[ "${name}" == apiserver ]]; then name=kube-apiserver; fi
  [[ "${pid}" =~ ^[0-9]+$ && -r "/proc/${pid}/cmdline" ]] || return 1
  state="$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null)" || return 1
  [[ "${state}" != Z && "${state}" != X ]] || return 1
  cmdline="$(tr '\0' '\n' <"/proc/${pid}/cmdline" 2>/dev/null)" || return 1
  argv0="${cmdline%%$'\n'*}"
  [[ "${argv0##*/}" == "${name}" ]] || return 1
  [[ "${cmdline}" == *"${DIR}/"* ]]
}

# running NAME: print the pid of DIR's NAME process when it runs.
running() {
  local pid
  [[ -f "${DIR}/$1.pid" ]] || return 1
  pid="$(cat "${DIR}/$1.pid" 2>/dev/null)" || return 1
  proc_ok "$1" "${pid}" || return 1
  echo "${pid}"
}

# stop_proc NAME SIGNAL: signal DIR's NAME process and wait until it is gone.
stop_proc() {
  local name="$1" sig="$2" pid i
  if ! pid="$(running "${name}")"; then
    rm -f "${DIR}/${name}.pid"
    return 0
  fi
  irsa::log "stopping ${name} (pid ${pid}, SIG${sig})"
  kill -s "${sig}" "${pid}" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do           # 30 s, then SIGKILL
    proc_ok "${name}" "${pid}" || break
    sleep 0.1
  done
  if proc_ok "${name}" "${pid}"; then
    irsa::log "${name} did not exit in 30 s; SIGKILL"
    kill -s KILL "${pid}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      proc_ok "${name}" "${pid}" || break
      sleep 0.1
    done
    ! proc_ok "${name}" "${pid}" || irsa::die "${name} (pid ${pid}) survived SIGKILL"
  fi
  rm -f "${DIR}/${name}.pid"
}

# launch NAME BINARY ARGS...: start a daemon in its own session, detached from
# our stdio and lock fd, logging to DIR/NAME.log; the pid goes to DIR/NAME.pid.
launch() {
  local name="$1" i pid
  shift
  rm -f "${DIR}/${name}.pid"
  printf '\n===== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"${DIR}/${name}.log"
  # shellcheck disable=SC2016  # $$ / $0 / $@ are for the inner bash
  setsid bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "${DIR}/${name}.pid" "$@" \
    </dev/null >>"${DIR}/${name}.log" 2>&1 9>&- &
  disown "$!" 2>/dev/null || true           # no "Killed" job notices from bash
  for ((i = 0; i < 100; i++)); do
    [[ -s "${DIR}/${name}.pid" ]] && break
    sleep 0.05
  done
  [[ -s "${DIR}/${name}.pid" ]] || irsa::die "${name} did not start (no pid file)"
  # Wait until the wrapper has exec'd the binary (or it already died), so that
  # callers can tell "exited" from "not exec'd yet".
  pid="$(cat "${DIR}/${name}.pid")"
  for ((i = 0; i < 100; i++)); do
    if proc_ok "${name}" "${pid}" || [[ ! -e "/proc/${pid}" ]] || ! proc_is_wrapper "${pid}"; then
      return 0
    fi
    sleep 0.05
  done
  return 0
}

# proc_is_wrapper PID: PID is still the `bash -c` wrapper of launch().
proc_is_wrapper() {
  local argv0
  argv0="$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
  argv0="${argv0%%$'\n'*}"
  [[ "${argv0##*/}" == bash ]]
}

# port_free ADDRESS PORT / free_port ADDRESS
port_free() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
PY
}

free_port() {
  python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}

# Did the last run logged in FILE fail to bind its port?
log_says_port_in_use() {
  local last_run
  last_run="$(awk '/^===== /{buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$1" 2>/dev/null)" || return 1
  [[ "${last_run}" == *"address already in use"* ]]
}

show_log_tail() {
  irsa::log "---- last lines of $1 ----"
  tail -n "${2:-40}" "$1" >&2 || true
  irsa::log "---- end of $1 ----"
}

etcd_healthy() {
  local body
  body="$(curl -fsS --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null)" || return 1
  [[ "${body}" == *'"health":"true"'* ]]
}

apiserver_ready() {
  [[ "$(curl -sS --max-time 3 --cacert "${DIR}/ca.crt" -H "Authorization: Bearer ${ADMIN_TOKEN}" \
    "https://${APISERVER_ADDRESS}:$1/readyz" 2>/dev/null)" == ok ]]
}

# ----------------------------------------------------- binaries and state --

ensure_binaries() {
  local out
  out="$("${IRSA_HACK_DIR}/build-testenv.sh" | tail -n 1)"
  TESTENV_BIN_DIR="${out}"
  out="$("${IRSA_HACK_DIR}/tools.sh" | tail -n 1)"
  BIN_DIR="${out}"
  [[ -x "${TESTENV_BIN_DIR}/etcd" && -x "${TESTENV_BIN_DIR}/kube-apiserver" ]] || irsa::die "no binaries in ${TESTENV_BIN_DIR}"
  [[ -x "${BIN_DIR}/kubectl" && -x "${BIN_DIR}/helm" ]] || irsa::die "no kubectl/helm in ${BIN_DIR}"
}

# Certificates, keys and tokens are made once per DIR and then reused.
ensure_pki() {
  irsa::need openssl
  (
    umask 077
    cd "${DIR}"
    if [[ ! -s ca.crt || ! -s ca.key ]]; then
      irsa::log "generating test CA"
      openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -keyout ca.key -out ca.crt -subj "/CN=irsa-webhook test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
      rm -f apiserver.crt apiserver.key
    fi
    if [[ -s apiserver.crt ]] && ! openssl x509 -in apiserver.crt -noout -checkip "${APISERVER_ADDRESS}" \
      | grep -q 'does match'; then
      rm -f apiserver.crt apiserver.key     # made for another address
    fi
    if [[ ! -s apiserver.crt || ! -s apiserver.key ]]; then
      irsa::log "generating kube-apiserver serving certificate"
      cat >apiserver.ext <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:${APISERVER_ADDRESS}, IP:127.0.0.1, IP:::1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
EOF
      openssl req -new -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
        -subj "/CN=kube-apiserver" 2>/dev/null
      openssl x509 -req -sha256 -days 3650 -in apiserver.csr -CA ca.crt -CAkey ca.key \
        -set_serial "0x$(openssl rand -hex 16)" -extfile apiserver.ext -out apiserver.crt 2>/dev/null
      rm -f apiserver.csr apiserver.ext
    fi
    if [[ ! -s sa.key || ! -s sa.pub ]]; then
      irsa::log "generating service-account signing key (RSA 2048)"
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
      openssl pkey -in sa.key -pubout -out sa.pub
    fi
    if [[ ! -s tokens.csv ]]; then
      # token,user,uid[,"group1,group2"]
      printf '%s,admin,admin-uid,"system:masters"\n%s,irsa-webhook,irsa-webhook-uid\n' \
        "admin-$(openssl rand -hex 16)" "webhook-$(openssl rand -hex 16)" >tokens.csv
    fi
    chmod 644 ca.crt apiserver.crt sa.pub
  )
  ADMIN_TOKEN="$(awk -F, '$2 == "admin" {print $1}' "${DIR}/tokens.csv")"
  WEBHOOK_TOKEN="$(awk -F, '$2 == "irsa-webhook" {print $1}' "${DIR}/tokens.csv")"
}

# sa_issuer URL: the service-account issuer of an API server at URL.
sa_issuer() { echo "${SA_ISSUER_OVERRIDE:-$1}"; }
sa_jwks_uri() { local issuer; issuer="$(sa_issuer "$1")"; echo "${issuer%/}/openid/v1/jwks"; }

# Read the ports etc. of a previous start, if any.
load_env() {
  ETCD_PORT="" APISERVER_PORT="" ADMIN_TOKEN="" APISERVER_ADDRESS="${IRSA_APISERVER_ADDRESS:-}"
  if [[ -z "${APISERVER_ADDRESS}" && -f "${DIR}/env" ]]; then
    APISERVER_ADDRESS="$(sed -n 's/^APISERVER_ADDRESS=//p' "${DIR}/env")"
  fi
  APISERVER_ADDRESS="${APISERVER_ADDRESS:-127.0.0.1}"
  SA_ISSUER_OVERRIDE="${IRSA_SA_ISSUER:-}"
  if [[ -z "${IRSA_SA_ISSUER+set}" && -f "${DIR}/env" ]]; then
    SA_ISSUER_OVERRIDE="$(sed -n 's/^IRSA_SA_ISSUER=//p' "${DIR}/env")"
    [[ "${SA_ISSUER_OVERRIDE}" != "''" ]] || SA_ISSUER_OVERRIDE=""
  fi
  # The extra flags of the last start, so that a restart (start-apiserver) keeps them.
  APISERVER_EXTRA_ARGS="${IRSA_APISERVER_EXTRA_ARGS:-}"
  if [[ -z "${IRSA_APISERVER_EXTRA_ARGS+set}" && -f "${DIR}/apiserver.args" ]]; then
    APISERVER_EXTRA_ARGS="$(cat "${DIR}/apiserver.args")"
  fi
  if [[ -f "${DIR}/env" ]]; then
    ETCD_PORT="$(sed -n 's/^ETCD_PORT=\([0-9]*\)$/\1/p' "${DIR}/env")"
    APISERVER_PORT="$(sed -n 's/^APISERVER_PORT=\([0-9]*\)$/\1/p' "${DIR}/env")"
    TESTENV_BIN_DIR="$(sed -n 's/^TESTENV_BIN_DIR=//p' "${DIR}/env")"
  fi
  if [[ -f "${DIR}/tokens.csv" ]]; then
    ADMIN_TOKEN="$(awk -F, '$2 == "admin" {print $1}' "${DIR}/tokens.csv")"
  fi
}

write_outputs() {
  local url="https://${APISERVER_ADDRESS}:${APISERVER_PORT}" tmp
  tmp="$(mktemp "${DIR}/.kubeconfig.XXXXXX")"
  cat >"${tmp}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: irsa-test
  cluster:
    server: ${url}
    certificate-authority-data: $(base64 -w0 <"${DIR}/ca.crt")
users:
- name: admin
  user:
    token: ${ADMIN_TOKEN}
contexts:
- name: irsa-test
  context:
    cluster: irsa-test
    user: admin
current-context: irsa-test
EOF
  chmod 600 "${tmp}"
  mv -f "${tmp}" "${DIR}/kubeconfig"

  tmp="$(mktemp "${DIR}/.env.XXXXXX")"
  {
    printf '%s=%q\n' \
      APISERVER_URL "${url}" \
      APISERVER_PORT "${APISERVER_PORT}" \
      APISERVER_ADDRESS "${APISERVER_ADDRESS}" \
      ETCD_URL "http://127.0.0.1:${ETCD_PORT}" \
      ETCD_PORT "${ETCD_PORT}" \
      ADMIN_TOKEN "${ADMIN_TOKEN}" \
      WEBHOOK_TOKEN "${WEBHOOK_TOKEN}" \
      KUBECONFIG "${DIR}/kubeconfig" \
      CA_CERT "${DIR}/ca.crt" \
      CA_KEY "${DIR}/ca.key" \
      SA_ISSUER "$(sa_issuer "${url}")" \
      SA_JWKS_URI "$(sa_jwks_uri "${url}")" \
      IRSA_SA_ISSUER "${SA_ISSUER_OVERRIDE}" \
      SA_SIGNING_KEY "${DIR}/sa.key" \
      KUBECTL "${BIN_DIR}/kubectl" \
      HELM "${BIN_DIR}/helm" \
      BIN_DIR "${BIN_DIR}" \
      TESTENV_BIN_DIR "${TESTENV_BIN_DIR}" \
      CONTROL_PLANE_DIR "${DIR}"
    # The node's own lines (WEBHOOK_IMAGE, LAB_IMAGE, ...) while it runs: hack/localnode.
    if [[ -f "${DIR}/node/env" ]]; then cat "${DIR}/node/env"; fi
  } >"${tmp}"
  mv -f "${tmp}" "${DIR}/env"
}

# ---------------------------------------------------------------- daemons --

# start_etcd PORT: 0 = healthy, 2 = port in use, 1 = other failure.
start_etcd() {
  local port="$1" pid i
  launch etcd "${TESTENV_BIN_DIR}/etcd" \
    --name=irsa-test \
    --data-dir="${DIR}/etcd" \
    --listen-client-urls="http://127.0.0.1:${port}" \
    --advertise-client-urls="http://127.0.0.1:${port}" \
    --listen-peer-urls="http://127.0.0.1:0" \
    --unsafe-no-fsync=true \
    --log-level=warn
  pid="$(cat "${DIR}/etcd.pid")"
  for ((i = 0; i < 300; i++)); do            # 30 s
    if ! proc_ok etcd "${pid}"; then
      log_says_port_in_use "${DIR}/etcd.log" && return 2
      return 1
    fi
    etcd_healthy "${port}" && return 0
    sleep 0.1
  done
  return 1
}

# start_apiserver PORT: 0 = ready, 2 = port in use, 1 = other failure.
start_apiserver() {
  local port="$1" url="https://${APISERVER_ADDRESS}:$1" pid t0 extra=()
  read -r -a extra <<<"${APISERVER_EXTRA_ARGS}"
  printf '%s\n' "${APISERVER_EXTRA_ARGS}" >"${DIR}/apiserver.args"
  # Tokens get the first issuer; the API server's own URL stays accepted after a switch.
  local issuers=(--service-account-issuer="$(sa_issuer "${url}")")
  if [[ -n "${SA_ISSUER_OVERRIDE}" ]]; then issuers+=(--service-account-issuer="${url}"); fi
  t0="$(now_ms)"
  launch apiserver "${TESTENV_BIN_DIR}/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
    --bind-address="${APISERVER_ADDRESS}" \
    --advertise-address="${APISERVER_ADDRESS}" \
    --secure-port="${port}" \
    --tls-cert-file="${DIR}/apiserver.crt" \
    --tls-private-key-file="${DIR}/apiserver.key" \
    --token-auth-file="${DIR}/tokens.csv" \
    --authorization-mode=RBAC \
    "${issuers[@]}" \
    --service-account-jwks-uri="$(sa_jwks_uri "${url}")" \
    --service-account-key-file="${DIR}/sa.pub" \
    --service-account-signing-key-file="${DIR}/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --enable-admission-plugins=ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --profiling=false \
    --v="${IRSA_APISERVER_V:-1}" \
    "${extra[@]}"
  pid="$(cat "${DIR}/apiserver.pid")"
  while :; do
    if ! proc_ok apiserver "${pid}"; then
      log_says_port_in_use "${DIR}/apiserver.log" && return 2
      irsa::log "kube-apiserver exited during start-up"
      return 1
    fi
    if apiserver_ready "${port}"; then
      irsa::log "kube-apiserver ready at ${url} in $(elapsed_since "${t0}") s"
      return 0
    fi
    if (($(now_ms) - t0 >= READY_TIMEOUT * 1000)); then
      irsa::log "kube-apiserver not ready after ${READY_TIMEOUT} s"
      return 1
    fi
    sleep 0.25
  done
}

# ensure_etcd: etcd of DIR runs and is healthy; sets ETCD_PORT.
ensure_etcd() {
  local attempt rc
  if running etcd >/dev/null && [[ -n "${ETCD_PORT}" ]] && etcd_healthy "${ETCD_PORT}"; then
    return 0
  fi
  stop_proc etcd TERM
  for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
    if [[ -z "${ETCD_PORT}" ]] || ! port_free 127.0.0.1 "${ETCD_PORT}"; then
      ETCD_PORT="$(free_port 127.0.0.1)"
    fi
    irsa::log "starting etcd on 127.0.0.1:${ETCD_PORT}"
    rc=0
    start_etcd "${ETCD_PORT}" || rc=$?
    case "${rc}" in
      0) return 0 ;;
      2) irsa::log "etcd port ${ETCD_PORT} in use; retrying"; stop_proc etcd KILL; ETCD_PORT="" ;;
      *) show_log_tail "${DIR}/etcd.log"; stop_proc etcd KILL; irsa::die "etcd failed to start" ;;
    esac
  done
  irsa::die "etcd: no free port after ${PORT_ATTEMPTS} attempts"
}

# ensure_apiserver SAME_PORT: kube-apiserver runs and is ready; SAME_PORT=1
# forbids moving to another port.
ensure_apiserver() {
  local same_port="$1" attempt rc
  for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
    if [[ -z "${APISERVER_PORT}" ]] || { [[ "${same_port}" != 1 ]] && ! port_free "${APISERVER_ADDRESS}" "${APISERVER_PORT}"; }; then
      APISERVER_PORT="$(free_port "${APISERVER_ADDRESS}")"
    fi
    irsa::log "starting kube-apiserver on ${APISERVER_ADDRESS}:${APISERVER_PORT}"
    rc=0
    start_apiserver "${APISERVER_PORT}" || rc=$?
    case "${rc}" in
      0) return 0 ;;
      2)
        stop_proc apiserver KILL
        if [[ "${same_port}" == 1 ]]; then
          show_log_tail "${DIR}/apiserver.log"
          irsa::die "port ${APISERVER_PORT} is taken by another process; cannot restart kube-apiserver on it"
        fi
        irsa::log "kube-apiserver port ${APISERVER_PORT} in use; retrying"
        APISERVER_PORT=""
        ;;
      *) show_log_tail "${DIR}/apiserver.log"; stop_proc apiserver KILL; irsa::die "kube-apiserver failed to start" ;;
    esac
  done
  irsa::die "kube-apiserver: no free port after ${PORT_ATTEMPTS} attempts"
}

# ------------------------------------------------------------- commands --

# A failed `start` leaves nothing running behind.
cleanup_failed_start() {
  local rc=$?
  if ((rc != 0)); then
    irsa::log "start failed; stopping what runs in ${DIR}"
    stop_proc apiserver KILL || true
    stop_proc etcd TERM || true
  fi
  return "${rc}"
}

cmd_start() {
  mkdir -p "${DIR}"
  DIR="$(cd "${DIR}" && pwd)"
  irsa::lock "${DIR}/.lock"
  trap cleanup_failed_start EXIT
  load_env
  ensure_binaries
  ensure_pki
  if running apiserver >/dev/null && running etcd >/dev/null && [[ -n "${APISERVER_PORT}" ]] \
    && apiserver_ready "${APISERVER_PORT}"; then
    irsa::log "already running and ready: https://${APISERVER_ADDRESS}:${APISERVER_PORT}"
    write_outputs
    trap - EXIT
    cat "${DIR}/env"
    return 0
  fi
  if ! running etcd >/dev/null; then
    # Without its etcd, a leftover apiserver is useless.
    stop_proc apiserver TERM
  fi
  ensure_etcd
  stop_proc apiserver TERM
  ensure_apiserver 0
  write_outputs
  trap - EXIT
  cat "${DIR}/env"
}

cmd_start_apiserver() {
  [[ -f "${DIR}/env" ]] || irsa::die "${DIR}/env not found: run '$0 start ${DIR}' first"
  irsa::lock "${DIR}/.lock"
  load_env
  ensure_binaries
  ensure_pki
  if ! { running etcd >/dev/null && etcd_healthy "${ETCD_PORT}"; }; then
    irsa::die "etcd of ${DIR} is not running: use '$0 start ${DIR}'"
  fi
  if running apiserver >/dev/null && apiserver_ready "${APISERVER_PORT}"; then
    irsa::log "kube-apiserver already running and ready"
  else
    stop_proc apiserver TERM
    ensure_apiserver 1
  fi
  write_outputs
  cat "${DIR}/env"
}

cmd_stop() {
  local sig="$1" what="$2"
  [[ -d "${DIR}" ]] || { irsa::log "${DIR} does not exist; nothing to stop"; return 0; }
  DIR="$(cd "${DIR}" && pwd)"
  irsa::lock "${DIR}/.lock"
  stop_proc apiserver "${sig}"
  if [[ "${what}" == all ]]; then
    stop_proc etcd "${sig}"
  fi
}

cmd_status() {
  local ok=0 pid
  [[ -d "${DIR}" ]] || { irsa::log "${DIR} does not exist"; return 1; }
  load_env
  if pid="$(running etcd)"; then
    if etcd_healthy "${ETCD_PORT}"; then
      echo "etcd: running (pid ${pid}), healthy at http://127.0.0.1:${ETCD_PORT}"
    else
      echo "etcd: running (pid ${pid}), NOT healthy"; ok=1
    fi
  else
    echo "etcd: not running"; ok=1
  fi
  if pid="$(running apiserver)"; then
    if apiserver_ready "${APISERVER_PORT}"; then
      echo "kube-apiserver: running (pid ${pid}), ready at https://${APISERVER_ADDRESS}:${APISERVER_PORT}"
    else
      echo "kube-apiserver: running (pid ${pid}), NOT ready"; ok=1
    fi
  else
    echo "kube-apiserver: not running"; ok=1
  fi
  return "${ok}"
}

# ----------------------------------------------------------------- main --

if [[ $# -lt 2 ]]; then
  usage
  exit 2
fi
CMD="$1"
DIR="$2"
shift 2
SIG=TERM
case "${CMD}:$*" in
  stop:|stop-apiserver:) ;;
  stop:--kill|stop-apiserver:--kill) SIG=KILL ;;
  start:|start:--node|start-apiserver:|status:|pki:) ;;
  *) usage; exit 2 ;;
esac
[[ -n "${DIR}" ]] || { usage; exit 2; }
if [[ -d "${DIR}" ]]; then DIR="$(cd "${DIR}" && pwd)"; fi

# The node's logic lives in hack/localnode (Python, standard library only).
localnode() {
  PYTHONPATH="${IRSA_HACK_DIR}${PYTHONPATH:+:${PYTHONPATH}}" python3 -m localnode "$@"
}

case "${CMD}:$*" in
  start:--node) mkdir -p "${DIR}"; localnode up "$(cd "${DIR}" && pwd)" ;;
  start:) cmd_start ;;
  # Only the PKI (CA, serving cert, SA key, tokens): the node signs its certificates first.
  pki:) mkdir -p "${DIR}"; DIR="$(cd "${DIR}" && pwd)"; load_env; ensure_pki ;;
  start-apiserver:*) cmd_start_apiserver ;;
  stop:*)
    rc=0
    if [[ -d "${DIR}/node" ]]; then localnode down "${DIR}" || rc=$?; fi
    cmd_stop "${SIG}" all
    exit "${rc}"
    ;;
  stop-apiserver:*) cmd_stop "${SIG}" apiserver ;;
  status:)
    rc=0
    cmd_status || rc=$?
    if [[ -d "${DIR}/node" ]]; then localnode status "${DIR}" || rc=$?; fi
    exit "${rc}"
    ;;
esac
