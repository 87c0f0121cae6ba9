# Shared helpers of the scripts that fetch and run the test services
# (kafka/kafka.sh, registry/registry.sh, mlserver/mlserver.sh). Sourced, not
# run. A script sets SELF (its name, for messages), WHAT (the service, for
# messages), HOST, DATA and PIDFILE before calling these.

# Each script also defines service_pid (the pid of its running service, or
# fail), service_ready (the service answers) and service_where (where it
# answers, and where its data or log is, for messages).

log() { echo "$SELF: $*"; }
err() { echo "$SELF: $*" >&2; }
die() { err "error: $*"; exit 1; }

# usage: the script's header comment, up to `set -euo`.
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}

# http_status PORT PATH: print the HTTP status code of GET
# http://HOST:PORT/PATH (plain bash, so curl is not required).
http_status() {
  (
    exec 3<>"/dev/tcp/$HOST/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: application/json\r\nConnection: close\r\n\r\n' \
      "$2" "$HOST" "$1" >&3
    IFS=' ' read -r -t 5 _ code _ <&3 || exit 1
    echo "$code"
  ) 2>/dev/null
}

# port_open PORT: something accepts TCP connections on $HOST:PORT.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# alive PID: the process exists and is not a zombie.
alive() {
  local pid=$1 state
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    state=$(sed -E 's/^.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  else
    state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  fi
  [[ $state != Z* ]]
}

# cmdline PID: the process's command line, arguments joined by spaces.
cmdline() {
  local pid=$1
  if [[ -r /proc/$pid/cmdline ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null
  else
    ps -o args= -p "$pid" 2>/dev/null
  fi
}

# tail_logs FILE...: the last 50 lines of each non-empty FILE, on stderr.
tail_logs() {
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      err "last 50 lines of $f:"
      tail -n 50 "$f" >&2
    fi
  done
}

# lock_data: serialise start/stop on this data dir. Held on fd 8 until exit.
lock_data() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$DATA")"
  exec 8>"$DATA.lock"
  flock 8
}

# stop_pid PID: SIGTERM, wait up to 30 s, then SIGKILL (the whole session
# when PID leads one, so worker processes go too).
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || { rm -f "$PIDFILE"; log "stopped (pid $pid)"; return 0; }
    sleep 0.2
  done
  log "$WHAT (pid $pid) still running after 30 s; sending SIGKILL"
  if [[ $(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') == "$pid" ]]; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  else
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || { rm -f "$PIDFILE"; log "killed (pid $pid)"; return 0; }
    sleep 0.2
  done
  die "could not kill $WHAT pid $pid"
}

# do_stop: stop the service whose pid service_pid prints (each script
# defines service_pid), or say it is not running.
do_stop() {
  local pid
  lock_data
  if ! pid=$(service_pid); then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  stop_pid "$pid"
}

# do_logs [TAIL ARGS]: the service's log, its last 100 lines by default.
do_logs() {
  [[ -f $LOGFILE ]] || die "no $WHAT log at $LOGFILE"
  if (($# == 0)); then
    set -- -n 100
  fi
  exec tail "$@" "$LOGFILE"
}

# wait_ready PID WHERE: wait until service_ready, then log that the service
# is ready WHERE; if it dies or START_TIMEOUT passes first, show its logs
# (and stop it), and fail.
wait_ready() {
  local pid=$1 where=$2 t0=$SECONDS
  while :; do
    if ! alive "$pid"; then
      show_logs
      rm -f "$PIDFILE"
      die "$WHAT (pid $pid) exited during startup"
    fi
    if service_ready; then
      log "$WHAT ready $where (pid $pid, ready after $((SECONDS - t0)) s)"
      return 0
    fi
    if ((SECONDS - t0 >= START_TIMEOUT)); then
      show_logs
      err "$WHAT (pid $pid) not ready after $START_TIMEOUT s; stopping it"
      stop_pid "$pid" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# do_status: whether the service runs and answers; exit status 0 if so.
do_status() {
  local pid
  if ! pid=$(service_pid); then
    log "not running"
    return 1
  fi
  if service_ready; then
    log "running $(service_where) (pid $pid)"
    return 0
  fi
  log "pid $pid is alive but not answering $(service_where) (starting, or stuck: see '$0 logs')"
  return 1
}
