"""Fixed training/validation items for the low-band refiner: mixtures from training/dataset.py's
Mixer (16 kHz) with the shipped model's estimate of each, from the real Rust runner
(`nomusic separate`, 32-bit float), stored as one .npz per split (mixture, speech, estimate,
speech-active mask).

    training/.venv/bin/python training/refiner/make_data.py --split train --items 3000
    training/.venv/bin/python training/refiner/make_data.py --split val --items 200
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from dataset import MixConfig, Mixer, load_pools  # noqa: E402
from common import DATA  # noqa: E402

ROOT = HERE.parents[1]
SR = 16000


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=("train", "val"), required=True)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--smr-grid", default=None, help="SMRs to draw from, e.g. -5,0,5 (as the benchmark)")
    ap.add_argument("--nomusic", default=str(ROOT / "target" / "release" / "nomusic"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out or DATA / "refiner" / f"{args.split}.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    speech, music, sung = load_pools(args.split, SR, ("world", "psola"), ("base", "extra"))
    grid = tuple(float(v) for v in args.smr_grid.split(",")) if args.smr_grid else None
    mixer = Mixer(speech, music, sung, MixConfig(sr=SR, seconds=args.seconds, smr_grid=grid),
                  seed=args.seed + (0 if args.split == "train" else 1000))
    n = mixer.n
    X = np.zeros((args.items, n), np.float32)
    S = np.zeros_like(X)
    A = np.zeros_like(X)
    act = np.zeros((args.items, n), bool)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        (td / "in").mkdir()
        (td / "out").mkdir()
        for i in range(args.items):
            it = mixer.item(0, i)
            X[i], S[i], act[i] = it.mixture, it.speech, it.active
            sf.write(td / "in" / f"{i:06d}.wav", it.mixture, SR, subtype="FLOAT")
        subprocess.run([args.nomusic, "separate", "-q", "--bits", "32", "-o", str(td / "out") + "/",
                        *sorted(str(p) for p in (td / "in").glob("*.wav"))], check=True)
        outs = sorted((td / "out").glob("*.wav"))
        if len(outs) != args.items:
            raise SystemExit(f"nomusic wrote {len(outs)} files for {args.items} inputs")
        for i, p in enumerate(outs):
            a, sr = sf.read(p, dtype="float32")
            assert sr == SR and len(a) == n, (p, sr, len(a))
            A[i] = a
    np.savez(out, mixture=X, speech=S, estimate=A, active=act)
    print(f"wrote {args.items} items ({args.items * args.seconds / 3600:.2f} h) to {out}")


if __name__ == "__main__":
    main()
