#!/usr/bin/env bash
# Installs what building nomusic needs on Debian/Ubuntu: a C toolchain, pkg-config, libopus and
# ALSA's headers (cpal; PulseAudio/PipeWire are reached through their socket, no library needed).
# Safe to run again; skips apt when everything is present already.
set -euo pipefail
pkgs=(build-essential pkg-config libopus-dev libasound2-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
