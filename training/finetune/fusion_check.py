"""Output fusion, scored: do two models' estimates of the same items make a better one together?
A is the main estimate, B a second model's. Two ways of mixing B in, each at a few weights w:

  blend  (1 - w) A + w B, in the time domain
  gated  A + w g (B - A) per STFT bin, with g = min(|A| / |X|, 1)^0.5: B is only let in where A
         itself keeps the mixture X, so A's silence (music-only stretches) stays silent

(16 kHz STFT, Vorbis window 320 / hop 160, the runner's resolution at 48 kHz.) Estimates are
one <item>.wav per item, 16 kHz mono, aligned to the mixture (`nomusic separate -o DIR/ITEM.wav`).
With --out, the fused estimates of one variant are written there for score.py.

    training/.venv/bin/python training/finetune/fusion_check.py SET_DIR EST_A EST_B
    training/.venv/bin/python training/finetune/fusion_check.py SET_DIR EST_A EST_B \
        --out DIR --mode gated --w 0.3
"""
import argparse
import glob
import os

import numpy as np
import soundfile as sf

from ftcommon import si_sdr  # noqa: E402  (sets sys.path)
from dfn3 import istft_np, stft_np  # noqa: E402

FFT = 320
GATE_POWER = 0.5
WEIGHTS = (0.1, 0.2, 0.3, 0.5)


def fuse(a: np.ndarray, b: np.ndarray, x: np.ndarray, mode: str, w: float) -> np.ndarray:
    """A with a share `w` of B mixed in (see the module docstring); all three of length n."""
    if mode == "blend":
        return (1 - w) * a + w * b
    if mode != "gated":
        raise ValueError(f"unknown fusion mode {mode!r} (blend or gated)")
    sa, sb, sx = stft_np(a, FFT), stft_np(b, FFT), stft_np(x, FFT)
    g = np.minimum(np.abs(sa) / (np.abs(sx) + 1e-12), 1.0) ** GATE_POWER
    return istft_np(sa + w * g * (sb - sa), len(a), FFT)


def items(set_dir, est_a, est_b):
    """(name, speech, mixture, A, B) per item, cut to the shortest of them."""
    for path in sorted(glob.glob(f"{set_dir}/*/speech.wav")):
        item = path.rsplit("/", 2)[1]
        s, _ = sf.read(path)
        x, _ = sf.read(f"{set_dir}/{item}/mixture.wav")
        a, _ = sf.read(f"{est_a}/{item}.wav")
        b, _ = sf.read(f"{est_b}/{item}.wav")
        n = min(len(s), len(x), len(a), len(b))
        yield item, s[:n], x[:n], a[:n], b[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("set_dir")
    ap.add_argument("est_a")
    ap.add_argument("est_b")
    ap.add_argument("--out", help="write the fused estimates of --mode/--w here")
    ap.add_argument("--mode", default="gated", choices=("blend", "gated"))
    ap.add_argument("--w", type=float, default=0.3)
    args = ap.parse_args()
    data = list(items(args.set_dir, args.est_a, args.est_b))
    if not data:
        raise SystemExit(f"no items (*/speech.wav) in {args.set_dir}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for item, _, x, a, b in data:
            y = fuse(a, b, x, args.mode, args.w)
            sf.write(f"{args.out}/{item}.wav", y.astype(np.float32), 16000, subtype="FLOAT")
        print(f"wrote {len(data)} fused estimates ({args.mode}, w {args.w}) to {args.out}")
        return
    base = [si_sdr(x, s) for _, s, x, _, _ in data]
    for name, est in (("A", 3), ("B", 4)):
        print(f"  {name:12s} SI-SDRi {np.mean([si_sdr(d[est], d[1]) - b for d, b in zip(data, base)]):.3f}")
    for mode in ("blend", "gated"):
        row = []
        for w in WEIGHTS:
            v = [si_sdr(fuse(a, bb, x, mode, w), s) - b0 for (_, s, x, a, bb), b0 in zip(data, base)]
            row.append(f"w {w}: {np.mean(v):.3f}")
        print(f"  {mode:12s} " + "   ".join(row))


if __name__ == "__main__":
    main()
