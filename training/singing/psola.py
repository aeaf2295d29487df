"""A second family of sung stems: PSOLA instead of a vocoder, and new voices by formant shifts.

The WORLD stems (synth.py) all carry one vocoder's sound, and they come from about 50 reserved
speakers. Real singers (the benchmark's vocal items are solo singers over instrumental beds)
sound like neither. This script sings the same reserved speakers' clips (never speech targets)
with Praat's pitch-synchronous overlap-add (parselmouth), which keeps the recorded waveform's
texture, breath and noise, along the same kind of score as synth.py (held vowels on whole eighth
notes, a melody on a scale with portamento and vibrato; synth.score). Each clip is rendered
--renders times with different scores and voices:

  formant shift: the clip is resampled by a factor 0.82-1.22 before singing (a shorter or longer
    vocal tract; the melody is set in the shifted register), so ~50 speakers give many voices;
  register: now and then an octave up or down (kept within 70-900 Hz);
  layers: as in synth.py, sometimes a harmony voice or a detuned, delayed double;
  breath: voiced frames get a little extra aspiration noise (-30..-18 dB) in some clips.

Output: data/music/psola/{16k,48k}/<id>_r<k>.flac and data/music/catalog_psola.tsv (kind=sung,
package psola:<corpus>). The training mixer uses them only when asked (train.py --sung psola or
--sung world,psola), so the default data and the shipped recipe are unchanged. Deterministic.

    training/.venv/bin/python training/singing/psola.py [--renders 3]

With --style syllabic the same renders follow synth.SYLLABIC's scores instead (one note per
syllable, vowels barely stretched, scoops, little vibrato: closer to amateur pop and folk singing
than the held style), as a third family, `syllabic` (data/music/syllabic/, train.py --sung
...,syllabic):

    training/.venv/bin/python training/singing/psola.py --style syllabic --renders 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import parselmouth
import soundfile as sf
from parselmouth.praat import call, run

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import CATALOG_FIELDS, CORPUS, MUSIC, merge_catalog, resample, stable_hash, write_tsv  # noqa: E402
from synth import FP, HELD, STYLES, Style, catalog_row, clip_id, hz, pitch, score, sung_clips, write_stem  # noqa: E402


MAX_STRETCH = 8.0  # Praat's overlap-add falls short of longer stretches (the output comes out short)


def psola(x: np.ndarray, fs: int, src_pos: np.ndarray, voiced: np.ndarray,
          midi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a score with Praat's overlap-add resynthesis: the pitch tier and the duration tier
    are set on the source's time axis (src_pos maps output frames to source frames). Stretches
    beyond MAX_STRETCH are shortened to it, so the notes may come out shorter than the score's;
    returns the audio and the voicing and pitch per output frame of what was rendered."""
    # Praat's overlap-add draws random numbers (unvoiced stretches): seed them from the score
    seed = stable_hash(f"{len(x)}:{src_pos[-1]:.6f}:{midi[np.flatnonzero(voiced)[:1]].round(6)}") % 2 ** 31
    run(f"random_initializeWithSeedUnsafelyButPredictably ({seed})")
    snd = parselmouth.Sound(x.astype(np.float64), sampling_frequency=fs)
    dur = snd.get_total_duration()
    manip = call(snd, "To Manipulation", 0.01, 60, 900)
    ptier = call("Create PitchTier", "melody", 0, dur)
    t_src = src_pos * FP / 1000
    for i in np.flatnonzero(voiced)[::2]:  # every 10 ms of output is enough for vibrato
        call(ptier, "Add point", float(t_src[i]), float(hz(midi[i])))
    dtier = call("Create DurationTier", "time", 0, dur)
    slope = np.diff(src_pos, append=src_pos[-1] + 1)
    factor = np.minimum(1.0 / np.maximum(slope, 1e-3), MAX_STRETCH)
    keep = np.flatnonzero(np.abs(np.diff(factor, prepend=-1)) > 1e-6)  # where the stretch changes
    for i in keep:
        if i > 0:  # hold the previous factor up to here (a step, not a ramp)
            call(dtier, "Add point", float(t_src[i]) - 1e-4, float(factor[i - 1]))
        call(dtier, "Add point", float(t_src[i]), float(factor[i]))
    call([manip, ptier], "Replace pitch tier")
    call([manip, dtier], "Replace duration tier")
    y = call(manip, "Get resynthesis (overlap-add)").values[0].astype(np.float32)
    # the rendered timeline: score frame i now lasts slope * factor (<= 1) frames
    t_out = np.concatenate([[0.0], np.cumsum(slope * factor)])[:-1]
    frames = np.minimum(np.searchsorted(t_out, np.arange(int(np.ceil(t_out[-1])) + 1), side="right") - 1,
                        len(src_pos) - 1)
    return y, voiced[frames], midi[frames]


def check_render(y: np.ndarray, fs: int, voiced: np.ndarray, midi: np.ndarray) -> None:
    """Refuse a render that does not sing the score: Praat's pulses can miss a voice (wrong
    length, or the melody off by large intervals)."""
    n_score = len(voiced) * FP / 1000
    if abs(len(y) / fs - n_score) > 0.1 * n_score:
        raise ValueError(f"render lasts {len(y) / fs:.2f} s, the score {n_score:.2f} s")
    g = pitch(y.astype(np.float64), fs)
    n = min(len(g), len(voiced))
    v = voiced[:n] & (g[:n] > 0)
    if v.sum() < 0.5 * voiced.sum():
        raise ValueError("render lost most of the voicing")
    on_pitch = np.mean(np.abs(12 * np.log2(g[:n][v] / hz(midi[:n][v]))) < 0.5)
    if on_pitch < 0.6:
        raise ValueError(f"render on pitch in {on_pitch:.0%} of voiced frames")


