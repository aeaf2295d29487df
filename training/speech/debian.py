"""More recorded speech from Debian: the spoken words and letters of two KDE learning programs.

The corpus in ../shared/corpus/speech has about 400 speakers and 4.6 h for training. KLettres
(letters and syllables read aloud) and KTuberling (names of the stamps) carry recordings by
native speakers of 35 language sets, 1-2 s each, GPL-2+. They are short, so they add voices and
languages rather than hours: 58 min after cleaning (the corpus's training speech is 4.6 h).

Stages (each skips work already done, so it can be re-run):
  1. apt-get download, dpkg-deb -x (as music/fetch.py, into data/debs and data/unpacked)
  2. every clip: downmix, drop clips recorded below 16 kHz (a speech target without its top
     band would teach the model to remove it), resample to 16 kHz, trim silence at both ends
     (0.1 s margins, as the corpus), peak -3 dBFS, drop clips shorter than MIN_SECONDS or with a
     noise floor above MAX_FLOOR_DB
  3. data/speech_extra/<source>/<lang>/<name>.flac and data/speech_extra/MANIFEST.tsv, in the
     corpus manifest's columns (source, speaker, path, duration_s, split) plus package, version,
     origin and licence. Speaker is the language set: one reader each as far as the credits say.

`finetune/train.py --extra-speech klettres,ktuberling` adds them to the training speech.
Run under `nice -n 19` (prepare.sh does).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import SPEECH_EXTRA, decode, resample, to_mono, write_flac, write_tsv  # noqa: E402
from music.fetch import deb_version, download, licence_for, unpack  # noqa: E402

OUT = SPEECH_EXTRA
SR = 16000
# source -> (package, folder of the language sets inside the installed tree)
SOURCES = {
    "klettres": ("klettres-data", "usr/share/klettres"),
    "ktuberling": ("ktuberling-data", "usr/share/ktuberling/sounds"),
}
AUDIO_EXT = {".ogg", ".oga", ".wav", ".opus", ".flac"}
MIN_SECONDS = 0.4
MAX_FLOOR_DB = -30.0  # 10th percentile of 20 ms frame levels against the loudest frame; the corpus: median -40, 90 % below -29
FIELDS = ["source", "speaker", "path", "duration_s", "split", "package", "version", "origin", "licence"]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def frame_levels_db(x: np.ndarray, n: int = 320) -> np.ndarray:
    """RMS level of each n-sample frame in dB (the last partial frame left out)."""
    k = len(x) // n
    f = x[:k * n].reshape(k, n).astype(np.float64)
    return 10 * np.log10(np.mean(f ** 2, axis=1) + 1e-12)


def clean_clip(x: np.ndarray, sr: int) -> tuple[np.ndarray | None, str]:
    """A mono clip at SR, trimmed and peak-normalised, or None with the reason it was dropped."""
    if sr < SR:
        return None, f"recorded at {sr} Hz"
    y = resample(x, sr, SR)
    lv = frame_levels_db(y)
    if len(lv) < 2:
        return None, "too short"
    loud = np.flatnonzero(lv > lv.max() - 40)
    margin = int(0.1 * SR)
    a = max(loud[0] * 320 - margin, 0)
    b = min((loud[-1] + 1) * 320 + margin, len(y))
    y = y[a:b]
    if len(y) < MIN_SECONDS * SR:
        return None, "too short"
    floor = np.percentile(lv, 10) - lv.max()
    if floor > MAX_FLOOR_DB:
        return None, f"noise floor {floor:.0f} dB"
    peak = np.max(np.abs(y))
    if peak <= 0:
        return None, "silent"
    return (y * (10 ** (-3 / 20) / peak)).astype(np.float32), ""


def process(source: str) -> tuple[list[dict], Counter]:
    """Clean every clip of one source; the same recording under two language names (Serbian's
    four scripts share theirs) is kept once, under the first name."""
    pkg, base = SOURCES[source]
    root = unpack(pkg)
    version = deb_version(pkg)
    rows, dropped, seen = [], Counter(), set()
    for lang_dir in sorted(p for p in (root / base).iterdir() if p.is_dir()):
        for f in sorted(lang_dir.rglob("*")):
            if f.suffix.lower() not in AUDIO_EXT or not f.is_file():
                continue
            digest = hashlib.sha1(f.read_bytes()).hexdigest()
            if digest in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(digest)
            rel = f.relative_to(root).as_posix()
            name = "_".join(f.relative_to(lang_dir).with_suffix("").parts)
            dst = OUT / source / lang_dir.name / f"{name}.flac"
            if not dst.exists():
                try:
                    x, sr = decode(f)
                except Exception as e:  # a file no decoder reads: count it, go on
                    dropped[f"unreadable ({type(e).__name__})"] += 1
                    continue
                y, why = clean_clip(to_mono(x), sr)
                if y is None:
                    dropped[why.split(" ")[0] if why.startswith(("recorded", "noise")) else why] += 1
                    continue
                write_flac(dst, y, SR)
            rows.append(dict(source=source, speaker=lang_dir.name, path=dst.relative_to(OUT).as_posix(),
                             duration_s=round(sf.info(str(dst)).duration, 3), split="train",
                             package=pkg, version=version, origin=rel, licence=licence_for(pkg, root, rel)))
    return rows, dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, from: " + ", ".join(SOURCES))
    args = ap.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    bad = sorted(set(sources) - set(SOURCES))
    if bad:
        raise SystemExit(f"--sources: unknown {', '.join(bad)} (known: {', '.join(SOURCES)})")
    download([SOURCES[s][0] for s in sources])
    rows = []
    for s in sources:
        r, dropped = process(s)
        hours = sum(x["duration_s"] for x in r) / 3600
        log(f"{s}: {len(r)} clips, {hours * 60:.1f} min, {len({x['speaker'] for x in r})} speakers; "
            f"dropped: {dict(dropped) or 'none'}")
        rows += r
    write_tsv(OUT / "MANIFEST.tsv", rows, FIELDS)
    log(f"wrote {OUT / 'MANIFEST.tsv'}: {len(rows)} clips")


if __name__ == "__main__":
    main()
