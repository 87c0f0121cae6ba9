#!/usr/bin/env bash
# Local MLServer (Seldon's Open Inference Protocol / KServe V2 server) on
# 127.0.0.1, serving the XGBoost models of ml/testdata over REST and gRPC, for
# tests and benchmarks of streamer's remote models (ml.KServe).
#
# MLServer and its XGBoost runtime come from PyPI, installed once into a
# virtualenv in the cache. xgboost is pinned to the release that trained the
# models in ml/testdata (3.2.0, the newest for Python 3.11).
#
# Every start writes a fresh model repository: one model per XGBoost JSON
# model in MLSERVER_MODELS, named after its file (xgb-binary.json serves as
# model "xgb-binary", version "1"), with its input declared as
# features FP32 [-1, num_feature] and its output as predict FP32 [-1, K].
# The models are XGBoost boosters (saved with Booster.save_model), so the
# runtime loads them through XGBRegressor, whose "predict" is the booster's
# own prediction: the probability of class 1 for binary:logistic (K = 1),
# the class probabilities for multi:softprob (K = num_class), the value for
# regressions. A model saved through XGBClassifier carries a "scikit_learn"
# attribute that would make "predict" return labels; the copy in the
# repository drops it, so every model answers probabilities.
#
# Usage: scripts/mlserver/mlserver.sh install|start|stop|status|url [http|grpc]|logs [tail args]
#
#   install  create the virtualenv and install MLServer (once; reused)
#   start    install if needed, write the model repository, start MLServer in
#            the background and wait until it and every model are ready
#   stop     stop MLServer (SIGTERM, then SIGKILL after 30 s)
#   status   exit 0 if MLServer is running and ready, 1 otherwise
#   url      print the REST base URL (http://127.0.0.1:18080), or with
#            `grpc` the gRPC one (grpc://127.0.0.1:18081): what ml.KServe takes
#   logs     tail the MLServer log (extra arguments go to tail, e.g. `logs -f`)
#
# Environment:
#   MLSERVER_VERSION        mlserver and mlserver-xgboost version (default 1.7.1)
#   MLSERVER_XGBOOST        xgboost version (default 3.2.0)
#   MLSERVER_PYTHON         Python 3.9-3.12 to build the virtualenv with
#                           (default python3)
#   STREAMER_CACHE          cache root (default $HOME/.cache/streamer); the
#                           virtualenv is $STREAMER_CACHE/mlserver-<version>/venv
#                           (~1.2 GB: xgboost pulls in NVIDIA's NCCL)
#   MLSERVER_DATA           pid file, log and model repository (default
#                           ${TMPDIR:-/tmp}/streamer-mlserver)
#   MLSERVER_MODELS         directory of XGBoost JSON models to serve (default
#                           ml/testdata; other JSON files there are skipped)
#   MLSERVER_HTTP_PORT      REST port (default 18080)
#   MLSERVER_GRPC_PORT      gRPC port (default 18081)
#   MLSERVER_WORKERS        MLServer's parallel_workers (default 0: inference
#                           runs in the server process, the lowest latency;
#                           N > 0 runs N worker processes behind a queue)
#   MLSERVER_THREADS        OpenMP threads per inference process, i.e.
#                           OMP_NUM_THREADS (default 1). XGBoost's OpenMP
#                           threads cost more than they save on the small
#                           batches of a stream processor, and far more on a
#                           busy machine: here one row took 13 ms with both
#                           cores' threads and 0.23 ms with one.
#   MLSERVER_START_TIMEOUT  seconds to wait for MLServer (default 120)
#
# MLServer's Prometheus endpoint is disabled (metrics_endpoint null), so it
# takes no third port.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
VERSION=${MLSERVER_VERSION:-1.7.1}
XGBOOST=${MLSERVER_XGBOOST:-3.2.0}
PYTHON=${MLSERVER_PYTHON:-python3}
CACHE_ROOT=${STREAMER_CACHE:-${HOME:?HOME is not set}/.cache/streamer}
CACHE_DIR=$CACHE_ROOT/mlserver-$VERSION
VENV=$CACHE_DIR/venv
INSTALLED=$CACHE_DIR/.complete

DATA=${MLSERVER_DATA:-${TMPDIR:-/tmp}/streamer-mlserver}
DATA=${DATA%/}
MODELS_SRC=${MLSERVER_MODELS:-$REPO_ROOT/ml/testdata}
HOST=127.0.0.1
HTTP_PORT=${MLSERVER_HTTP_PORT:-18080}
GRPC_PORT=${MLSERVER_GRPC_PORT:-18081}
WORKERS=${MLSERVER_WORKERS:-0}
THREADS=${MLSERVER_THREADS:-1}
START_TIMEOUT=${MLSERVER_START_TIMEOUT:-120}
HTTP_URL=http://$HOST:$HTTP_PORT
GRPC_URL=grpc://$HOST:$GRPC_PORT

