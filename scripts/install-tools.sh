#!/usr/bin/env bash
# Installs the Debian packages the integration tests need, if missing:
# prometheus and promtool (the dashboard and alert-rule test) and chromium
# (the topology page test) and kcat (an independent librdkafka reader that
# cross-checks exactly-once outputs). Runs as root on CI and dev machines here;
# elsewhere it says what to install.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools.sh: please install Debian packages: ${need[*]}" >&2
  exit 1
fi
echo "install-tools.sh: installing ${need[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a system service where systemd runs; the tests start
# their own Prometheus, so make sure none is left listening.
pkill -x prometheus 2>/dev/null || true
