"""Oracle ceilings of the model's output structure on a benchmark set: what the best possible
real-valued gains would score, computed from the clean stems, in the runner's own STFT (48 kHz,
Vorbis window 960, hop 480; 16 kHz items are resampled to 48 kHz and back, as nomusic does).

    training/.venv/bin/python training/finetune/oracle_ceiling.py [SET_DIR] [--gaps BENCH_JSON]
    # SET_DIR defaults to ../shared/bench/dev; --gaps prints, per item, a model's SI-SDRi (from
    # `nomusic bench --json`, e.g. training/runs/ship/bench-dev.json) beside the per-bin oracle

- irm_bin: per-bin amplitude ratio sqrt(|S|^2 / (|S|^2 + |M|^2)) everywhere;
- erb_only: the same ratio per ERB band (DeepFilterNet3's 32 bands), no finer;
- bin<4.8k+erb: per bin below 4.8 kHz (the deep filter's 96 bins), ERB bands above (the model's
  structure, with a real mask standing in for the deep filter);
- wiener_bin: per-bin power ratio |S|^2 / (|S|^2 + |M|^2).
"""
import glob
import json
import sys

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ftcommon import SHARED, si_sdr  # noqa: E402  (sets sys.path)
from dfn3 import erb_band_widths, istft_np, stft_np  # noqa: E402

FFT, DF_BINS = 960, 96
EDGES = np.cumsum([0] + erb_band_widths())


def band_power(power: np.ndarray) -> np.ndarray:
    """Each bin gets the summed power of its ERB band."""
    out = np.empty_like(power)
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        out[:, lo:hi] = power[:, lo:hi].sum(-1, keepdims=True)
    return out


def main(argv):
    gaps = None
    if "--gaps" in argv:
        k = argv.index("--gaps")
        gaps = {it["id"]: it["si_sdri"] for it in json.load(open(argv[k + 1]))["items"]}
        argv = argv[:k] + argv[k + 2:]
    set_dir = argv[1] if len(argv) > 1 else str(SHARED / "bench" / "dev")
    items = sorted(p.rsplit("/", 1)[0] for p in glob.glob(f"{set_dir}/*/speech.wav"))
    if not items:
        sys.exit(f"no items (*/speech.wav, music.wav) in {set_dir}")
    rows = {k: [] for k in ("irm_bin", "erb_only", "bin<4.8k+erb", "wiener_bin")}
    for d in items:
        s16, _ = sf.read(f"{d}/speech.wav")
        m16, _ = sf.read(f"{d}/music.wav")
        s, m = resample_poly(s16, 3, 1), resample_poly(m16, 3, 1)
        mix = stft_np(s + m, FFT)
        ps, pm = np.abs(stft_np(s, FFT)) ** 2, np.abs(stft_np(m, FFT)) ** 2
        wiener = ps / (ps + pm + 1e-20)
        erb = np.sqrt(band_power(ps) / (band_power(ps) + band_power(pm) + 1e-20))
        hybrid = erb.copy()
        hybrid[:, :DF_BINS] = np.sqrt(wiener[:, :DF_BINS])
        gains = {"irm_bin": np.sqrt(wiener), "erb_only": erb, "bin<4.8k+erb": hybrid, "wiener_bin": wiener}
        base = si_sdr(s16 + m16, s16)
        for k, g in gains.items():
            y = resample_poly(istft_np(g * mix, len(s), FFT), 1, 3)[:len(s16)]
            rows[k].append(si_sdr(y, s16) - base)
        name = d.rstrip("/").rsplit("/", 1)[-1]
        if gaps is not None and name in gaps:
            print(f"{name}: model {gaps[name]:6.2f}  oracle irm_bin {rows['irm_bin'][-1]:6.2f}  "
                  f"gap {rows['irm_bin'][-1] - gaps[name]:5.2f}")
    print(f"{len(items)} items in {set_dir}")
    for k, v in rows.items():
        print(f"{k:14s} SI-SDRi {np.mean(v):.2f}")


if __name__ == "__main__":
    main(sys.argv)
