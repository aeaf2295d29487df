"""PyTorch reference output of the built-in model, for the Rust-vs-PyTorch parity test.

    training/.venv/bin/python training/finetune/parity_ref.py

Runs the weights compiled into nomusic (crates/models/assets/nomusic, loaded as trainable
PyTorch modules exactly as training does) over a fixed synthetic input, through the same
pipeline as the Rust runner (STFT, features, graphs, ERB gains, deep filter, local-SNR
switches, overlap-add), and writes crates/models/tests/fixtures/nomusic-parity.f32 (the output
samples, little-endian float32) and nomusic-parity.json (the sha256 of each weight file the
output was made with). `cargo test -p nomusic-models --test
builtin_parity` regenerates the same input in Rust, runs the built-in model hop by hop and
requires max |rust - torch| <= 1e-4. Run this again whenever the built-in weights change (the
test says so when the recorded checksums no longer match).
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch

from ftcommon import ROOT  # noqa: E402  (sets sys.path)
from dfn3 import Dfn3  # noqa: E402

ASSETS = ROOT / "crates" / "models" / "assets" / "nomusic"
FIXTURE = ROOT / "crates" / "models" / "tests" / "fixtures" / "nomusic-parity.json"
SAMPLES_FILE = FIXTURE.with_suffix(".f32")
RATE = 48000
SAMPLES = 57600  # 1.2 s, 120 hops


VOWELS = ((730.0, 1090.0, 2440.0), (270.0, 2290.0, 3010.0), (300.0, 870.0, 2240.0))
BANDWIDTHS = (60.0, 90.0, 120.0)
SYLLABLE_S = 0.25


def parity_input(n: int = SAMPLES) -> np.ndarray:
    """A crude talker (glottal pulses through three formant resonators, vowels changing every
    syllable, gliding pitch, syllable envelopes) over a sustained chord and a little noise.
    crates/models/tests/builtin_parity.rs computes the same samples in the same order of
    operations (keep the two in step)."""
    out = np.empty(n, np.float32)
    state = 12345
    phase = 0.0
    y1 = [0.0, 0.0, 0.0]
    y2 = [0.0, 0.0, 0.0]
    for i in range(n):
        t = i / RATE
        f0 = 120.0 + 30.0 * math.sin(2 * math.pi * 1.5 * t)
        phase += f0 / RATE
        v = 0.0
        if phase >= 1.0:
            phase -= 1.0
            v = 1.0
        syllable = int(t / SYLLABLE_S)
        formants = VOWELS[syllable % 3]
        for k in range(3):
            r = math.exp(-math.pi * BANDWIDTHS[k] / RATE)
            a1 = 2 * r * math.cos(2 * math.pi * formants[k] / RATE)
            a2 = -r * r
            y = (1 - r) * v + a1 * y1[k] + a2 * y2[k]
            y2[k] = y1[k]
            y1[k] = y
            v = y
        env = math.sin(math.pi * (t / SYLLABLE_S - syllable)) ** 2
        voice = 40.0 * env * v
        music = 0.04 * sum(math.sin(2 * math.pi * f * t) for f in (440.0, 554.37, 659.25))
        state = (state * 1664525 + 1013904223) % (1 << 32)
        noise = 0.005 * ((state >> 8) / 16777216.0 * 2 - 1)
        out[i] = voice + music + noise
    return out


def weight_checksums() -> dict[str, str]:
    """sha256 of each file of the built-in model (graphs and config)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ASSETS.iterdir()) if p.suffix in (".onnx", ".ini")}


def reference() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The built-in model through the PyTorch pipeline on parity_input(): (input, output samples,
    local SNR per frame in dB, latency in samples)."""
    torch.set_num_threads(1)
    model = Dfn3(ASSETS)
    model.eval()
    x = parity_input()
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None], gate=True)
        y = model.istft(out["enh"])[0].numpy()
    return x, y, out["lsnr"][0, :, 0].numpy(), model.latency


def main():
    x, y, lsnr, latency = reference()
    sha = weight_checksums()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(dict(
        about="PyTorch output of the built-in model on parity_input(); made by training/finetune/parity_ref.py",
        sha256=sha, samples=len(x), latency=latency,
        lsnr_db_min=float(lsnr.min()), lsnr_db_max=float(lsnr.max()),
        input_rms=float(np.sqrt(np.mean(x.astype(np.float64) ** 2))),
        output_rms=float(np.sqrt(np.mean(y.astype(np.float64) ** 2))),
        output=SAMPLES_FILE.name), indent=1) + "\n")
    SAMPLES_FILE.write_bytes(y.astype("<f4").tobytes())
    print(f"input rms {np.sqrt(np.mean(x.astype(np.float64) ** 2)):.4f} peak {np.abs(x).max():.3f}")
    print(f"wrote {FIXTURE}: {len(y)} samples, output rms {np.sqrt(np.mean(y ** 2)):.4f}, "
          f"lsnr {lsnr.min():.1f}..{lsnr.max():.1f} dB")


if __name__ == "__main__":
    main()
