"""Post-processing of a model's estimates, scored: does sharpening its gains help? The effective
gain per bin, |estimate| / |mixture| (16 kHz STFT, Vorbis window 320 / hop 160, the runner's
resolution at 48 kHz), is reshaped and the estimate re-synthesised: DeepFilterNet's post-filter
(beta 0.02-0.1) and plain powers of the gain (g^1.3, g^1.6); "none" is the estimate as it is.

    training/.venv/bin/python training/finetune/postfilter_check.py SET_DIR ESTIMATES_DIR
    # e.g. ../shared/bench/dev training/runs/ship/est-dev   (estimates from export_eval.py --bench)
"""
import glob
import sys

import numpy as np
import soundfile as sf

from ftcommon import si_sdr  # noqa: E402  (sets sys.path)
from dfn3 import istft_np, stft_np  # noqa: E402

FFT = 320
VARIANTS = (("none", None), ("pf0.02", 0.02), ("pf0.05", 0.05), ("pf0.1", 0.1), ("pow1.3", 1.3), ("pow1.6", 1.6))


def post_filter(gain, beta):
    """DeepFilterNet's post-filter (after PercepNet): lowers small gains, raises large ones."""
    sin_gain = gain * np.sin(np.pi * gain / 2)
    return (1 + beta) * gain / (1 + beta * (gain / np.maximum(sin_gain, 1e-12)) ** 2)


def run(set_dir, est_dir):
    scores = {name: [] for name, _ in VARIANTS}
    for path in sorted(glob.glob(f"{set_dir}/*/speech.wav")):
        item = path.rsplit("/", 2)[1]
        s, _ = sf.read(f"{set_dir}/{item}/speech.wav")
        x, _ = sf.read(f"{set_dir}/{item}/mixture.wav")
        y, _ = sf.read(f"{est_dir}/{item}.wav")
        n = min(len(s), len(y))
        s, x, y = s[:n], x[:n], y[:n]
        est = stft_np(y, FFT)
        gain = np.clip(np.abs(est) / (np.abs(stft_np(x, FFT)) + 1e-12), 0, 1)
        safe = np.maximum(gain, 1e-12)
        base = si_sdr(x, s)
        for name, p in VARIANTS:
            if p is None:
                z = y
            elif name.startswith("pf"):
                z = istft_np(est * post_filter(gain, p) / safe, n, FFT)
            else:
                z = istft_np(est * safe ** (p - 1), n, FFT)
            scores[name].append(si_sdr(z, s) - base)
    for name, v in scores.items():
        print(f"  {name:8s} SI-SDRi {np.mean(v):.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(sys.argv[2])
    run(sys.argv[1], sys.argv[2])
