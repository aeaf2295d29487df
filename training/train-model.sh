#!/usr/bin/env bash
# nomusic's built-in model from scratch, in one command:
#
#     bash training/train-model.sh            # data, the two training stages, export, benchmarks
#     bash training/train-model.sh --install  # ... and put the weights into the binary's assets
#
# Stages (each resumes from its ckpt_latest.pt after an interruption; a finished stage is skipped):
#   data  training/setup-train.sh + training/prepare.sh (training/README.md)
#   A     from the released DeepFilterNet3, lr 2e-4, steps 1-1000
#   B     from A's step 1000: + the -SI-SDR term, half the music-only weight, lr 1e-4, to step 3194
#         (the model shipped until 2026-11-22)
#   T, U  from B's weights (exported, then read back: a fresh optimiser, as the runs were made),
#         to step 3750 each: lr 1e-4 cosine-decayed to 5e-6 over 1500 steps, a moving average of
#         the weights (0.998), PSOLA and WORLD sung stems (40 % of items), band-limited music in
#         half the items, the over-suppression term at 1000 (--w-asym) and the differentiable
#         STOI term (--w-stoi) at 1 (T) and 3 (U)
#   btu   a soup, half B's weights and a quarter each of T's and U's moving averages (soup.py;
#         the model shipped until 2026-12-06), exported, then its deep-filter decoder (df_dec)
#         moved 30 % of the way back to the released DeepFilterNet3's (soup.py --only df_dec;
#         shipped until 2026-12-07), exported to training/runs/nomusic-df03
#   LA    from those weights (a fresh optimiser), steps 3751-5250: lr 1e-4, cosine-decayed to 5e-6
#         over the last 500 steps, a moving average (0.998), the -SI-SDR term and half the
#         music-only weight, WORLD and PSOLA sung stems, band-limited music in half the items,
#         KLettres' and KTuberling's speech added (data/speech_extra) and speechocean762 cut to a
#         quarter of the speaker draws
#   LB    LA's settings with the differentiable STOI term at 1 and seed 1 (other mixtures)
#   ship  half df03's weights and a quarter each of LA's and LB's moving averages at step 5250,
#         exported by export_eval.py: the three ONNX graphs + config.ini in
#         training/runs/nomusic-ship, checked against the torch modules, `nomusic bench` on
#         ../shared/bench/dev and on training/data/val
#   --install: copies them to crates/models/assets/nomusic and rewrites the parity reference
#
# Everything is seeded (seed 0, LB seed 1; a step's batch depends only on the step number), one CPU thread
# per run, nice 19. About 7 hours of one thread for the six stages on this machine (~2.9-3.5 s a
# step), plus ~40 minutes for the data. Runs go to training/runs/nomusic-{a,b,b-export,t,u,btu,df03,la,lb,ship}
# (git-ignored).
#
# NOMUSIC_RECIPE_SMOKE=1 runs the same plumbing with a few tiny steps per stage (batch 2, no
# benchmarks, into training/runs/smoke-*): a check of this script, not a model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=training/.venv/bin/python
NICE="nice -n 19"
INSTALL=0
for arg in "$@"; do
  case "$arg" in
    --install) INSTALL=1 ;;
    *) echo "usage: bash training/train-model.sh [--install]" >&2; exit 2 ;;
  esac
done

if [ "${NOMUSIC_RECIPE_SMOKE:-0}" = 1 ]; then
  PREFIX=training/runs/smoke
  A_END=3; B_END=6; TU_END=9; L_DECAY=12; L_END=14
  EXTRA=(--batch 2 --val-items 2 --val-every 3 --keep-every 3)
  [ "$INSTALL" = 0 ] || { echo "--install is refused in a smoke run" >&2; exit 2; }
else
  PREFIX=training/runs/nomusic
  A_END=1000; B_END=3194; TU_END=3750; L_DECAY=4750; L_END=5250
  EXTRA=()
  bash training/setup-train.sh
  bash training/prepare.sh
fi

