#!/usr/bin/env bash
# Local schema registry with the Confluent Schema Registry REST API, on
# 127.0.0.1, for tests and local development: Apicurio Registry (a Quarkus
# application) with in-memory H2 storage. Every start begins empty.
#
# The Confluent-compatible API is served under
#   http://127.0.0.1:<port>/apis/ccompat/v7
# (e.g. POST .../subjects/<subject>/versions, GET .../schemas/ids/<id>,
# POST .../compatibility/subjects/<subject>/versions/latest); `url` prints it.
#
# The runnable application comes from Maven Central (via
# scripts/registry/pom.xml): io.apicurio:apicurio-registry-app:<version>,
# classifier "all", type tar.gz, is the packaged Quarkus app. Apicurio 3.1+
# needs Java 21+ (Java 17 fails with UnsupportedClassVersionError, class file
# version 65); the script looks for a suitable JVM (see REGISTRY_JAVA).
#
# Usage: scripts/registry/registry.sh fetch|start|stop|status|url|logs [tail args]
#
#   fetch   download and unpack the app into the cache (once; reused afterwards)
#   start   fetch if needed, start the registry in the background and wait
#           until its Confluent-compatible API answers
#   stop    stop the registry (SIGTERM, then SIGKILL after 30 s)
#   status  exit 0 if the registry is running and answering, 1 otherwise
#   url     print the base URL of the Confluent-compatible API
#   logs    tail the registry log (extra arguments go to tail, e.g. `logs -f`)
#
# Environment:
#   REGISTRY_VERSION        Apicurio Registry version (default 3.3.3)
#   STREAMER_CACHE          cache root (default $HOME/.cache/streamer); the app
#                           is unpacked to $STREAMER_CACHE/registry-<version>/app
#                           (~320 MB; Maven also keeps the ~160 MB tarball in
#                           its local repository, ~/.m2)
#   REGISTRY_DATA           data dir for pid file, log and scratch files
#                           (default ${TMPDIR:-/tmp}/streamer-registry); the
#                           schemas themselves live only in memory
#   REGISTRY_PORT           HTTP port (default 8081)
#   REGISTRY_MANAGEMENT_PORT  Quarkus management interface (health, metrics)
#                           port (default 0: a free port, see the log)
#   REGISTRY_COMPATIBILITY  default compatibility level (default BACKWARD, as
#                           in Confluent's registry; NONE, FORWARD, FULL,
#                           *_TRANSITIVE...). Empty: no default rule (Apicurio's
#                           own default), under which registration accepts
#                           anything while the compatibility-check endpoint
#                           still answers as if BACKWARD was set.
#   REGISTRY_START_TIMEOUT  seconds to wait for the registry (default 90)
#   REGISTRY_HEAP_OPTS      default "-Xms64m -Xmx512m"
#   REGISTRY_JVM_OPTS       default "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
#                           (fast startup); extra -D options go here too
#   REGISTRY_JAVA           java binary to use; otherwise the first Java of
#                           the required version (REGISTRY_JAVA_MIN: 21, or 17
#                           for 2.x/3.0.x) among $JAVA_HOME/bin/java, java on
#                           PATH and /usr/lib/jvm/*/bin/java (newest first)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${REGISTRY_VERSION:-3.3.3}
CACHE_ROOT=${STREAMER_CACHE:-${HOME:?HOME is not set}/.cache/streamer}
CACHE_DIR=$CACHE_ROOT/registry-$VERSION
APP=$CACHE_DIR/app
FETCHED=$CACHE_DIR/.complete

DATA=${REGISTRY_DATA:-${TMPDIR:-/tmp}/streamer-registry}
DATA=${DATA%/}
HOST=127.0.0.1
PORT=${REGISTRY_PORT:-8081}
MGMT_PORT=${REGISTRY_MANAGEMENT_PORT:-0}
COMPATIBILITY=${REGISTRY_COMPATIBILITY-BACKWARD}
START_TIMEOUT=${REGISTRY_START_TIMEOUT:-90}
HEAP_OPTS=${REGISTRY_HEAP_OPTS:--Xms64m -Xmx512m}
JVM_OPTS=${REGISTRY_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1}
API_PATH=/apis/ccompat/v7
BASE_URL=http://$HOST:$PORT$API_PATH

PIDFILE=$DATA/registry.pid
LOGFILE=$DATA/registry.log   # JVM stdout/stderr: Quarkus log + access log
WORK=$DATA/work              # java.io.tmpdir, Apicurio snapshot/import dirs
DATA_MARK=$DATA/.streamer-registry
PROC_MARK="-Dstreamer.registry=$DATA"   # identifies our JVM in ps output

case $VERSION in
  1.* | 2.* | 3.0.*) JAVA_MIN=${REGISTRY_JAVA_MIN:-17} ;;
  *) JAVA_MIN=${REGISTRY_JAVA_MIN:-21} ;;
esac

SELF=registry.sh
WHAT=registry
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- helpers ----------------------------------------------------------------

