"""Download free game soundtracks from Debian, unpack them and decode the music to 16/48 kHz mono FLAC.

Stages (each skips work already done, so it can be re-run):
  1. apt-get download <pkg>            -> data/debs/
  2. dpkg-deb -x                       -> data/unpacked/<pkg>/
  3. collect music files (in a */music/* folder, or inside a music .pk3 zip), >= 20 s
  4. decode, downmix, peak-normalise, resample -> data/music/deb/{16k,48k}/<pkg>/<name>.flac
  5. data/music/catalog_debian.tsv (+ merged data/music/catalog.tsv), licences from the
     package's DEP-5 copyright file.

`--extra` does the same for EXTRA_PACKAGES, more soundtracks in more styles, into
catalog_debian_extra.tsv with kind "debian-extra". They are kept apart so that the base recipe's
data stay as they were; `finetune/train.py --music base,extra` trains on them.

Run under `nice -n 19` (prepare.sh does).
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (DATA, MUSIC, decode, is_forbidden, merge_catalog, resample,  # noqa: E402
                    to_mono, write_flac, write_tsv, CATALOG_FIELDS)

PACKAGES = ["ufoai-music", "planetblupi-music-ogg", "naev-data", "supertux-data",
            "hedgewars-data", "nexuiz-music", "colobot-common-sounds", "freedroidrpg-data",
            "flare-game", "widelands-data"]
# More styles: 0 A.D. (orchestral and folk instruments from many cultures, with choir and solo
# voices), Red Eclipse and SuperTuxKart (rock, electronic), MegaGlest (orchestral), Drascula (the
# game's CD soundtrack), Extreme Tux Racer, LinCity-NG (blues, ambient), X-Moto, ASC, Frozen-Bubble.
# package -> globs (lower case) on the installed path of its music; an archive member is
# "<archive path>!<member>".
EXTRA_PACKAGES = {
    "0ad-data": ["*/public.zip!audio/music/*"],
    "redeclipse-data": ["*/sounds/music/*", "*/sounds/theme*", "*/sounds/original.ogg"],
    "supertuxkart-data": ["*/data/music/*"],
    "megaglest-data": ["*/music/*"],
    "drascula-music": ["*/drascula/audio/*"],
    "extremetuxracer-data": ["*/etr/music/*"],
    "lincity-ng-data": ["*/music/*"],
    "xmoto-data": ["*/textures/musics/*"],
    "asc-music": ["*/music/*"],
    "frozen-bubble-data": ["*/snd/*.ogg"],
}
AUDIO_EXT = {".ogg", ".oga", ".mp3", ".flac", ".wav", ".opus", ".mod", ".xm", ".it", ".s3m"}
TRACKER_EXT = {".mod", ".xm", ".it", ".s3m"}  # need ffmpeg (libopenmpt)
MIN_SECONDS = 20.0
# Licence for packages whose copyright file is not machine-readable (DEP-5).
FALLBACK_LICENCE = {"nexuiz-music": "GPL-2+"}

DEBS = DATA / "debs"
UNPACKED = DATA / "unpacked"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def deb_for(pkg: str) -> Path | None:
    hits = sorted(DEBS.glob(f"{pkg}_*.deb"))
    return hits[-1] if hits else None


def download(pkgs: list[str]) -> None:
    DEBS.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pkgs if deb_for(p) is None]
    if missing:
        log("apt-get download", *missing)
        subprocess.run(["nice", "-n", "19", "apt-get", "download", "-q", *missing], cwd=DEBS, check=True)


def unpack(pkg: str) -> Path:
    dst = UNPACKED / pkg
    if not (dst / ".done").exists():
        log("unpack", pkg)
        dst.mkdir(parents=True, exist_ok=True)
        subprocess.run(["nice", "-n", "19", "dpkg-deb", "-x", str(deb_for(pkg)), str(dst)], check=True)
        (dst / ".done").write_text("")
    return dst


def deb_version(pkg: str) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb_for(pkg)), "Version"], capture_output=True, text=True)
    return out.stdout.strip()


# ---------- licences (DEP-5) ----------

def parse_dep5(text: str) -> list[dict]:
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, val = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = val.strip()
        if "files" in fields and fields["files"] and "license" in fields:
            stanzas.append(fields)
    return stanzas


def licence_for(pkg: str, root: Path, relpath: str) -> str:
    """Last DEP-5 stanza whose glob matches the end of the installed path wins."""
    cr = root / "usr/share/doc" / pkg / "copyright"
    text = cr.read_text(errors="replace") if cr.exists() else ""
    stanzas = parse_dep5(text)
    if not stanzas:
        return FALLBACK_LICENCE.get(pkg, "see copyright")
    lic = None
    path = "/" + relpath.lower()
    for st in stanzas:
        for g in st["files"].split():
            g = g.lower().lstrip("./")
            if g == "*" or fnmatch.fnmatch(path, "*/" + g):
                lic = st["license"].split(" ")[0] if " or " not in st["license"] else st["license"]
    return (lic or "see copyright").strip()


# ---------- collect ----------

def is_music(pkg: str, path: str) -> bool:
    """Whether an installed audio file of pkg (an archive member as "<archive>!<member>") is music:
    for EXTRA_PACKAGES, one of the package's globs matches its lower-case path; otherwise it lies in
    a */music/* folder or in a .pk3 archive with "music" in its name."""
    low = path.lower()
    if pkg in EXTRA_PACKAGES:
        return any(fnmatch.fnmatch(low, g) for g in EXTRA_PACKAGES[pkg])
    if "!" in low:
        archive = Path(low.split("!", 1)[0])
        return archive.suffix == ".pk3" and "music" in archive.name
    return "/music/" in "/" + low


def collect(pkg: str, root: Path) -> list[tuple[str, Path | tuple[Path, str]]]:
    """(relative source path, file or (archive, member)) for every music candidate of a package:
    the audio files and .zip/.pk3 members that is_music accepts."""
    def keep(path: str) -> bool:
        return Path(path).suffix.lower() in AUDIO_EXT and is_music(pkg, path)

    found = []
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        rel = str(f.relative_to(root))
        if f.suffix.lower() in (".zip", ".pk3"):
            with zipfile.ZipFile(f) as z:
                found += [(f"{rel}!{m}", (f, m)) for m in sorted(z.namelist()) if keep(f"{rel}!{m}")]
        elif keep(rel):
            found.append((rel, f))
    return found


def safe_name(rel: str) -> str:
    stem = rel.split("!")[-1]
    stem = re.sub(r"\.[^./]+$", "", stem)
    parts = [p for p in re.split(r"[/\\]", stem) if p and p.lower() not in ("usr", "share", "games")]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts[-3:]))


def process(pkg: str) -> list[dict]:
    if is_forbidden(pkg):
        raise SystemExit(f"{pkg} is a benchmark source and must not be used")
    root = unpack(pkg)
    version = deb_version(pkg)
    rows, skipped = [], {"short": 0, "undecodable": 0}
    tmp = DATA / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for rel, src in collect(pkg, root):
        name = safe_name(rel)
        f16 = Path("deb/16k") / pkg / f"{name}.flac"
        f48 = Path("deb/48k") / pkg / f"{name}.flac"
        lic = licence_for(pkg, root, rel.split("!")[0] if isinstance(src, Path) else rel.split("!")[1])
        if (MUSIC / f16).exists() and (MUSIC / f48).exists():
            import soundfile as sf
            dur = sf.info(str(MUSIC / f16)).duration
        else:
            if isinstance(src, tuple):
                path = tmp / (name + Path(src[1]).suffix)
                with zipfile.ZipFile(src[0]) as z:
                    path.write_bytes(z.read(src[1]))
            else:
                path = src
            try:
                x, sr = decode(path)
            except Exception as e:  # noqa: BLE001
                log("  skip (cannot decode)", rel, type(e).__name__)
                skipped["undecodable"] += 1
                continue
            finally:
                if isinstance(src, tuple):
                    path.unlink(missing_ok=True)
            dur = len(x) / sr
            if dur < MIN_SECONDS:
                skipped["short"] += 1
                continue
            m = to_mono(x)
            peak = float(np.max(np.abs(m))) or 1.0
            m *= 0.89 / peak  # -1 dBFS; the mixer sets levels anyway
            write_flac(MUSIC / f48, resample(m, sr, 48000), 48000)
            write_flac(MUSIC / f16, resample(m, sr, 16000), 16000)
        if dur < MIN_SECONDS:
            skipped["short"] += 1
            continue
        kind = "debian-extra" if pkg in EXTRA_PACKAGES else "debian"
        rows.append(dict(file16=str(f16), file48=str(f48), kind=kind, package=pkg,
                         version=version, source_path=rel, duration_s=f"{dur:.2f}",
                         licence=lic, has_vocals="false"))
    hours = sum(float(r["duration_s"]) for r in rows) / 3600
    log(f"{pkg} {version}: {len(rows)} tracks, {hours:.2f} h; skipped {skipped}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extra", action="store_true",
                    help="fetch EXTRA_PACKAGES into catalog_debian_extra.tsv instead of the base set")
    ap.add_argument("--keep-unpacked", action="store_true", help="keep data/unpacked after decoding")
    args = ap.parse_args()
    t0 = time.time()
    packages = list(EXTRA_PACKAGES) if args.extra else PACKAGES
    download(packages)
    rows = []
    for pkg in packages:
        rows += process(pkg)
        if not args.keep_unpacked:
            subprocess.run(["rm", "-rf", str(UNPACKED / pkg)], check=True)
    write_tsv(MUSIC / ("catalog_debian_extra.tsv" if args.extra else "catalog_debian.tsv"), rows, CATALOG_FIELDS)
    merge_catalog()
    log(f"done: {len(rows)} tracks, {sum(float(r['duration_s']) for r in rows) / 3600:.2f} h "
        f"in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