# stage NAME END_STEP [train.py flags...]: trains training/runs/<prefix>-NAME to END_STEP and leaves
# its last checkpoint as ckpt_final.pt.
stage() {
  local name="$1" end="$2"; shift 2
  local out="$PREFIX-$name"
  if [ -f "$out/ckpt_final.pt" ]; then
    echo "== stage $name: done ($out/ckpt_final.pt)"
    return
  fi
  mkdir -p "$out"
  echo "== stage $name: to step $end -> $out (log: $out/log.txt)"
  $NICE "$PY" training/finetune/train.py --out "$out" --resume --steps "$end" "${EXTRA[@]}" "$@" \
    >> "$out/log.txt" 2>&1 || { tail -n 20 "$out/log.txt" >&2; exit 1; }
  local got
  got=$("$PY" -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=False)['step'])" \
    "$out/ckpt_latest.pt")
  [ "$got" = "$end" ] || { echo "stage $name stopped at step $got, not $end (see $out/log.txt)" >&2; exit 1; }
  cp "$out/ckpt_latest.pt" "$out/ckpt_final.pt"
}

stage a "$A_END"
stage b "$B_END" --init "$PREFIX-a/ckpt_final.pt" --lr 1e-4 --w-mo 0.05 --w-sisdr 0.01

# B's weights as the released graphs carry them: the start of stages T and U and half of the soup.
B_EXPORT="$PREFIX-b-export"
[ -f "$B_EXPORT/config.ini" ] || $NICE "$PY" training/finetune/export_eval.py "$PREFIX-b/ckpt_final.pt" --out "$B_EXPORT"
# What stages T, U, LA and LB share: lr 1e-4 decayed to 5e-6, the moving average, B's loss weights, the
# sung stems and the band-limited music. Each adds where it starts and how long it decays.
DECAYED=(--lr 1e-4 --lr-min 5e-6 --ema 0.998 --w-mo 0.05 --w-sisdr 0.01 --sung world,psola --p-sung 0.4
  --p-bandlimit 0.5)
FROM_B=(--init "$B_EXPORT" --init-step "$B_END" --decay-from "$B_END" --decay-steps 1500 "${DECAYED[@]}"
  --w-asym 1000)
stage t "$TU_END" "${FROM_B[@]}" --w-stoi 1
stage u "$TU_END" "${FROM_B[@]}" --w-stoi 3

SHIP="$PREFIX-ship"
BTU="$PREFIX-btu"
$NICE "$PY" training/finetune/soup.py "$PREFIX-btu.pt" "$B_EXPORT:0.5" "$PREFIX-t/ckpt_final.pt@ema:0.25" \
  "$PREFIX-u/ckpt_final.pt@ema:0.25"
[ -f "$BTU/config.ini" ] || $NICE "$PY" training/finetune/export_eval.py "$PREFIX-btu.pt" --out "$BTU"
$NICE "$PY" training/finetune/soup.py "$PREFIX-soup.pt" "$BTU:0.7" base:0.3 --only df_dec
DF03="$PREFIX-df03"
[ -f "$DF03/config.ini" ] || $NICE "$PY" training/finetune/export_eval.py "$PREFIX-soup.pt" --out "$DF03"
FROM_DF03=(--init "$DF03" --init-step "$TU_END" --decay-from "$L_DECAY" --decay-steps $((L_END - L_DECAY))
  "${DECAYED[@]}" --extra-speech klettres,ktuberling --source-share speechocean762=0.25)
stage la "$L_END" "${FROM_DF03[@]}"
stage lb "$L_END" "${FROM_DF03[@]}" --w-stoi 1 --seed 1
$NICE "$PY" training/finetune/soup.py "$PREFIX-final.pt" "$DF03:0.5" "$PREFIX-la/ckpt_final.pt@ema:0.25" \
  "$PREFIX-lb/ckpt_final.pt@ema:0.25"
if [ "${NOMUSIC_RECIPE_SMOKE:-0}" = 1 ]; then
  $NICE "$PY" training/finetune/export_eval.py "$PREFIX-final.pt" --out "$SHIP"
  echo "smoke run done: $SHIP"
  exit 0
fi
$NICE cargo build --release -p nomusic-cli
$NICE "$PY" training/finetune/export_eval.py "$PREFIX-final.pt" --out "$SHIP" --bench --val
if [ "$INSTALL" = 1 ]; then
  cp "$SHIP"/{enc.onnx,erb_dec.onnx,df_dec.onnx,config.ini} crates/models/assets/nomusic/
  "$PY" training/finetune/parity_ref.py
  echo "installed: rebuild nomusic and run cargo test -p nomusic-models"
fi
