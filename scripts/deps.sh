#!/usr/bin/env bash
# Installs what building nomusic needs on Debian/Ubuntu: a C toolchain, pkg-config, libopus and
# ALSA's headers (cpal; PulseAudio/PipeWire are reached through their socket, no library needed).
# Safe to run again; skips apt when everything is present already.
set -euo pipefail
bash "$(dirname "$0")/apt-install.sh" build-essential pkg-config libopus-dev libasound2-dev
