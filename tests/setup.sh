#!/usr/bin/env bash
# Set up everything Harvest needs on a fresh Debian/Ubuntu machine, idempotently:
#   - apt packages: bubblewrap (the local sandbox), git (--repo), python3 (the demo
#     project's tests), tmux (end-to-end tests), curl and python3-venv (the fake
#     Daytona's tests and its check with the official SDK)
#   - the pinned Claude Code CLI from the npm registry, into .tools/ (no global install)
#   - a release build of harvest, linked as .tools/bin/harvest
# Afterwards `PATH="$PWD/.tools/bin:$PATH" harvest demo` works.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_VERSION=2.1.330
TOOLS="$PWD/.tools"

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
for pkg_bin in bubblewrap:bwrap git:git python3:python3 tmux:tmux curl:curl; do
  command -v "${pkg_bin#*:}" >/dev/null 2>&1 || need_apt+=("${pkg_bin%%:*}")
done
# The official Daytona SDK's check of the fake runs in a virtualenv.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (apt)"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

case "$(uname -m)" in
  x86_64) platform=linux-x64 ;;
  aarch64|arm64) platform=linux-arm64 ;;
  *) echo "setup: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
claude_bin="$TOOLS/claude/node_modules/@anthropic-ai/claude-code-$platform/claude"
if ! [ -x "$claude_bin" ] || ! "$claude_bin" --version 2>/dev/null | grep -q "^$CLAUDE_VERSION "; then
  echo "setup: installing @anthropic-ai/claude-code@$CLAUDE_VERSION (npm) into .tools/claude"
  mkdir -p "$TOOLS/claude"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/claude" \
    "@anthropic-ai/claude-code@$CLAUDE_VERSION" >/dev/null 2>&1 \
    || npm install --no-audit --no-fund --prefix "$TOOLS/claude" "@anthropic-ai/claude-code@$CLAUDE_VERSION"
fi
mkdir -p "$TOOLS/bin"
ln -sf "$claude_bin" "$TOOLS/bin/claude"
"$TOOLS/bin/claude" --version >/dev/null

if [ "${HARVEST_SETUP_SKIP_BUILD:-}" != 1 ]; then
  echo "setup: building harvest (release)"
  cargo build --release --quiet -p harvest
  ln -sf "$PWD/target/release/harvest" "$TOOLS/bin/harvest"
fi
echo "setup: done (claude $("$TOOLS/bin/claude" --version | cut -d' ' -f1), $(bwrap --version))"
