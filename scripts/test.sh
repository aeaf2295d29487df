#!/usr/bin/env bash
# The test command: installs test dependencies, then formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
export NOMUSIC_PYTHON="$PWD/.venv/bin/python"
# The live test must run here, not skip.
export NOMUSIC_REQUIRE_PULSE=1
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
