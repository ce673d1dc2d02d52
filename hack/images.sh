#!/usr/bin/env bash
# Container images of the project: the operator, the backup tool, the demo service, and local builds of the
# third-party software the stack runs (Redis, PostgreSQL, NGINX) plus the pod sandbox (pause) image.
#
#   hack/images.sh build   build every image from its Dockerfile in images/ (the one definition of each image)
#   hack/images.sh load    import them into the local cluster's real nodes (containerd), or kind (CLUSTER=kind)
#   hack/images.sh list    print the image references
#
# Builders: docker where a Docker engine answers (`docker info`); otherwise buildah, with a Debian bookworm base
# image made by mmdebstrap from the Debian mirror (no registry is needed). Each image is cached by content: a
# key over its Dockerfile, the files it is built from, its build arguments and the key of its base; an image
# whose key is unchanged is not rebuilt. The buildah path writes each image as an OCI archive to
# $TRADINGSTACK_CACHE/images/<name>.tar, which the real nodes import when they start (hack/node.sh).
#
# Environment: REGISTRY (default ghcr.io/quantumtrader), TAG (default: the version in pyproject.toml),
# KIND_CLUSTER (default tradingstack), BUILDER (docker|buildah, default: docker if it answers).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${TRADINGSTACK_CACHE:-$HOME/.cache/tradingstack}"
ARCHIVES="$CACHE/images"
BIN="$CACHE/bin"
REGISTRY="${REGISTRY:-ghcr.io/quantumtrader}"
TAG="${TAG:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)}"
KIND_CLUSTER="${KIND_CLUSTER:-tradingstack}"
POSTGRES_MAJOR=15 # Debian bookworm's; render/postgres.py names the images of this major
DEBIAN_SUITE=bookworm
BASE_REF="localhost/tradingstack/debian:$DEBIAN_SUITE"

# name|dockerfile|reference|base: built in this order; "base" is the image named in its BASE_IMAGE (or
# POSTGRES_IMAGE) argument. The references are the ones the renderers and the chart default to.
IMAGES=(
  "pause|images/pause/Dockerfile|localhost/tradingstack/pause:3.10|debian"
  "redis|images/redis/Dockerfile|$REGISTRY/tradingstack-redis:$TAG|debian"
  "postgres|images/postgres/Dockerfile|$REGISTRY/tradingstack-postgres:$TAG-pg$POSTGRES_MAJOR|debian"
  "nginx|images/nginx/Dockerfile|$REGISTRY/tradingstack-nginx:$TAG|debian"
  "backup|images/backup/Dockerfile|$REGISTRY/tradingstack-backup:$TAG-pg$POSTGRES_MAJOR|postgres"
  "operator|images/operator/Dockerfile|$REGISTRY/tradingstack-operator:$TAG|debian"
  "demo-service|images/demo-service/Dockerfile|$REGISTRY/demo-service:$TAG|debian"
)

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

field() { # field <entry> <1-based index>
  local IFS='|'
  # shellcheck disable=SC2206 # the entry is split on | on purpose
  local parts=($1)
  echo "${parts[$(($2 - 1))]}"
}

entry_of() {
  local entry
  for entry in "${IMAGES[@]}"; do [ "$(field "$entry" 1)" = "$1" ] && { echo "$entry"; return 0; }; done
  return 1
}

builder() {
  if [ -n "${BUILDER:-}" ]; then echo "$BUILDER"; return; fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; else echo buildah; fi
}

# The files an image is built from: its directory, and the package sources for the images that install it.
context_files() {
  local dockerfile="$1"
  (
    cd "$REPO"
    git ls-files -co --exclude-standard -- "$(dirname "$dockerfile")"
    if grep -q '^COPY .*operator' "$dockerfile"; then
      git ls-files -co --exclude-standard -- operator pyproject.toml README.md | grep -v '__pycache__'
    fi
  ) | sort -u
}

