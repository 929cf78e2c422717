"""paths.staged_folder: a folder is written whole or not at all."""

from __future__ import annotations

import pytest

from magicpose.paths import staged_folder


def test_staged_folder_replaces_the_old_folder_only_when_the_block_finishes(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_folder(out) as partial:
        assert partial == tmp_path / "model.partial" and partial.is_dir() and not any(partial.iterdir())
        (partial / "new.txt").write_text("new")
        assert (out / "old.txt").is_file()  # untouched while writing
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"] and not partial.exists()


def test_a_failed_write_leaves_the_earlier_folder_and_no_partial_one(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (tmp_path / "model.partial").mkdir()  # a killed earlier run's leftovers are cleared first
    (tmp_path / "model.partial" / "stale.txt").write_text("stale")
    with pytest.raises(RuntimeError), staged_folder(out) as partial:
        assert not (partial / "stale.txt").exists()
        (partial / "half.txt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and not (tmp_path / "model.partial").exists()
