#!/usr/bin/env bash
# Build all training data from scratch, in one command (every stage can be re-run; finished work
# is skipped):  bash training/prepare.sh
# Stages: setup (apt + venv), Debian soundtracks (base, then --extra), MIDI renders, more speech
# (KLettres, KTuberling, Fish Fillets, Asterisk; for --extra-speech), sung stems (WORLD, PSOLA), self-check,
# validation set. Timings go to training/data/prepare_times.tsv.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="$HERE/.venv/bin/python"
NICE="nice -n 19"
mkdir -p "$HERE/data"
TIMES="$HERE/data/prepare_times.tsv"
echo -e "stage\tseconds" > "$TIMES"

stage() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" 2>&1 | tee "$HERE/data/$name.log"
  echo -e "$name\t$((SECONDS - t0))" >> "$TIMES"
}

stage setup $NICE bash "$HERE/setup.sh"
stage fetch $NICE "$PY" "$HERE/music/fetch.py"
stage fetch_extra $NICE "$PY" "$HERE/music/fetch.py" --extra
stage midi $NICE "$PY" "$HERE/music/midi_render.py"
stage speech_extra $NICE "$PY" "$HERE/speech/debian.py"
stage synth $NICE "$PY" "$HERE/singing/synth.py"
stage psola $NICE "$PY" "$HERE/singing/psola.py"
stage selfcheck $NICE "$PY" "$HERE/dataset.py" --selfcheck
stage val $NICE "$PY" "$HERE/dataset.py" --build-val
cat "$TIMES"
du -sh "$HERE/data"/* | sort -h
