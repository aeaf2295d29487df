"""Tests of the DeepFilterNet3 fine-tuning code (training/finetune). Skipped without torch/onnx
(installed by training/setup-train.sh) or without ../shared/models/deepfilternet3."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftcommon import ROOT, TARBALL, base_model_dir  # noqa: E402

pytestmark = pytest.mark.skipif(not TARBALL.is_file(), reason="no DeepFilterNet3 tarball in ../shared")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    from dfn3 import Dfn3
    return Dfn3(base_model_dir())


def _random_inputs(S=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, 1, S, 32)).astype(np.float32),
            rng.standard_normal((1, 2, S, 96)).astype(np.float32))


def _ort_run(d, fe, fs):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(d / "enc.onnx"), so)
    e = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"feat_erb": fe, "feat_spec": fs})))
    out = dict(e)
    for name, key in (("erb_dec", "m"), ("df_dec", "coefs")):
        s = ort.InferenceSession(str(d / f"{name}.onnx"), so)
        out[key] = s.run(None, {i.name: e[i.name] for i in s.get_inputs()})[0]
    return out


def _torch_run(model, fe, fs):
    with torch.no_grad():
        e = dict(zip(model.enc.outputs, model.enc(torch.from_numpy(fe), torch.from_numpy(fs))))
        m, coefs, _ = model.graphs(torch.from_numpy(fe), torch.from_numpy(fs))
    out = {k: v.numpy() for k, v in e.items()}
    out["m"], out["coefs"] = m.numpy(), coefs.numpy()
    return out


def _max_err(a, b):
    return {k: float(np.abs(a[k] - b[k]).max()) for k in ("e0", "e1", "e2", "e3", "emb", "c0", "lsnr", "m", "coefs")}


def test_torch_graphs_match_onnxruntime(model):
    fe, fs = _random_inputs()
    ref, got = _ort_run(model.dir, fe, fs), _torch_run(model, fe, fs)
    for k, v in ref.items():
        assert got[k].shape == v.shape, k
    errs = _max_err(ref, got)
    assert max(errs.values()) < 1e-4, errs


def test_export_round_trip(model, tmp_path):
    """Changed weights exported to ONNX give what the torch modules give (same names/shapes)."""
    from dfn3 import Dfn3
    m = Dfn3(model.dir)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * p.abs().mean() * torch.randn(p.shape, generator=g))
    m.export(tmp_path)
    for name in ("enc", "erb_dec", "df_dec"):
        import onnx
        a, b = onnx.load(str(model.dir / f"{name}.onnx")), onnx.load(str(tmp_path / f"{name}.onnx"))
        assert [i.name for i in a.graph.input] == [i.name for i in b.graph.input]
        assert [o.name for o in a.graph.output] == [o.name for o in b.graph.output]
        assert len(a.graph.node) == len(b.graph.node)
    fe, fs = _random_inputs(seed=2)
    ref, got = _ort_run(tmp_path, fe, fs), _torch_run(m, fe, fs)
    errs = _max_err(ref, got)
    assert max(errs.values()) < 1e-4, errs
    base = _torch_run(model, fe, fs)
    assert np.abs(base["m"] - got["m"]).max() > 1e-4  # the weights really changed


def test_erb_layout_and_stft_round_trip(model):
    assert sum(model.widths) == 481 and min(model.widths) >= 2 and len(model.widths) == 32
    assert model.alpha == 0.99
    x = torch.randn(1, 480 * 50)
    y = model.istft(model.stft(x))
    d = model.fft - model.hop
    assert float((y[0, d:] - x[0, :-d]).abs().max()) < 1e-5


def test_features_match_a_frame_by_frame_transliteration_of_features_rs(model):
    """Vectorised features == the per-frame recursion of crates/models/src/dfn3/features.rs."""
    x = torch.randn(2, 480 * 30) * 0.1
    spec = model.stft(x)
    fe, fs = model.features(spec)
    a = model.alpha
    for b in range(2):
        mean = np.linspace(-60.0, -90.0, 32, dtype=np.float32)
        unit = np.linspace(0.001, 0.0001, 96, dtype=np.float32)
        for t in range(spec.shape[1]):
            s = spec[b, t].numpy()
            start, erb = 0, []
            for i, w in enumerate(model.widths):
                p = np.float32(np.sum(np.abs(s[start:start + w]) ** 2) / w)
                start += w
                db = np.float32(np.log10(p + 1e-10) * 10)
                mean[i] = db * (1 - a) + mean[i] * a
                erb.append((db - mean[i]) / 40)
            assert np.abs(np.array(erb) - fe[b, 0, t].numpy()).max() < 1e-4
            unit = np.abs(s[:96]) * (1 - a) + unit * a
            c = s[:96] / np.sqrt(unit)
            assert np.abs(c.real - fs[b, 0, t].numpy()).max() < 1e-3 * max(1.0, np.abs(c).max())
            assert np.abs(c.imag - fs[b, 1, t].numpy()).max() < 1e-3 * max(1.0, np.abs(c).max())


def _nomusic_exe() -> Path:
    """The nomusic binary to compare with: $NOMUSIC_BIN, else the release build, else the debug
    build that `cargo test` leaves (scripts/test.sh runs these tests after it)."""
    if os.environ.get("NOMUSIC_BIN"):
        return Path(os.environ["NOMUSIC_BIN"])
    for profile in ("release", "debug"):
        exe = ROOT / "target" / profile / "nomusic"
        if exe.is_file():
            return exe
    pytest.skip("no nomusic build (cargo build --release)")


def test_pipeline_matches_the_nomusic_runner(model, tmp_path):
    """The torch pipeline (features, graphs, gains, deep filter, lsnr switches, synthesis) gives
    the same audio as `nomusic separate` with the same model directory."""
    import soundfile as sf
    exe = _nomusic_exe()
    rng = np.random.default_rng(3)
    n = 48000 * 3
    t = np.arange(n) / 48000
    x = (0.1 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
         + 0.02 * rng.standard_normal(n)).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="FLOAT")
    subprocess.run([str(exe), "separate", str(tmp_path / "in.wav"), "-o",
                    str(tmp_path / "out.wav"), "--bits", "32", "--quiet", "--model-path", str(model.dir)],
                   check=True)
    ref, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    with torch.no_grad():
        xp = torch.from_numpy(np.concatenate([x, np.zeros(model.latency, np.float32)]))[None]
        y = model.istft(model(xp, gate=True)["enh"])[0].numpy()[model.latency:model.latency + n]
    # the runner flushes with zero hops, which its silence gate outputs as zeros (last 30 ms)
    k = n - model.latency
    y, ref = y[:k], ref[:k]
    err = np.abs(y - ref).max()
    snr = 10 * np.log10(np.sum(ref ** 2) / np.sum((y - ref) ** 2))
    assert err < 1e-4 and snr > 80, (err, snr)


def test_loss_decreases_on_a_tiny_batch(tmp_path):
    """A few optimiser steps on one fixed synthetic batch lower the training loss."""
    import train
    args = train.parse_args(["--out", str(tmp_path), "--lr", "5e-4", "--warmup", "1"])
    tr = train.Trainer(args)
    rng = np.random.default_rng(0)
    n = 48000
    t = np.arange(n) / 48000
    speech = (0.05 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) ** 2).astype(np.float32)
    music = (0.03 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 660 * t))
             + 0.003 * rng.standard_normal(n)).astype(np.float32)
    speech[: n // 4] = 0
    mix = torch.from_numpy(speech + music)[None]
    sp = torch.from_numpy(speech)[None]
    active = torch.from_numpy(np.abs(speech.reshape(-1, 480)).max(-1) > 1e-3)[None]
    losses = [tr.train_step(mix, sp, active)[0] for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_continues_exactly(tmp_path):
    """Save after 2 steps, load into a fresh trainer, 1 more step == 3 uninterrupted steps."""
    import train
    args = train.parse_args(["--out", str(tmp_path), "--warmup", "2"])
    g = torch.Generator().manual_seed(0)
    mix, sp = torch.randn(1, 480 * 40, generator=g) * 0.05, torch.randn(1, 480 * 40, generator=g) * 0.02
    active = torch.zeros(1, 40, dtype=torch.bool)
    active[:, 10:30] = True
    a = train.Trainer(args)
    for _ in range(3):
        a.train_step(mix, sp, active)
    b = train.Trainer(args)
    for _ in range(2):
        b.train_step(mix, sp, active)
    b.save(tmp_path / "ck.pt")
    c = train.Trainer(args)
    c.load(tmp_path / "ck.pt")
    assert c.step == 2
    c.train_step(mix, sp, active)
    for (n, p), q in zip(a.model.named_parameters(), c.model.parameters()):
        assert torch.equal(p, q), n


def test_cosine_decay_of_the_learning_rate(tmp_path):
    """Warm-up, then constant, then from --decay-from a cosine down to --lr-min, which stays."""
    import train
    args = train.parse_args(["--out", str(tmp_path), "--lr", "1e-4", "--warmup", "10",
                             "--decay-from", "100", "--decay-steps", "50", "--lr-min", "1e-6"])
    tr = train.Trainer.__new__(train.Trainer)  # lr_at only reads the arguments
    tr.args = args
    assert tr.lr_at(0) == pytest.approx(1e-5)
    assert tr.lr_at(50) == pytest.approx(1e-4)
    assert tr.lr_at(100) == pytest.approx(1e-4)
    assert tr.lr_at(125) == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))
    assert tr.lr_at(150) == pytest.approx(1e-6)
    assert tr.lr_at(10_000) == pytest.approx(1e-6)
    lrs = [tr.lr_at(s) for s in range(100, 151)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_moving_average_of_the_weights_is_kept_and_resumed(tmp_path):
    """--ema: the average starts at the first step's weights, follows d * avg + (1 - d) * w, is
    saved in the checkpoint and goes on after a resume exactly as without the stop."""
    import train
    args = train.parse_args(["--out", str(tmp_path), "--warmup", "1", "--ema", "0.5"])
    g = torch.Generator().manual_seed(1)
    mix, sp = torch.randn(1, 480 * 30, generator=g) * 0.05, torch.randn(1, 480 * 30, generator=g) * 0.02
    active = torch.ones(1, 30, dtype=torch.bool)
    a = train.Trainer(args)
    a.train_step(mix, sp, active)
    w1 = {k: v.clone() for k, v in a.model.state_dict().items()}
    assert all(torch.equal(a.ema[k], w1[k]) for k in w1)
    a.train_step(mix, sp, active)
    w2 = a.model.state_dict()
    name = next(k for k in w1 if w1[k].is_floating_point() and not torch.equal(w1[k], w2[k]))
    assert torch.allclose(a.ema[name], 0.5 * w1[name] + 0.5 * w2[name])
    a.save(tmp_path / "ck.pt")
    b = train.Trainer(args)
    b.load(tmp_path / "ck.pt")
    a.train_step(mix, sp, active)
    b.train_step(mix, sp, active)
    for k in a.ema:
        assert torch.equal(a.ema[k], b.ema[k]), k
    m = b.ema_model()
    assert torch.equal(m.state_dict()[name], b.ema[name])


def test_numpy_stft_inverts_exactly_and_frames_like_the_torch_one(model):
    """stft_np/istft_np (the analysis scripts' STFT) reconstruct the input, and their frames are the
    torch pipeline's frames up to its constant wnorm scale."""
    from dfn3 import istft_np, stft_np
    x = np.random.default_rng(3).standard_normal(480 * 50)
    for fft in (320, 960):
        np.testing.assert_allclose(istft_np(stft_np(x, fft), len(x), fft), x, atol=1e-6)
    ref = model.stft(torch.from_numpy(x.astype(np.float32))[None])[0].numpy()
    ours = stft_np(x, 960)[: ref.shape[0]] * model.wnorm
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())


