"""Reference data for crates/htdemucs, produced with PyTorch and demucs 4.1.0.

Two jobs (run from the repo root with .venv-htdemucs/bin/python, under `nice -n 19`):

  fixtures  Tiny HTDemucs (same code paths as the release, few channels) with seeded random
            weights; records the inputs and outputs of every block during one forward pass and
            writes them, with the weights, to crates/htdemucs/tests/data/tiny.safetensors
            (a few hundred KB). The Rust layer-level tests read that file: normal CI never
            needs PyTorch.
  full      HTDemucs with the official htdemucs configuration (the kwargs of release
            955717e8) and seeded random weights, saved as a `.th` in the release layout
            (what demucs.states.load_model reads) and as safetensors, plus a seeded 30 s stereo
            clip and PyTorch's apply_model output on it. Written to --out (default out/htdemucs).
  bench     Times PyTorch's apply_model on that clip (--threads, default 2) with peak RSS.
"""
import argparse
import json
import math
import os
import time
from fractions import Fraction

import torch
from safetensors.torch import save_file

from demucs.apply import apply_model
from demucs.htdemucs import HTDemucs
from demucs.states import load_model

SOURCES = ["drums", "bass", "other", "vocals"]

# Keyword arguments of the released htdemucs model (signature 955717e8): the htdemucs
# defaults of demucs' conf/config.yaml with the "mmi" grid overrides (dconv_mode 3,
# depth 4, t_layers 5, t_dropout 0.02) and bottom_channels 512, segment 39/5 s.
OFFICIAL_KWARGS = dict(
    sources=SOURCES, audio_channels=2, samplerate=44100, segment=Fraction(39, 5),
    channels=48, channels_time=None, growth=2, nfft=4096, wiener_iters=0, end_iters=0,
    wiener_residual=False, cac=True, depth=4, rewrite=True, multi_freqs=[],
    multi_freqs_depth=3, freq_emb=0.2, emb_scale=10, emb_smooth=True, kernel_size=8,
    stride=4, time_stride=2, context=1, context_enc=0, norm_starts=4, norm_groups=4,
    dconv_mode=3, dconv_depth=2, dconv_comp=8, dconv_init=1e-3, bottom_channels=512,
    t_layers=5, t_emb="sin", t_hidden_scale=4.0, t_heads=8, t_dropout=0.02,
    t_max_positions=10000, t_norm_in=True, t_norm_in_group=False, t_group_norm=False,
    t_norm_first=True, t_norm_out=True, t_max_period=10000.0, t_weight_decay=0.0, t_lr=None,
    t_layer_scale=True, t_gelu=True, t_weight_pos_embed=1.0, t_sin_random_shift=0,
    t_cape_mean_normalize=True, t_cape_augment=True, t_cape_glob_loc_scale=[5000.0, 1.0, 1.4],
    t_sparse_self_attn=False, t_sparse_cross_attn=False, t_mask_type="diag",
    t_mask_random_seed=42, t_sparse_attn_window=400, t_global_window=100, t_sparsity=0.95,
    t_auto_sparsity=False, t_cross_first=False, rescale=0.1, use_train_segment=True,
)

# Same structure with few channels: every block type of the release is exercised
# (freq/time encoders and decoders with DConv, norms from layer 4 on, bottom channels,
# self and cross attention layers), on a 0.2 s segment.
TINY_KWARGS = dict(OFFICIAL_KWARGS, channels=8, bottom_channels=16, t_layers=3, t_heads=2,
                   segment=Fraction(1, 5), norm_starts=2)


def config_json(kwargs):
    cfg = dict(kwargs)
    seg = Fraction(cfg["segment"])
    cfg["segment"] = f"{seg.numerator}/{seg.denominator}"
    return json.dumps(cfg)


