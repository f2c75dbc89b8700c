#!/usr/bin/env bash
# Build the local Python test image for Docker dataflow operators: edgerm-test/python:latest.
#
# No image registry is reachable from the project's machines, so the image is a
# Debian bookworm root filesystem made with debootstrap (minbase + python3),
# plus what a Python operator needs: the edgerm package (its SDK,
# edgerm.dataflow.operator, imports only pure modules), aiomqtt and paho-mqtt
# (pure Python, copied from this checkout's virtualenv), and the example
# operators of examples/operators/python at /opt/edgerm/operators. It is
# loaded with `docker import`.
#
# Cached twice, so a second run takes about a second:
#   - the debootstrap root filesystem, as a tarball under $EDGERM_CACHE
#     (default ~/.cache/edgerm/images); remade only when BASE_RECIPE changes;
#   - the image itself: skipped when an image of that name carries the label
#     edgerm.content=<hash of the base recipe, the package, the examples and
#     the MQTT client versions>.
#
# Needs root (debootstrap) the first time, and a reachable Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian).
#
# Environment:
#   EDGERM_PYTHON_IMAGE   image name (default edgerm-test/python:latest)
#   EDGERM_CACHE          cache directory (default ~/.cache/edgerm/images)
#   PYTHON                the interpreter whose site-packages hold aiomqtt (default .venv/bin/python)
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE="${EDGERM_PYTHON_IMAGE:-edgerm-test/python:latest}"
CACHE="${EDGERM_CACHE:-$HOME/.cache/edgerm/images}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-.venv/bin/python}"
BASE_RECIPE="bookworm-minbase-python3-v1"
BASE_TAR="$CACHE/$BASE_RECIPE.tar"
SITE=/usr/local/lib/python3.11/dist-packages

log() { printf 'build_python_image: %s\n' "$*" >&2; }

content_hash() {
    {
        echo "$BASE_RECIPE"
        sha256sum "$0"
        find edgerm examples/operators/python -type f \( -name '*.py' -o -name '*.wasm' -o -name '*.h' \) \
            -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
        "$PYTHON" -c 'import importlib.metadata as m; print(m.version("aiomqtt"), m.version("paho-mqtt"))'
    } | sha256sum | cut -c1-16
}

build_base() {
    if [ -s "$BASE_TAR" ]; then
        log "base root filesystem cached: $BASE_TAR"
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root the first time (debootstrap)"
        exit 1
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    }
    mkdir -p "$CACHE"
    local root
    root="$(mktemp -d)"
    log "debootstrap bookworm (minbase + python3) from $MIRROR; this takes a few minutes once"
    debootstrap --variant=minbase --include=python3 bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || {
        log "debootstrap failed; see $CACHE/debootstrap.log"
        tail -n 20 "$CACHE/debootstrap.log" >&2
        rm -rf "$root"
        exit 1
    }
    # Shrink it: no apt caches, docs or locales in a test image.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -cf "$BASE_TAR.part" .
    mv "$BASE_TAR.part" "$BASE_TAR"
    rm -rf "$root"
    log "cached $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
}

build_image() {
    local hash current
    hash="$(content_hash)"
    current="$(docker image inspect --format '{{ index .Config.Labels "edgerm.content" }}' "$IMAGE" 2>/dev/null || true)"
    if [ "$current" = "$hash" ]; then
        log "image $IMAGE is up to date ($hash)"
        return
    fi
    build_base
    local old root
    old="$(docker image inspect --format '{{ .Id }}' "$IMAGE" 2>/dev/null || true)"
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' RETURN
    tar -C "$root" -xf "$BASE_TAR"
    mkdir -p "$root$SITE" "$root/opt/edgerm/operators"
    local deps
    deps="$("$PYTHON" -c 'import aiomqtt, paho, os; print(os.path.dirname(aiomqtt.__file__), os.path.dirname(paho.__file__))')"
    # shellcheck disable=SC2086
    cp -r $deps "$root$SITE/"
    cp -r edgerm "$root$SITE/edgerm"
    find "$root$SITE" -name '__pycache__' -type d -prune -exec rm -rf {} +
    cp examples/operators/python/*.py "$root/opt/edgerm/operators/"
    tar -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1' \
        --change 'CMD ["python3"]' \
        --change "LABEL edgerm.content=$hash edgerm.test=1" \
        --message "edgerm test image: Debian bookworm, python3, the edgerm operator SDK" \
        - "$IMAGE" >/dev/null
    log "built $IMAGE ($hash)"
    # The image it replaces is left untagged: remove it (unless a container still uses it).
    if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{ .Id }}' "$IMAGE")" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
}

build_image
