#!/usr/bin/env bash
# The test command: set up what the tests need on a fresh machine, then run every test,
# the lints and the formatting check. The integration tests drive the real harvest
# binary, the real claude CLI, real bubblewrap and a real Docker engine against the
# scripted model server.
set -euo pipefail
cd "$(dirname "$0")/.."

HARVEST_SETUP_SKIP_BUILD=1 bash tests/setup.sh
# The docker provider's tests: an engine, and the sandbox image built and checked.
bash tests/setup-docker.sh
export HARVEST_CLAUDE="$PWD/.tools/bin/claude"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins --quiet
# The fake Daytona's faithfulness, checked with the official Python SDK (pinned).
bash tests/daytona_sdk/run.sh
# Two test threads: the integration tests each run a daemon and a real agent.
cargo test --workspace -- --test-threads=2
