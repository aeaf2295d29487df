#!/usr/bin/env bash
# Installs the test tooling: build dependencies plus a Python virtualenv (.venv) holding the
# reference implementations the tests compare against (score.py's metrics, the upstream
# DeepFilterNet runtime, ONNX Runtime) and PulseAudio for the live test. Nothing here is needed to run nomusic itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The live-mode test runs a private PulseAudio server with null sinks.
bash scripts/apt-install.sh --no-install-recommends pulseaudio pulseaudio-utils libasound2-plugins
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum tools/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt
  echo "$want" > "$stamp"
fi
