"""Fine-tune DeepFilterNet3 to keep speech and remove music (sung vocals included).

    nice -n 19 training/.venv/bin/python training/finetune/train.py --out training/runs/dfn3-ft [--resume]

Data: training/dataset.py's dynamic mixer at 48 kHz (new mixtures every epoch); item i of step k
is mixer.item(epoch, index) with index = k * batch + i, so a resumed run sees exactly the items
an uninterrupted one would. Writes into --out: train.csv (per-step losses), val.csv (periodic
validation on a fixed subset of training/data/val), ckpt_latest.pt (model + optimiser + step +
RNG, every --ckpt-minutes, atomically replaced), ckpt_step<N>.pt (kept every --keep-every steps),
args.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from ftcommon import ROOT, RUNS, VAL_DIR, base_model_dir, exported_weights, si_sdr, val_items  # noqa: E402  (sets sys.path)
import losses as L  # noqa: E402
from dfn3 import Dfn3  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(RUNS / "dfn3-ft"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt_latest.pt")
    p.add_argument("--init", default=None,
                   help="start a new run from another run's checkpoint (weights, optimiser, step, RNG), "
                        "or from an exported model directory (its three ONNX graphs: weights only, a "
                        "fresh optimiser, step --init-step); this run's arguments apply")
    p.add_argument("--init-step", type=int, default=None,
                   help="with --init DIR: the step to count on from (for --decay-from and --steps)")
    p.add_argument("--graphs", default=None,
                   help="the model directory whose graphs and config.ini define the network trained "
                        "(default: the released DeepFilterNet3); e.g. a lookahead.py output, "
                        "whose network sees more frames ahead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--items-per-epoch", type=int, default=20000)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-inputs", type=float, default=1.0,
                   help="multiply the lr of the encoder's two input convolutions by this (the ones "
                        "lookahead.py widens: their new taps start at zero)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--decay-from", type=int, default=None,
                   help="from this step, cosine decay of the lr to --lr-min over --decay-steps steps")
    p.add_argument("--decay-steps", type=int, default=2000)
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.998); "
                        "saved as 'ema' in the checkpoints, validated beside the raw weights")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--clip", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=10 ** 9, help="stop after this many steps")
    p.add_argument("--hours", type=float, default=1e9, help="stop after this much wall time")
    p.add_argument("--ckpt-minutes", type=float, default=10.0)
    p.add_argument("--keep-every", type=int, default=1000)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--val-items", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--p-sung", type=float, default=None, help="MixConfig.p_sung (ablation: 0)")
    p.add_argument("--p-bandlimit", type=float, default=0.0,
                   help="MixConfig.p_bandlimit: share of items whose music is band-limited to 8 kHz (16 kHz material)")
    p.add_argument("--p-speed", type=float, default=0.0,
                   help="MixConfig.p_speed: share of speech segments played 0.9-1.1x faster (new voices)")
    p.add_argument("--p-eq", type=float, default=None,
                   help="MixConfig.p_eq: share of items whose music gets a random EQ (default 0.6)")
    p.add_argument("--p-reverb", type=float, default=None,
                   help="MixConfig.p_reverb: share of items whose music gets mild reverb (default 0.3)")
    p.add_argument("--p-ramp", type=float, default=None,
                   help="MixConfig.p_ramp: share of items whose music level ramps (default 0.4); "
                        "all three 0: plain sums of speech and music, as the benchmarks are mixed")
    p.add_argument("--freeze", default=None,
                   help="PREFIX[,PREFIX...]: weights whose names start with one stay as they start "
                        "(e.g. df_dec: train the encoder and the ERB decoder only)")
    p.add_argument("--sp-decay", type=float, default=0.0,
                   help="L2-SP, decoupled: after each step pull every trained weight towards the "
                        "released DeepFilterNet3's, w -= lr * SP_DECAY * (w - w_released)")
    p.add_argument("--source-share", default=None,
                   help="MixConfig.source_share: SOURCE=SHARE,... of the speaker draws, e.g. "
                        "speechocean762=0.25 (the other corpus sources split the rest as before)")
    p.add_argument("--music", default="base",
                   help="music sets, comma-separated: base, extra (music/fetch.py --extra)")
    p.add_argument("--extra-speech", default="",
                   help="more training speech, comma-separated: klettres, ktuberling, fillets, asterisk (speech/debian.py); "
                        "their shares of the speaker draws can be set with --source-share")
    p.add_argument("--sung", default="world",
                   help="sung stem families, comma-separated: world (singing/synth.py), psola (singing/psola.py)")
    # loss weights
    p.add_argument("--w-spec", type=float, default=100.0)
    p.add_argument("--w-mr", type=float, default=20.0)
    p.add_argument("--w-mo", type=float, default=0.1)
    p.add_argument("--w-lsnr", type=float, default=0.02)
    p.add_argument("--w-hf", type=float, default=10.0)
    p.add_argument("--w-sisdr", type=float, default=0.0,
                   help="weight of -SI-SDR (dB) of the band-limited output against the speech")
    p.add_argument("--w-asym", type=float, default=0.0,
                   help="weight of the over-suppression term (compressed speech magnitude the output lacks)")
    p.add_argument("--w-stoi", type=float, default=0.0,
                   help="weight of 1 - STOI (differentiable, losses.stoi_loss) of the band-limited "
                        "output against the speech")
    p.add_argument("--w-keep", type=float, default=0.0,
                   help="weight of a term that keeps the output on items with sung vocals as --keep's "
                        "(the spectral loss against that model's output, below 7.5 kHz): learning "
                        "without forgetting how it treats singers")
    p.add_argument("--keep", default=None,
                   help="the model --w-keep holds on to (an exported model directory; default: --init)")
    p.add_argument("--smr", default=None,
                   help="speech-to-music ratio range of the mixtures in dB: --smr=MIN,MAX, inside "
                        "MixConfig.smr_db (default: all of it, -10 to 15)")
    p.add_argument("--hf", choices=["distill", "mask"], default="distill",
                   help="above 7.5 kHz: distil the original model's ERB gains, or leave them free")
    return p.parse_args(argv)


def parse_shares(text: str) -> dict[str, float]:
    """'SOURCE=SHARE,...' -> {SOURCE: SHARE} (checked against the corpus when the mixer is built)."""
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise SystemExit(f"--source-share {text!r}: expected SOURCE=SHARE,..., e.g. speechocean762=0.25") from None


def parse_smr(text: str) -> tuple[float, float]:
    """'MIN,MAX' in dB -> (MIN, MAX), inside the data's range (MixConfig.smr_db, which
    dataset.py --selfcheck verifies)."""
    from dataset import MixConfig
    full_lo, full_hi = MixConfig.smr_db
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--smr {text!r}: expected MIN,MAX in dB, e.g. --smr={full_lo:g},{full_hi:g}") from None
    if not full_lo <= lo < hi <= full_hi:
        raise SystemExit(f"--smr {text!r}: need {full_lo:g} <= MIN < MAX <= {full_hi:g}")
    return lo, hi


def input_conv_weights(model: Dfn3) -> list[str]:
    """Parameter names of the weights of the encoder's convolutions on its two inputs."""
    from lookahead import FEATURE_INPUTS
    enc = model.enc
    pads = [outs[0] for op, ins, outs, _ in enc.nodes if op == "Pad" and ins[0] in FEATURE_INPUTS]
    names = [f"enc.{enc.param_names[ins[1]]}" for op, ins, _, _ in enc.nodes if op == "Conv" and ins[0] in pads]
    if len(names) != len(FEATURE_INPUTS):
        raise SystemExit(f"expected {len(FEATURE_INPUTS)} input convolutions in enc.onnx, found {names}")
    return names