def randomize(model, seed):
    """Seeded random weights where every branch matters: the default init plus random
    norm affines and LayerScales of a size that lets the residual branches contribute."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(".scale"):  # LayerScale (DConv and transformer)
                p.copy_(0.1 + 0.2 * noise.abs())
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.05 * noise)
            else:
                p.add_(0.02 * noise * p.std(correction=0).clamp(min=1e-3))
            # The release stores half precision: make both loaders see the same values.
            p.copy_(p.half().float())


def build(kwargs, seed):
    torch.manual_seed(seed)
    model = HTDemucs(**kwargs)
    randomize(model, seed + 1)
    model.eval()
    return model


def fixtures(out_path):
    torch.manual_seed(0)
    model = build(TINY_KWARGS, 1234)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"config": config_json(TINY_KWARGS)}
    hooks = []

    def record(prefix):
        def hook(_mod, args, out):
            for i, a in enumerate(args):
                if isinstance(a, torch.Tensor):
                    tensors[f"ref.{prefix}.in{i}"] = a.detach().clone().contiguous()
                elif a is not None:
                    meta[f"ref.{prefix}.in{i}"] = str(a)
            outs = out if isinstance(out, tuple) else (out,)
            for i, o in enumerate(outs):
                if isinstance(o, torch.Tensor):
                    tensors[f"ref.{prefix}.out{i}"] = o.detach().clone().contiguous()
        return hook

    for name in ["encoder", "decoder", "tencoder", "tdecoder"]:
        for i, layer in enumerate(getattr(model, name)):
            hooks.append(layer.register_forward_hook(record(f"{name}.{i}")))
    hooks.append(model.crosstransformer.register_forward_hook(record("crosstransformer")))
    length = int(model.segment * model.samplerate)
    g = torch.Generator().manual_seed(7)
    # A short mix shorter than the segment: exercises the padding to the training length.
    mix = 0.3 * torch.randn(1, 2, length - 1000, generator=g)
    with torch.no_grad():
        y = model(mix)
        z = model._spec(mix)
        xi = model._ispec(z[:, None], mix.shape[-1])
    tensors["ref.forward.in0"] = mix
    tensors["ref.forward.out0"] = y.contiguous()
    tensors["ref.spec.in0"] = mix.clone()
    tensors["ref.spec.out0"] = torch.view_as_real(z).contiguous()
    tensors["ref.ispec.out0"] = xi[:, 0].contiguous()
    for h in hooks:
        h.remove()
    # Keep the fixture small: the outermost frequency layers and the decoders' second
    # output are covered by the full forward test.
    for k in [k for k in tensors if k.startswith(("ref.encoder.0.", "ref.decoder.3."))
              or (k.startswith(("ref.decoder.", "ref.tdecoder.")) and k.endswith(".out1"))]:
        del tensors[k]
    save_file(tensors, out_path, metadata=meta)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"wrote {out_path}: {len(tensors)} tensors, {nbytes / 1e3:.0f} kB")


def test_clip(seconds, samplerate=44100, seed=99):
    """30 s of seeded stereo 'music': decaying tones on a beat, a bass line and noise."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * samplerate)
    t = torch.arange(n) / samplerate
    x = torch.zeros(2, n)
    for k in range(24):
        f = 55.0 * 2 ** (torch.randint(0, 48, (1,), generator=g).item() / 12)
        start = torch.rand(1, generator=g).item() * seconds
        env = torch.exp(-3.0 * (t - start).clamp(min=0)) * (t >= start)
        pan = torch.rand(2, 1, generator=g)
        x += 0.1 * pan * env * torch.sin(2 * math.pi * f * t)
    x += 0.2 * torch.sin(2 * math.pi * 55.0 * t) * (torch.sin(2 * math.pi * 2 * t) > 0)
    x += 0.02 * torch.randn(2, n, generator=g)
    return x.float()


def full(out_dir, seconds, threads):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(threads)
    model = build(OFFICIAL_KWARGS, 955717)
    args, kwargs = model._init_args_kwargs
    package = {
        "klass": HTDemucs,
        "args": args,
        "kwargs": kwargs,
        "state": {k: v.half() for k, v in model.state_dict().items()},
        "training_args": {"note": "seeded random weights for parity tests"},
    }
    th_path = os.path.join(out_dir, "htdemucs-random.th")
    torch.save(package, th_path)
    st_path = os.path.join(out_dir, "htdemucs-random.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, st_path,
              metadata={"config": config_json(OFFICIAL_KWARGS)})
    # What users get: the model as demucs loads it from the .th.
    model = load_model(th_path).float().eval()
    mix = test_clip(seconds)
    # demucs.api.Separator: normalise by the mixture's mean and std, apply, undo.
    ref = mix.mean(0)
    std = ref.std() + 1e-8
    norm = (mix - ref.mean()) / std
    t0 = time.perf_counter()
    with torch.no_grad():
        out = apply_model(model, norm[None], shifts=0, split=True, overlap=0.25)[0]
    elapsed = time.perf_counter() - t0
    out = out * std + ref.mean()
    save_file({"mix": mix.contiguous(), "stems": out.contiguous()},
              os.path.join(out_dir, "clip.safetensors"))
    print(f"wrote {th_path}, {st_path}, clip.safetensors; torch apply_model on {seconds:.0f} s "
          f"with {threads} threads: {elapsed:.2f} s (RTF {elapsed / seconds:.3f})")


def bench(out_dir, threads):
    """Time PyTorch's apply_model on the saved clip, as the parity example times nomusic."""
    import resource
    from safetensors.torch import load_file
    torch.set_num_threads(threads)
    model = load_model(os.path.join(out_dir, "htdemucs-random.th")).float().eval()
    mix = load_file(os.path.join(out_dir, "clip.safetensors"))["mix"]
    ref = mix.mean(0)
    std = ref.std() + 1e-8
    norm = (mix - ref.mean()) / std
    seconds = mix.shape[-1] / model.samplerate
    t0 = time.perf_counter()
    with torch.no_grad():
        apply_model(model, norm[None], shifts=0, split=True, overlap=0.25)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__}, {threads} threads: {seconds:.1f} s separated in "
          f"{elapsed:.2f} s (RTF {elapsed / seconds:.3f}), peak RSS {peak:.0f} MiB")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("job", choices=["fixtures", "full", "bench"])
    p.add_argument("--out", default="out/htdemucs")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.job == "fixtures":
        fixtures("crates/htdemucs/tests/data/tiny.safetensors")
    elif a.job == "bench":
        bench(a.out, a.threads)
    else:
        full(a.out, a.seconds, a.threads)


if __name__ == "__main__":
    main()
