"""Low-band refiner (experiment): a small causal network that corrects the shipped model's estimate
below `k_bins` of a 32 ms STFT, from the mixture and that estimate. The shipped model resolves
50 Hz; below ~1 kHz, where music's bass sits over speech's fundamentals, a longer window resolves
the harmonics. The correction is residual (Z = A + c X per low bin, c complex, zero at init), so
the untrained refiner returns the estimate unchanged.

Train:  training/.venv/bin/python training/refiner/refiner.py train --steps 3000
Score:  training/.venv/bin/python training/refiner/refiner.py dev CKPT EST_DIR
"""
import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "finetune"))
from common import DATA  # noqa: E402
from losses import spectral_loss  # noqa: E402

FFT, HOP = 512, 128
EPS = 1e-10


class Refiner(torch.nn.Module):
    def __init__(self, k_bins: int = 33, hidden: int = 96, layers: int = 2, low_delay: int = 0):
        super().__init__()
        self.k = k_bins
        self.low_delay = low_delay  # hop M of the asymmetric windows (latency 2M); 0: symmetric
        self.register_buffer("window", torch.hann_window(FFT).sqrt())
        if low_delay:
            wa, ws = asymmetric_windows(FFT, low_delay)
            self.register_buffer("wa", wa)
            self.register_buffer("ws", ws)
        self.inp = torch.nn.Linear(2 * k_bins + 1, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, layers, batch_first=True)
        self.out = torch.nn.Linear(hidden, 2 * k_bins)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def stft(self, x):
        if self.low_delay:
            m = self.low_delay
            xp = torch.nn.functional.pad(x, (FFT - m, m))
            return torch.fft.rfft(xp.unfold(-1, FFT, m) * self.wa)  # frame j ends at sample (j+1) M
        return torch.stft(x, FFT, HOP, window=self.window, return_complex=True).transpose(1, 2)  # B,T,F

    def istft(self, z, n):
        if self.low_delay:
            m = self.low_delay
            fr = torch.fft.irfft(z, FFT)[..., FFT - 2 * m:] * self.ws[FFT - 2 * m:]  # B,T,2M
            B, T, _ = fr.shape
            y = torch.nn.functional.fold(fr.transpose(1, 2), (1, (T + 1) * m), (1, 2 * m), stride=(1, m))
            # frame j's synthesis part covers original samples [(j-1) M, (j+1) M)
            return y.reshape(B, -1)[:, m:m + n]
        return torch.istft(z.transpose(1, 2), FFT, HOP, window=self.window, length=n)

    def features(self, X, A):
        k = self.k
        px = X[..., :k].abs().pow(2).add(EPS).log10()
        pa = A[..., :k].abs().pow(2).add(EPS).log10()
        gain = (pa - px).clamp(-6, 0.5)  # the estimate's gain, in bels
        shape = (px - px.mean(-1, keepdim=True)) / 3
        hi = (A[..., 32:96].abs().pow(2).sum(-1).add(EPS).log10()
              - X[..., 32:96].abs().pow(2).sum(-1).add(EPS).log10()).clamp(-6, 0.5)  # 1-3 kHz gain
        return torch.cat([gain, shape, hi.unsqueeze(-1)], -1)

    def forward(self, x, a):
        X, A = self.stft(x), self.stft(a)
        h, _ = self.gru(torch.relu(self.inp(self.features(X, A))))
        c = self.out(h)
        c = torch.complex(c[..., :self.k], c[..., self.k:])
        Z = torch.cat([A[..., :self.k] + c * X[..., :self.k], A[..., self.k:]], -1)
        self.last_low = Z[..., :self.k]
        return self.istft(Z, x.shape[-1])


def spec_loss(model, s):
    """DeepFilterNet's compressed spectral loss (`finetune/losses.spectral_loss`) on the refined bins."""
    return spectral_loss(model.last_low, model.stft(s)[..., :model.k])


def asymmetric_windows(n: int, m: int):
    """Low-delay analysis/synthesis windows (after Mauler & Martin, 2011): the analysis window
    rises over n - m samples like a long sqrt-Hann and falls over m like a short one; the synthesis
    window lives on the last 2m samples, and analysis x synthesis there is a Hann of 2m, which
    overlap-adds to one at hop m. Latency 2m samples, frequency resolution of n."""
    long = torch.hann_window(2 * (n - m), periodic=True, dtype=torch.float64).sqrt()
    short = torch.hann_window(2 * m, periodic=True, dtype=torch.float64)
    wa = torch.cat([long[: n - m], short.sqrt()[m:]])
    ws = torch.zeros(n, dtype=torch.float64)
    ws[n - 2 * m:] = short / wa[n - 2 * m:].clamp_min(1e-8)
    return wa.float(), ws.float()


def si_sdr_t(est, ref):
    a = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + EPS)
    t = a * ref
    return 10 * torch.log10(t.pow(2).sum(-1) / ((est - t).pow(2).sum(-1) + EPS) + EPS)