def test_over_suppression_loss_counts_only_missing_speech():
    """--w-asym: zero when the output is as loud as the speech or louder in every bin, positive
    when bins are quieter, and exactly the magnitude part of the spectral loss restricted to them."""
    import losses as L
    g = torch.Generator().manual_seed(2)
    ref = torch.complex(torch.randn(2, 20, 64, generator=g), torch.randn(2, 20, 64, generator=g))
    assert float(L.over_suppression_loss(ref * 1.5, ref)) == 0.0
    assert float(L.over_suppression_loss(ref, ref)) == 0.0
    quiet = ref * 0.5
    got = float(L.over_suppression_loss(quiet, ref))
    rm, em = ref.abs() ** L.C, quiet.abs() ** L.C
    assert got == pytest.approx(float(((rm - em) ** 2).mean()), rel=1e-5)
    # half the bins too quiet, half too loud: only the quiet half counts
    mixed = torch.cat([quiet[..., :32], 1.5 * ref[..., 32:]], -1)
    assert float(L.over_suppression_loss(mixed, ref)) == pytest.approx(
        float(((rm - em)[..., :32] ** 2).sum() / rm.numel()), rel=1e-5)


def test_over_suppression_term_enters_the_training_loss(tmp_path):
    """With --w-asym the term is computed and weighted; without it, it is not computed."""
    import train
    g = torch.Generator().manual_seed(3)
    mix, sp = torch.randn(1, 480 * 30, generator=g) * 0.05, torch.randn(1, 480 * 30, generator=g) * 0.02
    active = torch.ones(1, 30, dtype=torch.bool)
    totals = {}
    for w in ("0", "100"):
        tr = train.Trainer(train.parse_args(["--out", str(tmp_path), "--w-asym", w]))
        with torch.no_grad():
            totals[w], terms = tr.losses(mix, sp, active)
        assert ("asym" in terms) == (w != "0")
    assert float(totals["100"] - totals["0"]) == pytest.approx(100 * terms["asym"], rel=1e-4)
    assert terms["asym"] > 0


