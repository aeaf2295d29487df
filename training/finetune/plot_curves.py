"""Training and validation curves of a fine-tuning run as one SVG (no plotting library needed).

    training/.venv/bin/python training/finetune/plot_curves.py [NAME=]RUN [[NAME=]RUN ...] [-o curves.svg]

Left: training loss (mean over windows of 50 steps; the -SI-SDR and STOI terms of runs with them left out,
so the curves compare). Right: validation SI-SDRi (all items solid, vocal-music items dashed, dB)
against the step, one colour per run; a run trained with --ema also gets its moving average of the
weights (all items, dotted).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def read_validation(path: Path) -> list[dict]:
    """val.csv / val_ema.csv, one row per step (a resumed run may repeat a step: the last counts)."""
    return list({r["step"]: r for r in read(path)}.values()) if path.exists() else []


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def panel(x0, y0, w, h, series, title, xlabel):
    """series: (name, [(x, y)], color, dash) with dash None (solid) or an SVG dash pattern."""
    xs = [x for s in series for x, _ in s[1]]
    ys = [y for s in series for _, y in s[1]]
    if not xs:
        return ""
    xmin, xmax = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    ymin, ymax = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad = 0.05 * (ymax - ymin)
    ymin, ymax = ymin - pad, ymax + pad
    sx = lambda x: x0 + (x - xmin) / (xmax - xmin) * w
    sy = lambda y: y0 + h - (y - ymin) / (ymax - ymin) * h
    out = [f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#888"/>',
           f'<text x="{x0 + w / 2}" y="{y0 - 8}" text-anchor="middle" font-size="13">{title}</text>',
           f'<text x="{x0 + w / 2}" y="{y0 + h + 32}" text-anchor="middle" font-size="11">{xlabel}</text>']
    for i in range(5):
        yv = ymin + (ymax - ymin) * i / 4
        out.append(f'<text x="{x0 - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>')
        xv = xmin + (xmax - xmin) * i / 4
        out.append(f'<text x="{sx(xv):.1f}" y="{y0 + h + 14}" text-anchor="middle" font-size="10">{xv:.0f}</text>')
    for k, (name, pts, color, dash_pattern) in enumerate(series):
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash = f' stroke-dasharray="{dash_pattern}"' if dash_pattern else ""
        marks = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts) \
            if len(pts) < 40 else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>{marks}')
        out.append(f'<text x="{x0 + 8}" y="{y0 + 16 + 14 * k}" font-size="11" fill="{color}">{name}</text>')
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (train.csv, val.csv); NAME=FOLDER to label one")
    p.add_argument("-o", "--out", help="default: RUN/curves.svg of the first run")
    a = p.parse_args(argv)
    win = 50
    loss_series, val_series = [], []
    for i, spec in enumerate(a.runs):
        name, _, folder = spec.rpartition("=")
        run = Path(folder)
        name = name or run.name
        color = COLORS[i % len(COLORS)]
        tr = read(run / "train.csv")
        va = read_validation(run / "val.csv")
        # The loss without the optional -SI-SDR (negative dB) and STOI terms, so that runs compare.
        args = json.loads((run / "args.json").read_text()) if (run / "args.json").exists() else {}
        w_sisdr, w_stoi = args.get("w_sisdr", 0.0), args.get("w_stoi", 0.0)
        plain = [r["loss"] - w_sisdr * r.get("sisdr", 0.0) - w_stoi * r.get("stoi", 0.0) for r in tr]
        loss = [(tr[j + win - 1]["step"], sum(plain[j:j + win]) / win) for j in range(0, len(tr) - win + 1, win)]
        loss_series.append((name, loss, color, None))
        val_series.append((f"{name}: all", [(r["step"], r["si_sdri"]) for r in va], color, None))
        val_series.append((f"{name}: vocal-music", [(r["step"], r["si_sdri_vocal"]) for r in va], color, "5,3"))
        ema = read_validation(run / "val_ema.csv")
        if ema:
            val_series.append((f"{name}: all, average of weights", [(r["step"], r["si_sdri"]) for r in ema],
                               color, "1.5,2.5"))
    h = 300 + 14 * max(0, len(val_series) - 4)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="940" height="{h + 70}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>',
           panel(60, 30, 380, h, loss_series, "training loss (mean of 50 steps)", "step"),
           panel(530, 30, 380, h, val_series, "validation SI-SDRi (dB; dashed: vocal-music items)", "step"),
           "</svg>"]
    out = Path(a.out) if a.out else Path(a.runs[0].rpartition("=")[2]) / "curves.svg"
    out.write_text("\n".join(svg))
    print(out)


if __name__ == "__main__":
    main()
