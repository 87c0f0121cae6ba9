#!/usr/bin/env bash
# Runs a command with a real schema registry (Apicurio Registry, Confluent
# API) on 127.0.0.1, exported as STREAMER_REGISTRY_URL; stops it afterwards
# whatever the command's outcome. Apicurio 3.3 needs Java 21+; on a machine
# with only Java 17 it falls back to 3.0.9, which runs on 17.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
reg="$here/registry/registry.sh"
if ! "$reg" start; then
  echo "with-registry.sh: retrying with Apicurio Registry 3.0.9 (Java 17)" >&2
  export REGISTRY_VERSION=3.0.9
  "$reg" start || exit 1
fi
trap '"$reg" stop >/dev/null 2>&1 || true' EXIT
STREAMER_REGISTRY_URL=$("$reg" url)
export STREAMER_REGISTRY_URL
"$@"