def _speechlike(seconds=3.0, sr=48000, seed=0):
    """Harmonics of a gliding 120-200 Hz pitch, switched on and off at a syllable rate, with a
    pause in the middle: enough envelope structure for STOI."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 80 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 25))
    env = (np.sin(2 * np.pi * 4 * t) > -0.2) * (np.abs(t - seconds / 2) > 0.3)
    return (x * env + 1e-4 * rng.standard_normal(len(t))) * 0.1


def test_stoi_loss_follows_pystoi():
    """--w-stoi's surrogate (computed at 48 kHz, no resampling) is 1 - STOI within 0.02 of
    pystoi's STOI (which resamples to 10 kHz) over noise levels, and falls as the noise falls."""
    from pystoi import stoi
    import losses as L
    s = _speechlike()
    noise = np.random.default_rng(1).standard_normal(len(s)) * 0.1
    got = []
    for g in (0.02, 0.1, 0.3, 1.0):
        y = s + g * noise
        ours = 1 - float(L.stoi_loss(torch.from_numpy(y)[None], torch.from_numpy(s)[None]))
        assert ours == pytest.approx(stoi(s, y, 48000), abs=0.02)
        got.append(ours)
    assert got == sorted(got, reverse=True) and got[0] - got[-1] > 0.2
    assert float(L.stoi_loss(torch.from_numpy(s)[None], torch.from_numpy(s)[None])) == pytest.approx(0, abs=1e-4)


