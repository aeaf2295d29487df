"""Dynamic speech-over-music mixing for nomusic training (numpy only; torch wrapper optional).

Every (epoch, index) pair gives a new, reproducible mixture: the random generator is seeded with
(seed, epoch, index), so epoch e always yields the same items and epoch e+1 different ones.

An item is built at `sr` (16 kHz by default; 48 kHz uses the 48 kHz music renders, speech stays
band-limited to 8 kHz because the corpus is 16 kHz):
  * speech track: one or more corpus clips (train split, minus the speakers reserved for singing),
    sometimes two speakers (dialogue), with a lead-in, gaps and a tail, so every item has
    speech-only-free (music-only) stretches unless the speech fills it;
  * music track: a random segment of a Debian soundtrack or a FluidSynth render, in 30 % of items
    layered with a sung stem (training/singing) at -6..+6 dB against the backing; then random EQ
    (biquad shelves/peaks), mild synthetic reverb and slow gain ramps; optionally (p_bandlimit)
    band-limited to 8 kHz, as in 16 kHz material played at 48 kHz;
  * speech-to-music ratio (SMR) uniform in [-10, +15] dB, defined as in the benchmark:
    10*log10(mean(speech^2) / mean(music^2)) over the speech-active samples;
  * a few music-only and speech-only items; random overall level, peak kept below 0.99.

`python training/dataset.py --selfcheck` verifies SMRs, mixture = speech + music, determinism and
levels on real data; `python training/dataset.py --build-val` writes the fixed validation set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, lfilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CORPUS, DATA, MUSIC, SHARED, SPEECH_EXTRA, read_tsv, replacing, resample, singing_speakers,  # noqa: E402
                    speech_manifest, stable_hash)

EPS = 1e-12
VAL_FRACTION_MUSIC = 0.08  # tracks (and sung clips) held out for validation, by hash of the path


# ---------------------------------------------------------------- pools of audio

def cache_signature(files: list[Path]) -> str:
    """What a pool's cache is keyed on: each file's name and size, and its modification time, so
    that a re-rendered file gives a new cache; for files under ../shared (the speech corpus), its
    content instead, because the shared folder is copied afresh for each session with new times,
    and a new 1.6 GB cache per session filled the disk."""
    shared = SHARED.resolve()
    out = []
    for f in map(Path, files):
        st = f.stat()
        if f.resolve().is_relative_to(shared):
            out.append(f"{f}|{st.st_size}|{hashlib.sha1(f.read_bytes()).hexdigest()}")
        else:
            out.append(f"{f}|{st.st_size}|{st.st_mtime_ns}")
    return "\n".join(out)


class Pool:
    """Many mono clips concatenated into one int16 array (memory-mapped when cached on disk)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, meta: list[dict], sr: int,
                 path: Path | None = None):
        self.data, self.offsets, self.lengths, self.meta, self.sr = data, offsets, lengths, meta, sr
        self.path = path  # int16 cache file behind a memmap: reopened, not copied, when pickled
        self.scale = 1.0 / 32768.0 if data.dtype == np.int16 else 1.0

    def __getstate__(self):  # DataLoader workers: send the file name, not gigabytes of samples
        st = self.__dict__.copy()
        if self.path is not None:
            st["data"] = None
        return st

    def __setstate__(self, st):
        self.__dict__.update(st)
        if self.path is not None:
            self.data = np.memmap(self.path, dtype=np.int16, mode="r")

    def __len__(self):
        return len(self.meta)

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / self.sr

    def clip(self, i: int, start: int = 0, n: int | None = None) -> np.ndarray:
        n = int(self.lengths[i]) - start if n is None else n
        o = int(self.offsets[i]) + start
        return self.data[o:o + n].astype(np.float32) * self.scale

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], sr: int, meta: list[dict] | None = None) -> "Pool":
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        data = np.concatenate(arrays).astype(np.float32) if arrays else np.zeros(0, np.float32)
        return cls(data, offsets, lengths, meta or [{} for _ in arrays], sr)

    @classmethod
    def from_files(cls, files: list[Path], meta: list[dict], sr: int, name: str) -> "Pool":
        """Decode every file once (resampled to sr) into data/cache/<name>-<hash>.int16."""
        key = hashlib.sha1((cache_signature(files) + f"|{sr}").encode()).hexdigest()[:10]
        cache = DATA / "cache"
        raw, idx = cache / f"{name}-{key}.int16", cache / f"{name}-{key}.npz"
        if not idx.exists():
            # Runs started side by side may build the same cache at once: each writes its own
            # temporary files and renames them into place (same content, so either may win), the
            # index last, as its presence says the samples are complete.
            cache.mkdir(parents=True, exist_ok=True)
            lengths = []
            t0 = time.time()
            with replacing(raw) as out:
                for f in files:
                    x, fsr = sf.read(str(f), dtype="float32", always_2d=True)
                    x = resample(x.mean(axis=1), fsr, sr)
                    out.write((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())
                    lengths.append(len(x))
            lengths = np.array(lengths, dtype=np.int64)
            with replacing(idx) as out:
                np.savez(out, lengths=lengths)
            print(f"cached {name}: {len(files)} files, {lengths.sum() / sr / 3600:.2f} h "
                  f"in {time.time() - t0:.0f} s", file=sys.stderr)
        lengths = np.load(idx)["lengths"]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        data = np.memmap(raw, dtype=np.int16, mode="r")
        return cls(data, offsets, lengths, meta, sr, path=raw)


def is_val_music(path: str) -> bool:
    return stable_hash("valmusic:" + path) % 1000 < VAL_FRACTION_MUSIC * 1000


SUNG_SETS = {"world": "corpus:", "psola": "psola:", "syllabic": "syllabic:"}  # sung stem families by catalog package prefix
# music sets by catalog kind: the base soundtracks and MIDI renders, and music/fetch.py --extra
MUSIC_SETS = {"base": ("debian", "midi"), "extra": ("debian-extra",)}


def sung_split_key(row: dict) -> str:
    """The name that puts a sung stem in the train or the val split: a PSOLA render (held or
    syllabic) goes where the WORLD stem of the same utterance goes, so no utterance is sung on
    both sides."""
    for family in ("psola", "syllabic"):
        if row["package"].startswith(SUNG_SETS[family]):
            return re.sub(r"_r\d+\.flac$", ".flac", row["file16"].replace(f"{family}/", "sung/", 1))
    return row["file16"]


def parse_sets(text: str) -> tuple[str, ...]:
    """'world, psola' -> ('world', 'psola'): a comma-separated list of SUNG_SETS or MUSIC_SETS."""
    return tuple(k.strip() for k in text.split(",") if k.strip())


def music_rows(cat: list[dict], split: str, music_sets: tuple[str, ...]) -> list[dict]:
    """The catalogue's background-music rows of the given MUSIC_SETS in split 'train' or 'val'.
    The held-out tracks are chosen on the 16 kHz name, so they are the same at both rates."""
    kinds = {k for m in music_sets for k in MUSIC_SETS[m]}
    return [r for r in cat if r["kind"] in kinds and is_val_music(r["file16"]) == (split == "val")]


def extra_speech_rows(sources: tuple[str, ...]) -> list[dict]:
    """The rows of data/speech_extra/MANIFEST.tsv (speech/debian.py) from the given sources, with
    "file" set to the clip's full path."""
    man = SPEECH_EXTRA / "MANIFEST.tsv"
    if not man.exists():
        raise FileNotFoundError(f"{man} is missing: run `training/.venv/bin/python training/speech/debian.py` first")
    rows = [r for r in read_tsv(man) if r["source"] in sources]
    missing = sorted(set(sources) - {r["source"] for r in rows})
    if missing:
        raise ValueError(f"extra speech: no clips from {', '.join(missing)} in {man} "
                         f"(rerun speech/debian.py --sources {','.join(missing)})")
    for r in rows:
        r["duration_s"] = float(r["duration_s"])
        r["file"] = SPEECH_EXTRA / r["path"]
    return rows


def load_pools(split: str, sr: int = 16000, sung_sets: tuple[str, ...] = ("world",),
               music_sets: tuple[str, ...] = ("base",),
               extra_speech: tuple[str, ...] = ()) -> tuple[Pool, Pool, Pool | None]:
    """(speech, music, sung) pools for split 'train' or 'val'; sung_sets picks the sung stem
    families (SUNG_SETS: 'world' from singing/synth.py, 'psola' from singing/psola.py), music_sets
    the background music (MUSIC_SETS: 'base', 'extra' from music/fetch.py --extra), extra_speech
    more training speech (speech/debian.py's SOURCES: 'klettres', 'ktuberling', 'fillets',
    'asterisk'; train only)."""
    rows = speech_manifest()
    reserved = singing_speakers(rows)
    if split == "train":
        sp = [r for r in rows if r["split"] == "train" and f"{r['source']}/{r['speaker']}" not in reserved]
    else:
        if extra_speech:
            raise ValueError("extra speech is for training only: the validation speech stays the corpus's")
        sp = [r for r in rows if r["split"] == "val"]
    files = [CORPUS / r["path"] for r in sp]
    if extra_speech:
        extra = extra_speech_rows(extra_speech)
        sp, files = sp + extra, files + [r["file"] for r in extra]
    speech = Pool.from_files(files, sp, sr, f"speech-{split}")
    cat = read_tsv(MUSIC / "catalog.tsv")
    col = "file16" if sr == 16000 else "file48"
    want_val = split == "val"
    back = music_rows(cat, split, music_sets)
    prefixes = tuple(SUNG_SETS[k] for k in sung_sets)
    sung = [r for r in cat if r["kind"] == "sung" and r["package"].startswith(prefixes)
            and is_val_music(sung_split_key(r)) == want_val]
    music = Pool.from_files([MUSIC / r[col] for r in back], back, sr, f"music-{split}")
    sung_pool = Pool.from_files([MUSIC / r[col] for r in sung], sung, sr, f"sung-{split}") if sung else None
    return speech, music, sung_pool


# ---------------------------------------------------------------- augmentation

def biquad(kind: str, f0: float, gain_db: float, q: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking / shelving filters."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / sr
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        sa = 2 * np.sqrt(a) * alpha
        if kind == "low":
            b = [a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa)]
            den = [(a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa]
        else:
            b = [a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa)]
            den = [(a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa]
    b, den = np.array(b), np.array(den)
    return b / den[0], den / den[0]


def random_eq(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    nyq = sr / 2
    for _ in range(rng.integers(1, 4)):
        kind = rng.choice(["low", "high", "peak"])
        if kind == "low":
            f0 = rng.uniform(80, 400)
        elif kind == "high":
            f0 = rng.uniform(2000, min(8000, 0.8 * nyq))
        else:
            f0 = float(np.exp(rng.uniform(np.log(150), np.log(min(6000, 0.7 * nyq)))))
        b, a = biquad(kind, f0, rng.uniform(-9, 9), rng.uniform(0.5, 2.0) if kind == "peak" else 0.707, sr)
        x = lfilter(b, a, x)
    return x.astype(np.float32)


def random_reverb(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Mild room: exponentially decaying noise RIR (RT60 0.15-0.7 s), direct path kept."""
    rt60 = rng.uniform(0.15, 0.7)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    rir = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # -60 dB at rt60
    rir[: int(0.003 * sr)] = 0
    rir /= np.sqrt(np.sum(rir ** 2)) + EPS
    wet = fftconvolve(x, rir)[: len(x)]
    mix = 10 ** (rng.uniform(-14, -4) / 20)  # wet level against the dry signal
    return (x + mix * wet).astype(np.float32)


def gain_ramp(n: int, rng: np.random.Generator, sr: int, depth_db: float = 8.0) -> np.ndarray:
    """Slow level changes: piecewise-linear in dB over a few knots (fades, swells)."""
    k = int(rng.integers(2, 5))
    pos = np.sort(np.concatenate([[0, n - 1], rng.uniform(0, n - 1, k - 2)]))
    lev = rng.uniform(-depth_db, depth_db / 2, k)
    return (10 ** (np.interp(np.arange(n), pos, lev) / 20)).astype(np.float32)


def music_gate(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Silence the music over 15-50 % of the item at its start or end, with a 50-400 ms fade."""
    g = np.ones(n, np.float32)
    cut = int(rng.uniform(0.15, 0.5) * n)
    fade = max(1, int(rng.uniform(0.05, 0.4) * sr))
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    if rng.random() < 0.5:  # music enters late
        g[:cut] = 0
        g[cut:cut + fade] = ramp[: len(g[cut:cut + fade])]
    else:  # music stops early
        g[n - cut:] = 0
        a = max(0, n - cut - fade)
        g[a:n - cut] = ramp[::-1][-(n - cut - a):] if n - cut - a else g[a:n - cut]
    return g


# ---------------------------------------------------------------- the mixer

@dataclass
class MixConfig:
    sr: int = 16000
    seconds: float = 4.0
    smr_db: tuple[float, float] = (-10.0, 15.0)
    smr_grid: tuple[float, ...] | None = None  # if set, SMRs are drawn from these values (validation)
    p_music_only: float = 0.07
    p_speech_only: float = 0.05
    p_dialogue: float = 0.3          # second speaker in the item
    p_sung: float = 0.3              # layer a sung stem into the music
    sung_db: tuple[float, float] = (-6.0, 6.0)  # sung stem against the backing track
    p_sung_alone: float = 0.15       # of the sung items: the sung stem with no backing (a cappella)
    p_eq: float = 0.6
    p_reverb: float = 0.3
    p_ramp: float = 0.4
    p_music_gap: float = 0.15        # music starts late / stops early: speech-only stretches
    p_bandlimit: float = 0.0         # at sr > 16 kHz: music band-limited to 8 kHz like 16 kHz material
    level_dbfs: tuple[float, float] = (-35.0, -15.0)  # mixture RMS
    lead_in_s: tuple[float, float] = (0.0, 1.5)
    gap_s: tuple[float, float] = (0.2, 1.5)
    speech_gain_db: tuple[float, float] = (-4.0, 4.0)  # per-segment level differences
    p_speed: float = 0.0             # speech segments played faster or slower (pitch, formants and tempo
    speed: tuple[float, float] = (0.9, 1.1)  # together, as in ASR speed perturbation): new voices
    source_share: dict[str, float] | None = None  # {corpus source: its share of the speaker draws};
    # the other sources share the rest in their usual proportions (None: sqrt-duration weights only)
    min_music_dbfs: float = -50.0    # reject near-silent music segments (RMS)
    max_music_drop_db: float = 15.0  # reject music whose level under the speech is this far below its mean


@dataclass
class Item:
    mixture: np.ndarray
    speech: np.ndarray
    music: np.ndarray
    active: np.ndarray               # bool, speech-active samples
    info: dict = field(default_factory=dict)


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + EPS)


def reweight_sources(p: np.ndarray, sources: list[str], share: dict[str, float]) -> np.ndarray:
    """Speaker draw probabilities p rescaled so that each source named in `share` gets that total
    share; the other sources split the rest in proportion to their current totals."""
    src = np.array(sources)
    unknown = sorted(set(share) - set(sources))
    if unknown:
        raise ValueError(f"source_share: no speakers from {', '.join(unknown)} (sources: {', '.join(sorted(set(sources)))})")
    fixed = sum(share.values())
    rest = ~np.isin(src, list(share))
    if any(v < 0 for v in share.values()) or fixed > 1 + 1e-9 or (fixed < 1 - 1e-9 and not rest.any()):
        raise ValueError(f"source_share {share}: shares must be >= 0 and sum to at most 1 (exactly 1 if every source is named)")
    out = np.zeros_like(p, dtype=np.float64)
    for name, v in share.items():
        m = src == name
        out[m] = p[m] / p[m].sum() * v
    if rest.any():
        out[rest] = p[rest] / p[rest].sum() * (1 - fixed)
    return out / out.sum()


class Mixer:
    def __init__(self, speech: Pool, music: Pool, sung: Pool | None, cfg: MixConfig = MixConfig(), seed: int = 0):
        assert speech.sr == music.sr == cfg.sr and (sung is None or sung.sr == cfg.sr)
        self.speech, self.music, self.sung, self.cfg, self.seed = speech, music, sung, cfg, seed
        self.n = int(round(cfg.seconds * cfg.sr))
        # speakers -> clip indices, for dialogue with a different speaker
        self.by_speaker: dict[str, list[int]] = {}
        for i, m in enumerate(speech.meta):
            self.by_speaker.setdefault(f"{m.get('source', '')}/{m.get('speaker', i)}", []).append(i)
        self.speakers = sorted(self.by_speaker)
        # speakers drawn with weight sqrt(their total duration): balanced, yet the two unlabelled
        # crowd-sourced sets (one pseudo-speaker each, ~1 h) are not starved
        w = np.array([np.sqrt(sum(speech.lengths[i] for i in self.by_speaker[k])) for k in self.speakers], float)
        self.speaker_p = w / w.sum()
        if cfg.source_share:
            self.speaker_p = reweight_sources(self.speaker_p, [k.split("/")[0] for k in self.speakers],
                                              cfg.source_share)
        # sample music tracks proportionally to sqrt(duration): long tracks do not dominate
        w = np.sqrt(music.lengths.astype(np.float64))
        self.music_p = w / w.sum()

    # -- pieces
    def _speech_track(self, rng, n):
        cfg, sr = self.cfg, self.cfg.sr
        s = np.zeros(n, np.float32)
        active = np.zeros(n, bool)
        segs = []
        spk = [self.speakers[rng.choice(len(self.speakers), p=self.speaker_p)]]
        if rng.random() < cfg.p_dialogue and len(self.speakers) > 1:
            other = spk[0]
            while other == spk[0]:
                other = self.speakers[rng.choice(len(self.speakers), p=self.speaker_p)]
            spk.append(other)
        pos = int(rng.uniform(*cfg.lead_in_s) * sr) if rng.random() < 0.7 else 0
        turn = 0
        while pos < n - int(0.3 * sr):
            who = spk[turn % len(spk)]
            clips = self.by_speaker[who]
            i = clips[rng.integers(len(clips))]
            L = int(self.speech.lengths[i])
            room = n - pos
            take = min(L, room, int(rng.uniform(1.0, 6.0) * sr))
            start = int(rng.integers(0, L - take + 1))
            if cfg.p_speed > 0 and rng.random() < cfg.p_speed:
                x, start = self._speed_clip(rng, i, take)
            else:
                x = self.speech.clip(i, start, take)
            x *= 10 ** (rng.uniform(*cfg.speech_gain_db) / 20) / (np.sqrt(np.mean(x ** 2)) + 1e-4) * 0.05
            s[pos:pos + take] = x
            active[pos:pos + take] = True
            segs.append(dict(speaker=who, clip=self.speech.meta[i].get("path", str(i)),
                             clip_start_s=start / sr, start_s=pos / sr, end_s=(pos + take) / sr))
            pos += take + int(rng.uniform(*cfg.gap_s) * sr)
            turn += 1
            if rng.random() < 0.25:  # sometimes leave a long music-only tail
                break
        return s, active, segs

    def _speed_clip(self, rng, i: int, take: int) -> tuple[np.ndarray, int]:
        """`take` samples of clip i played at a random speed f (f > 1: faster and higher): the
        clip's round(take * f) samples resampled by 1/f, f on a grid of 1/50 so the resampler stays
        short. A clip too short for f > 1 is read at the speed it allows."""
        lo, hi = self.cfg.speed
        L = int(self.speech.lengths[i])
        k = int(rng.integers(int(np.ceil(lo * 50)), int(np.floor(hi * 50)) + 1))
        k = max(1, min(k, (50 * L) // take))  # round(take * k / 50) <= L
        n_src = int(round(take * k / 50))
        start = int(rng.integers(0, L - n_src + 1))
        x = resample(self.speech.clip(i, start, n_src), k, 50)  # k samples become 50
        if len(x) < take:
            x = np.pad(x, (0, take - len(x)))
        return x[:take], start

    def _music_segment(self, rng, pool, p=None):
        n = self.n
        for _ in range(8):
            j = int(rng.choice(len(pool), p=p))
            L = int(pool.lengths[j])
            if L >= n:
                start = int(rng.integers(0, L - n + 1))
                x = pool.clip(j, start, n)
            else:  # short clip: loop it
                x = np.resize(pool.clip(j), n).astype(np.float32)
                start = 0
            if rms_db(x) > self.cfg.min_music_dbfs:
                break
        return x, j, start

    def _music_track(self, rng):
        cfg, sr = self.cfg, self.cfg.sr
        info = {}
        use_sung = self.sung is not None and rng.random() < cfg.p_sung
        if use_sung and rng.random() < cfg.p_sung_alone:
            m = np.zeros(self.n, np.float32)
        else:
            m, j, st = self._music_segment(rng, self.music, self.music_p)
            meta = self.music.meta[j]
            info["music"] = dict(file=meta.get("file16", str(j)), kind=meta.get("kind", ""),
                                 package=meta.get("package", ""), start_s=st / sr)
        if use_sung:
            v, j, st = self._music_segment(rng, self.sung)
            if rms_db(m) > -100:
                rel = rng.uniform(*cfg.sung_db)
                v *= 10 ** ((rms_db(m) + rel - rms_db(v)) / 20)  # rms_db is RMS in dB
            m = m + v
            info["sung"] = dict(file=self.sung.meta[j].get("file16", str(j)), start_s=st / sr)
        if rng.random() < cfg.p_eq:
            m = random_eq(m, rng, sr)
            info["eq"] = True
        if rng.random() < cfg.p_reverb:
            m = random_reverb(m, rng, sr)
            info["reverb"] = True
        if rng.random() < cfg.p_ramp:
            m = m * gain_ramp(self.n, rng, sr)
            info["ramp"] = True
        info["vocals"] = use_sung
        return m.astype(np.float32), info

    # -- an item
    def item(self, epoch: int, index: int) -> Item:
        cfg, n = self.cfg, self.n
        rng = np.random.default_rng([self.seed, epoch, index])
        u = rng.random()
        mode = "music_only" if u < cfg.p_music_only else ("speech_only" if u < cfg.p_music_only + cfg.p_speech_only else "mix")
        if mode == "music_only":
            s, active, segs = np.zeros(n, np.float32), np.zeros(n, bool), []
        else:
            s, active, segs = self._speech_track(rng, n)
        if mode == "speech_only":
            m, minfo = np.zeros(n, np.float32), {}
        else:
            for _ in range(6):  # avoid music that is near-silent under the speech (tails, breaks)
                m, minfo = self._music_track(rng)
                if mode == "music_only" or np.mean(m[active] ** 2) > 10 ** (-cfg.max_music_drop_db / 10) * np.mean(m ** 2):
                    break
        smr = float(rng.uniform(*cfg.smr_db)) if cfg.smr_grid is None else float(rng.choice(cfg.smr_grid))
        if mode == "mix" and rng.random() < cfg.p_music_gap:
            gated = m * music_gate(n, rng, cfg.sr)
            if np.mean(gated[active] ** 2) > 0.05 * np.mean(m[active] ** 2):  # still music under the speech
                m = gated
                minfo["music_gap"] = True
        if mode != "speech_only" and cfg.p_bandlimit > 0 and cfg.sr > 16000 and rng.random() < cfg.p_bandlimit:
            # a 16 kHz source played at the model's rate (the speech corpus is 16 kHz already)
            m = resample(resample(m, cfg.sr, 16000), 16000, cfg.sr)[:n]
            minfo["bandlimited"] = True
        if mode == "mix":
            ps = np.mean(s[active].astype(np.float64) ** 2)
            pm = np.mean(m[active].astype(np.float64) ** 2)
            m = (m * np.sqrt(ps / (pm * 10 ** (smr / 10) + EPS))).astype(np.float32)
        # overall level, then keep the peaks of mixture and stems below 0.99 (one gain: the SMR is kept)
        x = s + m
        g = 10 ** ((rng.uniform(*cfg.level_dbfs) - rms_db(x)) / 20)
        peak = max(float(np.max(np.abs(x))), float(np.max(np.abs(s))), float(np.max(np.abs(m)))) * g  # stems too
        if peak > 0.99:
            g *= 0.99 / peak
        s, m = (s * g).astype(np.float32), (m * g).astype(np.float32)
        info = dict(epoch=epoch, index=index, mode=mode, smr_target_db=smr if mode == "mix" else None,
                    speech_segments=segs, **minfo)
        return Item(s + m, s, m, active, info)

    def __call__(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        it = self.item(epoch, index)
        return it.mixture, it.speech


def smr_active_db(speech: np.ndarray, music: np.ndarray, active: np.ndarray) -> float:
    return 10 * np.log10(np.mean(speech[active].astype(np.float64) ** 2) /
                         (np.mean(music[active].astype(np.float64) ** 2) + EPS))


def make_torch_dataset(mixer: Mixer, items_per_epoch: int):
    """Map-style torch Dataset; call .set_epoch(e) before each epoch (torch imported lazily).

    With DataLoader(num_workers > 0) keep persistent_workers=False (the default), so that the
    workers are re-created with the new epoch; the memory-mapped pools are reopened, not copied.
    """
    import torch

    class MixDataset(torch.utils.data.Dataset):
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, e):
            self.epoch = e

        def __len__(self):
            return items_per_epoch

        def __getitem__(self, i):
            mix, sp = mixer(self.epoch, i)
            return torch.from_numpy(mix), torch.from_numpy(sp)

    return MixDataset()


# ---------------------------------------------------------------- validation set

def build_val(out: Path, n_items: int = 120, seconds: float = 8.0, seed: int = 20261121,
              music_sets: tuple[str, ...] = ("base",), without_sources: tuple[str, ...] = ()) -> None:
    """Fixed validation set: val-split speakers (none of the corpus sources in without_sources),
    held-out music tracks (of music_sets) and sung clips; 16 kHz PCM16 WAVs laid out like
    ../shared/bench/dev (mixture = speech + music exactly in int16)."""
    speech, music, sung = load_pools("val", music_sets=music_sets)
    # SMRs on a grid so score.py can report per-SMR buckets, as on the benchmark
    cfg = MixConfig(seconds=seconds, p_music_only=0.0, p_speech_only=0.0, lead_in_s=(0.3, 2.0),
                    smr_grid=(-10.0, -5.0, 0.0, 5.0, 10.0, 15.0),
                    source_share={s: 0.0 for s in without_sources} or None)
    mixer = Mixer(speech, music, sung, cfg, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for k in range(n_items):
        it = mixer.item(0, k)
        d = out / f"val_{k:03d}"
        d.mkdir(exist_ok=True)
        s16 = np.round(it.speech * 32767).astype(np.int16)
        m16 = np.round(it.music * 32767).astype(np.int16)
        mix = (s16.astype(np.int32) + m16.astype(np.int32))
        assert np.abs(mix).max() <= 32767
        for name, a in (("speech", s16), ("music", m16), ("mixture", mix.astype(np.int16))):
            sf.write(str(d / f"{name}.wav"), a, 16000, subtype="PCM_16")
        info = it.info
        seg = info["speech_segments"]
        act = np.zeros(len(s16), bool)
        for sg in seg:
            act[int(round(sg["start_s"] * 16000)):int(round(sg["end_s"] * 16000))] = True
        items.append(dict(id=d.name, dir=d.name, duration_s=seconds,
                          smr_target_db=round(info["smr_target_db"], 3),
                          smr_active_db=round(smr_active_db(s16 / 32768, m16 / 32768, act), 3),
                          speakers=sorted({sg["speaker"] for sg in seg}),
                          dialogue=len({sg["speaker"] for sg in seg}) > 1,
                          speech_segments=seg,
                          speech_active_fraction=round(float(act.mean()), 3),
                          music_only_fraction=round(1 - float(act.mean()), 3),
                          music=dict(vocals=bool(info["vocals"]), track=info.get("music"), sung=info.get("sung"),
                                     eq=bool(info.get("eq")), reverb=bool(info.get("reverb")),
                                     ramp=bool(info.get("ramp"))),
                          files_16k=dict(mixture="mixture.wav", speech="speech.wav", music="music.wav")))
    man = dict(set="val", sample_rate=16000, channels=1, format="WAV PCM_16", seed=seed,
               smr_definition="10*log10(mean(speech^2)/mean(music^2)) over speech-active samples (inside speech turns)",
               mixture_equals_speech_plus_music="exactly, in int16 sample values",
               build_script="training/dataset.py --build-val",
               speech="corpus speakers with split=val", music=f"{VAL_FRACTION_MUSIC:.0%} of catalogue tracks and sung clips held out by hash",
               **({} if music_sets == ("base",) else dict(music_sets=list(music_sets))),
               **(dict(without_sources=list(without_sources)) if without_sources else {}),
               items=items)
    (out / "manifest.json").write_text(json.dumps(man, indent=1))
    nv = sum(i["music"]["vocals"] for i in items)
    print(f"validation set: {n_items} items x {seconds} s ({nv} with sung vocals) -> {out}")


# ---------------------------------------------------------------- self-check

def selfcheck(mixer: Mixer, n: int = 300) -> int:
    errors, smr_err, modes, vocals = [], [], {}, 0
    t0 = time.time()
    for i in range(n):
        it = mixer.item(epoch=3, index=i)
        modes[it.info["mode"]] = modes.get(it.info["mode"], 0) + 1
        vocals += bool(it.info.get("vocals"))
        if not np.array_equal(it.mixture, it.speech + it.music):
            errors.append(f"{i}: mixture != speech + music")
        if max(np.max(np.abs(it.mixture)), np.max(np.abs(it.speech)), np.max(np.abs(it.music))) > 0.99 + 1e-6:
            errors.append(f"{i}: peak above 0.99")
        if it.mixture.dtype != np.float32 or len(it.mixture) != mixer.n:
            errors.append(f"{i}: dtype/length")
        if it.info["mode"] == "mix":
            got = smr_active_db(it.speech, it.music, it.active)
            smr_err.append(abs(got - it.info["smr_target_db"]))
            if not (-10 - 1e-3 <= got <= 15 + 1e-3) or smr_err[-1] > 0.01:
                errors.append(f"{i}: SMR {got:.3f} dB, target {it.info['smr_target_db']:.3f}")
            lev = rms_db(it.speech[it.active])
            if not -60 < lev < 0:
                errors.append(f"{i}: speech level {lev:.1f} dBFS")
        elif it.info["mode"] == "music_only" and np.any(it.speech):
            errors.append(f"{i}: speech in a music-only item")
        elif it.info["mode"] == "speech_only" and np.any(it.music):
            errors.append(f"{i}: music in a speech-only item")
    dt = time.time() - t0
    a, b = mixer.item(3, 7), mixer.item(3, 7)
    if not np.array_equal(a.mixture, b.mixture):
        errors.append("same (epoch, index) gave different items")
    if np.array_equal(mixer.item(4, 7).mixture, a.mixture):
        errors.append("epochs 3 and 4 gave the same item")
    print(f"selfcheck: {n} items in {dt:.1f} s ({dt / n * 1000:.0f} ms/item), modes {modes}, "
          f"{vocals} with sung vocals, max |SMR error| {max(smr_err, default=0):.2e} dB")
    for e in errors[:20]:
        print("  FAIL", e)
    print("selfcheck", "FAILED" if errors else "OK")
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selfcheck", action="store_true")
    ap.add_argument("--build-val", action="store_true")
    ap.add_argument("--val-items", type=int, default=120)
    ap.add_argument("--val-music", default="base",
                    help="music sets of --build-val (MUSIC_SETS, comma-separated); not base: writes data/val_<sets>")
    ap.add_argument("--val-without", default="",
                    help="--build-val with no speakers of these corpus sources (comma-separated), e.g. "
                         "speechocean762; with --val-seed and --val-out")
    ap.add_argument("--val-seed", type=int, default=20261121)
    ap.add_argument("--val-out", default=None, help="--build-val's folder (default: data/val[_<music sets>])")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--write-examples", type=int, default=0, help="write N train mixtures to data/examples")
    args = ap.parse_args()
    rc = 0
    if args.selfcheck or args.write_examples:
        mixer = Mixer(*load_pools("train"), MixConfig(), seed=0)
        print(f"train pools: speech {mixer.speech.seconds / 3600:.2f} h ({len(mixer.speakers)} speakers), "
              f"music {mixer.music.seconds / 3600:.2f} h ({len(mixer.music)} tracks), "
              f"sung {0 if mixer.sung is None else mixer.sung.seconds / 3600:.2f} h")
        if args.selfcheck:
            rc |= selfcheck(mixer, args.n)
        for k in range(args.write_examples):
            it = mixer.item(0, k)
            d = DATA / "examples"
            d.mkdir(parents=True, exist_ok=True)
            sf.write(str(d / f"ex{k:02d}_mix.wav"), it.mixture, 16000)
            sf.write(str(d / f"ex{k:02d}_speech.wav"), it.speech, 16000)
    if args.build_val:
        sets = parse_sets(args.val_music)
        out = Path(args.val_out) if args.val_out else DATA / ("val" if sets == ("base",) else "val_" + "_".join(sets))
        build_val(out, args.val_items, seed=args.val_seed, music_sets=sets,
                  without_sources=tuple(s for s in args.val_without.split(",") if s))
    sys.exit(rc)


if __name__ == "__main__":
    main()
