#!/usr/bin/env bash
# Installs nomusic on a fresh Debian/Ubuntu machine and runs the main job:
#   1. build dependencies (apt), 2. `cargo install` of the nomusic binary,
#   3. (the default model, nomusic's own, is built into the binary: nothing to download; a local
#      models folder, if there is one, makes the other models available too),
#   4. separates a benchmark mixture into out/ and scores the model on the dev benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo install --locked --path crates/cli --root "${NOMUSIC_PREFIX:-$HOME/.local}"
bin="${NOMUSIC_PREFIX:-$HOME/.local}/bin/nomusic"
echo "installed $bin"

shared=../shared
if [ -d "$shared/models" ]; then
  export NOMUSIC_MODEL_DIR="$(cd "$shared/models" && pwd)"
fi
"$bin" models

mkdir -p out
if [ -d "$shared/bench/dev" ]; then
  "$bin" separate "$shared/bench/dev/dev_00/44k/mixture.flac" --stems speech,music -o out/dev_00.wav
  "$bin" bench --set "$shared/bench/dev" --out out/bench-estimates --json out/bench.json
else
  echo "no benchmark set beside this checkout; try: $bin separate YOUR_FILE -o out/"
fi
