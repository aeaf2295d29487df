#!/usr/bin/env bash
# Set up the training data tools: Debian packages (when missing) and the venv training/.venv.
# Idempotent; everything CPU-heavy runs under nice.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
NICE="nice -n 19"

need_apt=()
command -v fluidsynth >/dev/null || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)            # tracker modules, fallback decoder
command -v g++ >/dev/null || need_apt+=(g++)                  # pyworld builds from source
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' \
  2>/dev/null || need_apt+=(python3-dev)                      # headers for the pyworld build
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $NICE $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x "$HERE/.venv/bin/python" ]; then
  $NICE "$PY" -m venv "$HERE/.venv"
fi
# numpy is needed before pyworld's (source) build; pyworld 0.3.5 has no wheel for every Python.
$NICE "$HERE/.venv/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
"$HERE/.venv/bin/python" - <<'EOF'
import numpy, scipy, soundfile, pyworld
print("venv ok: numpy", numpy.__version__, "scipy", scipy.__version__, "soundfile", soundfile.__version__,
      "libsndfile", soundfile.__libsndfile_version__, "pyworld", pyworld.__version__)
EOF