class Trainer:
    def __init__(self, args):
        self.args = args
        torch.manual_seed(args.seed)
        base = base_model_dir()
        self.graphs = Path(args.graphs).resolve() if args.graphs else base
        if args.graphs:
            args.graphs = str(self.graphs)  # checkpoints name it (export_eval.py, soup.py read it)
        self.model = Dfn3(self.graphs)
        self.teacher = None
        if args.hf == "distill":
            self.teacher = Dfn3(base)
            self.teacher.eval()
            for prm in self.teacher.parameters():
                prm.requires_grad_(False)
        self.keeper = None
        if args.w_keep > 0:
            src = args.keep or args.init
            if not src or not Path(src).is_dir():
                raise SystemExit("--w-keep needs --keep (or --init) naming an exported model directory")
            self.keeper = Dfn3(Path(src))
            self.keeper.eval()
            for prm in self.keeper.parameters():
                prm.requires_grad_(False)
        self.low_bins = int(L.LOW_HZ / (self.model.sr / self.model.fft))
        edges = np.cumsum([0] + self.model.widths)
        self.first_hf_band = int(np.searchsorted(edges, self.low_bins))  # first band starting >= 7.5 kHz
        frozen = tuple(f for f in (args.freeze or "").split(",") if f)
        if frozen:  # kept as they start: no gradient, no optimiser (so no weight decay either)
            hit = [p for n, p in self.model.named_parameters() if n.startswith(frozen)]
            if not hit:
                raise SystemExit(f"--freeze {args.freeze}: no weights start with that "
                                 f"(parts: {', '.join(sorted({n.split('.')[0] for n, _ in self.model.named_parameters()}))})")
            for p in hit:
                p.requires_grad_(False)
        trained = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.anchor = []  # (weight, the released model's value of it) for --sp-decay
        if args.sp_decay > 0:
            ref = (self.teacher if self.teacher is not None else Dfn3(base)).state_dict()
            odd = [n for n, p in trained if n not in ref or ref[n].shape != p.shape]
            if odd:
                raise SystemExit(f"--sp-decay: the released model has no weight like {odd[0]} "
                                 f"(graphs {self.graphs} differ from {base})")
            self.anchor = [(p, ref[n].detach().clone()) for n, p in trained]
        groups = [dict(params=[p for _, p in trained], scale=1.0)]
        if args.lr_inputs != 1.0:  # a second group only then: older checkpoints hold one
            inputs = set(input_conv_weights(self.model))
            groups = [dict(params=[p for n, p in trained if n not in inputs], scale=1.0),
                      dict(params=[p for n, p in trained if n in inputs], scale=args.lr_inputs)]
        self.opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
        self.step = 0
        self.skipped = 0
        self.mixer = None
        self.ema = None  # {name: tensor}, started from the weights at the first step (or loaded)
        self._ema_model = None  # a model to validate the average with, built on first use

    # ---- data ------------------------------------------------------------------------
    def get_mixer(self):
        if self.mixer is None:
            from dataset import Mixer, MixConfig, load_pools, parse_sets
            kw = dict(sr=48000, seconds=self.args.seconds)
            kw["p_bandlimit"] = self.args.p_bandlimit
            kw["p_speed"] = self.args.p_speed
            for name in ("p_sung", "p_eq", "p_reverb", "p_ramp"):  # left out: MixConfig's default
                if getattr(self.args, name) is not None:
                    kw[name] = getattr(self.args, name)
            if self.args.source_share:
                kw["source_share"] = parse_shares(self.args.source_share)
            if self.args.smr is not None:
                kw["smr_db"] = parse_smr(self.args.smr)
            cfg = MixConfig(**kw)
            pools = load_pools("train", 48000, sung_sets=parse_sets(self.args.sung),
                               music_sets=parse_sets(self.args.music),
                               extra_speech=parse_sets(self.args.extra_speech))
            self.mixer = Mixer(*pools, cfg, seed=self.args.seed)
        return self.mixer

    def batch(self, step):
        a, mixer = self.args, self.get_mixer()
        mix, sp, act, voc = [], [], [], []
        for i in range(a.batch):
            idx = step * a.batch + i
            it = mixer.item(idx // a.items_per_epoch, idx % a.items_per_epoch)
            mix.append(it.mixture)
            sp.append(it.speech)
            act.append(it.active)
            voc.append(bool(it.info.get("vocals")))
        hop = self.model.hop
        n = min(len(x) for x in mix) // hop * hop
        to = lambda xs: torch.from_numpy(np.stack([x[:n] for x in xs]).astype(np.float32))
        active = np.stack([x[:n] for x in act]).reshape(len(act), -1, hop).any(-1)
        return to(mix), to(sp), torch.from_numpy(active), torch.tensor(voc)

    # ---- loss ------------------------------------------------------------------------
    def losses(self, mix, speech, active, vocals=None):
        m = self.model
        out = m(mix)
        enh = out["enh"]
        lo = self.low_bins
        s_d = m.delay_spec(m.stft(speech))
        x_d = m.delay_spec(out["spec"])
        terms = {}
        terms["spec"] = L.spectral_loss(enh[..., :lo], s_d[..., :lo])
        if self.args.w_asym > 0:
            terms["asym"] = L.over_suppression_loss(enh[..., :lo], s_d[..., :lo])
        y_lp, s_lp = m.istft_low(enh, lo), m.istft_low(s_d, lo)
        terms["mr"] = L.multires_loss(y_lp, s_lp)
        if self.args.w_sisdr > 0:
            terms["sisdr"] = L.neg_si_sdr_loss(y_lp, s_lp)
        if self.args.w_stoi > 0:
            terms["stoi"] = L.stoi_loss(y_lp, s_lp, sr=m.sr)
        terms["mo"] = L.music_only_loss(enh[..., :lo], x_d[..., :lo], L.music_only_frames(active, m.conv_lookahead))
        terms["lsnr"] = L.lsnr_loss(out["lsnr"], L.lsnr_target(s_d[..., :lo], (x_d - s_d)[..., :lo]))
        if self.keeper is not None and vocals is not None and bool(vocals.any()):
            with torch.no_grad():
                kept = self.keeper(mix[vocals])["enh"][..., :lo]
            terms["keep"] = L.spectral_loss(enh[vocals][..., :lo], kept)
        if self.teacher is not None:
            with torch.no_grad():
                fe, fs = self.teacher.features(out["spec"])
                e0, e1, e2, e3, emb, c0, lsnr = self.teacher.enc(fe, fs)
                (m_t,) = self.teacher.erb_dec(emb, e3, e2, e1, e0)
                # The teacher's gains of frame t are for the spectrum frame its look-ahead back;
                # a student that looks further ahead puts the same frame's gains later.
                late = m.conv_lookahead - self.teacher.conv_lookahead
                if late > 0:
                    m_t = torch.nn.functional.pad(m_t, (0, 0, late, 0))[:, :, : m_t.shape[2]]
            terms["hf"] = L.hf_distill_loss(out["m"], m_t, self.first_hf_band)
        a = self.args
        w = dict(spec=a.w_spec, mr=a.w_mr, mo=a.w_mo, lsnr=a.w_lsnr, hf=a.w_hf, sisdr=a.w_sisdr,
                 asym=a.w_asym, stoi=a.w_stoi, keep=a.w_keep)
        total = sum(w[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def lr_at(self, step):
        a = self.args
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        if a.decay_from is not None and step >= a.decay_from:
            t = min(1.0, (step - a.decay_from) / a.decay_steps)
            lr = a.lr_min + (a.lr - a.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
        return lr

    @torch.no_grad()
    def update_ema(self):
        sd = self.model.state_dict()
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in sd.items()}
            return
        d = self.args.ema
        for k, v in sd.items():
            if v.is_floating_point():
                self.ema[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.ema[k].copy_(v)

    def ema_model(self) -> Dfn3:
        """A model holding the current moving average (the graphs are built once)."""
        if self._ema_model is None:
            self._ema_model = Dfn3(self.graphs)
        self._ema_model.load_state_dict(self.ema)
        return self._ema_model

    def train_step(self, mix, speech, active, vocals=None):
        self.model.train()
        lr = self.lr_at(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr * g["scale"]
        total, terms = self.losses(mix, speech, active, vocals)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip)
        if torch.isfinite(gn):
            self.opt.step()
            if self.anchor:
                pull = lr * self.args.sp_decay
                with torch.no_grad():
                    for w, w0 in self.anchor:
                        w.sub_(pull * (w - w0))
        else:  # never let one bad batch poison the weights; logged as grad_norm nan/inf
            self.skipped += 1
        self.step += 1
        if self.args.ema > 0:
            self.update_ema()
        return float(total.detach()), terms, float(gn)

    # ---- checkpoints -----------------------------------------------------------------
    def state(self):
        return dict(model=self.model.state_dict(), opt=self.opt.state_dict(), step=self.step,
                    torch_rng=torch.get_rng_state(), np_rng=np.random.get_state(),
                    py_rng=random.getstate(), args=vars(self.args), ema=self.ema)

    def save(self, path: Path):
        """Through a temporary file of its own, renamed into place: a stop mid-write keeps the
        previous checkpoint and leaves no temporary file."""
        from common import replacing
        with replacing(path) as f:
            torch.save(self.state(), f)

    def init_from(self, path: Path):
        """--init: a checkpoint (everything), or an exported model directory (weights only, with a
        fresh optimiser, at step --init-step)."""
        if path.is_dir():
            if self.args.init_step is None:
                raise SystemExit(f"--init {path}: an exported model needs --init-step N (its training step)")
            self.model.load_state_dict(exported_weights(path))
            self.step = self.args.init_step
        elif path.is_file():
            if self.args.init_step is not None:
                raise SystemExit("--init-step is only for --init DIR (a checkpoint carries its step)")
            self.load(path)
        else:
            raise SystemExit(f"--init {path}: no such checkpoint or model directory")

    def load(self, path: Path):
        st = torch.load(path, weights_only=False)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.step = st["step"]
        torch.set_rng_state(st["torch_rng"])
        np.random.set_state(st["np_rng"])
        random.setstate(st["py_rng"])
        if self.args.ema > 0 and st.get("ema") is not None:
            self.ema = st["ema"]


def enhance_16k(model: Dfn3, x16: np.ndarray) -> np.ndarray:
    """Runs a 16 kHz clip through the model at 48 kHz with the runner's lsnr switches; the
    output is aligned with the input (the model latency removed)."""
    from scipy.signal import resample_poly
    x48 = resample_poly(x16.astype(np.float64), 3, 1).astype(np.float32)
    n = len(x48)
    pad = (-n) % model.hop + model.latency
    x48 = np.concatenate([x48, np.zeros(pad, np.float32)])
    with torch.no_grad():
        out = model(torch.from_numpy(x48)[None], gate=True)
        y = model.istft(out["enh"])[0].numpy()[model.latency: model.latency + n]
    return resample_poly(y.astype(np.float64), 1, 3)[: len(x16)].astype(np.float32)


def validate(model: Dfn3, n_items: int) -> dict:
    import soundfile as sf
    model.eval()
    rows = []
    for it in val_items(n_items):
        d = VAL_DIR / it["dir"]
        mix, _ = sf.read(d / "mixture.wav", dtype="float32")
        sp, _ = sf.read(d / "speech.wav", dtype="float32")
        est = enhance_16k(model, mix)
        mo = np.ones(len(mix), bool)
        for sg in it["speech_segments"]:
            mo[max(0, int((sg["start_s"] - 0.05) * 16000)):int((sg["end_s"] + 0.05) * 16000)] = False
        mo_att = (max(-60.0, 10 * np.log10((np.sum(est[mo].astype(np.float64) ** 2) + 1e-12)
                                           / (np.sum(mix[mo].astype(np.float64) ** 2) + 1e-12)))
                  if mo.any() else float("nan"))
        rows.append(dict(si_sdri=si_sdr(est, sp) - si_sdr(mix, sp), mo_att=mo_att,
                         vocals=bool(it["music"]["vocals"])))
    voc = [r for r in rows if r["vocals"]]
    return dict(si_sdri=float(np.mean([r["si_sdri"] for r in rows])),
                si_sdri_vocal=float(np.mean([r["si_sdri"] for r in voc])) if voc else float("nan"),
                mo_att=float(np.nanmean([r["mo_att"] for r in rows])), n=len(rows), n_vocal=len(voc))


def append_csv(path: Path, row: dict):
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr = Trainer(args)
    ckpt = out / "ckpt_latest.pt"
    if args.resume and ckpt.exists():
        tr.load(ckpt)
        print(f"resumed from {ckpt} at step {tr.step}", flush=True)
    elif ckpt.exists():
        raise SystemExit(f"{ckpt} exists: pass --resume, or choose another --out")
    elif args.init:
        tr.init_from(Path(args.init))
        print(f"initialised from {args.init} at step {tr.step}", flush=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=1))
    if tr.step == 0:
        t = time.time()
        v = validate(tr.model, args.val_items)
        append_csv(out / "val.csv", dict(step=0, wall_s=0.0, **v, val_s=round(time.time() - t, 1)))
        print(f"step 0 val {v} ({time.time() - t:.0f} s)", flush=True)
    t_start = time.time()
    last_ckpt = time.time()
    while tr.step < args.steps and time.time() - t_start < args.hours * 3600:
        t0 = time.time()
        mix, sp, act, voc = tr.batch(tr.step)
        t1 = time.time()
        total, terms, gn = tr.train_step(mix, sp, act, voc)
        t2 = time.time()
        if not math.isfinite(total) or tr.skipped > 20:
            raise SystemExit(f"non-finite loss at step {tr.step} (or {tr.skipped} skipped updates)")
        append_csv(out / "train.csv", dict(step=tr.step, time=round(time.time(), 1), loss=round(total, 6),
                                           **{k: round(v, 6) for k, v in terms.items()}, grad_norm=round(gn, 4),
                                           lr=tr.lr_at(tr.step - 1), data_s=round(t1 - t0, 3),
                                           step_s=round(t2 - t1, 3)))
        if tr.step % 10 == 0:
            print(f"step {tr.step} loss {total:.4f} " + " ".join(f"{k} {v:.4f}" for k, v in terms.items())
                  + f" data {t1 - t0:.2f}s step {t2 - t1:.2f}s", flush=True)
        if tr.step % args.val_every == 0:
            t = time.time()
            v = validate(tr.model, args.val_items)
            append_csv(out / "val.csv", dict(step=tr.step, wall_s=round(time.time() - t_start, 1), **v,
                                             val_s=round(time.time() - t, 1)))
            print(f"step {tr.step} val {v} ({time.time() - t:.0f} s)", flush=True)
            if tr.ema is not None:
                t = time.time()
                v = validate(tr.ema_model(), args.val_items)
                append_csv(out / "val_ema.csv", dict(step=tr.step, wall_s=round(time.time() - t_start, 1), **v,
                                                     val_s=round(time.time() - t, 1)))
                print(f"step {tr.step} val (ema) {v} ({time.time() - t:.0f} s)", flush=True)
        if tr.step % args.keep_every == 0:
            tr.save(out / f"ckpt_step{tr.step}.pt")
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            tr.save(ckpt)
            last_ckpt = time.time()
    tr.save(ckpt)
    print(f"stopped at step {tr.step}", flush=True)


if __name__ == "__main__":
    main()