def test_stoi_loss_skips_items_without_speech_and_has_a_gradient():
    import losses as L
    s = torch.from_numpy(_speechlike(seed=2))
    silent = torch.zeros_like(s)
    noise = torch.from_numpy(np.random.default_rng(3).standard_normal(len(s)) * 0.03)
    y = torch.stack([s + noise, noise]).requires_grad_(True)
    both = L.stoi_loss(y, torch.stack([s, silent]))
    alone = L.stoi_loss(y[:1], s[None])
    assert float(both.detach()) == pytest.approx(float(alone.detach()), rel=1e-9)
    both.backward()
    assert torch.isfinite(y.grad).all() and float(y.grad[0].abs().sum()) > 0
    assert float(y.grad[1].abs().sum()) == 0
    assert float(L.stoi_loss(noise[None], silent[None])) == 0.0


def test_stoi_term_enters_the_training_loss(tmp_path):
    """With --w-stoi the term is computed and weighted; without it, it is not computed."""
    import train
    sp = torch.from_numpy(_speechlike(seconds=480 * 200 / 48000, seed=4)).float()[None]
    mix = sp + 0.05 * torch.randn(1, sp.shape[1], generator=torch.Generator().manual_seed(5))
    active = torch.ones(1, 200, dtype=torch.bool)
    totals = {}
    for w in ("0", "2"):
        tr = train.Trainer(train.parse_args(["--out", str(tmp_path), "--w-stoi", w]))
        with torch.no_grad():
            totals[w], terms = tr.losses(mix, sp, active)
        assert ("stoi" in terms) == (w != "0")
    assert float(totals["2"] - totals["0"]) == pytest.approx(2 * terms["stoi"], rel=1e-4)
    assert 0 < terms["stoi"] < 1


def test_smr_range_option():
    import train
    assert train.parse_smr("-10,15") == (-10.0, 15.0)
    assert train.parse_smr("-10,10") == (-10.0, 10.0)
    assert train.parse_args(["--smr=-5,5"]).smr == "-5,5"
    for bad in ("5,-5", "-20,10", "0,20", "3", "a,b"):
        with pytest.raises(SystemExit):
            train.parse_smr(bad)


def test_mixing_options_reach_the_mixer(tmp_path, monkeypatch):
    import dataset
    import train
    pools_kw = {}
    monkeypatch.setattr(dataset, "load_pools", lambda *a, **kw: pools_kw.update(kw) or (None, None, None))
    monkeypatch.setattr(dataset, "Mixer", lambda *a, **kw: a[3])  # the MixConfig it would get
    cfg = train.Trainer(train.parse_args(["--out", str(tmp_path)])).get_mixer()
    plain = dataset.MixConfig()
    assert (cfg.p_eq, cfg.p_reverb, cfg.p_ramp) == (plain.p_eq, plain.p_reverb, plain.p_ramp)
    assert cfg.p_sung == plain.p_sung
    assert pools_kw["extra_speech"] == ()  # the corpus's speech only
    args = train.parse_args(["--out", str(tmp_path), "--p-eq", "0", "--p-reverb", "0.1", "--p-ramp", "0",
                             "--p-sung", "0", "--extra-speech", "klettres, ktuberling"])
    cfg = train.Trainer(args).get_mixer()
    assert (cfg.p_eq, cfg.p_reverb, cfg.p_ramp) == (0.0, 0.1, 0.0)
    assert cfg.p_sung == 0.0
    assert pools_kw["extra_speech"] == ("klettres", "ktuberling")


def test_source_share_option():
    import train
    assert train.parse_shares("speechocean762=0.25") == {"speechocean762": 0.25}
    assert train.parse_shares("a=0.1, b=0.2") == {"a": 0.1, "b": 0.2}
    for bad in ("speechocean762", "a=x", "a=0.1,b"):
        with pytest.raises(SystemExit):
            train.parse_shares(bad)


def test_freeze_keeps_a_part_of_the_network(tmp_path):
    """--freeze df_dec: a training step changes the encoder but not one weight of the df decoder."""
    import train
    tr = train.Trainer(train.parse_args(["--out", str(tmp_path), "--freeze", "df_dec", "--warmup", "1"]))
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    mix, sp = torch.randn(1, 480 * 40, generator=g) * 0.05, torch.randn(1, 480 * 40, generator=g) * 0.02
    tr.train_step(mix, sp, torch.ones(1, 40, dtype=torch.bool))
    after = dict(tr.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("df_dec"))
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("enc"))
    with pytest.raises(SystemExit, match="no weights start with"):
        train.Trainer(train.parse_args(["--out", str(tmp_path), "--freeze", "decoder"]))