PIDFILE=$DATA/mlserver.pid
LOGFILE=$DATA/mlserver.log
REPO=$DATA/models          # the model repository MLServer serves
MODEL_LIST=$DATA/models.txt
DATA_MARK=$DATA/.streamer-mlserver

SELF=mlserver.sh
WHAT=MLServer
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- helpers ----------------------------------------------------------------

# ready: the server, each model of the repository and the gRPC port are up.
ready() {
  local m
  [[ $(http_status "$HTTP_PORT" /v2/health/ready) == 200 ]] || return 1
  if [[ -f $MODEL_LIST ]]; then
    while IFS= read -r m; do
      [[ -z $m ]] && continue
      [[ $(http_status "$HTTP_PORT" "/v2/models/$m/ready") == 200 ]] || return 1
    done <"$MODEL_LIST"
  fi
  port_open "$GRPC_PORT"
}

# is_mlserver PID: PID is alive and is the MLServer started by this script
# for this data dir (guards against stale pid files).
is_mlserver() {
  local pid=$1 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  cmd=$(cmdline "$pid") || return 1
  [[ $cmd == *"mlserver start $REPO"* ]]
}

# mlserver_pid: print the pid of our running MLServer, or fail.
mlserver_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  is_mlserver "$pid" || return 1
  echo "$pid"
}

show_logs() { tail_logs "$LOGFILE"; }

# PINS is what install asks pip for. uvloop 0.22+ breaks MLServer's
# parallel workers ("There is no current event loop in thread 'MainThread'",
# mlserver/parallel/worker.py), so it stays on 0.21.
# xgboost-cpu is the same library without the CUDA/NCCL wheels (about 700 MB
# and four minutes of download); mlserver-xgboost, which asks for
# "xgboost", is then installed without its dependencies (it needs
# scikit-learn, which it would have pulled in).
PINS=("mlserver==$VERSION" "xgboost-cpu==$XGBOOST" "scikit-learn==1.9.1" "uvloop==0.21.0")
NODEPS=("mlserver-xgboost==$VERSION")

installed() {
  [[ -f $INSTALLED && -x $VENV/bin/mlserver ]] &&
    [[ $(<"$INSTALLED") == "${PINS[*]} ${NODEPS[*]}" ]]
}

# --- install ----------------------------------------------------------------

do_install() {
  if installed; then
    log "${PINS[*]} installed in $VENV"
    return 0
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set MLSERVER_PYTHON to a Python 3.9-3.12)"
  local pyver
  pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "cannot run $PYTHON"
  case $pyver in
    3.9 | 3.10 | 3.11 | 3.12) ;;
    *) die "MLServer $VERSION needs Python 3.9-3.12, $PYTHON is $pyver (set MLSERVER_PYTHON)" ;;
  esac
  mkdir -p "$CACHE_DIR"

  # Serialise concurrent installs (e.g. parallel test packages).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    if installed; then
      log "${PINS[*]} installed in $VENV"
      return 0
    fi
  fi

  # A virtualenv holds its own path, so it is built in place; a marker
  # written last tells a complete one from an interrupted one. A working
  # virtualenv with other pins is brought to these by pip, not rebuilt.
  log "installing ${PINS[*]} from PyPI into $VENV ..."
  local t0=$SECONDS piplog=$CACHE_DIR/pip.log
  rm -f "$INSTALLED"
  if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a virtualenv with $PYTHON (Debian: apt-get install python3-venv)"
  fi
  if ! "$VENV/bin/pip" install --disable-pip-version-check -q "${PINS[@]}" >"$piplog" 2>&1 ||
    ! "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps "${NODEPS[@]}" >>"$piplog" 2>&1; then
    cat "$piplog" >&2
    die "pip could not install ${PINS[*]} ${NODEPS[*]} (output above, also in $piplog)"
  fi
  "$VENV/bin/pip" freeze --disable-pip-version-check >"$CACHE_DIR/requirements.lock" 2>/dev/null || true
  echo "${PINS[*]} ${NODEPS[*]}" >"$INSTALLED"
  log "installed in $((SECONDS - t0)) s ($(du -sh "$VENV" | cut -f1)); versions in $CACHE_DIR/requirements.lock"
}

# --- start ------------------------------------------------------------------

prepare_data_dir() {
  if [[ -e $DATA ]]; then
    [[ -d $DATA ]] || die "$DATA exists and is not a directory"
    if [[ ! -f $DATA_MARK && -n $(ls -A "$DATA") ]]; then
      die "$DATA is not empty and was not created by mlserver.sh; refusing to use it (set MLSERVER_DATA)"
    fi
  fi
  mkdir -p "$DATA"
  : >"$DATA_MARK"
  rm -rf "$REPO" "$DATA/.metrics" "$DATA/.envs"
  mkdir -p "$REPO"
  [[ -f $LOGFILE ]] && mv -f "$LOGFILE" "$LOGFILE.prev"
  : >"$LOGFILE"
}

