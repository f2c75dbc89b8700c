#!/usr/bin/env bash
# Install Debian's chromium for the dashboard tests (tests/integration/ops/test_dashboard_browser.py).
#
# Idempotent: does nothing when chromium is already installed. Needs root on Debian 12.
# The tests start it themselves, headless, with a fresh profile and no network use
# beyond 127.0.0.1 (see tests/integration/ops/browser.py for the flags):
#
#   chromium --headless --no-sandbox --disable-gpu --dump-dom http://127.0.0.1:5050/
set -euo pipefail

log() { printf 'setup_chromium: %s\n' "$*" >&2; }

if command -v chromium >/dev/null 2>&1; then
    log "chromium already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "must run as root to install chromium"
    exit 1
fi
log "installing chromium (apt output in /tmp/setup_chromium.log)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } \
    >/tmp/setup_chromium.log 2>&1; then
    cat /tmp/setup_chromium.log >&2
    log "installing chromium failed"
    exit 1
fi
log "chromium installed: $(chromium --version 2>/dev/null || command -v chromium)"
