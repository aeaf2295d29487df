#!/usr/bin/env bash
# Installs the test tooling: build dependencies plus a Python virtualenv (.venv) holding the
# reference implementations the tests compare against (score.py's metrics, the upstream
# DeepFilterNet runtime, ONNX Runtime) and PulseAudio for the live test. Nothing here is needed to run nomusic itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The live-mode test runs a private PulseAudio server with null sinks.
pkgs=(pulseaudio pulseaudio-utils libasound2-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum tools/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt
  echo "$want" > "$stamp"
fi
