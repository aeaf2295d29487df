"""Sung stems from speech (singing/synth.py, singing/psola.py) on a synthetic talker."""
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "singing"))
import psola  # noqa: E402
import synth  # noqa: E402
from dataset import sung_split_key  # noqa: E402

SR = 16000


def talker(seed=0, seconds=2.4):
    """Glottal pulses (110-140 Hz, gliding like speech) through two formant resonators, in
    syllables of 150-300 ms with pauses and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 125 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = np.cumsum(f0 / SR)
    src = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    y = np.zeros(n)
    for fc, bw in ((700, 90), (1200, 110)):  # a two-formant vowel
        r = np.exp(-np.pi * bw / SR)
        a1, a2 = -2 * r * np.cos(2 * np.pi * fc / SR), r * r
        out = np.zeros(n)
        for i in range(n):
            out[i] = src[i] - a1 * out[i - 1] - a2 * out[i - 2]
        y += out
    gate = np.zeros(n)
    pos = int(0.1 * SR)
    while pos < n:
        length = int(rng.uniform(0.15, 0.3) * SR)
        gate[pos:pos + length] = np.hanning(min(length, n - pos))
        pos += length + int(rng.uniform(0.08, 0.2) * SR)
    y = y * gate + 0.002 * rng.standard_normal(n)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="module")
def voice():
    return talker()


def test_score_holds_vowels_and_is_deterministic(voice):
    f0 = synth.pitch(voice.astype(np.float64), SR)
    a = synth.score(f0, np.random.default_rng(3))
    b = synth.score(f0, np.random.default_rng(3))
    assert np.array_equal(a.src_pos, b.src_pos) and np.array_equal(a.midi, b.midi)
    assert a.voiced.sum() >= 2 * (f0 > 0).sum() * 0.8  # held vowels: voiced frames at least ~doubled
    assert np.all(np.diff(a.src_pos) > 0) and a.src_pos[-1] <= len(f0) - 1


def test_world_and_psola_sing_the_score(voice):
    y, info = synth.sing(voice, SR, np.random.default_rng(1))
    assert len(y) > 1.5 * len(voice) and np.isfinite(y).all() and info["notes"] >= 3
    f0 = synth.pitch(voice.astype(np.float64), SR)
    sc = synth.score(f0, np.random.default_rng(2))
    out, voiced, midi = psola.psola(voice, SR, sc.src_pos, sc.voiced, sc.midi)
    psola.check_render(out, SR, voiced, midi)  # length and pitch as scored, or it raises
    g = synth.pitch(out.astype(np.float64), SR)
    n = min(len(g), len(voiced))
    v = voiced[:n] & (g[:n] > 0)
    err = np.abs(12 * np.log2(g[:n][v] / synth.hz(midi[:n][v])))
    assert np.median(err) < 0.3, np.median(err)


def held(f0, factor):
    """A time map that holds every voiced frame `factor` times longer, as synth.score does."""
    src_pos = np.concatenate([np.linspace(i, i + 1, factor, endpoint=False) if f > 0 else [i]
                              for i, f in enumerate(f0)])
    return src_pos, f0[np.floor(src_pos).astype(int)] > 0


@pytest.mark.parametrize("factor", [3, 20])
def test_psola_follows_the_time_map_and_caps_the_stretch(voice, factor):
    f0 = synth.pitch(voice.astype(np.float64), SR)
    src_pos, voiced = held(f0, factor)
    midi = np.full(len(src_pos), 57.0)
    y, v2, m2 = psola.psola(voice, SR, src_pos, voiced, midi)
    n_voiced = int((f0 > 0).sum())
    frames = len(f0) - n_voiced + n_voiced * min(factor, psola.MAX_STRETCH)
    assert abs(len(v2) - frames) <= 2 and np.all(m2 == 57.0)  # the rendered timeline
    if factor <= 3:  # within what Praat renders in full on this synthetic voice
        assert abs(len(y) / SR - frames * synth.FP / 1000) < 0.1 * frames * synth.FP / 1000


def test_check_render_refuses_a_render_off_the_score(voice):
    f0 = synth.pitch(voice.astype(np.float64), SR)
    voiced = f0 > 0
    midi = 69 + 12 * np.log2(np.maximum(f0, 1) / 440)
    psola.check_render(voice, SR, voiced, midi)  # the input itself sings its own pitch
    with pytest.raises(ValueError, match="on pitch"):
        psola.check_render(voice, SR, voiced, midi + 5)
    with pytest.raises(ValueError, match="lasts"):
        psola.check_render(voice[: len(voice) // 2], SR, voiced, midi)


def test_sing_psola_is_deterministic_and_varies_the_voice(voice):
    a, ia = psola.sing_psola(voice, SR, np.random.default_rng([11, 0, 5, 0]))
    b, ib = psola.sing_psola(voice, SR, np.random.default_rng([11, 0, 5, 0]))
    assert np.array_equal(a, b) and ia == ib
    shifts = set()
    for k in range(6):
        try:
            shifts.add(psola.sing_psola(voice, SR, np.random.default_rng([11, 1, 5, k]))[1]["formant_shift"])
        except ValueError:
            pass
    assert len(shifts) >= 3


def test_a_psola_render_goes_to_the_split_of_its_world_stem():
    world = dict(package="corpus:librispeech", file16="sung/16k/librispeech__LS1_a_b.flac")
    render = dict(package="psola:librispeech", file16="psola/16k/librispeech__LS1_a_b_r2.flac")
    syllabic = dict(package="syllabic:librispeech", file16="syllabic/16k/librispeech__LS1_a_b_r1.flac")
    assert sung_split_key(render) == sung_split_key(syllabic) == sung_split_key(world) == world["file16"]


def note_lengths_s(sc) -> np.ndarray:
    """Durations of the score's voiced runs, in seconds."""
    return np.array([(b - a) * synth.FP / 1000 for a, b in synth.runs(sc.voiced)])