def test_sp_decay_pulls_towards_the_released_weights(tmp_path):
    """--sp-decay: after a step every trained weight sits exactly lr * SP of its way from where the
    optimiser put it back towards the released model's value; without it, nothing is pulled."""
    import train
    from dfn3 import Dfn3
    from ftcommon import base_model_dir
    released = dict(Dfn3(base_model_dir()).named_parameters())
    g = torch.Generator().manual_seed(0)
    mix, sp = torch.randn(1, 480 * 40, generator=g) * 0.05, torch.randn(1, 480 * 40, generator=g) * 0.02
    after = {}
    for decay in (0.0, 500.0):
        torch.manual_seed(1)
        tr = train.Trainer(train.parse_args(["--out", str(tmp_path / str(decay)), "--warmup", "1",
                                             "--sp-decay", str(decay)]))
        with torch.no_grad():  # start away from the released weights, the same way both times
            for p in tr.model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        tr.train_step(mix, sp, torch.ones(1, 40, dtype=torch.bool))
        after[decay] = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    pull = 2e-4 * 500.0  # lr at step 0 with --warmup 1, times the decay
    for n, w in after[500.0].items():
        free = after[0.0][n]
        torch.testing.assert_close(w, free - pull * (free - released[n].detach()), rtol=0, atol=1e-6)
    assert any((after[500.0][n] - after[0.0][n]).abs().max() > 1e-5 for n in after[0.0])


def test_export_eval_refuses_a_missing_set_before_exporting(tmp_path, monkeypatch):
    """export_eval.py --val-native (or --val, --bench) without that set stops at once with the
    command that builds it, and exports nothing."""
    import export_eval
    missing = tmp_path / "no-val-native"
    monkeypatch.setattr(export_eval, "VAL_NATIVE_DIR", missing)
    out = tmp_path / "export"
    with pytest.raises(SystemExit) as e:
        export_eval.main(["base", "--out", str(out), "--val-native"])
    msg = str(e.value)
    assert str(missing) in msg and "--val-without speechocean762" in msg
    assert not out.exists()
    monkeypatch.setattr(export_eval, "VAL_DIR", missing)
    with pytest.raises(SystemExit, match="dataset.py --build-val"):
        export_eval.main(["base", "--out", str(out), "--val"])
    assert not out.exists()


def test_init_from_an_exported_model(model, tmp_path):
    """--init DIR starts from the weights in an exported model's graphs, at --init-step, with a fresh
    optimiser; a directory that is not a model, a missing step or a step given with a checkpoint
    is refused by name."""
    import train
    from dfn3 import Dfn3
    m = Dfn3(model.dir)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * p.abs().mean() * torch.randn(p.shape, generator=g))
    export = tmp_path / "export"
    m.export(export)
    tr = train.Trainer(train.parse_args(["--out", str(tmp_path / "run"), "--init", str(export),
                                         "--init-step", "3194"]))
    tr.init_from(export)
    assert tr.step == 3194
    assert not tr.opt.state
    for (n, p), q in zip(tr.model.named_parameters(), m.parameters()):
        assert torch.allclose(p, q, atol=0, rtol=0), n

    bare = train.Trainer(train.parse_args(["--out", str(tmp_path / "run2")]))
    with pytest.raises(SystemExit, match="--init-step"):
        bare.init_from(export)
    (tmp_path / "empty").mkdir()
    bare.args.init_step = 5
    with pytest.raises(SystemExit, match="missing enc.onnx"):
        bare.init_from(tmp_path / "empty")
    bare.save(tmp_path / "ck.pt")
    with pytest.raises(SystemExit, match="only for --init DIR"):
        bare.init_from(tmp_path / "ck.pt")
    with pytest.raises(SystemExit, match="no such"):
        bare.init_from(tmp_path / "nothing")


def test_soup_of_a_checkpoint_average_and_an_exported_model(model, tmp_path):
    """soup.py averages weights by the given shares (normalised to 1): a checkpoint's moving
    average (@ema) with an exported model directory."""
    import soup
    import train
    from dfn3 import Dfn3
    m = Dfn3(model.dir)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    m.export(tmp_path / "export")
    tr = train.Trainer(train.parse_args(["--out", str(tmp_path), "--ema", "0.9"]))
    tr.ema = {k: v.clone() * 3.0 if v.is_floating_point() else v.clone()
              for k, v in tr.model.state_dict().items()}
    tr.step = 12
    tr.save(tmp_path / "ck.pt")
    soup.main(["soup.py", str(tmp_path / "soup.pt"), f"{tmp_path / 'export'}:1", f"{tmp_path / 'ck.pt'}@ema:3"])
    st = torch.load(tmp_path / "soup.pt", weights_only=False)
    assert st["step"] == 12
    base = model.state_dict()
    for k, v in base.items():
        if v.is_floating_point():  # 0.25 x 2w + 0.75 x 3w = 2.75w
            assert torch.allclose(st["model"][k], 2.75 * v, rtol=1e-5, atol=1e-7), k
    # --only: the df decoder averaged (0.7 x 2w + 0.3 x w = 1.7w), the rest the first ingredient's
    soup.main(["soup.py", str(tmp_path / "part.pt"), f"{tmp_path / 'export'}:0.7", "base:0.3", "--only", "df_dec"])
    st = torch.load(tmp_path / "part.pt", weights_only=False)
    assert st["only"] == ("df_dec",)
    for k, v in base.items():
        if v.is_floating_point():
            want = (1.7 if k.startswith("df_dec") else 2.0) * v
            assert torch.allclose(st["model"][k], want, rtol=1e-5, atol=1e-7), k
    with pytest.raises(SystemExit, match="no weights of the network start with"):
        soup.main(["soup.py", str(tmp_path / "bad.pt"), "base:1", f"{tmp_path / 'export'}:1", "--only", "decoder"])