content_key() { # content_key <entry> <base key>
  local entry="$1" base_key="$2" dockerfile
  dockerfile="$(field "$entry" 2)"
  {
    echo "ref=$(field "$entry" 3) base=$base_key major=$POSTGRES_MAJOR version=$TAG"
    (cd "$REPO" && context_files "$dockerfile" | while read -r f; do [ -f "$f" ] && sha256sum "$f"; done)
  } | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------------------------------------------
# the Debian base (buildah only; docker pulls debian:bookworm-slim)

base_key() { echo "mmdebstrap-$DEBIAN_SUITE-minbase-ca-certificates-v1"; }

build_base() {
  local key archive="$ARCHIVES/debian.tar"
  key="$(base_key)"
  if [ -f "$archive" ] && [ "$(cat "$ARCHIVES/debian.key" 2>/dev/null)" = "$key" ] && buildah inspect "$BASE_REF" >/dev/null 2>&1; then
    log "debian base cached ($BASE_REF)"
    return 0
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (hack/install-prereqs.sh installs it)"
  local tmp start container
  tmp="$(mktemp -d)"
  start=$(date +%s)
  log "making the Debian $DEBIAN_SUITE base with mmdebstrap ..."
  # minbase plus CA certificates; no documentation or locales; apt lists dropped (each image updates them)
  # shellcheck disable=SC2016 # "$1" is the root directory, expanded by mmdebstrap's hook
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$DEBIAN_SUITE" "$tmp/rootfs.tar" \
    "deb http://deb.debian.org/debian $DEBIAN_SUITE main" \
    "deb http://deb.debian.org/debian $DEBIAN_SUITE-updates main" \
    "deb http://deb.debian.org/debian-security $DEBIAN_SUITE-security main"
  container="$(buildah from scratch)"
  buildah add --quiet "$container" "$tmp/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$container"
  buildah commit --quiet --rm "$container" "$BASE_REF" >/dev/null
  rm -rf "$tmp"
  push_archive debian "$BASE_REF"
  echo "$key" >"$ARCHIVES/debian.key"
  log "debian base built in $(($(date +%s) - start))s"
}

push_archive() { # push_archive <name> <ref>: the image as an OCI archive that ctr imports under <ref>
  mkdir -p "$ARCHIVES"
  rm -f "$ARCHIVES/$1.tar.tmp"
  buildah push --quiet "$2" "oci-archive:$ARCHIVES/$1.tar.tmp:$2" >/dev/null
  mv "$ARCHIVES/$1.tar.tmp" "$ARCHIVES/$1.tar"
}

# ---------------------------------------------------------------------------------------------------

build_pip_conf() { # the host's pip settings with the CA bundle at the path it is mounted at in builds
  local conf="$ARCHIVES/pip.conf"
  mkdir -p "$ARCHIVES"
  { [ -f /etc/pip.conf ] && grep -v '^ *cert *=' /etc/pip.conf || echo '[global]'; echo 'cert = /run/host-ca.crt'; } >"$conf"
  echo "$conf"
}

build_one() { # build_one <entry> <base key> -> prints its key
  local entry="$1" base_key="$2" name dockerfile ref base base_ref key start
  name="$(field "$entry" 1)"
  dockerfile="$(field "$entry" 2)"
  ref="$(field "$entry" 3)"
  base="$(field "$entry" 4)"
  key="$(content_key "$entry" "$base_key")"
  if [ "$base" = debian ]; then base_ref="$BASE_REF"; else base_ref="$(field "$(entry_of "$base")" 3)"; fi
  local args=(--file "$REPO/$dockerfile" --tag "$ref" --build-arg "VERSION=$TAG")
  [ "$(builder)" = docker ] || args+=(--build-arg "BASE_IMAGE=$base_ref")
  [ "$base" = postgres ] && args+=(--build-arg "POSTGRES_IMAGE=$base_ref")
  args+=(--build-arg "POSTGRES_MAJOR=$POSTGRES_MAJOR")
  if [ "$(builder)" = docker ]; then
    log "building $ref (docker)"
    DOCKER_BUILDKIT=1 docker build "${args[@]}" "$REPO" >&2
  elif [ -f "$ARCHIVES/$name.tar" ] && [ "$(cat "$ARCHIVES/$name.key" 2>/dev/null)" = "$key" ]; then
    log "$ref cached (key $key)"
  else
    start=$(date +%s)
    log "building $ref (buildah) ..."
    # --network host, and pip told to trust this machine's CA bundle (mounted beside the image's own, which
    # package scripts may rewrite): the apt/pip steps reach the registries as the host does, and nothing of
    # this ends up in the image.
    local mounts=(-v "$(build_pip_conf):/etc/pip.conf:ro" -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro)
    buildah bud --quiet --layers --pull-never --network host --isolation chroot "${mounts[@]}" \
      "${args[@]}" "$REPO" >/dev/null || die "building $ref failed"
    push_archive "$name" "$ref"
    echo "$key" >"$ARCHIVES/$name.key"
    log "built $ref in $(($(date +%s) - start))s"
  fi
  echo "$key"
}

cmd_build() {
  [ -n "$TAG" ] || die "could not read the version from pyproject.toml; set TAG"
  local entry name keys=() base key
  if [ "$(builder)" = buildah ]; then
    command -v buildah >/dev/null || die "neither a Docker engine nor buildah is available (hack/install-prereqs.sh installs buildah)"
    build_base
  fi
  declare -A built=([debian]="$(base_key)")
  for entry in "${IMAGES[@]}"; do
    name="$(field "$entry" 1)"
    base="$(field "$entry" 4)"
    key="$(build_one "$entry" "${built[$base]}")"
    built[$name]="$key"
    keys+=("$name=$key")
  done
  log "images ready: ${keys[*]}"
}

# Imports every archive into each running real node (hack/node.sh also does it when a node starts).
cmd_load() {
  if [ "${CLUSTER:-local}" = kind ]; then
    command -v kind >/dev/null 2>&1 || die "kind is not installed"
    local entry
    for entry in "${IMAGES[@]}"; do kind load docker-image --name "$KIND_CLUSTER" "$(field "$entry" 3)"; done
    return 0
  fi
  local sock archive found=0 present digest imported
  for sock in /run/tradingstack-nodes/*/containerd.sock; do
    [ -S "$sock" ] || continue
    found=1
    imported=0
    present="$("$BIN/ctr" --address "$sock" -n k8s.io images ls 2>/dev/null | awk 'NR > 1 {print $1 "@" $3}')"
    for archive in "$ARCHIVES"/*.tar; do
      [ -f "$archive" ] || continue
      # the archive's index names the reference and the manifest digest: skip what the node has already
      digest="$(tar -xOf "$archive" index.json | python3 -c 'import json, sys
m = json.load(sys.stdin)["manifests"][0]
print(m["annotations"]["org.opencontainers.image.ref.name"] + "@" + m["digest"])')"
      if grep -qxF "$digest" <<<"$present"; then continue; fi
      "$BIN/ctr" --address "$sock" -n k8s.io images import --all-platforms "$archive" >/dev/null 2>>"$ARCHIVES/ctr.log" \
        || die "ctr could not import $archive (see $ARCHIVES/ctr.log)"
      imported=$((imported + 1))
    done
    log "imported $imported image(s) into $(basename "$(dirname "$sock")")"
  done
  [ "$found" = 1 ] || log "no real node is running: nothing to load (a node imports the images when it starts)"
}

cmd_list() {
  local entry
  for entry in "${IMAGES[@]}"; do field "$entry" 3; done
}

case "${1:-}" in
  build) cmd_build ;;
  load) cmd_load ;;
  list) cmd_list ;;
  *)
    echo "usage: $0 build|load|list" >&2
    exit 2
    ;;
esac