def test_the_default_style_sings_as_before_styles_existed(voice):
    """The default (HELD) scores are those of synth.py before it had styles, so the world and
    psola families do not change: sha256 prefixes of (src_pos, midi, voiced) recorded with that
    version (git HEAD before the styles) for this talker."""
    import hashlib
    f0 = synth.pitch(voice.astype(np.float64), SR)
    for seed, digest in ((4, "c19d93dd8fec0343"), (9, "83ccb7c31c0a607c")):
        for sc in (synth.score(f0, np.random.default_rng(seed)),
                   synth.score(f0, np.random.default_rng(seed), synth.HELD)):
            got = hashlib.sha256(sc.src_pos.tobytes() + sc.midi.tobytes() + sc.voiced.tobytes()).hexdigest()
            assert got[:16] == digest, seed


def test_syllabic_scores_hold_shorter_notes_with_less_vibrato(voice):
    """Over many draws, SYLLABIC notes are shorter than HELD ones and wobble less (the vibrato is
    what the pitch does inside a note beyond its slow line), and some notes start low (scoops)."""
    f0 = synth.pitch(voice.astype(np.float64), SR)
    held = [synth.score(f0, np.random.default_rng([5, k])) for k in range(12)]
    syl = [synth.score(f0, np.random.default_rng([5, k]), synth.SYLLABIC) for k in range(12)]
    assert (np.median(np.concatenate([note_lengths_s(s) for s in syl]))
            < 0.6 * np.median(np.concatenate([note_lengths_s(s) for s in held])))
    depth = lambda scores: np.mean([s.info["vibrato_cents"] for s in scores])
    assert depth(syl) < 0.5 * depth(held)
    assert sum(s.info["vibrato_cents"] == 0 for s in syl) >= 2
    y, _ = psola.sing_psola(voice, SR, np.random.default_rng([11, 0, 5, 0]), synth.SYLLABIC)
    assert np.isfinite(y).all() and len(y) > 0.8 * len(voice)
