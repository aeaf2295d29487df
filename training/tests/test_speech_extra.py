"""speech/debian.py (more recorded speech from Debian) and how load_pools adds it to training."""
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "speech"))
import dataset  # noqa: E402
import debian  # noqa: E402

SR = 16000


def burst(sr: int, before: float, tone: float, after: float, noise_db: float = -90.0, seed: int = 0) -> np.ndarray:
    """Silence, a 300 Hz tone at 0.5, silence; white noise at noise_db below the tone's level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(tone * sr)) / sr
    x = np.concatenate([np.zeros(int(before * sr)), 0.5 * np.sin(2 * np.pi * 300 * t), np.zeros(int(after * sr))])
    return (x + 0.5 / np.sqrt(2) * 10 ** (noise_db / 20) * rng.standard_normal(len(x))).astype(np.float32)


def test_clean_clip_trims_normalises_and_drops():
    y, why = debian.clean_clip(burst(44100, 0.8, 1.0, 0.6), 44100)
    assert why == "" and y is not None
    # the tone (1 s) plus the corpus's 0.1 s margins at each end, to a frame
    assert abs(len(y) / SR - 1.2) < 0.03
    assert abs(np.max(np.abs(y)) - 10 ** (-3 / 20)) < 1e-3
    # recorded below 16 kHz: its top band is missing, so it is no speech target
    assert debian.clean_clip(burst(8000, 0.5, 1.0, 0.5), 8000) == (None, "recorded at 8000 Hz")
    # too short once trimmed
    assert debian.clean_clip(burst(48000, 0.5, 0.1, 0.5), 48000)[1] == "too short"
    # a noise floor 20 dB under the speech: more than the corpus has
    y, why = debian.clean_clip(burst(48000, 0.5, 1.0, 0.5, noise_db=-20), 48000)
    assert y is None and why.startswith("noise floor")
    # at -50 dB it is kept
    assert debian.clean_clip(burst(48000, 0.5, 1.0, 0.5, noise_db=-50), 48000)[1] == ""


def test_process_writes_each_recording_once(tmp_path, monkeypatch):
    root = tmp_path / "unpacked"
    sets = root / "usr/share/prog/sounds"
    for lang in ("de", "sr", "sr@latin"):
        (sets / lang / "alpha").mkdir(parents=True)
    sf.write(str(sets / "de/alpha/a.wav"), burst(44100, 0.3, 1.0, 0.3), 44100)
    sf.write(str(sets / "de/ball.wav"), burst(22050, 0.3, 1.5, 0.3), 22050)
    sf.write(str(sets / "de/old.wav"), burst(8000, 0.3, 1.0, 0.3), 8000)
    sf.write(str(sets / "sr/ball.wav"), burst(48000, 0.3, 0.8, 0.3, seed=1), 48000)
    (sets / "sr@latin/ball.wav").write_bytes((sets / "sr/ball.wav").read_bytes())  # the same recording
    (sets / "de/readme.txt").write_text("not audio")
    (sets / "de.soundtheme").write_text("not a folder")
    monkeypatch.setattr(debian, "SOURCES", {"prog": (["prog-data"], "usr/share/prog/sounds", debian.kde_speaker)})
    monkeypatch.setattr(debian, "OUT", tmp_path / "out")
    monkeypatch.setattr(debian, "unpack", lambda pkg: root)
    monkeypatch.setattr(debian, "deb_version", lambda pkg: "1.0-1")
    monkeypatch.setattr(debian, "licence_for", lambda pkg, r, rel: "GPL-2+")
    rows, dropped = debian.process("prog")
    assert sorted((r["speaker"], r["path"]) for r in rows) == [
        ("de", "prog/de/alpha_a.flac"), ("de", "prog/de/ball.flac"), ("sr", "prog/sr/ball.flac")]
    assert dropped == {"recorded": 1, "duplicate": 1}
    for r in rows:
        x, sr = sf.read(str(tmp_path / "out" / r["path"]))
        assert sr == SR and abs(len(x) / SR - r["duration_s"]) < 1e-3
        assert r["split"] == "train" and r["licence"] == "GPL-2+" and r["package"] == "prog-data"
    # a second pass reuses the files and finds the same rows
    again, _ = debian.process("prog")
    assert again == rows


def fake_corpus(tmp_path, monkeypatch):
    """A corpus of two train speakers and one val speaker, one music track, no sung stems."""
    corpus, music = tmp_path / "corpus", tmp_path / "music"
    rows = []
    for k, (spk, split) in enumerate([("a", "train"), ("b", "train"), ("v", "val")]):
        f = corpus / f"{spk}.wav"
        f.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(f), burst(SR, 0.1, 1.0, 0.1, seed=k), SR)
        rows.append(dict(source="corp", speaker=spk, path=f.name, split=split, duration_s=1.2))
    music.mkdir()
    sf.write(str(music / "m.flac"), 0.1 * np.ones(SR, np.float32), SR)
    (music / "catalog.tsv").write_text("file16\tfile48\tkind\tpackage\n"
                                       "m.flac\tm.flac\tdebian\tx\n")
    monkeypatch.setattr(dataset, "DATA", tmp_path)
    monkeypatch.setattr(dataset, "CORPUS", corpus)
    monkeypatch.setattr(dataset, "MUSIC", music)
    monkeypatch.setattr(dataset, "speech_manifest", lambda: rows)
    monkeypatch.setattr(dataset, "singing_speakers", lambda rows: set())
    monkeypatch.setattr(dataset, "is_val_music", lambda name: False)


def test_load_pools_adds_extra_speech_to_training_only(tmp_path, monkeypatch):
    fake_corpus(tmp_path, monkeypatch)
    extra = tmp_path / "speech_extra"
    monkeypatch.setattr(dataset, "SPEECH_EXTRA", extra)
    with pytest.raises(FileNotFoundError, match="speech/debian.py"):
        dataset.load_pools("train", extra_speech=("kde",))
    (extra / "kde/de").mkdir(parents=True)
    sf.write(str(extra / "kde/de/w.flac"), burst(SR, 0.1, 0.5, 0.1, seed=7), SR)
    (extra / "MANIFEST.tsv").write_text("source\tspeaker\tpath\tduration_s\tsplit\n"
                                        "kde\tde\tkde/de/w.flac\t0.7\ttrain\n")
    plain, _, _ = dataset.load_pools("train")
    more, _, _ = dataset.load_pools("train", extra_speech=("kde",))
    assert len(plain) == 2 and len(more) == 3
    assert [m["speaker"] for m in more.meta] == ["a", "b", "de"]
    assert np.array_equal(more.clip(0), plain.clip(0))
    assert abs(len(more.clip(2)) / SR - 0.7) < 1e-3
    # the mixer draws the new speaker, and --source-share can set its share
    mx = dataset.Mixer(more, *dataset.load_pools("train")[1:], dataset.MixConfig(seconds=2.0, source_share={"kde": 0.5}))
    assert abs(sum(p for k, p in zip(mx.speakers, mx.speaker_p) if k.startswith("kde/")) - 0.5) < 1e-9
    with pytest.raises(ValueError, match="no clips from nope"):
        dataset.load_pools("train", extra_speech=("kde", "nope"))
    with pytest.raises(ValueError, match="training only"):
        dataset.load_pools("val", extra_speech=("kde",))


def test_speakers_of_each_source():
    # KDE: the language set; a file directly in the sounds folder is no one's
    assert debian.kde_speaker(("de", "alpha", "a.ogg")) == "de"
    assert debian.kde_speaker(("de.ogg",)) is None
    # Fish Fillets: language and character, only in the voice packages' languages
    assert debian.fillets_speaker(("city", "cs", "vit-m-hlava.ogg")) == "cs-m"
    assert debian.fillets_speaker(("city", "nl", "vit-v-klid1.ogg")) == "nl-v"
    assert debian.fillets_speaker(("city", "cs", "vit-4-x.ogg")) == "cs-other"
    assert debian.fillets_speaker(("linux", "en", "lin-m-x.ogg")) is None
    assert debian.fillets_speaker(("share", "bubble.ogg")) is None
    # Asterisk: the voice, without its silence files
    assert debian.asterisk_speaker(("en_US_f_Allison", "digits", "1.g722")) == "en_US_f_Allison"
    assert debian.asterisk_speaker(("en_US_f_Allison", "silence", "1.g722")) is None