# write_repository: settings.json and one model per XGBoost model in
# MODELS_SRC; the model names go to MODEL_LIST.
write_repository() {
  [[ -d $MODELS_SRC ]] || die "MLSERVER_MODELS=$MODELS_SRC is not a directory"
  "$VENV/bin/python" - "$MODELS_SRC" "$REPO" "$HOST" "$HTTP_PORT" "$GRPC_PORT" "$WORKERS" >"$MODEL_LIST" <<'PY' ||
import json, os, sys

src, repo, host, http_port, grpc_port, workers = sys.argv[1:]
json.dump({
    "debug": False,  # no access log line per request
    "host": host,
    "http_port": int(http_port),
    "grpc_port": int(grpc_port),
    "metrics_endpoint": None,  # no Prometheus server, no third port
    "parallel_workers": int(workers),
    "server_name": "streamer-mlserver",
}, open(os.path.join(repo, "settings.json"), "w"), indent=2)

for f in sorted(os.listdir(src)):
    if not f.endswith(".json"):
        continue
    try:
        model = json.load(open(os.path.join(src, f)))
        learner = model["learner"]
        param = learner["learner_model_param"]
    except (ValueError, KeyError, TypeError):
        continue  # not an XGBoost model (e.g. expected predictions)
    name = f[: -len(".json")]
    features = int(param["num_feature"])
    classes = int(param.get("num_class", "0"))
    objective = learner.get("objective", {}).get("name", "")
    width = classes if objective == "multi:softprob" and classes > 1 else 1
    # Without the scikit-learn attribute the runtime loads a plain booster
    # (through XGBRegressor), whose predict() gives probabilities.
    learner.get("attributes", {}).pop("scikit_learn", None)
    d = os.path.join(repo, name)
    os.makedirs(d)
    json.dump(model, open(os.path.join(d, "model.json"), "w"))
    json.dump({
        "name": name,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "platform": "xgboost",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, features]}],
        "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1, width]}],
        "parameters": {"uri": os.path.join(d, "model.json"), "version": "1"},
    }, open(os.path.join(d, "model-settings.json"), "w"), indent=2)
    print(name)
PY
    die "cannot write the model repository in $REPO from $MODELS_SRC"
  [[ -s $MODEL_LIST ]] || die "no XGBoost JSON model in $MODELS_SRC (set MLSERVER_MODELS)"
}

start_mlserver() {
  local -a launch=()
  # Its own session, so that stop can reach parallel workers too.
  command -v setsid >/dev/null 2>&1 && launch=(setsid)
  # Run from the data dir: MLServer keeps .metrics and .envs in its working
  # directory.
  (
    cd "$DATA"
    export OMP_NUM_THREADS=$THREADS
    exec "${launch[@]}" nohup "$VENV/bin/mlserver" start "$REPO" >>"$LOGFILE" 2>&1 </dev/null 8>&- 9>&-
  ) &
  echo $! >"$PIDFILE"
}

do_start() {
  local pid p
  lock_data
  if pid=$(mlserver_pid); then
    if ready; then
      log "already running at $HTTP_URL and $GRPC_URL (pid $pid)"
      return 0
    fi
    log "MLServer (pid $pid) is starting; waiting for it"
    wait_ready "$pid" "at $HTTP_URL and $GRPC_URL, models $(paste -sd' ' "$MODEL_LIST"), log $LOGFILE"
    return 0
  fi
  for p in "$HTTP_PORT" "$GRPC_PORT"; do
    if port_open "$p"; then
      die "port $HOST:$p is already in use by another process (set MLSERVER_HTTP_PORT / MLSERVER_GRPC_PORT)"
    fi
  done
  [[ $WORKERS =~ ^[0-9]+$ ]] || die "MLSERVER_WORKERS=$WORKERS is not a number"
  [[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "MLSERVER_THREADS=$THREADS is not a positive number"
  do_install

  prepare_data_dir
  write_repository
  start_mlserver
  pid=$(<"$PIDFILE")
  log "started MLServer $VERSION (pid $pid); waiting up to $START_TIMEOUT s for $HTTP_URL ..."
  wait_ready "$pid" "at $HTTP_URL and $GRPC_URL, models $(paste -sd' ' "$MODEL_LIST"), log $LOGFILE"
}

# --- stop / status / logs ---------------------------------------------------

service_ready() { ready; }
service_pid() { mlserver_pid; }
service_where() { echo "at $HTTP_URL and $GRPC_URL, log $LOGFILE"; }

do_url() {
  case ${1:-http} in
    http) echo "$HTTP_URL" ;;
    grpc) echo "$GRPC_URL" ;;
    *) die "url takes http or grpc, not '$1'" ;;
  esac
}

cmd=${1:-}
(($# > 0)) && shift
case $cmd in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  url) do_url "$@" ;;
  logs) do_logs "$@" ;;
  -h | --help | help) usage ;;
  *) err "unknown command '${cmd}'"; usage ;;
esac
