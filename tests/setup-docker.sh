#!/usr/bin/env bash
# What the docker provider's tests need on a fresh Debian/Ubuntu machine, idempotently:
#   - a Docker engine that answers: Debian's docker.io installed and dockerd started when
#     none answers (as root, or through sudo)
#   - mmdebstrap, which builds the sandbox image's base from Debian's packages (no
#     container registry is needed)
#   - the sandbox image, built (a cache hit when nothing changed) and checked
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup-docker: installing ${need_apt[*]} (apt)"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup-docker: starting dockerd (log: /tmp/harvest-dockerd.log)"
  sudo_if_needed sh -c 'nohup dockerd >/tmp/harvest-dockerd.log 2>&1 &'
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || {
    echo "setup-docker: dockerd did not come up; its log:" >&2
    tail -20 /tmp/harvest-dockerd.log >&2 || true
    exit 1
  }
fi

# The bridge that open-network sandboxes share, without inter-container traffic (the
# daemon makes it too when missing; made here once so parallel tests never race for it).
docker network inspect harvest-open >/dev/null 2>&1 \
  || docker network create -o com.docker.network.bridge.enable_icc=false \
       --label dev.harvest.network=open harvest-open >/dev/null

bash sandbox-image/build.sh
bash sandbox-image/check.sh
