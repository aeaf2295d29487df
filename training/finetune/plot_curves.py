"""Training and validation curves of a fine-tuning run as one SVG (no plotting library needed).

    training/.venv/bin/python training/finetune/plot_curves.py training/runs/dfn3-ft [-o curves.svg]

Left: training loss (mean over windows of 50 steps). Right: validation SI-SDRi (all items and the
vocal-music items, dB) against the step.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def panel(x0, y0, w, h, series, title, xlabel):
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
    for k, (name, pts, color) in enumerate(series):
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        out.append(f'<text x="{x0 + 8}" y="{y0 + 16 + 14 * k}" font-size="11" fill="{color}">{name}</text>')
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("-o", "--out")
    a = p.parse_args(argv)
    run = Path(a.run)
    tr = read(run / "train.csv")
    va = read(run / "val.csv") if (run / "val.csv").exists() else []
    win = 50
    loss = [(tr[i + win - 1]["step"], sum(r["loss"] for r in tr[i:i + win]) / win)
            for i in range(0, len(tr) - win + 1, win)]
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="900" height="340" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>',
           panel(60, 30, 360, 260, [("train loss (mean of 50 steps)", loss, "#1f77b4")], "training loss", "step"),
           panel(510, 30, 360, 260, [("SI-SDRi, all val items", [(r["step"], r["si_sdri"]) for r in va], "#d62728"),
                                     ("SI-SDRi, vocal-music items", [(r["step"], r["si_sdri_vocal"]) for r in va],
                                      "#2ca02c")], "validation (dB)", "step"),
           "</svg>"]
    out = Path(a.out) if a.out else run / "curves.svg"
    out.write_text("\n".join(svg))
    print(out)


if __name__ == "__main__":
    main()
