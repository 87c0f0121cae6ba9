#!/usr/bin/env bash
# Runs a command with a real MLServer (Open Inference Protocol / KServe V2)
# on 127.0.0.1 serving the XGBoost models of ml/testdata, its addresses
# exported as STREAMER_MLSERVER_HTTP (http://127.0.0.1:18080) and
# STREAMER_MLSERVER_GRPC (grpc://127.0.0.1:18081); stops it afterwards
# whatever the command's outcome, and exits with the command's status.
# MLServer is installed from PyPI once into a cache (scripts/mlserver/mlserver.sh).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mls="$here/mlserver/mlserver.sh"
"$mls" start || exit 1
trap '"$mls" stop >/dev/null 2>&1 || true' EXIT
STREAMER_MLSERVER_HTTP=$("$mls" url http)
STREAMER_MLSERVER_GRPC=$("$mls" url grpc)
export STREAMER_MLSERVER_HTTP STREAMER_MLSERVER_GRPC
"$@"
