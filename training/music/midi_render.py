"""FluidSynth renders of MIDI music for the MUSIC side of the mixtures.

MIDI sources
  * Debian packages: openttd-openmsx (GPL-2 MIDI soundtrack) and freedoom (BSD-3-clause; the
    music lumps in its WADs that are standard MIDI files are extracted, MUS-format ones skipped).
  * Random songs generated here (data/midi/random/*.mid): a chord progression in a random key and
    tempo, with pad/comping, bass, a melody and drums on channel 10; the melody (and often the pad)
    uses the voice programs choir aahs (52), voice oohs (53) or synth voice (54) in about half of
    the songs, otherwise piano, strings, guitars, organ, brass, flute, synth leads...

Rendering: `fluidsynth -ni -O float -T raw -r 48000` with the FluidR3 GM or TimGM6mb sound font
(chosen per file), reverb/chorus on or off; float output is peak-normalised in numpy (FluidSynth's
16-bit output clips), downmixed and written as 48 kHz and 16 kHz FLAC under data/music/midi/.
Catalogue part: data/music/catalog_midi.tsv.
"""
from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (CATALOG_FIELDS, DATA, MUSIC, merge_catalog, resample, stable_hash,  # noqa: E402
                    to_mono, write_flac, write_tsv)

DEBS = DATA / "debs"
MIDI = DATA / "midi"
FONTS = {"FluidR3_GM": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "MIT"),
         "TimGM6mb": (None, "GPL-2")}  # TimGM6mb is unpacked from its .deb (no install needed)
MIN_SECONDS = 20.0
MAX_SECONDS = 240.0


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def unpack(pkg: str) -> Path:
    dst = DATA / "unpacked" / pkg
    if not (dst / ".done").exists():
        if not list(DEBS.glob(f"{pkg}_*.deb")):
            DEBS.mkdir(parents=True, exist_ok=True)
            subprocess.run(["nice", "-n", "19", "apt-get", "download", "-q", pkg], cwd=DEBS, check=True)
        deb = sorted(DEBS.glob(f"{pkg}_*.deb"))[-1]
        dst.mkdir(parents=True, exist_ok=True)
        subprocess.run(["nice", "-n", "19", "dpkg-deb", "-x", str(deb), str(dst)], check=True)
        (dst / ".done").write_text("")
    return dst


def deb_version(pkg: str) -> str:
    deb = sorted(DEBS.glob(f"{pkg}_*.deb"))[-1]
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- MIDI from Debian

def wad_midis(wad: Path, outdir: Path) -> list[Path]:
    """Extract the lumps of a Doom WAD that are standard MIDI files."""
    b = wad.read_bytes()
    _, n, diro = struct.unpack_from("<4sii", b, 0)
    out = []
    for k in range(n):
        pos, size, name = struct.unpack_from("<ii8s", b, diro + 16 * k)
        name = name.rstrip(b"\0").decode("ascii", "replace")
        if size > 14 and b[pos:pos + 4] == b"MThd":
            f = outdir / f"{wad.stem}_{name}.mid"
            f.write_bytes(b[pos:pos + size])
            out.append(f)
    return out


def debian_midis() -> list[dict]:
    res = []
    root = unpack("openttd-openmsx")
    for f in sorted(root.rglob("*.mid")):
        res.append(dict(path=f, package="openttd-openmsx", version=deb_version("openttd-openmsx"),
                        source_path=str(f.relative_to(root)), licence="GPL-2"))
    root = unpack("freedoom")
    outdir = MIDI / "freedoom"
    outdir.mkdir(parents=True, exist_ok=True)
    for wad in sorted(root.rglob("*.wad")):
        for f in wad_midis(wad, outdir):
            res.append(dict(path=f, package="freedoom", version=deb_version("freedoom"),
                            source_path=f"{wad.relative_to(root)}!{f.stem.split('_', 1)[1]}",
                            licence="BSD-3-clause"))
    return res


# ---------------------------------------------------------------- random songs

def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_smf(path: Path, events: list[tuple[int, bytes]], tpq: int, bpm: float) -> None:
    """Format-0 standard MIDI file from (tick, message bytes) events."""
    events = sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))  # note-offs first
    body = b"\x00\xff\x51\x03" + int(60e6 / bpm).to_bytes(3, "big")
    last = 0
    for t, msg in events:
        body += vlq(t - last) + msg
        last = t
    body += b"\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">ihhh", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">i", len(body)) + body)


