#!/usr/bin/env bash
# Drive harvest-fake-daytona with the official Daytona Python SDK (daytona==0.190.0).
#
#   bash tests/daytona_sdk/run.sh
#
# Env:
#   HARVEST_FAKE_DAYTONA  path of the fake binary (default: target/debug/harvest-fake-daytona)
#   CHECK_FAIL_FAST=1     stop at the first failing check
#   CHECK_TRACEBACK=1     print Python tracebacks for every failure
#   KEEP_FAKE_LOG=1       keep the fake's stdout/stderr log (path printed at exit)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SDK_VERSION="0.190.0"
VENV="$REPO/.tools/daytona-venv"
FAKE="${HARVEST_FAKE_DAYTONA:-$REPO/target/debug/harvest-fake-daytona}"
API_KEY="sdk-check-key"

if [[ ! -x "$FAKE" ]]; then
  echo "run.sh: fake binary not found or not executable: $FAKE" >&2
  echo "run.sh: build it with 'cargo build -p harvest-fake-daytona' or set HARVEST_FAKE_DAYTONA" >&2
  exit 2
fi

# --- virtualenv with the pinned SDK -------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("daytona"))' 2>/dev/null || true)"
if [[ "$installed" != "$SDK_VERSION" ]]; then
  echo "run.sh: installing daytona==$SDK_VERSION into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "daytona==$SDK_VERSION"
fi

# --- start the fake -----------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/harvest-sdk-check.XXXXXX")"
ROOT="$WORK/root"
mkdir -p "$ROOT"
FIFO="$WORK/stdout.fifo"
LOG="$WORK/fake.stderr"
OUTLOG="$WORK/fake.stdout"
mkfifo "$FIFO"
FAKE_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$FAKE_PID" ]] && kill -0 "$FAKE_PID" 2>/dev/null; then
    kill "$FAKE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$FAKE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$FAKE_PID" 2>/dev/null || true
    wait "$FAKE_PID" 2>/dev/null || true
  fi
  if [[ "${KEEP_FAKE_LOG:-}" == "1" ]]; then
    echo "run.sh: fake output kept in $LOG and $OUTLOG" >&2
  else
    if [[ $rc -ne 0 && -s "$LOG" ]]; then
      echo "run.sh: last 40 lines of the fake's stderr:" >&2
      tail -n 40 "$LOG" >&2 || true
    fi
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$FAKE" --listen 127.0.0.1:0 --api-key "$API_KEY" --root "$ROOT" --transition-ms 150 \
  >"$FIFO" 2>"$LOG" &
FAKE_PID=$!

# First stdout line: "listening on http://127.0.0.1:PORT". Keep draining the rest into the log.
exec 3<"$FIFO"
first=""
if ! IFS= read -r -t 30 first <&3; then
  echo "run.sh: the fake did not print its listening line within 30 s" >&2
  exit 2
fi
cat <&3 >"$OUTLOG" &
exec 3<&-

if [[ ! "$first" =~ ^listening\ on\ (http://127\.0\.0\.1:[0-9]+)/?$ ]]; then
  echo "run.sh: unexpected first line from the fake: '$first'" >&2
  exit 2
fi
BASE="${BASH_REMATCH[1]}"
echo "run.sh: fake listening at $BASE (pid $FAKE_PID)" >&2

# --- run the SDK check --------------------------------------------------------------------
set +e
DAYTONA_API_URL="$BASE/api" DAYTONA_API_KEY="$API_KEY" DAYTONA_TARGET="us" \
  "$VENV/bin/python" "$HERE/check.py"
status=$?
set -e
exit $status
