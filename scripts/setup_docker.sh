#!/usr/bin/env bash
# Install and start a Docker engine, and build the local test image.
#
# Idempotent: every step checks first and does nothing when already done, so
# CI and developers can run it on every run. Needs root on Debian 12.
#
#   1. apt-get install docker.io busybox-static   (unless dockerd and busybox are there)
#   2. start dockerd in the background             (unless `docker info` answers)
#   3. build edgerm-test/busybox:latest            (unless the image exists)
#
# No image registry is reachable from the project's machines, so the test image
# is a root filesystem holding the static busybox and one symlink per applet,
# piped as a tar into `docker import`.
#
# Environment:
#   EDGERM_TEST_IMAGE   image name to build (default edgerm-test/busybox:latest)
#   DOCKERD_LOG         where dockerd writes its log (default /var/log/edgerm-dockerd.log)
#   DOCKER_WAIT         seconds to wait for the engine to answer (default 60)
set -euo pipefail

IMAGE="${EDGERM_TEST_IMAGE:-edgerm-test/busybox:latest}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/edgerm-dockerd.log}"
DOCKER_WAIT="${DOCKER_WAIT:-60}"

log() { printf 'setup_docker: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (installs packages and starts dockerd)"
        exit 1
    fi
}

install_packages() {
    # busybox-static, not just any /bin/busybox: the image has no libc for a dynamic one.
    if command -v dockerd >/dev/null 2>&1 \
        && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
        log "docker.io and busybox-static already installed"
        return
    fi
    need_root
    log "installing docker.io and busybox-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q docker.io busybox-static
}

engine_answers() {
    docker info >/dev/null 2>&1
}

start_engine() {
    if engine_answers; then
        log "docker engine already answers"
        return
    fi
    need_root
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        log "starting dockerd (log: $DOCKERD_LOG)"
        # A stale pid file from a killed daemon stops a new one from starting.
        rm -f /var/run/docker.pid
        # setsid: the daemon must outlive this script and the shell that ran it.
        setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    else
        log "dockerd is running but not answering yet; waiting"
    fi
    local waited=0
    until engine_answers; do
        if [ "$waited" -ge "$((DOCKER_WAIT * 10))" ]; then
            log "docker engine did not answer within ${DOCKER_WAIT}s; last log lines:"
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "docker engine answers"
}

build_image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        log "image $IMAGE already present"
        return
    fi
    log "building $IMAGE from /bin/busybox"
    local root
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' RETURN
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/bin' \
        --change 'CMD ["sh"]' \
        --message "edgerm test image: static busybox" \
        - "$IMAGE" >/dev/null
    log "built $IMAGE"
}

install_packages
start_engine
build_image
