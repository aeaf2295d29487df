"""Weight-space averages of fine-tuning checkpoints ("model soups"; WiSE-FT when one ingredient
is the released model): one model, no extra inference cost.

    training/.venv/bin/python training/finetune/soup.py OUT.pt base:0.5 training/runs/dfn3-ft/ckpt_step1000.pt:0.5

Each ingredient is CHECKPOINT:WEIGHT (`base` = the released DeepFilterNet3; CHECKPOINT@ema takes a
checkpoint's moving average of the weights, from train.py --ema; a directory is an exported
model, e.g. crates/models/assets/nomusic, the shipped one); the weights are normalised to sum
to 1. With `--only PREFIX[,PREFIX...]` (e.g. `--only df_dec`) only the weights whose names start
with a prefix are averaged and every other weight is the first ingredient's: a soup of one part
of the network. OUT.pt holds {model, step, soup, args: {graphs}} and is read by export_eval.py like a
training checkpoint (its step is the largest checkpoint step among the ingredients). All the
ingredients must share one network: the graphs of the first one (a directory, a checkpoint's
train.py --graphs, or the released model for `base`), which OUT.pt records.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ftcommon import base_model_dir, checkpoint_weights, exported_weights  # noqa: E402  (sets sys.path)
from dfn3 import Dfn3  # noqa: E402


def ingredient(path: str) -> tuple[dict, int, Path]:
    """(state dict, checkpoint step or 0, graphs it fits) of one ingredient."""
    if path == "base":
        return Dfn3(base_model_dir()).state_dict(), 0, base_model_dir()
    if Path(path).is_dir():
        return exported_weights(path), 0, Path(path)
    return checkpoint_weights(path.removesuffix("@ema"), ema=path.endswith("@ema"))


def main(argv):
    argv, only = list(argv), None
    if "--only" in argv:
        i = argv.index("--only")
        if i + 1 >= len(argv):
            sys.exit("--only needs PREFIX[,PREFIX...], e.g. --only df_dec")
        only = tuple(argv[i + 1].split(","))
        del argv[i:i + 2]
    if len(argv) < 3:
        sys.exit(__doc__)
    out, parts = argv[1], []
    for spec in argv[2:]:
        path, _, w = spec.rpartition(":")
        parts.append((path, float(w)))
    total = sum(w for _, w in parts)
    template, graphs, acc, step = None, None, None, 0
    for path, w in parts:
        sd, ckpt_step, own = ingredient(path)
        step = max(step, ckpt_step)
        if template is None:  # the first ingredient's network is the soup's
            template, graphs = sd, own
        odd = [k for k, v in template.items() if k not in sd or sd[k].shape != v.shape]
        if odd:
            sys.exit(f"{path}: not the network of {graphs} ({len(odd)} weights differ, e.g. {odd[0]}); "
                     "a model with more look-ahead soups only with ingredients of its own graphs "
                     "(training/finetune/lookahead.py turns an exported model into one)")
        if acc is None:
            acc = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in sd.items()
                   if v.is_floating_point() and (only is None or k.startswith(only))}
            if not acc:
                sys.exit(f"--only {','.join(only)}: no weights of the network start with that "
                         f"(parts: {', '.join(sorted({k.split('.')[0] for k in sd}))})")
        for k in acc:
            acc[k] += (w / total) * sd[k].double()
    model = {k: (acc[k].to(v.dtype) if k in acc else v) for k, v in template.items()}
    torch.save(dict(model=model, step=step, soup=[(p, w / total) for p, w in parts], only=only,
                    args=dict(graphs=str(graphs))), out)
    print(f"wrote {out}: " + ", ".join(f"{p} x {w / total:.2f}" for p, w in parts)
          + (f" (only {','.join(only)}; the rest from {parts[0][0]})" if only else ""))


if __name__ == "__main__":
    main(sys.argv)
