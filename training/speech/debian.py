"""More recorded speech from Debian: spoken words, prompts and game dialogue.

The corpus in ../shared/corpus/speech has about 400 speakers and 4.6 h for training. Debian has
more recorded speech, each source with its own trade-off between voices and hours:
  klettres    KLettres' letters and syllables, read by native speakers of 20 language sets
              (klettres-data, GPL-2+): many voices, 1-2 s clips, 38 min
  ktuberling  KTuberling's stamp names in 15 language sets (ktuberling-data, GPL-2+): 20 min
  fillets     Fish Fillets NG's voiced dialogue in Czech and Dutch (fillets-ng-data-cs/-nl,
              GPL-2): whole sentences, mostly the two fish of each language, 132 min
  asterisk    Asterisk's telephone prompts in G.722 wideband (16 kHz), one professional voice
              each in English, Spanish, French, Italian, Russian (asterisk-core-sounds-*-g722,
              CC-BY-SA-3.0): 81 min
None of these is in the benchmarks (LibriSpeech readers).

Stages (each skips work already done, so it can be re-run):
  1. apt-get download, dpkg-deb -x (as music/fetch.py, into data/debs and data/unpacked)
  2. every clip: downmix, drop clips recorded below 16 kHz (a speech target without its top
     band would teach the model to remove it), resample to 16 kHz, trim silence at both ends
     (0.1 s margins, as the corpus), peak -3 dBFS, drop clips shorter than MIN_SECONDS or with a
     noise floor above MAX_FLOOR_DB; the same recording twice is kept once
  3. data/speech_extra/<source>/<speaker>/<name>.flac and data/speech_extra/MANIFEST.tsv, in the
     corpus manifest's columns (source, speaker, path, duration_s, split) plus package, version,
     origin and licence. Speaker: the language set (KDE, one reader each as far as the credits
     say), language and character (Fish Fillets), the voice (Asterisk).

`finetune/train.py --extra-speech klettres,ktuberling,...` adds them to the training speech.
Run under `nice -n 19` (prepare.sh does).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import SPEECH_EXTRA, decode, resample, to_mono, write_flac, write_tsv  # noqa: E402
from music.fetch import deb_version, download, licence_for, log, unpack  # noqa: E402

OUT = SPEECH_EXTRA
SR = 16000


def kde_speaker(parts: tuple[str, ...]) -> str | None:
    """KLettres / KTuberling: <lang>/.../<clip>; one reader per language set."""
    return parts[0] if len(parts) > 1 else None


def fillets_speaker(parts: tuple[str, ...]) -> str | None:
    """Fish Fillets: <level>/<lang>/<level>-<character>-<line>.ogg in the voice packages; the
    character is the second part of the name (m: the small fish, v: the big one)."""
    if len(parts) != 3 or parts[1] not in ("cs", "nl"):
        return None
    bits = parts[2].split("-")
    return f"{parts[1]}-{bits[1] if len(bits) > 2 and bits[1].isalpha() else 'other'}"


def asterisk_speaker(parts: tuple[str, ...]) -> str | None:
    """Asterisk: <voice>/[<group>/]<prompt>.g722; the silence group holds no speech."""
    return parts[0] if len(parts) > 1 and "silence" not in parts[1:-1] else None


# source -> (packages, folder inside the installed tree, speaker of a path below it or None: skip)
SOURCES = {
    "klettres": (["klettres-data"], "usr/share/klettres", kde_speaker),
    "ktuberling": (["ktuberling-data"], "usr/share/ktuberling/sounds", kde_speaker),
    "fillets": (["fillets-ng-data-cs", "fillets-ng-data-nl"], "usr/share/games/fillets-ng/sound", fillets_speaker),
    "asterisk": ([f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "es", "fr", "it", "ru")],
                 "usr/share/asterisk/sounds", asterisk_speaker),
}
# licences of packages whose copyright file is not machine-readable (DEP-5)
LICENCE = {"fillets": "GPL-2"}
AUDIO_EXT = {".ogg", ".oga", ".wav", ".opus", ".flac", ".g722"}
MIN_SECONDS = 0.4
FRAME = 320  # 20 ms at SR: the unit of the level measure, the trim and the noise floor
MAX_FLOOR_DB = -30.0  # 10th percentile of 20 ms frame levels against the loudest frame; the corpus: median -40, 90 % below -29
FIELDS = ["source", "speaker", "path", "duration_s", "split", "package", "version", "origin", "licence"]


def frame_levels_db(x: np.ndarray) -> np.ndarray:
    """RMS level of each FRAME-sample frame in dB (the last partial frame left out)."""
    k = len(x) // FRAME
    f = x[:k * FRAME].reshape(k, FRAME).astype(np.float64)
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
    a = max(loud[0] * FRAME - margin, 0)
    b = min((loud[-1] + 1) * FRAME + margin, len(y))
    y = y[a:b]
    if len(y) < MIN_SECONDS * SR:
        return None, "too short"
    floor = np.percentile(lv, 10) - lv.max()
    if floor > MAX_FLOOR_DB:  # an all-zero clip too: its floor is its loudest frame
        return None, f"noise floor {floor:.0f} dB"
    return (y * (10 ** (-3 / 20) / np.max(np.abs(y)))).astype(np.float32), ""


def process(source: str) -> tuple[list[dict], Counter]:
    """Clean every clip of one source. The same recording twice (Serbian's four scripts share
    KTuberling's) is kept once, under the first name."""
    pkgs, base, speaker_of = SOURCES[source]
    rows, dropped, seen = [], Counter(), set()
    for pkg in pkgs:
        root = unpack(pkg)
        version = deb_version(pkg)
        top = root / base
        for f in sorted(top.rglob("*")):
            if f.suffix.lower() not in AUDIO_EXT or not f.is_file():
                continue
            parts = f.relative_to(top).parts
            speaker = speaker_of(parts)
            if speaker is None:
                continue
            digest = hashlib.sha1(f.read_bytes()).hexdigest()
            if digest in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(digest)
            rel = f.relative_to(root).as_posix()
            name = "_".join(Path(*parts[1:]).with_suffix("").parts)
            dst = OUT / source / speaker / f"{name}.flac"
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
            rows.append(dict(source=source, speaker=speaker, path=dst.relative_to(OUT).as_posix(),
                             duration_s=round(sf.info(str(dst)).duration, 3), split="train",
                             package=pkg, version=version, origin=rel, licence=LICENCE.get(source) or licence_for(pkg, root, rel)))
    return rows, dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, from: " + ", ".join(SOURCES))
    args = ap.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    bad = sorted(set(sources) - set(SOURCES))
    if bad:
        raise SystemExit(f"--sources: unknown {', '.join(bad)} (known: {', '.join(SOURCES)})")
    download([p for s in sources for p in SOURCES[s][0]])
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
