#!/usr/bin/env bash
# Build the sandbox image: harvest-sandbox:<version> and harvest-sandbox:latest.
#
#   sandbox-image/build.sh [--base IMAGE] [--chromium] [--mirror URL]
#
# Without --base, the base is built from Debian's packages (mmdebstrap, then docker
# import) as harvest-base:bookworm, once: no container registry is needed. With a
# registry in reach, `--base debian:bookworm-slim` works too. The rest is a `docker build
# --network host`. A build whose inputs (this folder's files, the build arguments, the
# base image) are unchanged is a cache hit: it says so and takes seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

base=""
chromium=0
mirror="${HARVEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --chromium) chromium=1; shift ;;
    --mirror) mirror="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! docker info >/dev/null 2>&1; then
  echo "build.sh: no Docker engine answers (${DOCKER_HOST:-unix:///var/run/docker.sock})." >&2
  echo "  start one (as root: dockerd &, or systemctl start docker) and try again" >&2
  exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
claude_version="$(sed -n 's/^CLAUDE_VERSION=//p' "$root/tests/setup.sh" | head -1)"

if [ -z "$base" ]; then
  base=harvest-base:bookworm
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || {
      echo "build.sh: building the base needs mmdebstrap (apt-get install mmdebstrap), or pass --base IMAGE" >&2
      exit 1
    }
    echo "build.sh: building $base from Debian's packages ($mirror)"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates \
      --components=main bookworm - "$mirror" \
      | docker import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  fi
fi
base_id="$(docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || echo "$base")"

# The machine's own certificate authorities go into the image (see the Dockerfile).
rm -rf "$here/extra-ca"
mkdir -p "$here/extra-ca"
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$crt" ] && cp "$crt" "$here/extra-ca/"
done

# What the image is made of: when none of it changed, the image is up to date.
hash="$( (cat "$here/Dockerfile"; cat "$here"/extra-ca/*.crt 2>/dev/null;
  echo "base=$base_id claude=$claude_version chromium=$chromium version=$version") \
  | sha256sum | cut -c1-16)"
tag="harvest-sandbox:$version"
have="$(docker image inspect --format '{{index .Config.Labels "dev.harvest.content-hash"}}' "$tag" 2>/dev/null || true)"
if [ "$have" = "$hash" ]; then
  docker tag "$tag" harvest-sandbox:latest
  echo "build.sh: $tag is up to date (content $hash)"
  exit 0
fi

echo "build.sh: building $tag on $base (content $hash)"
docker build --network host \
  --build-arg "BASE=$base" \
  --build-arg "CLAUDE_VERSION=$claude_version" \
  --build-arg "WITH_CHROMIUM=$chromium" \
  --build-arg "HARVEST_VERSION=$version" \
  --build-arg "CONTENT_HASH=$hash" \
  -t "$tag" -t harvest-sandbox:latest "$here"
echo "build.sh: built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