PROGRESSIONS = [[0, 4, 5, 3], [0, 5, 3, 4], [5, 3, 0, 4], [0, 3, 4, 4], [1, 4, 0, 0], [0, 3, 0, 4],
                [0, 6, 5, 4], [0, 0, 3, 4], [5, 4, 3, 4], [0, 2, 3, 4]]
MAJOR, MINOR = [0, 2, 4, 5, 7, 9, 11], [0, 2, 3, 5, 7, 8, 10]
VOICE_PROGRAMS = [52, 53, 54]
LEADS = [0, 4, 11, 24, 25, 40, 41, 56, 60, 65, 68, 71, 73, 80, 81, 22]
PADS = [0, 1, 4, 5, 16, 19, 24, 25, 26, 46, 48, 49, 50, 61, 88, 89, 91, 95]
BASSES = [32, 33, 34, 35, 38, 39, 43, 42]


def random_song(path: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tpq = 480
    bpm = float(rng.uniform(65, 165))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    key = int(rng.integers(0, 12))
    prog = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    bars = int(np.ceil(rng.uniform(35, 70) * bpm / 60 / 4))
    voice_song = rng.random() < 0.5
    lead = int(rng.choice(VOICE_PROGRAMS)) if voice_song else int(rng.choice(LEADS))
    pad = int(rng.choice(VOICE_PROGRAMS)) if voice_song and rng.random() < 0.5 else int(rng.choice(PADS))
    bass = int(rng.choice(BASSES))
    drums = rng.random() < 0.75
    ev: list[tuple[int, bytes]] = []

    def note(t, dur, ch, pitch, vel):
        pitch = int(np.clip(pitch, 0, 127))
        ev.append((int(t), bytes([0x90 | ch, pitch, int(np.clip(vel, 1, 127))])))
        ev.append((int(t + dur), bytes([0x80 | ch, pitch, 0])))

    for ch, p in ((0, lead), (1, pad), (2, bass)):
        ev.append((0, bytes([0xC0 | ch, p])))
        ev.append((0, bytes([0xB0 | ch, 7, int(rng.integers(80, 120))])))   # volume
        ev.append((0, bytes([0xB0 | ch, 10, int(rng.integers(30, 98))])))   # pan
    bar = 4 * tpq
    deg_to_pitch = lambda d, octave: 12 * octave + key + scale[d % 7] + 12 * (d // 7)  # noqa: E731
    comp_style = rng.integers(3)  # 0 sustained, 1 quarter strums, 2 arpeggio
    mel_deg = 7 + int(rng.integers(0, 5))
    for b in range(bars):
        t0 = b * bar
        root = prog[b % len(prog)]
        chord = [root, root + 2, root + 4] + ([root + 6] if rng.random() < 0.3 else [])
        if comp_style == 0:
            for d in chord:
                note(t0, bar - 10, 1, deg_to_pitch(d, 5), rng.integers(55, 85))
        elif comp_style == 1:
            for q in range(4):
                for d in chord:
                    note(t0 + q * tpq, tpq - 30, 1, deg_to_pitch(d, 5), rng.integers(50, 90))
        else:
            for e in range(8):
                note(t0 + e * tpq // 2, tpq // 2, 1, deg_to_pitch(chord[e % len(chord)], 5), rng.integers(50, 85))
        # bass: root on 1 and 3, fifth sometimes
        for q in (0, 2):
            d = root if rng.random() < 0.75 else root + 4
            note(t0 + q * tpq, 2 * tpq - 40, 2, deg_to_pitch(d, 3), rng.integers(70, 105))
        # melody: notes of 1/2 to 2 beats, random walk attracted to chord tones; rests
        t = t0
        while t < t0 + bar:
            dur = int(rng.choice([tpq // 2, tpq, tpq, 3 * tpq // 2, 2 * tpq]))
            dur = min(dur, t0 + bar - t)
            if rng.random() < 0.15:
                t += dur
                continue
            mel_deg += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
            if rng.random() < 0.4:  # snap to the nearest chord tone
                cands = [c + 7 * o for c in chord for o in (0, 1, 2)]
                mel_deg = min(cands, key=lambda c: abs(c - mel_deg))
            mel_deg = int(np.clip(mel_deg, 5, 16))
            note(t, dur - 20, 0, deg_to_pitch(mel_deg, 4), rng.integers(70, 115))
            t += dur
        if drums:
            for e in range(8):
                te = t0 + e * tpq // 2
                note(te, 60, 9, 42, rng.integers(50, 90))              # closed hi-hat
                if e in (0, 4) or (e == 5 and rng.random() < 0.3):
                    note(te, 60, 9, 36, rng.integers(85, 115))         # kick
                if e in (2, 6):
                    note(te, 60, 9, 38, rng.integers(80, 110))         # snare
            if b % 8 == 0:
                note(t0, 100, 9, 49, 100)                              # crash
    write_smf(path, ev, tpq, bpm)
    return dict(bpm=round(bpm, 1), lead=lead, pad=pad, bass=bass, drums=drums, voice=voice_song)


# ---------------------------------------------------------------- rendering

def timgm6mb() -> str:
    root = unpack("timgm6mb-soundfont")
    return str(next(root.rglob("TimGM6mb.sf2")))


def render(mid: Path, font: str, fx: bool, sr: int = 48000) -> np.ndarray:
    raw = DATA / "tmp" / (mid.stem + ".f32")
    raw.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["nice", "-n", "19", "fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(sr), "-O", "float",
           "-T", "raw", "-F", str(raw)]
    if not fx:
        cmd += ["-R", "0", "-C", "0"]
    subprocess.run(cmd + [font, str(mid)], check=True, capture_output=True, timeout=600)
    x = np.fromfile(raw, dtype=np.float32).reshape(-1, 2)
    raw.unlink()
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random-songs", type=int, default=120)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-debian", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    fonts = {"FluidR3_GM": FONTS["FluidR3_GM"][0], "TimGM6mb": timgm6mb()}
    jobs = [] if args.no_debian else debian_midis()
    rnd = MIDI / "random"
    rnd.mkdir(parents=True, exist_ok=True)
    for k in range(args.random_songs):
        f = rnd / f"song{k:04d}.mid"
        info = random_song(f, stable_hash(f"song:{args.seed}:{k}"))
        jobs.append(dict(path=f, package="random-midi (training/music/midi_render.py)", version=str(args.seed),
                         source_path=f"{f.name} lead={info['lead']} pad={info['pad']} bpm={info['bpm']}",
                         licence="project's own"))
    log(f"{len(jobs)} MIDI files to render")
    rows = []
    for j in jobs:
        mid = j["path"]
        h = stable_hash("render:" + str(mid.name) + j["package"])
        fname = "FluidR3_GM" if h % 3 else "TimGM6mb"
        fx = (h // 3) % 4 != 0
        tag = f"{j['package'].split(' ')[0]}__{mid.stem}"
        f16, f48 = Path("midi/16k") / f"{tag}.flac", Path("midi/48k") / f"{tag}.flac"
        if not ((MUSIC / f16).exists() and (MUSIC / f48).exists()):
            try:
                x = render(mid, fonts[fname], fx)
            except Exception as e:  # noqa: BLE001
                log("skip", mid.name, type(e).__name__)
                continue
            m = to_mono(x)[: int(MAX_SECONDS * 48000)]
            if len(m) < MIN_SECONDS * 48000 or np.max(np.abs(m)) < 1e-4:
                continue
            m *= 0.89 / np.max(np.abs(m))
            write_flac(MUSIC / f48, m, 48000)
            write_flac(MUSIC / f16, resample(m, 48000, 16000), 16000)
        import soundfile as sf
        dur = sf.info(str(MUSIC / f16)).duration
        rows.append(dict(file16=str(f16), file48=str(f48), kind="midi", package=j["package"], version=j["version"],
                         source_path=f"{j['source_path']} font={fname} fx={int(fx)}", duration_s=f"{dur:.2f}",
                         licence=f"{j['licence']}; font {fname} {FONTS[fname][1]}", has_vocals="false"))
    write_tsv(MUSIC / "catalog_midi.tsv", rows, CATALOG_FIELDS)
    merge_catalog()
    by = {}
    for r in rows:
        k = r["package"].split(" ")[0]
        by[k] = (by.get(k, (0, 0))[0] + 1, by.get(k, (0, 0))[1] + float(r["duration_s"]) / 3600)
    log(f"rendered {len(rows)} files in {time.time() - t0:.0f} s: " +
        ", ".join(f"{k} {n} files {h:.2f} h" for k, (n, h) in by.items()))


if __name__ == "__main__":
    main()
