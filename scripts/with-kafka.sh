#!/usr/bin/env bash
# Runs a command with a real Kafka broker on 127.0.0.1:9092: starts it (the
# jars are fetched once from Maven Central into a cache), runs the command,
# and stops the broker whatever the command's outcome. Exits with the
# command's status.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/kafka/kafka.sh" start || exit 1
trap '"$here/kafka/kafka.sh" stop >/dev/null 2>&1 || true' EXIT
"$@"
