#!/usr/bin/env bash
# Check a built sandbox image: its tools answer with their versions, it runs as uid
# 1000, `claude --version` answers (its binary execute-only), /workspace is writable, nothing listens in a fresh
# container, and no credential or token is anywhere in it (its files, its environment,
# its build history).
#
#   sandbox-image/check.sh [IMAGE]      (default harvest-sandbox:latest)
set -euo pipefail
image="${1:-harvest-sandbox:latest}"
fail=0
bad() { echo "check: FAIL: $*" >&2; fail=1; }

docker image inspect "$image" >/dev/null 2>&1 || {
  echo "check: no image $image; build it with sandbox-image/build.sh" >&2
  exit 1
}
run() { docker run --rm --network none --entrypoint /bin/sh "$image" -c "$1"; }

echo "check: tools in $image"
for tool in git curl rg fd jq python3 node npm gcc make gh claude; do
  if v="$(run "$tool --version 2>&1 | head -1")" && [ -n "$v" ]; then
    printf '  %-8s %s\n' "$tool" "$v"
  else
    bad "$tool is missing"
  fi
done
run 'test -x "$(npm root -g)/@modelcontextprotocol/server-memory/dist/index.js" || command -v mcp-server-memory >/dev/null' \
  && echo "  mcp memory server: installed" || bad "the MCP memory server is missing"

uid="$(docker run --rm --network none "$image" id -u)"
[ "$uid" = 1000 ] && echo "check: runs as uid 1000" || bad "runs as uid $uid, not 1000"
run 'claude --version' >/dev/null && echo "check: claude --version answers" || bad "claude --version failed"
# Execute-only, so the running CLI is not dumpable: its tools cannot ptrace it or open
# its memory (docs/providers.md).
run 'test ! -r /usr/local/bin/claude' && echo "check: claude is execute-only" \
  || bad "/usr/local/bin/claude is readable by the agent's uid"
run 'touch /workspace/.probe && rm /workspace/.probe' && echo "check: /workspace is writable" \
  || bad "/workspace is not writable"

# Nothing listening: the image's own command, left to start, opens no port.
cid="$(docker run -d --network none "$image")"
sleep 2
listening="$(docker exec "$cid" ss -Htlnu 2>&1 || true)"
docker rm -f "$cid" >/dev/null
[ -z "$listening" ] && echo "check: nothing listening" || bad "listening: $listening"

# No credentials: token shapes in the files, credential-like variables in the
# environment, either in the build history.
tokens='sk-ant-[a-z0-9]+-[A-Za-z0-9_-]{40,}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|xox[baprs]-[A-Za-z0-9-]{20,}'
# A private key is its header followed by key material on the next line (code that only
# names the header, as PEM parsers do, is not one).
keys='-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40,}'
found="$(docker run --rm --network none --user 0 --entrypoint /bin/sh "$image" -c \
  "grep -rIlE '$tokens' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | head -5;
   grep -rIlzP '$keys' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | head -5" || true)"
[ -z "$found" ] && echo "check: no token in any file" || bad "token-shaped text in: $found"
envs="$(docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" \
  | grep -iE '^[A-Z_]*(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)[A-Z_]*=' || true)"
[ -z "$envs" ] && echo "check: no credential in the environment" || bad "credential-like variables: $envs"
hist="$(docker history --no-trunc --format '{{.CreatedBy}}' "$image" | grep -E "$tokens|ANTHROPIC_API_KEY=|GH_TOKEN=|GITHUB_TOKEN=" || true)"
[ -z "$hist" ] && echo "check: no credential in the build history" || bad "credentials in the history: $hist"

# No file anyone may write (the sticky, world-writable folders are /workspace, HOME and
# /tmp, by design), and the setuid programs listed: with no-new-privileges and every
# capability dropped in Harvest's containers they cannot raise privileges.
writable="$(docker run --rm --network none --user 0 --entrypoint /bin/sh "$image" -c \
  'find / -xdev -type f -perm -0002 2>/dev/null | head -5')"
[ -z "$writable" ] && echo "check: no world-writable file" || bad "world-writable files: $writable"
setuid="$(docker run --rm --network none --user 0 --entrypoint /bin/sh "$image" -c \
  'find / -xdev -type f -perm -4000 2>/dev/null | tr "\n" " "')"
echo "check: setuid programs (inert under no-new-privileges): ${setuid:-none}"

size="$(docker image inspect --format '{{.Size}}' "$image")"
echo "check: image size $((size / 1000000)) MB"
[ "$fail" = 0 ] && echo "check: $image is good" || { echo "check: $image has problems (above)" >&2; exit 1; }