@pytest.fixture(scope="module")
def la3_dir(model, tmp_path_factory):
    """The released model with one frame more look-ahead (lookahead.py)."""
    import lookahead
    out = tmp_path_factory.mktemp("la3")
    lookahead.main([str(model.dir), str(out)])
    return out


def _prefixed(x):
    """x [B, C, T, F] with a frame of zeros in front (the frame the wider pad adds at the start)."""
    return torch.cat([torch.zeros_like(x[:, :, :1]), x], 2)


def test_lookahead_graphs_are_the_old_network_one_frame_later(model, la3_dir):
    """The widened encoder computes at frame t exactly what the old one computes at frame t - 1
    (the old one fed one frame of zero features first), in torch and in onnxruntime; its config
    says conv_lookahead 3 and df_lookahead 2, and the new (newest) taps are zero."""
    from dfn3 import Dfn3
    la3 = Dfn3(la3_dir)
    assert (la3.conv_lookahead, la3.df_lookahead, la3.latency) == (3, 2, 1920)
    fe, fs = _random_inputs(S=30, seed=5)
    with torch.no_grad():
        old = model.graphs(_prefixed(torch.from_numpy(fe)), _prefixed(torch.from_numpy(fs)))
        new = la3.graphs(torch.from_numpy(fe), torch.from_numpy(fs))
    assert torch.equal(old[0][:, :, :-1], new[0]) and torch.equal(old[1][:, :-1], new[1])
    ref = _ort_run(la3_dir, fe, fs)
    assert np.abs(ref["m"] - new[0].numpy()).max() < 1e-5
    assert np.abs(ref["coefs"] - new[1].numpy()).max() < 1e-5
    import train
    for name in train.input_conv_weights(la3):
        w = dict(la3.named_parameters())[name]
        assert w.shape[2] == 4 and torch.all(w[:, :, 3] == 0), name


def test_lookahead_enhance_targets_the_frame_three_back(model, la3_dir):
    """With conv_lookahead 3 and df_lookahead 2, the outputs of frame t shape spectrum frame t - 3
    and the deep filter reads frames t - 5 .. t - 1: the old pipeline one frame later."""
    from dfn3 import Dfn3
    la3 = Dfn3(la3_dir)
    g = torch.Generator().manual_seed(2)
    spec = torch.complex(torch.randn(1, 25, 481, generator=g), torch.randn(1, 25, 481, generator=g))
    m = torch.rand(1, 1, 26, 32, generator=g)
    coefs = torch.randn(1, 26, 96, 10, generator=g)
    # The old pipeline on the spectrum one frame later, with the same network outputs.
    old = model.enhance(torch.cat([torch.zeros_like(spec[:, :1]), spec], 1), m, coefs)
    new = la3.enhance(spec, m[:, :, :25], coefs[:, :25])
    assert torch.allclose(old[:, :25], new, atol=1e-6)
    assert new[:, 4:].abs().min() > 0
    assert torch.equal(la3.delay_spec(spec)[:, 3:], spec[:, :-3])


def test_lookahead_model_matches_the_nomusic_runner(la3_dir, tmp_path):
    """nomusic's runner, given the widened graphs and config, gives what the torch pipeline gives
    (its deep filter reads the right frames of its longer ring)."""
    from dfn3 import Dfn3
    la3 = Dfn3(la3_dir)
    with torch.no_grad():  # make the new taps count
        g = torch.Generator().manual_seed(7)
        import train
        for name in train.input_conv_weights(la3):
            w = dict(la3.named_parameters())[name]
            w[:, :, 3] = 0.3 * w[:, :, 2].abs().mean() * torch.randn(w[:, :, 3].shape, generator=g)
    la3.export(tmp_path / "model")
    test_pipeline_matches_the_nomusic_runner(Dfn3(tmp_path / "model"), tmp_path)


