# Shared helpers of the scripts that fetch and run the test services
# (kafka/kafka.sh, registry/registry.sh, mlserver/mlserver.sh). Sourced, not
# run. A script sets SELF (its name, for messages), WHAT (the service, for
# messages), HOST, DATA and PIDFILE before calling these.

log() { echo "$SELF: $*"; }
err() { echo "$SELF: $*" >&2; }
die() { err "error: $*"; exit 1; }

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
