#!/usr/bin/env bash
# Install Debian's mosquitto broker (and its clients) for the data-plane tests and benchmarks.
#
# Idempotent: does nothing when mosquitto is already installed. Needs root on Debian 12.
# The tests start their own mosquitto on an ephemeral port of 127.0.0.1 with a small
# config file (tests/integration/dataflow_plane/brokers.py); no system-wide broker is
# wanted: if the package started one as a service, it is stopped and disabled so that
# port 1883 stays free for edgerm-master's embedded broker.
#
#   mosquitto_sub -h 127.0.0.1 -p PORT -t 'edgerm/#' -v     # watch a running pipeline
set -euo pipefail

log() { printf 'setup_mosquitto: %s\n' "$*" >&2; }

if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    log "mosquitto already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "must run as root to install mosquitto"
    exit 1
fi
log "installing mosquitto and mosquitto-clients"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends mosquitto mosquitto-clients

# A service the package may have started (systemd or sysvinit): stop it, keep it off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    log "stopping the mosquitto service the package started"
    systemctl disable --now mosquitto || true
elif command -v service >/dev/null 2>&1 && service mosquitto status >/dev/null 2>&1; then
    log "stopping the mosquitto service the package started"
    service mosquitto stop || true
fi
log "mosquitto installed: $(command -v mosquitto || echo /usr/sbin/mosquitto)"
