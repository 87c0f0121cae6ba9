#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller in one JVM) on
# 127.0.0.1, for tests and local development.
#
# The broker's jars come from Maven Central (via scripts/kafka/pom.xml), since
# the Kafka release tarball is not reachable from the build machines.
#
# Usage: scripts/kafka/kafka.sh fetch|start|stop|kill|status|logs [tail args]
#
#   fetch   download the jars into the cache (once; reused afterwards)
#   start   fetch if needed, wipe + format the data dir, start the broker in
#           the background and wait until it serves requests
#   stop    stop the broker (SIGTERM, then SIGKILL after 30 s)
#   kill    crash the broker (SIGKILL): the tests' outages use it, since a
#           graceful stop of a single-node cluster completes a commit under
#           way without its markers (no partition has a leader then, and the
#           coordinator skips those partitions as deleted), which leaves a
#           hanging transaction; after a crash the coordinator finishes it
#   status  exit 0 if the broker is running and answering, 1 otherwise
#   logs    tail the broker log (extra arguments go to tail, e.g. `logs -f`)
#
# Environment:
#   KAFKA_VERSION          Kafka version to fetch (default 4.4.0)
#   STREAMER_CACHE         cache root (default $HOME/.cache/streamer); jars go
#                          to $STREAMER_CACHE/kafka-<version>/libs
#   KAFKA_DATA             data dir (default ${TMPDIR:-/tmp}/streamer-kafka);
#                          wiped on every start unless KAFKA_KEEP_DATA=1
#   KAFKA_KEEP_DATA=1      keep the topics/offsets of the previous run
#   KAFKA_PORT             client (PLAINTEXT) port (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
#   KAFKA_SASL_SSL_PORT    if set, also a SASL_SSL listener on this port with
#                          SCRAM-SHA-256 and SCRAM-SHA-512 (no users: create
#                          them with kadm AlterUserSCRAMs over PLAINTEXT). Its
#                          certificates are made at start with openssl: the CA
#                          is $KAFKA_DATA/tls/ca.pem, the server certificate
#                          (for 127.0.0.1 and localhost) $KAFKA_DATA/tls/server.pem
#   KAFKA_START_TIMEOUT    seconds to wait for the broker (default 90)
#   KAFKA_HEAP_OPTS        default "-Xms512m -Xmx1g"
#   KAFKA_JVM_OPTS         extra JVM options
#   JAVA_HOME / JAVA       Java 17+ to use (default: java on PATH)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
CACHE_ROOT=${STREAMER_CACHE:-${HOME:?HOME is not set}/.cache/streamer}
CACHE_DIR=$CACHE_ROOT/kafka-$KAFKA_VERSION
LIBS=$CACHE_DIR/libs
FETCHED=$CACHE_DIR/.complete

DATA=${KAFKA_DATA:-${TMPDIR:-/tmp}/streamer-kafka}
DATA=${DATA%/}
HOST=127.0.0.1
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-}
TLS_DIR=$DATA/tls
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}
JVM_OPTS=${KAFKA_JVM_OPTS:-}

PIDFILE=$DATA/kafka.pid
LOGFILE=$DATA/server.log
OUTFILE=$DATA/kafka.out       # JVM stdout/stderr (WARN and above only)
PROPS=$DATA/server.properties
DATA_MARK=$DATA/.streamer-kafka  # start only ever deletes dirs carrying this
LOG4J_CONF=$SCRIPT_DIR/log4j2.properties
STARTED_RE='Kafka Server started'

if [[ -n ${JAVA:-} ]]; then
  :
elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
  JAVA=$JAVA_HOME/bin/java
else
  JAVA=java
fi

SELF=kafka.sh
WHAT=broker
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- helpers ----------------------------------------------------------------

# is_broker PID: PID is alive and is a kafka.Kafka JVM (guards against stale
# pid files whose pid was reused, and against zombies).
is_broker() {
  local pid=$1 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(cmdline "$pid") || return 1
  [[ $cmd == *kafka.Kafka* ]]
}

# broker_pid: print the pid of our running broker, or fail.
broker_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  is_broker "$pid" || return 1
  echo "$pid"
}

