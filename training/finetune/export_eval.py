"""Export a fine-tuning checkpoint as a DeepFilterNet3 model directory and benchmark it.

    training/.venv/bin/python training/finetune/export_eval.py training/runs/dfn3-ft/ckpt_latest.pt \
        [--out DIR] [--bench] [--val]

Writes DIR (default: next to the checkpoint, `export-step<N>/`) with enc.onnx, erb_dec.onnx,
df_dec.onnx (the original graphs with the fine-tuned weights) and config.ini, which nomusic loads
unchanged: `nomusic bench --set ../shared/bench/dev --model deepfilternet3 --model-path DIR`.
--bench runs exactly that (target/release/nomusic, one thread, nice 19) and writes
DIR/bench-dev.json, DIR/bench-dev.txt (with score.py's table on the same estimates, DIR/est-dev/); --val also scores training/data/val with nomusic bench,
--val-native training/data/val_native (the held-out set without speechocean762's speakers that
decides whether a candidate ships; checked before anything is exported).
Before writing, the exported ONNX graphs are checked against the torch modules with onnxruntime.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ftcommon import ROOT, SHARED, VAL_DIR, VAL_NATIVE_DIR, base_model_dir, checkpoint_weights  # noqa: E402
from dfn3 import Dfn3  # noqa: E402


def check_export(model: Dfn3, out: Path, frames: int = 30) -> float:
    import onnxruntime as ort
    rng = np.random.default_rng(0)
    fe = rng.standard_normal((1, 1, frames, 32)).astype(np.float32)
    fs = rng.standard_normal((1, 2, frames, 96)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(out / "enc.onnx"), so)
    e = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"feat_erb": fe, "feat_spec": fs})))
    erb = ort.InferenceSession(str(out / "erb_dec.onnx"), so)
    dfd = ort.InferenceSession(str(out / "df_dec.onnx"), so)
    m_ref = erb.run(None, {i.name: e[i.name] for i in erb.get_inputs()})[0]
    c_ref = dfd.run(None, {i.name: e[i.name] for i in dfd.get_inputs()})[0]
    with torch.no_grad():
        m, c, _ = model.graphs(torch.from_numpy(fe), torch.from_numpy(fs))
    return float(max(np.abs(m.numpy() - m_ref).max(), np.abs(c.numpy() - c_ref).max()))


BUILD_HINT = {  # what to do when a set is missing
    "dev": "it comes with the workspace's ../shared folder; check that it sits beside this checkout",
    "val": "build it with training/.venv/bin/python training/dataset.py --build-val",
    "val_native": "build it with training/.venv/bin/python training/dataset.py --build-val --val-music base,extra "
                  "--val-without speechocean762 --val-seed 20261206 --val-out training/data/val_native",
}


def bench(model_dir: Path, set_dir: Path, name: str) -> str:
    """nomusic bench (estimates into DIR/est-<name>/), then score.py on the same estimates."""
    exe = ROOT / "target" / "release" / "nomusic"
    est = model_dir / f"est-{name}"
    cmd = ["nice", "-n", "19", str(exe), "bench", "--set", str(set_dir), "--model", "deepfilternet3",
           "--model-path", str(model_dir), "--json", str(model_dir / f"bench-{name}.json"), "--out", str(est)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    ref = subprocess.run(["nice", "-n", "19", sys.executable, str(SHARED / "bench" / "score.py"), str(set_dir),
                          str(est)], check=True, capture_output=True, text=True)
    text = res.stdout + "\nscore.py on the same estimates:\n" + ref.stdout
    (model_dir / f"bench-{name}.txt").write_text(text)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a train.py checkpoint, or 'base' for the original model")
    p.add_argument("--out")
    p.add_argument("--bench", action="store_true", help="nomusic bench on ../shared/bench/dev")
    p.add_argument("--val", action="store_true", help="nomusic bench on training/data/val")
    p.add_argument("--val-native", action="store_true", help="nomusic bench on training/data/val_native")
    p.add_argument("--ema", action="store_true", help="export the checkpoint's moving average of the weights")
    a = p.parse_args(argv)
    sets = [(name, set_dir) for name, set_dir, wanted in [
        ("dev", SHARED / "bench" / "dev", a.bench), ("val", VAL_DIR, a.val),
        ("val_native", VAL_NATIVE_DIR, a.val_native)] if wanted]
    for name, set_dir in sets:  # before the export, so that a missing set costs nothing
        if not (set_dir / "manifest.json").is_file():
            sys.exit(f"no {name} set at {set_dir}: {BUILD_HINT[name]}")
    torch.set_num_threads(1)
    if a.checkpoint == "base":
        model = Dfn3(base_model_dir())
        out = Path(a.out) if a.out else base_model_dir()
        step = 0
    else:
        weights, step, graphs = checkpoint_weights(a.checkpoint, ema=a.ema)
        model = Dfn3(graphs)
        model.load_state_dict(weights)
        tag = "-ema" if a.ema else ""
        out = Path(a.out) if a.out else Path(a.checkpoint).parent / f"export-step{step}{tag}"
    model.export(out)
    err = check_export(model, out)
    print(f"exported step {step} to {out} (onnxruntime vs torch: max abs err {err:.2e})", flush=True)
    if err > 1e-4:
        sys.exit("exported graphs do not match the torch modules")
    for name, set_dir in sets:
        print(bench(out, set_dir, name), flush=True)


if __name__ == "__main__":
    main()
