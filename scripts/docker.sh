#!/usr/bin/env bash
# Make sure a Docker engine answers, for the rendered suites' Testcontainers path.
#
# Usage: scripts/docker.sh
#
# An engine that answers (`docker info`, at DOCKER_HOST or the default socket) is left alone.
# Otherwise dockerd is started as root (directly or through passwordless sudo), in the background
# with its log in DOCKER_LOG (/var/log/dockerd-outbox-template.log). Debian's docker.io package is
# installed first when dockerd is missing and installing is allowed: CI=true or DOCKER_INSTALL=1
# (a developer's machine gets a message instead of an engine it did not ask for).
# Fails, naming what is missing, when no engine can be had: it never lets tests pass without one.
set -euo pipefail

readonly WAIT_S=${DOCKER_WAIT_S:-60}
readonly DOCKER_LOG=${DOCKER_LOG:-/var/log/dockerd-outbox-template.log}
# Held while installing and starting: runs of several checkouts at once install and start once.
readonly LOCK_FILE=${DOCKER_LOCK_FILE:-${TMPDIR:-/tmp}/fastapi-outbox-template-docker.lock}

log() { printf 'docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

can_root() { [[ $(id -u) -eq 0 ]] || sudo -n true 2>/dev/null; }
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

install_allowed() { [[ ${CI:-} == true || ${DOCKER_INSTALL:-} == 1 ]]; }

install_docker() {
  install_allowed ||
    die "dockerd is not installed; install Docker (Debian: apt-get install docker.io), or set DOCKER_INSTALL=1 to let this script do it"
  can_root || die "dockerd is not installed, and installing docker.io needs root or passwordless sudo"
  log "installing docker.io with apt-get"
  # apt-get fails at once on a lock another apt-get holds (scripts/services.sh of another run).
  exec 8>"${TMPDIR:-/tmp}/fastapi-outbox-template-apt.lock"
  flock 8
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  # Its package scripts cannot start the service without an init system; we start it below.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io >&2
  exec 8>&-
}

start_dockerd() {
  [[ -n ${DOCKER_HOST:-} ]] &&
    die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine, or unset DOCKER_HOST to use a local dockerd"
  can_root || die "no Docker engine answers, and starting dockerd needs root or passwordless sudo"
  log "starting dockerd (log: $DOCKER_LOG)"
  # A session of its own, so that it outlives this script and the make that ran it. The background
  # job lives as long as dockerd: it must not hold this script's stdout or stderr, or a caller's
  # `$(scripts/docker.sh)` (the Makefile's) waits for ever.
  # Nor the lock (fd 9): other runs would wait on it as long as dockerd lives.
  as_root setsid sh -c 'exec dockerd >>"$1" 2>&1' sh "$DOCKER_LOG" </dev/null >/dev/null 2>&1 9>&- &
  local deadline=$((SECONDS + WAIT_S))
  until answers; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$DOCKER_LOG" >&2 || true
      die "dockerd did not answer within ${WAIT_S}s (log above: $DOCKER_LOG)"
    fi
    sleep 1
  done
}

if answers; then
  log "a Docker engine answers"
  exit 0
fi
exec 9>"$LOCK_FILE"
flock 9
if answers; then
  log "a Docker engine answers (another run started it meanwhile)"
  exit 0
fi
command -v dockerd >/dev/null || install_docker
command -v docker >/dev/null || die "dockerd is installed but the docker command is not"
start_dockerd
log "dockerd is up"
