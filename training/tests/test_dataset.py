"""Mixer tests on synthetic pools (no downloaded data needed): run `training/.venv/bin/pytest training/tests`."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import freqz

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dataset import MixConfig, Mixer, Pool, biquad, selfcheck, smr_active_db  # noqa: E402

SR = 16000


def pools(seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(6 * SR) / SR
    speech = [(0.1 * rng.standard_normal(int(rng.uniform(1.5, 6) * SR))).astype(np.float32) for _ in range(12)]
    meta = [dict(source="syn", speaker=f"s{k % 4}", path=f"c{k}") for k in range(12)]
    # music: a quiet intro then a loud tone, to exercise level handling
    music = [np.concatenate([0.001 * np.sin(2 * np.pi * 220 * t[:SR]),
                             0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t)]).astype(np.float32) for k in range(5)]
    sung = [(0.2 * np.sin(2 * np.pi * 300 * t[:3 * SR])).astype(np.float32)]
    return (Pool.from_arrays(speech, SR, meta), Pool.from_arrays(music, SR, [{} for _ in music]),
            Pool.from_arrays(sung, SR, [{}]))


@pytest.fixture(scope="module")
def mixer():
    return Mixer(*pools(), MixConfig(seconds=3.0), seed=1)


def test_smr_levels_and_sum(mixer):
    seen = []
    for i in range(150):
        it = mixer.item(0, i)
        assert it.mixture.dtype == np.float32 and len(it.mixture) == 3 * SR
        assert np.array_equal(it.mixture, it.speech + it.music)
        assert np.max(np.abs(it.mixture)) <= 0.99 + 1e-6
        if it.info["mode"] == "mix":
            got = smr_active_db(it.speech, it.music, it.active)
            assert abs(got - it.info["smr_target_db"]) < 0.01
            seen.append(got)
            assert not it.active.all() or it.info["speech_segments"]
    assert min(seen) >= -10 - 1e-3 and max(seen) <= 15 + 1e-3
    assert max(seen) - min(seen) > 15  # spread over the range


def test_modes_and_determinism(mixer):
    modes = {mixer.item(2, i).info["mode"] for i in range(200)}
    assert modes == {"mix", "music_only", "speech_only"}
    a, b = mixer.item(5, 3), mixer.item(5, 3)
    assert np.array_equal(a.mixture, b.mixture)
    assert not np.array_equal(a.mixture, mixer.item(6, 3).mixture)


def test_music_only_stretches(mixer):
    # most mixed items must contain speech-free stretches (lead-in, gaps, tail)
    fr = [mixer.item(1, i).active.mean() for i in range(100) if mixer.item(1, i).info["mode"] == "mix"]
    assert np.mean(np.array(fr) < 0.95) > 0.6


def test_selfcheck_passes(mixer):
    assert selfcheck(mixer, 60) == 0


@pytest.mark.parametrize("kind", ["low", "high", "peak"])
def test_biquad_gain(kind):
    f0, g = 1000.0, 6.0
    b, a = biquad(kind, f0, g, 1.0 if kind == "peak" else 0.707, SR)
    freqs = {"low": 20.0, "high": 7900.0, "peak": f0}
    _, h = freqz(b, a, worN=[freqs[kind]], fs=SR)
    assert abs(20 * np.log10(abs(h[0])) - g) < 0.5


def test_speech_only_stretches(mixer):
    # some mixed items have music gated off under part of the speech (speech-only stretches)
    n_gap = n_speech_only = 0
    for i in range(200):
        it = mixer.item(4, i)
        if it.info.get("music_gap"):
            n_gap += 1
            n_speech_only += bool(np.any(it.active & (it.music == 0)))
            assert np.any(it.music == 0)
            assert abs(smr_active_db(it.speech, it.music, it.active) - it.info["smr_target_db"]) < 0.01
    assert n_gap > 10 and n_speech_only > n_gap // 2


def test_48k_items():
    sr = 48000
    rng = np.random.default_rng(3)
    sp = [(0.1 * rng.standard_normal(3 * sr)).astype(np.float32) for _ in range(4)]
    mu = [(0.2 * rng.standard_normal(5 * sr)).astype(np.float32) for _ in range(3)]
    mx = Mixer(Pool.from_arrays(sp, sr, [dict(speaker=f"s{k}") for k in range(4)]),
               Pool.from_arrays(mu, sr), None, MixConfig(sr=sr, seconds=2.0), seed=0)
    for i in range(30):
        it = mx.item(0, i)
        assert len(it.mixture) == 2 * sr
        if it.info["mode"] == "mix":
            assert abs(smr_active_db(it.speech, it.music, it.active) - it.info["smr_target_db"]) < 0.01


def test_pool_pickles_without_copying(tmp_path, monkeypatch):
    import pickle
    import dataset
    monkeypatch.setattr(dataset, "DATA", tmp_path)
    import soundfile as sf
    files = []
    for k in range(3):
        f = tmp_path / f"c{k}.wav"
        sf.write(str(f), (0.1 * np.sin(np.arange(SR) * (k + 1) / 10)).astype(np.float32), SR)
        files.append(f)
    pool = Pool.from_files(files, [{} for _ in files], SR, "t")
    blob = pickle.dumps(pool)
    assert len(blob) < 10_000  # the samples are not in the pickle
    back = pickle.loads(blob)
    assert np.array_equal(back.clip(1), pool.clip(1)) and abs(back.clip(2).max() - 0.1) < 1e-3


def _build_pool(files, barrier, queue):
    barrier.wait()
    try:
        pool = Pool.from_files(files, [{} for _ in files], SR, "t")
        queue.put(float(sum(np.abs(pool.clip(i)).sum() for i in range(len(files)))))
    except Exception as e:  # reported to the parent, which fails the test with it
        queue.put(repr(e))


def test_pool_cache_built_by_two_runs_at_once(tmp_path, monkeypatch):
    """Two training runs started side by side build the same cache at the same time: both get it
    (once, both wrote the same fixed temporary file and the second rename failed)."""
    import multiprocessing
    import dataset
    import soundfile as sf
    monkeypatch.setattr(dataset, "DATA", tmp_path)
    files = []
    for k in range(40):
        f = tmp_path / f"c{k}.wav"
        sf.write(str(f), (0.1 * np.sin(np.arange(2 * SR) * (k + 1) / 10)).astype(np.float32), SR)
        files.append(f)
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build_pool, args=(files, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(isinstance(g, float) for g in got), got
    assert got[0] == got[1]
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_bandlimited_music_at_48k():
    """p_bandlimit: the music of such items has no energy above 8 kHz, the SMR still holds, and
    items without it are the items of a mixer that has none (no extra random draws)."""
    sr = 48000
    rng = np.random.default_rng(4)
    sp = [(0.1 * rng.standard_normal(3 * sr)).astype(np.float32) for _ in range(4)]
    mu = [(0.2 * rng.standard_normal(5 * sr)).astype(np.float32) for _ in range(3)]
    pools48 = (Pool.from_arrays(sp, sr, [dict(speaker=f"s{k}") for k in range(4)]), Pool.from_arrays(mu, sr), None)
    plain = Mixer(*pools48, MixConfig(sr=sr, seconds=2.0), seed=0)
    off = Mixer(*pools48, MixConfig(sr=sr, seconds=2.0, p_bandlimit=0.0), seed=0)
    on = Mixer(*pools48, MixConfig(sr=sr, seconds=2.0, p_bandlimit=1.0), seed=0)
    n_limited = 0
    for i in range(12):
        assert np.array_equal(plain.item(0, i).mixture, off.item(0, i).mixture)
        it = on.item(0, i)
        if it.info["mode"] == "speech_only":
            continue
        assert it.info.get("bandlimited")
        spec = np.abs(np.fft.rfft(it.music)) ** 2
        f = np.fft.rfftfreq(len(it.music), 1 / sr)
        assert spec[f > 9000].sum() < 1e-4 * spec.sum()
        if it.info["mode"] == "mix":
            assert abs(smr_active_db(it.speech, it.music, it.active) - it.info["smr_target_db"]) < 0.01
        n_limited += 1
    assert n_limited >= 8


def test_music_sets_select_by_kind():
    from dataset import MUSIC_SETS, is_val_music, music_rows
    kinds = ["debian", "midi", "debian-extra", "sung"]
    cat = [dict(kind=kinds[k % 4], file16=f"x/{k}.flac") for k in range(400)]
    base = music_rows(cat, "train", ("base",))
    both = music_rows(cat, "train", ("base", "extra"))
    # the default set is what it was before the extra soundtracks: every non-sung row but those
    assert {r["kind"] for r in base} == set(MUSIC_SETS["base"]) == {"debian", "midi"}
    assert [r for r in both if r["kind"] != "debian-extra"] == base
    assert {r["kind"] for r in both} == {"debian", "midi", "debian-extra"}
    # train and val are disjoint and together hold every music row of the sets
    val = music_rows(cat, "val", ("base", "extra"))
    assert val and all(is_val_music(r["file16"]) for r in val)
    assert len(val) + len(both) == sum(r["kind"] != "sung" for r in cat)
    with pytest.raises(KeyError):
        music_rows(cat, "train", ("nope",))


def test_speed_perturbation_moves_pitch_within_range():
    # speech clips that are one steady tone: a segment played f times faster has the tone at f x 1 kHz
    t = np.arange(8 * SR) / SR
    speech = [(0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32) for _ in range(4)]
    meta = [dict(source="syn", speaker=f"s{k}", path=f"c{k}") for k in range(4)]
    _, music, sung = pools()
    sp = Pool.from_arrays(speech, SR, meta)
    base = Mixer(sp, music, sung, MixConfig(seconds=3.0, p_speech_only=1.0, p_music_only=0.0), seed=3)
    fast = Mixer(sp, music, sung, MixConfig(seconds=3.0, p_speech_only=1.0, p_music_only=0.0,
                                            p_speed=1.0, speed=(0.9, 1.1)), seed=3)
    peaks = []
    for i in range(40):
        for mixer, out in ((base, None), (fast, peaks)):
            it = mixer.item(0, i)
            for seg in it.info["speech_segments"]:
                a, b = int(seg["start_s"] * SR), int(seg["end_s"] * SR)
                x = it.speech[a + 200:b - 200]
                if len(x) < SR // 2:
                    continue
                spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
                f = np.argmax(spec) * SR / (8 * len(x))
                if out is None:
                    assert abs(f - 1000) < 2  # p_speed 0: the clips as they are
                else:
                    out.append(f)
    peaks = np.array(peaks)
    assert len(peaks) > 20
    assert np.all((peaks > 895) & (peaks < 1105)), peaks
    assert np.std(peaks) > 30  # the speeds vary


def test_speed_off_leaves_items_unchanged():
    # p_speed 0 draws nothing extra: the items of runs made before the option stay the same
    a = Mixer(*pools(), MixConfig(seconds=3.0), seed=1)
    b = Mixer(*pools(), MixConfig(seconds=3.0, p_speed=0.0, speed=(0.8, 1.2)), seed=1)
    for i in range(20):
        assert np.array_equal(a.item(0, i).mixture, b.item(0, i).mixture)


def test_music_augmentation_shares():
    # p_eq / p_reverb / p_ramp 0: the music is the plain segment (as the benchmarks are mixed);
    # 1: every item that has music gets the effect
    def effects(**kw):
        m = Mixer(*pools(), MixConfig(seconds=3.0, p_sung=0.0, **kw), seed=2)
        items = [m.item(0, i) for i in range(40)]
        with_music = [it for it in items if it.info["mode"] != "speech_only"]
        assert len(with_music) > 30
        for it in items:
            assert np.array_equal(it.mixture, it.speech + it.music)
        return [{k for k in ("eq", "reverb", "ramp") if it.info.get(k)} for it in with_music]

    assert all(e == set() for e in effects(p_eq=0.0, p_reverb=0.0, p_ramp=0.0))
    assert all(e == {"eq", "reverb", "ramp"} for e in effects(p_eq=1.0, p_reverb=1.0, p_ramp=1.0))
    assert all(e == {"reverb"} for e in effects(p_eq=0.0, p_reverb=1.0, p_ramp=0.0))


def _two_source_pools():
    """12 clips: speakers a0..a3 of source 'a' (long clips) and b0..b1 of source 'b'."""
    speech, music, sung = pools()
    meta = [dict(source="a" if k % 6 < 4 else "b", speaker=f"{'a' if k % 6 < 4 else 'b'}{k % 6}", path=f"c{k}")
            for k in range(12)]
    clips = [speech.clip(k) for k in range(12)]
    return Pool.from_arrays(clips, SR, meta), music, sung


def test_source_share_sets_the_share_of_speaker_draws():
    sp, music, sung = _two_source_pools()
    plain = Mixer(sp, music, sung, MixConfig(seconds=3.0), seed=1)
    for share in (0.1, 0.5, 0.9):
        m = Mixer(sp, music, sung, MixConfig(seconds=3.0, source_share={"a": share}), seed=1)
        is_a = np.array([k.startswith("a/") for k in m.speakers])
        assert m.speaker_p.sum() == pytest.approx(1.0)
        assert m.speaker_p[is_a].sum() == pytest.approx(share)
        # inside a source, the speakers keep their relative weights
        assert np.allclose(m.speaker_p[is_a] / m.speaker_p[is_a].sum(),
                           plain.speaker_p[is_a] / plain.speaker_p[is_a].sum())
        # and the drawn items follow: the first speaker of each item
        first = [m.item(0, i).info["speech_segments"] for i in range(300)]
        frac_a = np.mean([s[0]["speaker"].startswith("a/") for s in first if s])
        assert abs(frac_a - share) < 0.1, (share, frac_a)


def test_source_share_rejects_unknown_sources_and_bad_shares():
    sp, music, sung = _two_source_pools()
    with pytest.raises(ValueError, match="no speakers from c"):
        Mixer(sp, music, sung, MixConfig(source_share={"c": 0.2}))
    with pytest.raises(ValueError, match="sum to at most 1"):
        Mixer(sp, music, sung, MixConfig(source_share={"a": 0.7, "b": 0.6}))
    with pytest.raises(ValueError, match="exactly 1"):
        Mixer(sp, music, sung, MixConfig(source_share={"a": 0.3, "b": 0.3}))
    # off by default: the same items as before the option
    a = Mixer(*pools(), MixConfig(seconds=3.0), seed=1)
    b = Mixer(*pools(), MixConfig(seconds=3.0, source_share=None), seed=1)
    assert all(np.array_equal(a.item(0, i).mixture, b.item(0, i).mixture) for i in range(10))


def test_cache_key_survives_a_fresh_copy_of_shared(tmp_path, monkeypatch):
    """Files under ../shared are keyed on their content (the folder is copied afresh with new
    times each session); the project's own data on their time (a re-rendered file is new)."""
    import os
    import dataset
    shared, own = tmp_path / "shared", tmp_path / "data"
    monkeypatch.setattr(dataset, "SHARED", shared)
    for d in (shared, own):
        d.mkdir()
        (d / "a.wav").write_bytes(b"same bytes")
    key = {d: dataset.cache_signature([d / "a.wav"]) for d in (shared, own)}
    for d in (shared, own):
        os.utime(d / "a.wav", ns=(1, 1))  # a fresh copy: same content, new time
    assert dataset.cache_signature([shared / "a.wav"]) == key[shared]
    assert dataset.cache_signature([own / "a.wav"]) != key[own]
    (shared / "a.wav").write_bytes(b"new bytes!")  # same size, new content
    assert dataset.cache_signature([shared / "a.wav"]) != key[shared]