# answering: the broker finished starting and its client port is open.
answering() {
  port_open "$PORT" && [[ -f $LOGFILE ]] && grep -q "$STARTED_RE" "$LOGFILE"
}

show_logs() { tail_logs "$LOGFILE" "$OUTFILE"; }

check_java() {
  local out major
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (install Java 17+ or set JAVA_HOME)"
  out=$("$JAVA" -version 2>&1 | head -n 1) || die "cannot run $JAVA -version"
  major=$(sed -E 's/.*version "([0-9]+)(\.[0-9]+)?.*/\1/' <<<"$out")
  if [[ $major =~ ^[0-9]+$ ]]; then
    [[ $major == 1 ]] && major=8
    ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17+, $JAVA is: $out"
  fi
}

# --- fetch ------------------------------------------------------------------

do_fetch() {
  if [[ -f $FETCHED ]]; then
    log "Kafka $KAFKA_VERSION jars cached in $LIBS"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to download the Kafka jars"
  mkdir -p "$CACHE_DIR"

  # Serialise concurrent fetches (e.g. parallel test packages).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    if [[ -f $FETCHED ]]; then
      log "Kafka $KAFKA_VERSION jars cached in $LIBS"
      return 0
    fi
  fi

  log "downloading Kafka $KAFKA_VERSION jars from Maven Central into $LIBS ..."
  local t0=$SECONDS tmp mvnlog=$CACHE_DIR/mvn.log
  tmp=$(mktemp -d "$CACHE_DIR/libs.tmp.XXXXXX")
  if ! mvn -B -q -f "$SCRIPT_DIR/pom.xml" \
      -Dkafka.version="$KAFKA_VERSION" -Dstyle.color=never \
      dependency:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >"$mvnlog" 2>&1; then
    sed $'s/\e\\[[0-9;]*m//g' "$mvnlog" >&2
    rm -rf "$tmp"
    die "Maven could not download the Kafka $KAFKA_VERSION jars (mvn output above, also in $mvnlog)"
  fi
  if [[ ! -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    cat "$mvnlog" >&2
    rm -rf "$tmp"
    die "mvn succeeded but kafka_2.13-$KAFKA_VERSION.jar is missing from its output"
  fi
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  ls "$LIBS" >"$FETCHED"
  log "Kafka $KAFKA_VERSION jars downloaded to $LIBS in $((SECONDS - t0)) s ($(du -sh "$LIBS" | cut -f1))"
}

# --- start ------------------------------------------------------------------

# make_certs: a CA and a server certificate for 127.0.0.1 and localhost, in
# PEM (Kafka reads PEM stores with ssl.keystore.type=PEM), valid for 7 days.
make_certs() {
  command -v openssl >/dev/null 2>&1 || die "openssl not found; it is needed for KAFKA_SASL_SSL_PORT"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 7 \
      -subj "/CN=streamer test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 7 -extfile server.ext
    cat server.crt server.key >server.pem
  ) >"$DATA/certs.log" 2>&1 || { cat "$DATA/certs.log" >&2; die "openssl could not make the test certificates"; }
}

write_properties() {
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [[ -n $SASL_SSL_PORT ]]; then
    listeners+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    advertised+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$PROPS" <<EOF
# Written by scripts/kafka/kafka.sh: single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$DATA/logs

# One broker: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Fast and light for tests on a small (2-core) machine.
group.initial.rebalance.delay.ms=0
# Few partitions for the internal topics (default 50 each): created on first
# use, so fewer partitions make the first group join / transaction faster.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=4
# Abort transactions of killed producers soon after their timeout expires
# (default: checked every 10 s).
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
# Let tests use short classic-group session timeouts (default minimum 6 s).
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
background.threads=4
# The log cleaner (compacted internal topics) preallocates this on the heap.
log.cleaner.dedupe.buffer.size=16777216
EOF
  if [[ -n $SASL_SSL_PORT ]]; then
    cat >>"$PROPS" <<EOF

# KAFKA_SASL_SSL_PORT: a SASL_SSL listener with SCRAM, PEM certificates.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/server.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$TLS_DIR/ca.pem
EOF
  fi
}

start_broker() {
  local -a heap jvm
  read -r -a heap <<<"$HEAP_OPTS"
  read -r -a jvm <<<"$JVM_OPTS"
  [[ -f $LOGFILE ]] && mv -f "$LOGFILE" "$LOGFILE.prev"
  : >"$OUTFILE"
  nohup "$JAVA" "${heap[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "${jvm[@]}" \
    -Dkafka.logs.dir="$DATA" \
    -Dlog4j2.configurationFile="$LOG4J_CONF" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    >>"$OUTFILE" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$PIDFILE"
}

prepare_data_dir() {
  if [[ ${KAFKA_KEEP_DATA:-} == 1 && -f $DATA/logs/meta.properties ]]; then
    log "KAFKA_KEEP_DATA=1: keeping the data in $DATA"
    return 0
  fi
  if [[ -e $DATA ]]; then
    [[ -d $DATA ]] || die "$DATA exists and is not a directory"
    if [[ ! -f $DATA_MARK && -n $(ls -A "$DATA") ]]; then
      die "$DATA is not empty and was not created by kafka.sh; refusing to wipe it (set KAFKA_DATA)"
    fi
    rm -rf "$DATA"
  fi
  mkdir -p "$DATA/logs"
  : >"$DATA_MARK"
}

format_storage() {
  local id
  [[ -f $DATA/logs/meta.properties ]] && return 0
  local -a tool=("$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J_CONF"
    -Dkafka.logs.dir="$DATA" -Dkafka.log.file=storage-tool.log kafka.tools.StorageTool)
  id=$("${tool[@]}" random-uuid 2>"$DATA/format.log") ||
    { cat "$DATA/format.log" >&2; die "kafka.tools.StorageTool random-uuid failed"; }
  id=$(tail -n 1 <<<"$id")
  "${tool[@]}" format -t "$id" -c "$PROPS" --standalone >>"$DATA/format.log" 2>&1 ||
    { cat "$DATA/format.log" >&2; die "kafka.tools.StorageTool format failed"; }
}

do_start() {
  local pid
  lock_data
  if pid=$(broker_pid); then
    if answering; then
      log "already running on $HOST:$PORT (pid $pid, data $DATA)"
      return 0
    fi
    log "broker (pid $pid) is starting; waiting for it"
    wait_ready "$pid" "on $HOST:$PORT, data $DATA"
    return 0
  fi
  for p in "$PORT" "$CONTROLLER_PORT" $SASL_SSL_PORT; do
    if port_open "$p"; then
      die "port $HOST:$p is already in use by another process (another broker? set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
    fi
  done
  check_java
  do_fetch
  [[ -f $LOG4J_CONF ]] || die "missing $LOG4J_CONF"

  prepare_data_dir
  [[ -z $SASL_SSL_PORT ]] || make_certs
  write_properties
  format_storage
  start_broker
  pid=$(<"$PIDFILE")
  log "started Kafka $KAFKA_VERSION (pid $pid); waiting up to $START_TIMEOUT s for $HOST:$PORT ..."
  wait_ready "$pid" "on $HOST:$PORT, data $DATA"
}

# --- stop / status / logs ---------------------------------------------------

# do_kill: SIGKILL the broker and wait until it is gone.
do_kill() {
  local pid i
  lock_data
  if ! pid=$(broker_pid); then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  # Gone, and its ports closed: the process can look dead (a zombie main
  # thread) a moment before the kernel has closed its sockets.
  for ((i = 0; i < 100; i++)); do
    if ! alive "$pid" && ! port_open "$PORT" && ! port_open "$CONTROLLER_PORT" && { [[ -z $SASL_SSL_PORT ]] || ! port_open "$SASL_SSL_PORT"; }; then
      rm -f "$PIDFILE"
      log "killed (pid $pid)"
      return 0
    fi
    sleep 0.2
  done
  die "could not kill the broker (pid $pid), or its ports stayed open"
}

service_ready() { answering; }
service_pid() { broker_pid; }
service_where() { echo "on $HOST:$PORT, data $DATA"; }

cmd=${1:-}
(($# > 0)) && shift
case $cmd in
  fetch) do_fetch ;;
  start) do_start ;;
  stop) do_stop ;;
  kill) do_kill ;;
  status) do_status ;;
  logs) do_logs "$@" ;;
  -h | --help | help) usage ;;
  *) err "unknown command '${cmd}'"; usage ;;
esac
