"""music/fetch.py: which files of a package count as music (no download needed)."""
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "music"))
from common import is_forbidden  # noqa: E402
import fetch  # noqa: E402
from fetch import EXTRA_PACKAGES, PACKAGES, collect  # noqa: E402


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_collect_globs_files_and_archive_members(tmp_path, monkeypatch):
    touch(tmp_path / "usr/share/games/g/sounds/music/Track_01.OGG")
    touch(tmp_path / "usr/share/games/g/sounds/music/readme.txt")
    touch(tmp_path / "usr/share/games/g/sounds/sfx/boom.ogg")
    z = tmp_path / "usr/share/games/g/public.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("audio/music/Song.ogg", b"x")
        f.writestr("audio/ambient/wind.ogg", b"x")
    monkeypatch.setitem(fetch.EXTRA_PACKAGES, "g-data", ["*/sounds/music/*", "*/public.zip!audio/music/*"])
    found = collect("g-data", tmp_path)
    names = sorted(rel for rel, _ in found)
    assert names == ["usr/share/games/g/public.zip!audio/music/Song.ogg",
                     "usr/share/games/g/sounds/music/Track_01.OGG"]
    src = dict(found)["usr/share/games/g/public.zip!audio/music/Song.ogg"]
    assert src == (z, "audio/music/Song.ogg")


def test_extra_packages_use_their_globs_and_base_packages_do_not(tmp_path):
    touch(tmp_path / "usr/share/games/etr/music/race.ogg")
    touch(tmp_path / "usr/share/games/etr/other/music/x.ogg")
    assert [r for r, _ in collect("extremetuxracer-data", tmp_path)] == ["usr/share/games/etr/music/race.ogg"]
    # a base package keeps the old rule (any */music/* folder)
    assert len(collect("supertux-data", tmp_path)) == 2


def test_extra_packages_are_new_and_allowed():
    assert not set(EXTRA_PACKAGES) & set(PACKAGES)
    assert not any(is_forbidden(p) for p in EXTRA_PACKAGES)