def test_training_a_lookahead_model(la3_dir, tmp_path):
    """train.py --graphs DIR trains the widened network (its new taps leave zero, faster with
    --lr-inputs), records DIR in the checkpoint for export_eval.py and soup.py, and soup.py refuses
    to average it with a model of other graphs."""
    import soup
    import train
    from ftcommon import checkpoint_weights
    args = train.parse_args(["--out", str(tmp_path), "--graphs", str(la3_dir), "--lr-inputs", "3",
                             "--lr", "1e-4", "--warmup", "1"])
    tr = train.Trainer(args)
    assert [g["lr"] for g in tr.opt.param_groups] == [1e-4, 1e-4]
    g = torch.Generator().manual_seed(0)
    mix, sp = torch.randn(1, 480 * 40, generator=g) * 0.05, torch.randn(1, 480 * 40, generator=g) * 0.02
    active = torch.ones(1, 40, dtype=torch.bool)
    tr.train_step(mix, sp, active)
    assert [g["lr"] for g in tr.opt.param_groups] == pytest.approx([1e-4, 3e-4])
    for name in train.input_conv_weights(tr.model):
        assert dict(tr.model.named_parameters())[name][:, :, 3].abs().max() > 0, name
    tr.save(tmp_path / "ck.pt")
    assert checkpoint_weights(tmp_path / "ck.pt")[2] == la3_dir.resolve()
    soup.main(["soup.py", str(tmp_path / "soup.pt"), f"{la3_dir}:1", f"{tmp_path / 'ck.pt'}:1"])
    assert checkpoint_weights(tmp_path / "soup.pt")[2] == la3_dir
    with pytest.raises(SystemExit, match="not the network of"):
        soup.main(["soup.py", str(tmp_path / "bad.pt"), f"{tmp_path / 'ck.pt'}:1", "base:1"])