def breath(y: np.ndarray, fs: int, rng: np.random.Generator, level_db: float) -> np.ndarray:
    """Add aspiration: high-passed noise following the voice's envelope."""
    n = rng.standard_normal(len(y)).astype(np.float32)
    n = np.diff(n, prepend=0.0).astype(np.float32)  # tilt towards the highs
    k = max(1, int(0.02 * fs))
    env = np.sqrt(np.convolve(y.astype(np.float64) ** 2, np.ones(k) / k, mode="same")).astype(np.float32)
    n *= env / (np.sqrt(np.mean(n ** 2)) + 1e-9)
    return y + 10 ** (level_db / 20) * n


def sing_psola(x: np.ndarray, fs: int, rng: np.random.Generator, style: Style = HELD) -> tuple[np.ndarray, dict]:
    shift = float(rng.uniform(0.82, 1.22))
    xs = resample(x.astype(np.float32), fs, int(round(fs / shift / 10)) * 10)  # played at fs: formants x shift
    f0 = pitch(xs.astype(np.float64), fs)
    octave = int(rng.choice([-1, 0, 0, 0, 1]))
    sc = score(f0, rng, style)
    midi = sc.midi + 12 * octave
    if np.any(sc.voiced) and not 70 <= hz(np.median(midi[sc.voiced])) <= 900:
        midi = sc.midi
        octave = 0
    y, voiced, sung = psola(xs, fs, sc.src_pos, sc.voiced, midi)
    check_render(y, fs, voiced, sung)
    info = dict(sc.info, formant_shift=round(shift, 3), octave=octave)
    u = rng.random()
    if u < 0.2:
        interval = int(rng.choice([3, 4, 7, -5, -8, 12, -12]))
        y2 = psola(xs, fs, sc.src_pos, sc.voiced, midi + interval)[0]
        n = min(len(y), len(y2))
        y = y[:n] + 10 ** (rng.uniform(-9, -3) / 20) * y2[:n]
        info["layer"] = f"harmony{interval:+d}"
    elif u < 0.35:
        y2 = psola(xs, fs, sc.src_pos, sc.voiced, midi + rng.uniform(-0.12, 0.12))[0]
        d = int(rng.uniform(0.01, 0.03) * fs)
        y2 = np.concatenate([np.zeros(d, np.float32), y2])[:len(y)]
        y = y[:len(y2)] + 10 ** (rng.uniform(-6, -1) / 20) * y2
        info["layer"] = "double"
    if rng.random() < 0.4:
        level = float(rng.uniform(-30, -18))
        y = breath(y, fs, rng, level)
        info["breath_db"] = round(level, 1)
    return y.astype(np.float32), info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renders", type=int, default=3, help="renders per clip (different score and voice)")
    ap.add_argument("--min-seconds", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-clips", type=int, default=10 ** 6)
    ap.add_argument("--style", choices=sorted(STYLES), default="held",
                    help="the score's style (synth.STYLES); 'syllabic' writes the family of that name: "
                         "data/music/syllabic/, catalog_syllabic.tsv, package syllabic:<corpus>")
    args = ap.parse_args()
    family = "psola" if args.style == "held" else args.style
    style = STYLES[args.style]
    t0 = time.time()
    clips = sung_clips(args.min_seconds, args.max_clips)
    print(f"{len(clips)} clips x {args.renders} renders", flush=True)
    out_rows, skipped = [], 0  # skipped: renders
    for k, r in enumerate(clips):
        cid = clip_id(r)
        x = None
        for j in range(args.renders):
            f16, f48 = Path(f"{family}/16k") / f"{cid}_r{j}.flac", Path(f"{family}/48k") / f"{cid}_r{j}.flac"
            if not (MUSIC / f16).exists() or not (MUSIC / f48).exists():
                if x is None:
                    x, fs = sf.read(str(CORPUS / r["path"]), dtype="float32")
                    if x.ndim > 1:
                        x = x.mean(axis=1)
                y = None
                for attempt in range(3):  # a render that misses the score is drawn again
                    rng = np.random.default_rng([args.seed, j, stable_hash(r["path"]), attempt])
                    try:
                        y, _ = sing_psola(x, fs, rng, style)
                        break
                    except ValueError as e:  # no voiced speech, or a render that went wrong
                        err = e
                if y is None:
                    skipped += 1
                    print("skip", r["path"], f"render {j}:", err)
                    continue
                write_stem(y, fs, f16, f48)
            out_rows.append(catalog_row(f16, f48, family, r))
        if (k + 1) % 50 == 0:
            print(f"{k + 1}/{len(clips)} clips, {time.time() - t0:.0f} s", flush=True)
    write_tsv(MUSIC / f"catalog_{family}.tsv", out_rows, CATALOG_FIELDS)
    merge_catalog()
    h = sum(float(r["duration_s"]) for r in out_rows) / 3600
    print(f"{family}: {len(out_rows)} stems, {h:.2f} h, {skipped} renders skipped, in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
