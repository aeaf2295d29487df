"""Singing-like voice from speech, for the MUSIC side of the mixtures.

No singing corpus is available, so sung stems are made from read speech of a fixed subset of
speakers that are never used as speech targets (data/singing_speakers.txt; the same subset is
computed by common.singing_speakers and excluded by dataset.py):

  WORLD analysis (pyworld: DIO + StoneMask F0, CheapTrick envelope, D4C aperiodicity, 5 ms frames)
  -> time map: the middle of every voiced run (the vowel) is stretched so the run lasts a whole
     number of eighth notes (2-5x its length; at phrase ends and now and then 1-4 beats): held
     vowels and rhythm; consonants keep their speed
  -> new F0: one note per voiced run (long runs: two), a random walk on a major/minor/pentatonic
     scale near the speaker's own register, portamento between notes (30-120 ms glides),
     vibrato 4.8-6.5 Hz, +-30-80 cents, fading in 80-200 ms after the note onset, slow drift
  -> WORLD synthesis; in some clips a harmony voice (third/fifth/octave below or above) or a
     doubled, slightly detuned and delayed copy is layered in.

Output: data/music/sung/{16k,48k}/<id>.flac, data/music/catalog_sung.tsv (kind=sung,
has_vocals=true). Deterministic (seeded per clip).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyworld
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (CATALOG_FIELDS, CORPUS, DATA, MUSIC, merge_catalog, resample,  # noqa: E402
                    singing_speakers, speech_manifest, stable_hash, write_flac, write_tsv)

FP = 5.0  # WORLD frame period, ms
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
          "penta": [0, 2, 4, 7, 9], "dorian": [0, 2, 3, 5, 7, 9, 10]}
LICENCE = {"speechocean762": "Apache-2.0", "librispeech": "CC-BY-4.0", "alphanumeric": "MIT"}


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def hz(midi: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2 ** ((np.asarray(midi) - 69) / 12)


def pitch(x: np.ndarray, fs: int) -> np.ndarray:
    """F0 per 5 ms frame (DIO + StoneMask), 0 where unvoiced."""
    f0, t = pyworld.dio(x, fs, frame_period=FP, f0_floor=60, f0_ceil=600)
    return pyworld.stonemask(x, f0, t, fs)


@dataclass(frozen=True)
class Style:
    """How a score sings: the defaults are the held style of the module docstring (the `world` and
    `psola` families); SYLLABIC is closer to plain pop and folk singing."""
    stretch: tuple[float, float] = (2.0, 5.0)  # voiced runs last this many times longer, ...
    grid_eighths: float = 1.0                  # ... rounded to a whole number of these
    p_phrase_hold: float = 0.7                 # phrase ends held for hold_eighths
    p_hold: float = 0.15                       # other notes held so
    hold_eighths: tuple[float, ...] = (2, 3, 4, 6, 8)
    steps: tuple[int, ...] = (-2, -1, -1, 0, 1, 1, 2, 3, -3)   # melody steps on the scale ...
    step_p: tuple[float, ...] = (.08, .2, .02, .1, .2, .2, .1, .05, .05)  # ... and their odds
    glide_ms: tuple[float, float] = (30, 120)  # portamento
    vibrato_cents: tuple[float, float] = (30, 80)
    p_no_vibrato: float = 0.0
    p_scoop: float = 0.0                       # notes that start 1-2 semitones low and slide up
    scoop_ms: tuple[float, float] = (40, 100)


HELD = Style()
# One note per syllable, vowels barely stretched (rhythm on sixteenths), few held notes, wider
# leaps, short glides, scoops into notes, little or no vibrato: amateur solo singing rather than
# held, vibrato-laden notes. The benchmark's real singers keep far more of the model's attention
# than the held style does (dev vocal items: music-only attenuation -12 dB against -30 dB on the
# synthetic sung items of training/data/val).
SYLLABIC = Style(stretch=(1.0, 1.8), grid_eighths=0.5, p_phrase_hold=0.5, p_hold=0.08,
                 hold_eighths=(2, 3, 4), steps=(-4, -3, -2, -1, 0, 1, 2, 3, 4, 5, -5),
                 step_p=(.04, .08, .15, .17, .1, .17, .15, .06, .04, .02, .02), glide_ms=(20, 80),
                 vibrato_cents=(10, 40), p_no_vibrato=0.5, p_scoop=0.4)
STYLES = {"held": HELD, "syllabic": SYLLABIC}


@dataclass
class Score:
    """How to sing a clip: src_pos[i] is the source frame heard at output frame i; midi[i] the
    sung pitch there (used where voiced[i])."""
    src_pos: np.ndarray
    voiced: np.ndarray
    midi: np.ndarray
    info: dict


def score(f0: np.ndarray, rng: np.random.Generator, style: Style = HELD) -> Score:
    """Held vowels on whole eighth notes and a melody with portamento and vibrato (see the module
    docstring) for a clip whose F0 track is f0; `style` changes the numbers (the default draws
    exactly the random numbers it always has, so the existing stems do not change)."""
    voiced = f0 > 0
    # drop voiced blips shorter than 40 ms
    for a, b in runs(voiced):
        if b - a < 8:
            voiced[a:b] = False
    vr = runs(voiced)
    if not vr:
        raise ValueError("no voiced speech")

    bpm = rng.uniform(70, 150)
    eighth = 60.0 / bpm / 2 * 1000 / FP  # frames per eighth note
    # ---- time map: source frame position for every output frame
    src_pos, note_spans = [], []  # note_spans: (out_start, out_end) of every held voiced run
    prev = 0
    for k, (a, b) in enumerate(vr):
        src_pos.extend(np.arange(prev, a, dtype=np.float64))  # unvoiced stretch, 1:1
        L = b - a
        # held vowels: whole eighths; phrase ends (before a pause of >= 200 ms) and some other
        # notes are held for 1-4 beats
        phrase_end = k == len(vr) - 1 or vr[k + 1][0] - b >= 40
        grid = style.grid_eighths * eighth
        if phrase_end and rng.random() < style.p_phrase_hold or rng.random() < style.p_hold:
            target = float(rng.choice(list(style.hold_eighths))) * eighth
        else:
            target = max(1, round(L * rng.uniform(*style.stretch) / grid)) * grid
        target = max(target, L)
        edge = max(2, int(0.2 * L))  # onset/offset transitions keep their speed
        core_src = L - 2 * edge
        core_out = max(1, int(round(target - 2 * edge)))
        out_start = len(src_pos)
        src_pos.extend(a + np.arange(edge, dtype=np.float64))
        src_pos.extend(a + edge + np.linspace(0, max(core_src - 1, 0), core_out))
        src_pos.extend(b - edge + np.arange(edge, dtype=np.float64))
        note_spans.append((out_start, len(src_pos)))
        prev = b
    src_pos.extend(np.arange(prev, len(f0), dtype=np.float64))
    src_pos = np.array(src_pos)
    idx = np.clip(np.round(src_pos).astype(int), 0, len(f0) - 1)
    n_out = len(idx)
    v_out = voiced[idx]

    # ---- melody
    med = float(np.median(f0[voiced]))
    root = int(round(69 + 12 * np.log2(med / 440))) + int(rng.integers(-3, 3))
    scale = SCALES[rng.choice(list(SCALES))]
    degrees = np.array([s + 12 * o for o in (-1, 0, 1) for s in scale])
    deg = int(np.argmin(np.abs(degrees)))  # start on the root
    notes = []  # (start, end, midi)
    for s0, s1 in note_spans:
        parts = 2 if (s1 - s0) > 4 * eighth and rng.random() < 0.5 else 1
        cuts = np.linspace(s0, s1, parts + 1).astype(int)
        for k in range(parts):
            step = int(rng.choice(list(style.steps), p=list(style.step_p)))
            deg = int(np.clip(deg + step, 2, len(degrees) - 3))
            notes.append((cuts[k], cuts[k + 1], root + degrees[deg]))
    target = np.zeros(n_out)
    for s0, s1, m in notes:
        target[s0:s1] = m
    # fill unvoiced stretches with the neighbouring note (for continuous glides)
    filled = target.copy()
    last = notes[0][2]
    for i in range(n_out):
        if filled[i] == 0:
            filled[i] = last
        else:
            last = filled[i]
    # portamento: one-pole smoothing forward and backward (glide 30-120 ms)
    tau = rng.uniform(*style.glide_ms) / FP / 3
    alpha = 1 / (1 + tau)
    sm = filled.copy()
    for i in range(1, n_out):
        sm[i] = sm[i - 1] + alpha * (sm[i] - sm[i - 1])
    for i in range(n_out - 2, -1, -1):
        sm[i] = sm[i + 1] + alpha * (sm[i] - sm[i + 1])
    # vibrato, fading in 150-300 ms after each note onset
    rate = rng.uniform(4.8, 6.5)
    depth = rng.uniform(*style.vibrato_cents) / 100  # semitones
    if style.p_no_vibrato > 0 and rng.random() < style.p_no_vibrato:
        depth = 0.0
    if style.p_scoop > 0:  # slide up into some notes from 1-2 semitones below
        for s0, s1, _ in notes:
            if rng.random() < style.p_scoop:
                n_s = min(s1 - s0, int(rng.uniform(*style.scoop_ms) / FP))
                sm[s0:s0 + n_s] -= rng.uniform(1.0, 2.0) * np.linspace(1, 0, n_s)
    env = np.zeros(n_out)
    delay = rng.uniform(80, 200) / FP
    for s0, s1, _ in notes:
        k = np.arange(s1 - s0)
        env[s0:s1] = np.clip((k - delay) / (200 / FP), 0, 1)
    tt = np.arange(n_out) * FP / 1000
    phase = 2 * np.pi * rate * tt + 0.3 * np.sin(2 * np.pi * 0.37 * tt)  # slightly irregular rate
    drift = np.cumsum(rng.standard_normal(n_out)) * 0.004
    drift -= np.linspace(drift[0], drift[-1], n_out)  # slow wander, ends where it starts
    midi_curve = sm + depth * env * np.sin(phase) + np.clip(drift, -0.3, 0.3)
    info = dict(bpm=round(bpm, 1), notes=len(notes), vibrato_hz=round(rate, 2),
                vibrato_cents=round(depth * 100), layer="none")
    return Score(src_pos, v_out, midi_curve, info)


def sing(x: np.ndarray, fs: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """WORLD re-synthesis of x along a random score, now and then with a harmony or double."""
    x = x.astype(np.float64)
    f0 = pitch(x, fs)
    t = np.arange(len(f0)) * FP / 1000
    sp = pyworld.cheaptrick(x, f0, t, fs)
    ap = pyworld.d4c(x, f0, t, fs)
    sc = score(f0, rng)
    idx = np.clip(np.round(sc.src_pos).astype(int), 0, len(f0) - 1)
    sp2, ap2, v_out, midi_curve, info = sp[idx], ap[idx], sc.voiced, sc.midi, sc.info
    f0_out = np.where(v_out, hz(midi_curve), 0.0)

    y = pyworld.synthesize(f0_out, sp2, ap2, fs, FP)
    u = rng.random()
    if u < 0.2:  # harmony voice
        interval = int(rng.choice([3, 4, 7, -5, -8, 12, -12]))
        f0_h = np.where(v_out, hz(midi_curve + interval), 0.0)
        y2 = pyworld.synthesize(f0_h, sp2, ap2, fs, FP)
        y = y[:len(y2)] + 10 ** (rng.uniform(-9, -3) / 20) * y2[:len(y)]
        info["layer"] = f"harmony{interval:+d}"
    elif u < 0.35:  # double tracking
        f0_d = np.where(v_out, hz(midi_curve + rng.uniform(-0.12, 0.12)), 0.0)
        y2 = pyworld.synthesize(f0_d, sp2, ap2, fs, FP)
        d = int(rng.uniform(0.01, 0.03) * fs)
        y2 = np.concatenate([np.zeros(d), y2])[:len(y)]
        y = y[:len(y2)] + 10 ** (rng.uniform(-6, -1) / 20) * y2
        info["layer"] = "double"
    return y.astype(np.float32), info


def sung_clips(min_seconds: float, max_clips: int) -> list[dict]:
    """The reserved speakers' corpus clips to sing (in a fixed order), after writing the reserved
    speakers to data/singing_speakers.txt."""
    rows = speech_manifest()
    reserved = singing_speakers(rows)
    (DATA / "singing_speakers.txt").parent.mkdir(parents=True, exist_ok=True)
    (DATA / "singing_speakers.txt").write_text("".join(s + "\n" for s in sorted(reserved)))
    clips = [r for r in rows if f"{r['source']}/{r['speaker']}" in reserved and r["duration_s"] >= min_seconds]
    clips.sort(key=lambda r: stable_hash("sungclip:" + r["path"]))
    print(f"{len(reserved)} singing speakers", flush=True)
    return clips[:max_clips]


def clip_id(r: dict) -> str:
    return f"{r['source']}__{Path(r['path']).with_suffix('').as_posix().replace('/', '_')}"


def write_stem(y: np.ndarray, fs: int, f16: Path, f48: Path) -> None:
    """A sung stem, peak 0.7, at 16 and 48 kHz (paths relative to data/music)."""
    y = y * (0.7 / (np.max(np.abs(y)) + 1e-9))
    write_flac(MUSIC / f48, resample(y, fs, 48000), 48000)
    write_flac(MUSIC / f16, resample(y, fs, 16000), 16000)


def catalog_row(f16: Path, f48: Path, package: str, r: dict) -> dict:
    """The catalogue row of a sung stem made from corpus clip r."""
    return dict(file16=str(f16), file48=str(f48), kind="sung", package=f"{package}:{r['source']}",
                version="", source_path=r["path"], duration_s=f"{sf.info(str(MUSIC / f16)).duration:.2f}",
                licence=LICENCE.get(r["source"], "see corpus SOURCES.md"), has_vocals="true")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-clips", type=int, default=400)
    ap.add_argument("--min-seconds", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    t0 = time.time()
    clips = sung_clips(args.min_seconds, args.max_clips)
    print(f"{len(clips)} clips to sing", flush=True)
    out_rows = []
    for k, r in enumerate(clips):
        cid = clip_id(r)
        f16, f48 = Path("sung/16k") / f"{cid}.flac", Path("sung/48k") / f"{cid}.flac"
        if not (MUSIC / f16).exists() or not (MUSIC / f48).exists():
            x, fs = sf.read(str(CORPUS / r["path"]), dtype="float32")
            rng = np.random.default_rng([args.seed, stable_hash(r["path"])])
            try:
                y, info = sing(x, fs, rng)
            except ValueError as e:
                print("skip", r["path"], e)
                continue
            write_stem(y, fs, f16, f48)
        out_rows.append(catalog_row(f16, f48, "corpus", r))
        if (k + 1) % 50 == 0:
            print(f"{k + 1}/{len(clips)} clips, {time.time() - t0:.0f} s", flush=True)
    write_tsv(MUSIC / "catalog_sung.tsv", out_rows, CATALOG_FIELDS)
    merge_catalog()
    h = sum(float(r["duration_s"]) for r in out_rows) / 3600
    print(f"sung: {len(out_rows)} clips, {h:.2f} h in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