def test_fusion_keeps_the_main_estimate_where_it_is_silent(tmp_path):
    """fusion_check.py: the blend's ends are A and B; the gated fusion lets B in only where A keeps
    the mixture (A silent -> output silent, A = mixture -> B at w 1); --out writes what it scores."""
    import soundfile as sf
    import fusion_check
    rng = np.random.default_rng(0)
    n = 16000
    x, b = rng.standard_normal(n) * 0.1, rng.standard_normal(n) * 0.05
    a = x.copy()
    a[: n // 2] = 0  # A removes the whole first half
    assert np.array_equal(fusion_check.fuse(a, b, x, "blend", 0.0), a)
    assert np.allclose(fusion_check.fuse(a, b, x, "blend", 1.0), b)
    y = fusion_check.fuse(a, b, x, "gated", 1.0)
    assert np.max(np.abs(y[: n // 2 - 320])) < 1e-9
    assert np.allclose(y[n // 2 + 320:], b[n // 2 + 320:], atol=1e-6)
    assert np.allclose(fusion_check.fuse(a, b, x, "gated", 0.0), a, atol=1e-9)
    with pytest.raises(ValueError, match="unknown fusion mode"):
        fusion_check.fuse(a, b, x, "max", 0.5)

    s = x * 0.5
    (tmp_path / "set" / "it0").mkdir(parents=True)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    sf.write(tmp_path / "set" / "it0" / "speech.wav", s, 16000, subtype="FLOAT")
    sf.write(tmp_path / "set" / "it0" / "mixture.wav", x, 16000, subtype="FLOAT")
    sf.write(tmp_path / "a" / "it0.wav", a, 16000, subtype="FLOAT")
    sf.write(tmp_path / "b" / "it0.wav", b, 16000, subtype="FLOAT")
    script = Path(fusion_check.__file__)
    run = [sys.executable, str(script), str(tmp_path / "set"), str(tmp_path / "a"), str(tmp_path / "b")]
    out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert "gated" in out and "blend" in out
    subprocess.run(run + ["--out", str(tmp_path / "fused"), "--mode", "blend", "--w", "0.25"], check=True,
                   capture_output=True)
    fused, sr = sf.read(tmp_path / "fused" / "it0.wav")
    assert sr == 16000 and np.allclose(fused, 0.75 * a + 0.25 * b, atol=1e-6)
    bad = subprocess.run(run[:2] + [str(tmp_path / "a")] + run[3:], capture_output=True, text=True)
    assert bad.returncode != 0 and "no items" in bad.stderr


def test_parity_fixture_is_the_torch_output_of_the_shipped_weights():
    """The recorded PyTorch side of the Rust parity test (crates/models/tests/builtin_parity.rs,
    which requires max |rust - torch| <= 1e-4) is what parity_ref.py computes from the weights in
    crates/models/assets/nomusic now: same checksums, same samples."""
    import json
    import parity_ref
    meta = json.loads(parity_ref.FIXTURE.read_text())
    assert meta["sha256"] == parity_ref.weight_checksums(), "built-in weights changed: rerun parity_ref.py"
    recorded = np.frombuffer(parity_ref.SAMPLES_FILE.read_bytes(), "<f4")
    x, y, _, latency = parity_ref.reference()
    assert (meta["samples"], meta["latency"]) == (len(x), latency)
    assert recorded.shape == y.shape
    err = np.abs(y - recorded).max()
    assert err < 1e-5 and np.sqrt(np.mean(y ** 2)) > 0.01, err


def test_keep_term_holds_the_output_on_sung_items(model, tmp_path):
    """--w-keep adds the spectral loss against --keep's output on the items with sung vocals only:
    zero while the weights are still that model's, positive once they move, absent without such
    items; and it needs a model directory to hold on to."""
    import train
    g = torch.Generator().manual_seed(5)
    mix, sp = torch.randn(2, 480 * 30, generator=g) * 0.05, torch.randn(2, 480 * 30, generator=g) * 0.02
    active = torch.ones(2, 30, dtype=torch.bool)
    tr = train.Trainer(train.parse_args(["--out", str(tmp_path), "--w-keep", "100", "--keep", str(model.dir)]))
    with torch.no_grad():
        _, terms = tr.losses(mix, sp, active, torch.tensor([True, False]))
        assert terms["keep"] == pytest.approx(0.0, abs=1e-12)
        _, terms = tr.losses(mix, sp, active, torch.tensor([False, False]))
        assert "keep" not in terms
        for p in tr.model.df_dec.parameters():
            p.mul_(1.1)
        t0, terms = tr.losses(mix, sp, active, torch.tensor([True, False]))
        t1, _ = tr.losses(mix, sp, active, torch.tensor([False, False]))
    assert terms["keep"] > 0
    assert float(t0 - t1) == pytest.approx(100 * terms["keep"], rel=1e-4)
    with pytest.raises(SystemExit, match="--w-keep needs"):
        train.Trainer(train.parse_args(["--out", str(tmp_path), "--w-keep", "1"]))


def _tiny_set(root: Path, n_items=2, seconds=2.0):
    """A set laid out like dataset.py --build-val writes it: speech-like tones over chords."""
    import json
    import soundfile as sf
    sr, items = 16000, []
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n_items):
        d = root / f"it_{i}"
        d.mkdir(parents=True)
        speech = 0.3 * _speechlike(seconds, sr, seed=i)
        speech[: sr // 4] = 0
        music = 0.03 * (np.sin(2 * np.pi * (330 + 40 * i) * t) + np.sin(2 * np.pi * 495 * t))
        sf.write(d / "speech.wav", speech.astype(np.float32), sr, subtype="FLOAT")
        sf.write(d / "mixture.wav", (speech + music).astype(np.float32), sr, subtype="FLOAT")
        items.append(dict(id=f"it_{i}", dir=f"it_{i}", smr_target_db=0.0, music=dict(vocals=i == 1),
                          speech_segments=[dict(start_s=0.25, end_s=seconds)]))
    (root / "manifest.json").write_text(json.dumps(dict(items=items)))
    return root


def test_learned_soup_coefficients(model, tmp_path):
    """Soup.weights: at zero coefficients the anchor's weights exactly, at 1 an ingredient's; one
    coefficient per tensor or per part; and learned_soup.py fits, saves a soup checkpoint that
    export_eval.py reads and records its coefficients and per-epoch scores."""
    import json
    import learned_soup
    from ftcommon import checkpoint_weights
    anchor = model.state_dict()
    g = torch.Generator().manual_seed(1)
    other = {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in anchor.items()}
    names = [k for k, v in anchor.items() if v.is_floating_point()]
    s = learned_soup.Soup(anchor, [other], names, "tensor")
    assert s.a.shape == (1, len(names))
    w = s.weights()
    assert all(torch.equal(w[n], anchor[n]) for n in names)
    with torch.no_grad():
        s.a.fill_(1.0)
    w = s.weights()
    assert all(torch.allclose(w[n], other[n], atol=1e-6) for n in names)
    p = learned_soup.Soup(anchor, [other, anchor], names, "part")
    assert p.groups == ["df_dec", "enc", "erb_dec"] and p.a.shape == (2, 3)
    with torch.no_grad():
        p.a[0, p.groups.index("df_dec")] = 0.5
    w = p.weights()
    for n in names:
        want = anchor[n] + 0.5 * (other[n] - anchor[n]) if n.startswith("df_dec") else anchor[n]
        assert torch.allclose(w[n], want, atol=1e-6), n
    # the fit end to end on two short items
    from dfn3 import Dfn3
    m = tmp_path / "other"
    moved = Dfn3(model.dir)
    moved.load_state_dict(other)
    moved.export(m)
    tiny = _tiny_set(tmp_path / "set")
    out = tmp_path / "ls.pt"
    learned_soup.main([str(out), "base", str(m), "--set", str(tiny), "--epochs", "1", "--batch", "1",
                       "--threads", "1", "--lr", "0.05"])
    log = json.loads(out.with_suffix(".json").read_text())
    assert [h["epoch"] for h in log["history"]] == [0, 1]
    coef = log["coefficients"][str(m)]
    assert len(coef) == len(names) and any(abs(v) > 0 for v in coef.values())  # the fit moved them
    sd, step, graphs = checkpoint_weights(out)
    assert step == 0 and graphs == model.dir
    if log["best_epoch"] == 0:
        assert all(torch.equal(sd[n], anchor[n]) for n in names)
    else:
        assert any(not torch.equal(sd[n], anchor[n]) for n in names)


def test_a_failed_checkpoint_save_keeps_the_previous_one(tmp_path):
    """Trainer.save writes through its own temporary file: when writing fails, the checkpoint
    already there is untouched and no temporary file is left."""
    import train
    tr = train.Trainer(train.parse_args(["--out", str(tmp_path)]))
    tr.step = 7
    path = tmp_path / "ckpt_latest.pt"
    tr.save(path)
    before = path.read_bytes()
    tr.state = lambda: dict(step=8, bad=lambda: None)  # a lambda cannot be pickled
    with pytest.raises(Exception):
        tr.save(path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=False)["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_latest.pt"]
