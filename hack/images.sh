#!/usr/bin/env bash
# Container images of the project.
#
#   hack/images.sh build       build the operator, demo-service and backup images with docker
#   hack/images.sh kind-load   load them into the kind cluster $KIND_CLUSTER (default: tradingstack)
#   hack/images.sh list        print the image references
#
# Needs a Docker engine (`docker info` must work); exits non-zero with a clear message otherwise.
# Environment: REGISTRY (default ghcr.io/quantumtrader), TAG (default: the version in pyproject.toml),
# KIND_CLUSTER (default tradingstack), POSTGRES_MAJOR (default 16, for the backup image),
# DOCKER_BUILD_ARGS (extra arguments for docker build).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
REGISTRY="${REGISTRY:-ghcr.io/quantumtrader}"
TAG="${TAG:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)}"
KIND_CLUSTER="${KIND_CLUSTER:-tradingstack}"

POSTGRES_MAJOR="${POSTGRES_MAJOR:-16}"

# name:dockerfile pairs; the build context is always the repository root.
IMAGES=(
  "tradingstack-operator:images/operator/Dockerfile"
  "tradingstack-demo-service:images/demo-service/Dockerfile"
  "tradingstack-backup:images/backup/Dockerfile"
)

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The references an image is tagged with (first = primary). The backup image carries the PostgreSQL major
# version its pg_dump matches (render/postgres.py BACKUP_IMAGE); the demo service is also tagged with the
# shorter name the examples/ use.
refs() {
  case "$1" in
    tradingstack-backup) printf '%s\n' "$REGISTRY/$1:$TAG-pg$POSTGRES_MAJOR" ;;
    tradingstack-demo-service) printf '%s\n' "$REGISTRY/$1:$TAG" "$REGISTRY/demo-service:$TAG" ;;
    *) printf '%s\n' "$REGISTRY/$1:$TAG" ;;
  esac
}

all_refs() {
  local entry
  for entry in "${IMAGES[@]}"; do refs "${entry%%:*}"; done
}

need_docker() {
  command -v docker >/dev/null 2>&1 ||
    die "needs a Docker engine: the docker CLI is not installed (the local control plane runs without images; use CLUSTER=kind where Docker exists)"
  docker info >/dev/null 2>&1 ||
    die "needs a Docker engine: 'docker info' fails (is the daemon running and reachable via DOCKER_HOST?)"
}

cmd_build() {
  need_docker
  [ -n "$TAG" ] || die "could not read the version from pyproject.toml; set TAG"
  local entry name dockerfile ref
  for entry in "${IMAGES[@]}"; do
    [ -f "$REPO/${entry#*:}" ] || die "${entry#*:} is missing"
  done
  for entry in "${IMAGES[@]}"; do
    name="${entry%%:*}"
    dockerfile="${entry#*:}"
    local tags=()
    while read -r ref; do tags+=(--tag "$ref"); done < <(refs "$name")
    log "building $name from $dockerfile"
    # shellcheck disable=SC2086  # DOCKER_BUILD_ARGS is a list of words on purpose
    DOCKER_BUILDKIT=1 docker build ${DOCKER_BUILD_ARGS:-} \
      --file "$REPO/$dockerfile" \
      --build-arg "VERSION=$TAG" \
      --build-arg "POSTGRES_MAJOR=$POSTGRES_MAJOR" \
      "${tags[@]}" \
      "$REPO"
  done
  log "built: $(all_refs | tr '\n' ' ')"
}

cmd_kind_load() {
  need_docker
  command -v kind >/dev/null 2>&1 || die "kind is not installed"
  kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER" ||
    die "no kind cluster named '$KIND_CLUSTER' (start one with: CLUSTER=kind hack/cluster.sh up, or set KIND_CLUSTER)"
  local image
  while read -r image; do
    docker image inspect "$image" >/dev/null 2>&1 || die "$image is not built; run: hack/images.sh build"
    log "loading $image into kind cluster $KIND_CLUSTER"
    kind load docker-image --name "$KIND_CLUSTER" "$image"
  done < <(all_refs)
}

cmd_list() {
  all_refs
}

case "${1:-}" in
  build) cmd_build ;;
  kind-load) cmd_kind_load ;;
  list) cmd_list ;;
  *)
    echo "usage: $0 build|kind-load|list" >&2
    exit 2
    ;;
esac