# answering: the Confluent-compatible API answers on HOST:PORT.
answering() {
  [[ $(http_status "$PORT" "$API_PATH/subjects") == 200 ]]
}

# is_registry PID: PID is alive and is the registry JVM started by this
# script for this data dir (guards against stale pid files).
is_registry() {
  local pid=$1 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(cmdline "$pid") || return 1
  [[ $cmd == *"$PROC_MARK"* ]]
}

# registry_pid: print the pid of our running registry, or fail.
registry_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  is_registry "$pid" || return 1
  echo "$pid"
}

show_logs() { tail_logs "$LOGFILE"; }

# java_major BIN: print the major version of the java binary BIN.
java_major() {
  local out major
  out=$("$1" -version 2>&1 | head -n 1) || return 1
  major=$(sed -E 's/.*version "([0-9]+)(\.[0-9]+)?.*/\1/' <<<"$out")
  [[ $major =~ ^[0-9]+$ ]] || return 1
  [[ $major == 1 ]] && major=8
  echo "$major"
}

# find_java: set JAVA to a java binary of version JAVA_MIN or newer.
find_java() {
  local c m
  local -a cands=()
  if [[ -n ${REGISTRY_JAVA:-} ]]; then
    command -v "$REGISTRY_JAVA" >/dev/null 2>&1 || die "REGISTRY_JAVA=$REGISTRY_JAVA: not found"
    m=$(java_major "$REGISTRY_JAVA") || die "cannot run $REGISTRY_JAVA -version"
    ((m >= JAVA_MIN)) || die "Apicurio Registry $VERSION needs Java $JAVA_MIN+, REGISTRY_JAVA=$REGISTRY_JAVA is Java $m"
    JAVA=$REGISTRY_JAVA
    return 0
  fi
  [[ -n ${JAVA_HOME:-} ]] && cands+=("$JAVA_HOME/bin/java")
  c=$(command -v java 2>/dev/null) && cands+=("$c")
  while IFS= read -r c; do
    cands+=("$c")
  done < <(ls -d /usr/lib/jvm/*/bin/java /opt/java/*/bin/java 2>/dev/null | sort -V -r)
  for c in "${cands[@]}"; do
    [[ -x $c ]] || continue
    m=$(java_major "$c") || continue
    if ((m >= JAVA_MIN)); then
      JAVA=$c
      return 0
    fi
  done
  die "Apicurio Registry $VERSION needs Java $JAVA_MIN+; none found (looked at: ${cands[*]:-nothing}). Install one or set REGISTRY_JAVA"
}

