"""Learned soup: one interpolation coefficient per weight tensor and ingredient, fitted by
gradient descent on a selection set, instead of one hand-picked share for a whole part of the
network (soup.py --only).

    training/.venv/bin/python training/finetune/learned_soup.py OUT.pt --set training/data/sel_xn \
        crates/models/assets/nomusic base training/runs/spd10/ckpt_step4250.pt@ema

The first ingredient is the anchor A (its graphs are the soup's); every other ingredient k adds
`a[k, t] * (theta_k[t] - A[t])` to weight tensor t, with all a starting at 0 (so the fit starts
at A) and kept within [--lo, --hi]. The objective is the benchmark's: the mean SI-SDR (dB) of the
low-band output (below 7.5 kHz, as in training) against the speech over the items of --set whose
speech-to-music ratio is within --smr, plus --w-mo times the music-only term of train.py (output
to mixture energy in dB over music-only frames, hinge at -60 dB), plus --l2 times the squared
coefficients. Items alternate between a fit half and a check half (even/odd position); the
coefficients of the epoch with the best check score are saved. Features do not depend on the
weights, so they are computed once. OUT.pt is a soup checkpoint like soup.py's (read by
export_eval.py); OUT.json records the coefficients and the per-epoch scores.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from ftcommon import si_sdr  # noqa: E402  (sets sys.path)
from dfn3 import Dfn3  # noqa: E402
import losses as L  # noqa: E402
from soup import ingredient  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("ingredients", nargs="+",
                   help="anchor first; then checkpoints, CHECKPOINT@ema, exported model directories or `base`")
    p.add_argument("--set", required=True, help="a folder written by dataset.py --build-val")
    p.add_argument("--smr", default="-5,5", help="items with a target SMR in this range (dB)")
    p.add_argument("--max-items", type=int, default=None, help="at most this many of them (evenly spread)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lo", type=float, default=-0.5)
    p.add_argument("--hi", type=float, default=1.0)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--w-mo", type=float, default=0.05)
    p.add_argument("--group", choices=["tensor", "part"], default="tensor",
                   help="one coefficient per weight tensor, or per part (enc, erb_dec, df_dec)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_items(model: Dfn3, set_dir: Path, smr: tuple[float, float], max_items: int | None):
    """Per item at 48 kHz: the mixture's spectrum `spec` and features `fe`, `fs`, the speech `sp`,
    the music-only output frames `mo` and whether the music has vocals."""
    import soundfile as sf
    from scipy.signal import resample_poly
    items = json.loads((set_dir / "manifest.json").read_text())["items"]
    items = [it for it in items if smr[0] <= it["smr_target_db"] <= smr[1] and it["speech_segments"]]
    if max_items is not None and max_items < len(items):
        step = len(items) / max_items
        items = [items[int(i * step)] for i in range(max_items)]
    out = []
    for it in items:
        d = set_dir / it["dir"]
        mix16, _ = sf.read(d / "mixture.wav", dtype="float32")
        sp16, _ = sf.read(d / "speech.wav", dtype="float32")
        up = lambda x: resample_poly(x.astype(np.float64), 3, 1).astype(np.float32)
        mix, sp = up(mix16), up(sp16)
        n = len(mix) // model.hop * model.hop
        mix, sp = torch.from_numpy(mix[:n])[None], torch.from_numpy(sp[:n])[None]
        spec = model.stft(mix)
        fe, fs = model.features(spec)
        active = np.zeros(n, bool)
        for sg in it["speech_segments"]:
            active[int(sg["start_s"] * model.sr):int(sg["end_s"] * model.sr)] = True
        mo = L.music_only_frames(torch.from_numpy(active.reshape(-1, model.hop).any(-1))[None], model.conv_lookahead)
        out.append(dict(spec=spec, fe=fe, fs=fs, sp=sp, mo=mo, vocals=bool(it["music"]["vocals"])))
    return out


def stack(items, hop: int):
    """One batch; items of different lengths are padded with silence at the end (the network is
    causal, so the padding changes nothing before it)."""
    t = max(it["spec"].shape[1] for it in items)

    def pad(x, k):
        dim, size = (2, t) if k in ("fe", "fs") else (1, t * hop if k == "sp" else t)
        if x.is_complex():
            return torch.view_as_complex(pad(torch.view_as_real(x), k).contiguous())
        widths = [0, 0] * (x.dim() - dim - 1) + [0, size - x.shape[dim]]
        return torch.nn.functional.pad(x, widths, value=False if x.dtype == torch.bool else 0.0)
    return {k: torch.cat([pad(it[k], k) for it in items]) for k in ("spec", "fe", "fs", "sp", "mo")}


class Soup(torch.nn.Module):
    def __init__(self, anchor: dict, others: list[dict], names: list[str], group: str):
        super().__init__()
        self.names = names
        self.anchor = {n: anchor[n] for n in names}
        self.delta = [{n: (o[n] - anchor[n]).float() for n in names} for o in others]
        self.groups = sorted({n.split(".")[0] for n in names}) if group == "part" else names
        self.index = [self.groups.index(n.split(".")[0]) if group == "part" else i for i, n in enumerate(names)]
        self.a = torch.nn.Parameter(torch.zeros(len(others), len(self.groups)))

    def weights(self) -> dict:
        w = {}
        for i, n in enumerate(self.names):
            t = self.anchor[n]
            for k, d in enumerate(self.delta):
                t = t + self.a[k, self.index[i]] * d[n]
            w[n] = t
        return w


def run(model: Dfn3, weights: dict, b: dict, lo_bins: int):
    sub = lambda part: {n.split(".", 1)[1]: v for n, v in weights.items() if n.startswith(part + ".")}
    e0, e1, e2, e3, emb, c0, lsnr = functional_call(model.enc, sub("enc"), (b["fe"], b["fs"]))
    (m,) = functional_call(model.erb_dec, sub("erb_dec"), (emb, e3, e2, e1, e0))
    coefs = functional_call(model.df_dec, sub("df_dec"), (emb, c0))[0]
    enh = model.enhance(b["spec"], m, coefs)
    return enh, model.istft_low(enh, lo_bins), model.istft_low(model.delay_spec(model.stft(b["sp"])), lo_bins)


def score(model, soup, items, lo_bins, batch) -> dict:
    """Mean SI-SDR improvement of the low-band output over the low-band mixture, and on vocal items."""
    rows = []
    with torch.no_grad():
        w = soup.weights()
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            b = stack(chunk, model.hop)
            _, y, s = run(model, w, b, lo_bins)
            x = model.istft_low(model.delay_spec(b["spec"]), lo_bins)  # the mixture, aligned with y and s
            for j, it in enumerate(chunk):
                n = it["sp"].shape[1]
                yj, sj, xj = (v[j, :n].numpy() for v in (y, s, x))
                rows.append((si_sdr(yj, sj) - si_sdr(xj, sj), it["vocals"]))
    voc = [r for r, v in rows if v]
    return dict(si_sdri=float(np.mean([r for r, _ in rows])), vocal=float(np.mean(voc)) if voc else float("nan"))


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    sds, graphs = [], None
    for spec in args.ingredients:
        sd, _, own = ingredient(spec)
        graphs = graphs or own
        sds.append(sd)
    model = Dfn3(graphs)
    model.eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    names = [n for n, v in sds[0].items() if v.is_floating_point()]
    for spec, sd in zip(args.ingredients[1:], sds[1:]):
        odd = [n for n in names if n not in sd or sd[n].shape != sds[0][n].shape]
        if odd:
            sys.exit(f"{spec}: not the network of {graphs} (e.g. {odd[0]})")
    soup = Soup(sds[0], sds[1:], names, args.group)
    lo_bins = int(L.LOW_HZ / (model.sr / model.fft))
    smr = tuple(float(v) for v in args.smr.split(","))
    t0 = time.time()
    items = load_items(model, Path(args.set), smr, args.max_items)
    fit, check = items[0::2], items[1::2]
    print(f"{len(items)} items ({len(fit)} fit, {len(check)} check), features in {time.time() - t0:.0f} s", flush=True)
    opt = torch.optim.Adam([soup.a], lr=args.lr)
    rng = np.random.default_rng(args.seed)
    history = []
    s_fit, s_check = score(model, soup, fit, lo_bins, args.batch), score(model, soup, check, lo_bins, args.batch)
    history.append(dict(epoch=0, fit=s_fit, check=s_check))
    print(f"epoch 0: fit {s_fit['si_sdri']:.3f} (vocal {s_fit['vocal']:.2f}), check {s_check['si_sdri']:.3f} "
          f"(vocal {s_check['vocal']:.2f})", flush=True)
    best = (s_check["si_sdri"], soup.a.detach().clone(), 0)
    for epoch in range(1, args.epochs + 1):
        t1 = time.time()
        order = rng.permutation(len(fit))
        for i in range(0, len(fit), args.batch):
            b = stack([fit[j] for j in order[i:i + args.batch]], model.hop)
            enh, y, s = run(model, soup.weights(), b, lo_bins)
            x_d = model.delay_spec(b["spec"])
            loss = (L.neg_si_sdr_loss(y, s)
                    + args.w_mo * L.music_only_loss(enh[..., :lo_bins], x_d[..., :lo_bins], b["mo"])
                    + args.l2 * (soup.a ** 2).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                soup.a.clamp_(args.lo, args.hi)
        s_fit, s_check = score(model, soup, fit, lo_bins, args.batch), score(model, soup, check, lo_bins, args.batch)
        history.append(dict(epoch=epoch, fit=s_fit, check=s_check))
        print(f"epoch {epoch}: fit {s_fit['si_sdri']:.3f} (vocal {s_fit['vocal']:.2f}), check "
              f"{s_check['si_sdri']:.3f} (vocal {s_check['vocal']:.2f}), |a| mean "
              f"{soup.a.abs().mean():.3f} max {soup.a.abs().max():.3f}, {time.time() - t1:.0f} s", flush=True)
        if s_check["si_sdri"] > best[0]:
            best = (s_check["si_sdri"], soup.a.detach().clone(), epoch)
    with torch.no_grad():
        soup.a.copy_(best[1])
        w = {n: v.detach() for n, v in soup.weights().items()}
    state = {n: (w[n].to(v.dtype) if n in w else v) for n, v in sds[0].items()}
    torch.save(dict(model=state, step=0, soup=[(p, None) for p in args.ingredients], learned=True,
                    args=dict(graphs=str(graphs))), args.out)
    coef = {spec: {g: float(soup.a[k, i].detach()) for i, g in enumerate(soup.groups)}
            for k, spec in enumerate(args.ingredients[1:])}
    Path(args.out).with_suffix(".json").write_text(json.dumps(dict(
        args=vars(args), best_epoch=best[2], history=history, coefficients=coef), indent=1))
    print(f"wrote {args.out} (epoch {best[2]}, check {best[0]:.3f})")


if __name__ == "__main__":
    main()