def loss_fn(z, s, a, active, w_mo):
    has = active.any(-1)
    l_sdr = -si_sdr_t(z[has], s[has]).mean() if has.any() else z.sum() * 0
    mo = (~active).float()
    ez = 10 * torch.log10((z.pow(2) * mo).sum(-1) + EPS)
    ea = 10 * torch.log10((a.pow(2) * mo).sum(-1) + EPS)
    use = mo.sum(-1) > 1600
    l_mo = torch.relu(ez - ea)[use].mean() if use.any() else z.sum() * 0
    return l_sdr + w_mo * l_mo, l_sdr.item(), l_mo.item()


def load(split):
    d = np.load(DATA / "refiner" / f"{split}.npz")
    return {k: torch.from_numpy(d[k]) for k in ("mixture", "speech", "estimate", "active")}


def evaluate(model, d, bs=32):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(d["mixture"]), bs):
            out.append(model(d["mixture"][i:i + bs], d["estimate"][i:i + bs]))
    z = torch.cat(out)
    has = d["active"].any(-1) & ((d["mixture"] - d["speech"]).abs().sum(-1) > 0)  # speech and music
    s, x, a = d["speech"][has], d["mixture"][has], d["estimate"][has]
    base = si_sdr_t(x, s)
    model.train()
    return (si_sdr_t(z[has], s) - base).mean().item(), (si_sdr_t(a, s) - base).mean().item()


def train(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tr, va = load("train"), load("val")
    model = Refiner(args.k, args.hidden, low_delay=args.low_delay)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(tr["mixture"])
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    print(f"params {sum(p.numel() for p in model.parameters())}, train items {n}")
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n, (args.batch,), generator=g)
        # random crop of 2 s: more distinct batches per item
        L = tr["mixture"].shape[1]
        c = int(torch.randint(0, L - args.crop + 1, (1,), generator=g))
        sl = slice(c, c + args.crop)
        x, s, a, act = (tr[k][idx, sl] for k in ("mixture", "speech", "estimate", "active"))
        z = model(x, a)
        loss, l_sdr, l_mo = loss_fn(z, s, a, act, args.w_mo)
        if args.w_spec:
            loss = loss + args.w_spec * spec_loss(model, s)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.every == 0:
            v, v0 = evaluate(model, va)
            print(f"step {step} loss {l_sdr:.2f} mo {l_mo:.2f} val SI-SDRi {v:.3f} (estimate {v0:.3f}) "
                  f"{time.time() - t0:.0f}s", flush=True)
            torch.save({"model": model.state_dict(), "args": vars(args), "step": step}, out / f"ck{step}.pt")


def dev(args):
    import soundfile as sf
    sys.path.insert(0, str(HERE.parents[2] / "shared" / "bench"))
    import score
    ck = torch.load(args.ckpt, weights_only=False)
    a_ = ck["args"]
    model = Refiner(a_["k"], a_["hidden"], low_delay=a_.get("low_delay", 0))
    model.load_state_dict(ck["model"])
    model.eval()
    set_dir = Path(args.set)
    man = json.load(open(set_dir / "manifest.json"))
    items = {it["id"]: it for it in man["items"]}
    r, r0, mo, mo0 = [], [], [], []
    for p in sorted(glob.glob(str(set_dir / "*" / "speech.wav"))):
        i = Path(p).parent.name
        s, _ = sf.read(p)
        x, _ = sf.read(set_dir / i / "mixture.wav")
        a, _ = sf.read(Path(args.est) / f"{i}.wav")
        with torch.no_grad():
            z = model(torch.tensor(x, dtype=torch.float32)[None], torch.tensor(a[:len(x)], dtype=torch.float32)[None])[0]
        z = z.double().numpy()
        if args.write:
            Path(args.write).mkdir(parents=True, exist_ok=True)
            sf.write(Path(args.write) / f"{i}.wav", z.astype(np.float32), 16000, subtype="FLOAT")
        m = score.music_only_mask(items[i], len(x))
        b = score.si_sdr(x, s)[0]
        r.append(score.si_sdr(z, s)[0] - b)
        r0.append(score.si_sdr(a[:len(x)], s)[0] - b)
        mo.append(max(-60, 10 * np.log10(np.sum(z[m] ** 2) / np.sum(x[m] ** 2))))
        mo0.append(max(-60, 10 * np.log10(np.sum(a[:len(x)][m] ** 2) / np.sum(x[m] ** 2))))
    print(f"dev SI-SDRi {np.mean(r):.3f} (estimate {np.mean(r0):.3f})  MO-att {np.mean(mo):.1f} ({np.mean(mo0):.1f})")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--crop", type=int, default=32000)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--k", type=int, default=33)
    t.add_argument("--hidden", type=int, default=96)
    t.add_argument("--low-delay", type=int, default=0, help="hop M of low-delay windows (latency 2M)")
    t.add_argument("--w-mo", type=float, default=0.1)
    t.add_argument("--w-spec", type=float, default=0.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--every", type=int, default=250)
    t.add_argument("--out", default=str(HERE.parent / "runs" / "refiner"))
    d = sub.add_parser("dev")
    d.add_argument("ckpt")
    d.add_argument("est")
    d.add_argument("--set", default=str(HERE.parents[2] / "shared" / "bench" / "dev"))
    d.add_argument("--write")
    args = ap.parse_args()
    train(args) if args.cmd == "train" else dev(args)


if __name__ == "__main__":
    main()