# launcher: print the jar to run (fast-jar layout of Apicurio 3.1+, or the
# legacy runner jar of older releases).
launcher() {
  local j
  if [[ -f $APP/quarkus-run.jar ]]; then
    echo "$APP/quarkus-run.jar"
    return 0
  fi
  for j in "$APP"/*-runner.jar; do
    [[ -f $j ]] && { echo "$j"; return 0; }
  done
  return 1
}

# --- fetch ------------------------------------------------------------------

do_fetch() {
  if [[ -f $FETCHED ]] && launcher >/dev/null; then
    log "Apicurio Registry $VERSION cached in $APP"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to download Apicurio Registry"
  command -v tar >/dev/null 2>&1 || die "tar not found"
  mkdir -p "$CACHE_DIR"

  # Serialise concurrent fetches (e.g. parallel test packages).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    if [[ -f $FETCHED ]] && launcher >/dev/null; then
      log "Apicurio Registry $VERSION cached in $APP"
      return 0
    fi
  fi

  log "downloading Apicurio Registry $VERSION from Maven Central into $APP ..."
  local t0=$SECONDS tmp tarball mvnlog=$CACHE_DIR/mvn.log
  tmp=$(mktemp -d "$CACHE_DIR/app.tmp.XXXXXX")
  if ! mvn -B -q -f "$SCRIPT_DIR/pom.xml" \
      -Dregistry.version="$VERSION" -Dstyle.color=never \
      dependency:copy-dependencies \
      -DoutputDirectory="$tmp/dl" -DincludeTypes=tar.gz -DexcludeTransitive=true >"$mvnlog" 2>&1; then
    sed $'s/\e\\[[0-9;]*m//g' "$mvnlog" >&2
    rm -rf "$tmp"
    die "Maven could not download io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all (mvn output above, also in $mvnlog)"
  fi
  tarball=$tmp/dl/apicurio-registry-app-$VERSION-all.tar.gz
  if [[ ! -f $tarball ]]; then
    cat "$mvnlog" >&2
    rm -rf "$tmp"
    die "mvn succeeded but $(basename "$tarball") is missing from its output"
  fi
  mkdir -p "$tmp/app"
  if ! tar -xzf "$tarball" -C "$tmp/app"; then
    rm -rf "$tmp"
    die "cannot unpack $tarball"
  fi
  rm -rf "$tmp/dl"
  if [[ ! -f $tmp/app/quarkus-run.jar ]] && ! ls "$tmp/app"/*-runner.jar >/dev/null 2>&1; then
    ls -la "$tmp/app" >&2
    rm -rf "$tmp"
    die "the apicurio-registry-app $VERSION tarball holds neither quarkus-run.jar nor a *-runner.jar"
  fi
  rm -rf "$APP"
  mv "$tmp/app" "$APP"
  rmdir "$tmp"
  echo "$VERSION" >"$FETCHED"
  log "Apicurio Registry $VERSION unpacked to $APP in $((SECONDS - t0)) s ($(du -sh "$APP" | cut -f1))"
}

# --- start ------------------------------------------------------------------

prepare_data_dir() {
  if [[ -e $DATA ]]; then
    [[ -d $DATA ]] || die "$DATA exists and is not a directory"
    if [[ ! -f $DATA_MARK && -n $(ls -A "$DATA") ]]; then
      die "$DATA is not empty and was not created by registry.sh; refusing to use it (set REGISTRY_DATA)"
    fi
  fi
  mkdir -p "$DATA"
  : >"$DATA_MARK"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  [[ -f $LOGFILE ]] && mv -f "$LOGFILE" "$LOGFILE.prev"
  : >"$LOGFILE"
}

start_registry() {
  local jar
  local -a heap jvm props
  jar=$(launcher) || die "no launcher jar in $APP (remove $CACHE_DIR and fetch again)"
  read -r -a heap <<<"$HEAP_OPTS"
  read -r -a jvm <<<"$JVM_OPTS"
  # System properties override Apicurio's application.properties and any
  # QUARKUS_* / APICURIO_* variables in the caller's environment.
  props=(
    "-Dquarkus.profile=prod"
    "-Dquarkus.http.host=$HOST"
    "-Dquarkus.http.port=$PORT"
    "-Dquarkus.management.host=$HOST"
    "-Dquarkus.management.port=$MGMT_PORT"
    # In-memory storage (Apicurio's default, made explicit). DB_CLOSE_DELAY
    # keeps the database even if the pool ever closes all its connections.
    "-Dapicurio.storage.kind=sql"
    "-Dapicurio.storage.sql.kind=h2"
    "-Dapicurio.datasource.url=jdbc:h2:mem:registry;DB_CLOSE_DELAY=-1"
    "-Dapicurio.datasource.jdbc.initial-size=2"
    "-Dapicurio.datasource.jdbc.min-size=2"
    "-Dapicurio.datasource.jdbc.max-size=20"
    "-Dapicurio.storage.snapshot.location=$WORK"
    "-Dapicurio.import.work-dir=$WORK"
    "-Djava.io.tmpdir=$WORK"
    # Apicurio's own format prints dates as 2026-11+00-24.
    "-Dquarkus.log.console.format=%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c{3.}] (%t) %s%e%n"
  )
  [[ -n $COMPATIBILITY ]] && props+=("-Dapicurio.rules.global.compatibility=$COMPATIBILITY")
  # Run from the data dir: Quarkus also reads ./.env and
  # ./config/application.properties from its working directory.
  (
    cd "$DATA"
    exec nohup "$JAVA" "${heap[@]}" -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      "${jvm[@]}" "${props[@]}" "$PROC_MARK" \
      -jar "$jar" >>"$LOGFILE" 2>&1 </dev/null 8>&- 9>&-
  ) &
  echo $! >"$PIDFILE"
}

do_start() {
  local pid
  lock_data
  if pid=$(registry_pid); then
    if answering; then
      log "already running at $BASE_URL (pid $pid)"
      return 0
    fi
    log "registry (pid $pid) is starting; waiting for it"
    wait_ready "$pid" "at $BASE_URL, log $LOGFILE"
    return 0
  fi
  if port_open "$PORT"; then
    die "port $HOST:$PORT is already in use by another process (set REGISTRY_PORT)"
  fi
  if [[ $MGMT_PORT != 0 ]] && port_open "$MGMT_PORT"; then
    die "port $HOST:$MGMT_PORT is already in use by another process (set REGISTRY_MANAGEMENT_PORT, 0 = any free port)"
  fi
  find_java
  do_fetch

  prepare_data_dir
  start_registry
  pid=$(<"$PIDFILE")
  log "started Apicurio Registry $VERSION (pid $pid, $JAVA); waiting up to $START_TIMEOUT s for $BASE_URL ..."
  wait_ready "$pid" "at $BASE_URL, log $LOGFILE"
}

# --- stop / status / logs ---------------------------------------------------

service_ready() { answering; }
service_pid() { registry_pid; }
service_where() { echo "at $BASE_URL, log $LOGFILE"; }

cmd=${1:-}
(($# > 0)) && shift
case $cmd in
  fetch) do_fetch ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  url) echo "$BASE_URL" ;;
  logs) do_logs "$@" ;;
  -h | --help | help) usage ;;
  *) err "unknown command '${cmd}'"; usage ;;
esac
