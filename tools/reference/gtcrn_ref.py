#!/usr/bin/env python3
"""GTCRN reference: the streaming export run frame by frame on ONNX Runtime.

Usage: gtcrn_ref.py MODEL.onnx IN.wav OUT.wav

The loop is the one nomusic's Gtcrn separator runs: causal frames of the last 512 samples every
256 samples (zeros before the start), square-root periodic Hann analysis (unnormalised rFFT),
the model on one frame with its three caches, inverse rFFT, the same window, overlap-add.
(GTCRN's own stream/ script centres torch.stft frames with reflect padding; only the first
frame differs.) OUT is float32, as long as the whole hops of IN, NOT delay-compensated: speech
for input sample n is at output sample n + 256.
"""
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf

N_FFT = 512
HOP = 256


def main():
    model, src, dst = sys.argv[1:4]
    x, sr = sf.read(src, dtype="float32")
    if sr != 16000 or x.ndim != 1:
        sys.exit(f"{src}: need mono 16 kHz, got {sr} Hz, shape {x.shape}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    caches = {
        "conv_cache": np.zeros((2, 1, 16, 16, 33), np.float32),
        "tra_cache": np.zeros((2, 3, 1, 1, 16), np.float32),
        "inter_cache": np.zeros((2, 1, 33, 16), np.float32),
    }
    hist = np.zeros(N_FFT, np.float32)
    ola = np.zeros(N_FFT, np.float32)
    n_hops = len(x) // HOP
    y = np.zeros(n_hops * HOP, np.float32)
    for i in range(n_hops):
        hist[:-HOP] = hist[HOP:]
        hist[-HOP:] = x[i * HOP:(i + 1) * HOP]
        spec = np.fft.rfft(hist * window)
        mix = np.stack([spec.real, spec.imag], -1).astype(np.float32).reshape(1, -1, 1, 2)
        enh, conv, tra, inter = sess.run(None, {"mix": mix, **caches})
        caches = {"conv_cache": conv, "tra_cache": tra, "inter_cache": inter}
        e = enh.reshape(-1, 2)
        frame = np.fft.irfft(e[:, 0] + 1j * e[:, 1], N_FFT).astype(np.float32) * window
        ola += frame
        y[i * HOP:(i + 1) * HOP] = ola[:HOP]
        ola[:-HOP] = ola[HOP:]
        ola[-HOP:] = 0.0
    sf.write(dst, y, sr, subtype="FLOAT")


if __name__ == "__main__":
    main()
