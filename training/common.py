"""Shared helpers for the nomusic training data pipeline (numpy only)."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

TRAINING = Path(__file__).resolve().parent
DATA = TRAINING / "data"
MUSIC = DATA / "music"
SHARED = Path(os.environ.get("NOMUSIC_SHARED", TRAINING.parent.parent / "shared")).resolve()
CORPUS = SHARED / "corpus" / "speech"
# more training speech from Debian (speech/debian.py), used with train.py --extra-speech
SPEECH_EXTRA = DATA / "speech_extra"

# Packages the benchmark music comes from: never train on them.
FORBIDDEN_PACKAGES = ("wesnoth-1.16-music", "singularity-music", "warzone2100-music",
                      "hyperrogue-music", "fretsonfire-songs")

CATALOG_FIELDS = ["file16", "file48", "kind", "package", "version", "source_path",
                  "duration_s", "licence", "has_vocals"]


def is_forbidden(pkg: str) -> bool:
    return any(pkg == f or pkg.startswith(f) for f in FORBIDDEN_PACKAGES)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (float32 in, float32 out)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g, axis=0).astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1).astype(np.float32) if x.ndim == 2 else x.astype(np.float32)


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode with libsndfile; fall back to ffmpeg (tracker modules etc.) when it is installed."""
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return x, sr
    except Exception:
        if not shutil.which("ffmpeg"):
            raise
    sr = 48000
    out = subprocess.run(["nice", "-n", "19", "ffmpeg", "-v", "error", "-nostdin", "-i", str(path),
                          "-ac", "2", "-ar", str(sr), "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32).reshape(-1, 2).copy(), sr


@contextmanager
def replacing(path: Path, mode: str = "wb", **kw):
    """A file to write `path` through: a temporary file of its own beside it, renamed over `path`
    when the block ends without error (and removed when it does not). Readers never see a part
    of the file, and writers running at once (side-by-side training runs building one cache) do
    not clash: each renames its own complete file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_flac(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as f:
        sf.write(f, np.clip(x, -1.0, 1.0), sr, subtype=subtype, format="FLAC")


def stable_hash(s: str) -> int:
    return int(hashlib.sha1(s.encode()).hexdigest()[:12], 16)


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def write_tsv(path: Path, rows: list[dict], fields: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter="\t", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def merge_catalog() -> Path:
    """catalog.tsv = union of the per-stage parts catalog_<stage>.tsv (each stage owns its part)."""
    rows = []
    for part in sorted(MUSIC.glob("catalog_*.tsv")):
        rows += read_tsv(part)
    out = MUSIC / "catalog.tsv"
    write_tsv(out, rows, CATALOG_FIELDS)
    return out


def speech_manifest() -> list[dict]:
    rows = read_tsv(CORPUS / "MANIFEST.tsv")
    for r in rows:
        r["duration_s"] = float(r["duration_s"])
    return rows


def singing_speakers(rows: list[dict], fraction: float = 0.15) -> set[str]:
    """Fixed subset of labelled train speakers reserved for sung stems (never speech targets).

    Chosen by SHA-1 of "source/speaker"; unlabelled Picovoice sets are never reserved.
    """
    spk = sorted({(r["source"], r["speaker"]) for r in rows
                  if r["split"] == "train" and not r["source"].startswith("picovoice")})
    return {f"{s}/{p}" for s, p in spk if stable_hash(f"singing:{s}/{p}") % 1000 < fraction * 1000}
