#!/usr/bin/env python3
"""DTLN reference: the streaming loop of DTLN's real_time_processing_onnx.py on ONNX Runtime.

Usage: dtln_ref.py MODEL_DIR IN.wav OUT.wav

IN.wav must be mono 16 kHz. OUT.wav is written as float32, same length as the input, NOT
delay-compensated: speech for input sample n is at output sample n + 384, exactly as nomusic's
Dtln separator emits it, so the two can be compared sample by sample.
"""
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf

BLOCK_LEN = 512
HOP = 128


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    model_dir, src, dst = sys.argv[1:4]
    audio, sr = sf.read(src, dtype="float32")
    if sr != 16000 or audio.ndim != 1:
        sys.exit(f"{src}: need mono 16 kHz, got {sr} Hz, shape {audio.shape}")
    m1 = session(f"{model_dir}/model_1.onnx")
    m2 = session(f"{model_dir}/model_2.onnx")
    in1 = [i.name for i in m1.get_inputs()]
    in2 = [i.name for i in m2.get_inputs()]
    state1 = np.zeros((1, 2, 128, 2), np.float32)
    state2 = np.zeros((1, 2, 128, 2), np.float32)
    in_buf = np.zeros(BLOCK_LEN, np.float32)
    out_buf = np.zeros(BLOCK_LEN, np.float32)
    n_hops = len(audio) // HOP
    out = np.zeros(len(audio), np.float32)
    for i in range(n_hops):
        in_buf[:-HOP] = in_buf[HOP:]
        in_buf[-HOP:] = audio[i * HOP:(i + 1) * HOP]
        spec = np.fft.rfft(in_buf)
        mag = np.abs(spec).astype(np.float32).reshape(1, 1, -1)
        mask, state1 = m1.run(None, {in1[0]: mag, in1[1]: state1})
        block = np.fft.irfft(spec * mask.reshape(-1)).astype(np.float32).reshape(1, 1, -1)
        est, state2 = m2.run(None, {in2[0]: block, in2[1]: state2})
        out_buf[:-HOP] = out_buf[HOP:]
        out_buf[-HOP:] = 0.0
        out_buf += est.reshape(-1)
        out[i * HOP:(i + 1) * HOP] = out_buf[:HOP]
    sf.write(dst, out, sr, subtype="FLOAT")


if __name__ == "__main__":
    main()
