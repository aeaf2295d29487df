"""Paths and small helpers shared by the fine-tuning scripts."""
from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TRAINING = HERE.parent
ROOT = TRAINING.parent
SHARED = ROOT.parent / "shared"
TARBALL = SHARED / "models" / "deepfilternet3" / "DeepFilterNet3_onnx.tar.gz"
RUNS = TRAINING / "runs"
BASE_DIR = RUNS / "base-dfn3"  # the unpacked original model (git-ignored, never committed)
VAL_DIR = TRAINING / "data" / "val"
VAL_NATIVE_DIR = TRAINING / "data" / "val_native"  # held-out set without speechocean762's speakers

sys.path.insert(0, str(HERE))
sys.path.append(str(TRAINING))  # dataset.py (after finetune/, whose names come first)

FILES = ("enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini")


def base_model_dir() -> Path:
    """Unpacks the released DeepFilterNet3 tarball into training/runs/base-dfn3 (once)."""
    if all((BASE_DIR / f).is_file() for f in FILES):
        return BASE_DIR
    BASE_DIR.mkdir(parents=True, exist_ok=True)
    with tarfile.open(TARBALL) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in FILES:
                f = tar.extractfile(member)
                (BASE_DIR / name).write_bytes(f.read())
    return BASE_DIR


def checkpoint_weights(path: str | Path, ema: bool = False) -> tuple[dict, int, Path]:
    """(state dict, step, graphs) of a train.py checkpoint: its weights, or with `ema` their
    moving average (train.py --ema; a checkpoint without one is refused by name), and the model
    directory whose graphs they fit (train.py --graphs; the released model's for checkpoints from
    before that option)."""
    import torch
    st = torch.load(path, weights_only=False)
    if ema and st.get("ema") is None:
        sys.exit(f"{path} has no moving average (train.py --ema)")
    graphs = (st.get("args") or {}).get("graphs")
    return st["ema" if ema else "model"], st["step"], Path(graphs) if graphs else base_model_dir()


def exported_weights(path: str | Path) -> dict:
    """The state dict held by an exported model directory (its three ONNX graphs, as
    export_eval.py writes them); a directory without all of FILES is refused by name."""
    from dfn3 import Dfn3
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        sys.exit(f"{path}: not an exported model (missing {', '.join(missing)})")
    return Dfn3(path).state_dict()


def si_sdr(est: np.ndarray, ref: np.ndarray, eps: float = 1e-12) -> float:
    """As ../shared/bench/score.py defines it."""
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    a = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    t = a * ref
    e = est - t
    return float(10 * np.log10((np.dot(t, t) + eps) / (np.dot(e, e) + eps)))


def val_items(n: int | None = None) -> list[dict]:
    """Manifest items of training/data/val; `n` of them spread evenly (fixed subset)."""
    items = json.loads((VAL_DIR / "manifest.json").read_text())["items"]
    if n is None or n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
