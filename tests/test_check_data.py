"""Tests for `magicpose check-data` (magicpose.data.check) on small datasets drawn under tmp_path."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magicpose.commands.check_data import add_parser
from magicpose.data.check import check_dataset
from magicpose.data.tiktok import TikTokPairDataset
from magicpose.errors import UserError


def _noise(seed: int, size: tuple[int, int] = (32, 48)) -> Image.Image:
    """Noise compresses badly, so a truncated copy really loses pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _make_clean(root: Path, splits: tuple[str, ...] = ("train_set", "val_set")) -> None:
    """3 videos x 4 frames per split, with pose maps and keypoints JSON for every frame."""
    from magicpose.pose.openpose import PersonKeypoints, PoseFrame, write_keypoints_json

    body = np.zeros((18, 3), np.float32)
    body[1] = (16, 20, 1.0)
    frame = PoseFrame([PersonKeypoints(body=body)], 32, 48)
    for split in splits:
        for v in range(3):
            for f in range(4):
                for tree in (split, f"pose_map_{split}"):
                    (root / tree / f"v{v}").mkdir(parents=True, exist_ok=True)
                    _noise(100 * v + f).save(root / tree / f"v{v}" / f"{f:04d}.png")
                write_keypoints_json(root / f"keypoints_{split}" / f"v{v}" / f"{f:04d}.json", frame)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="magicpose")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def test_clean_dataset_exits_zero(tmp_path, capsys):
    _make_clean(tmp_path)
    code, out = _run(["check-data", str(tmp_path)], capsys)
    assert code == 0, out
    assert "2 split(s) (train_set, val_set), 6 video(s), 24 frame(s), 24 pose map(s), 24 keypoints" in out
    assert "OK: no problems found" in out


# Everything planted in the corrupted copy: (kind, path relative to ROOT).
PLANTED = {
    ("missing_pose_map", "train_set/v0/0002.png"),
    ("unreadable_image", "train_set/v1/0003.png"),
    ("size_mismatch", "pose_map_train_set/v2/0001.png"),
    ("empty_video", "train_set/v_empty"),
    ("stray_file", "train_set/v0/notes.txt"),
    ("bad_keypoints", "keypoints_train_set/v1/0000.json"),
}


def _corrupt(root: Path) -> None:
    (root / "pose_map_train_set/v0/0002.png").unlink()
    data = (root / "train_set/v1/0003.png").read_bytes()
    (root / "train_set/v1/0003.png").write_bytes(data[: len(data) // 2])
    _noise(7, (24, 24)).save(root / "pose_map_train_set/v2/0001.png")
    (root / "train_set/v_empty").mkdir()
    (root / "train_set/v0/notes.txt").write_text("not a frame\n")
    (root / "keypoints_train_set/v1/0000.json").write_text("{not json")


def test_corrupted_dataset_lists_every_planted_problem_and_exits_one(tmp_path, capsys):
    _make_clean(tmp_path)
    _corrupt(tmp_path)
    code, out = _run(["check-data", str(tmp_path)], capsys)
    assert code == 1
    for kind, relative in PLANTED:
        assert f"{tmp_path / relative}:" in out, (kind, relative, out)
    assert "FAIL: 3 problem(s) block training" in out

    report = check_dataset(tmp_path)
    found = {(p.kind, str(p.path.relative_to(tmp_path))) for p in report.problems}
    assert found == PLANTED
    blocking = {p.kind for p in report.problems if p.blocking}
    assert blocking == {"unreadable_image", "size_mismatch", "bad_keypoints"}
    assert report.kind_counts()["stray_file"] == 1
    assert "pose map is 24x24, frame 0001.png is 32x48" in out
    assert "not valid JSON" in out


def test_quarantine_moves_offending_frames_and_deletes_nothing(tmp_path, capsys):
    root, quarantine = tmp_path / "data", tmp_path / "quarantine"
    _make_clean(root)
    _corrupt(root)
    before = _files(root)
    code, out = _run(["check-data", str(root), "--quarantine", str(quarantine)], capsys)
    assert code == 0, out  # everything that blocked training was moved out
    after, moved = _files(root), _files(quarantine)
    assert after | moved == before and not after & moved  # the counts add up: nothing lost, nothing copied
    # Each offending frame goes with its pose map and keypoints, under the same relative layout.
    assert {
        "train_set/v0/0002.png", "keypoints_train_set/v0/0002.json",
        "train_set/v1/0003.png", "pose_map_train_set/v1/0003.png", "keypoints_train_set/v1/0003.json",
        "train_set/v2/0001.png", "pose_map_train_set/v2/0001.png", "keypoints_train_set/v2/0001.json",
        "train_set/v1/0000.png", "pose_map_train_set/v1/0000.png", "keypoints_train_set/v1/0000.json",
        "train_set/v0/notes.txt",
    } == moved  # fmt: skip
    assert f"moved {len(moved)} file(s) to {quarantine}" in out and "[quarantined]" in out
    assert (root / "train_set/v_empty").is_dir()  # folders are reported, never moved

    recheck = check_dataset(root)
    assert not recheck.blocks_training
    assert {p.kind for p in recheck.problems} == {"empty_video"}
    with pytest.warns(UserWarning):  # the empty video is skipped
        assert len(TikTokPairDataset(root, size=8)) == 12 - 4


def test_quarantine_never_overwrites_and_never_nests_in_the_data(tmp_path):
    root, quarantine = tmp_path / "data", tmp_path / "quarantine"
    _make_clean(root, splits=("train_set",))
    _corrupt(root)
    (quarantine / "train_set/v0").mkdir(parents=True)
    (quarantine / "train_set/v0/notes.txt").write_text("an earlier quarantine\n")
    before = _files(root)
    with pytest.raises(UserError, match="already exists"):
        check_dataset(root, quarantine=quarantine)
    assert _files(root) == before  # refused before moving anything
    with pytest.raises(UserError, match="must not be inside"):
        check_dataset(root, quarantine=root / "train_set" / "bad")


def test_broken_root_reports_the_same_message_as_the_dataset(tmp_path, capsys):
    (tmp_path / "train_set/v0").mkdir(parents=True)
    _noise(0).save(tmp_path / "train_set/v0/0.png")
    code, out = _run(["check-data", str(tmp_path), "--split", "train_set"], capsys)
    assert code == 1
    [problem] = check_dataset(tmp_path, splits=["train_set"]).problems
    assert problem.kind == "missing_folder" and problem.blocking
    with pytest.raises(UserError) as info:
        TikTokPairDataset(tmp_path, size=8)
    assert str(info.value) == f"{problem.path}: {problem.detail}"
    assert str(info.value) in out


def test_short_videos_and_orphans_are_reported_but_do_not_block(tmp_path):
    _make_clean(tmp_path, splits=("train_set",))
    for f in range(1, 4):
        (tmp_path / f"train_set/v2/{f:04d}.png").unlink()
    report = check_dataset(tmp_path)
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == ["orphan_pose_map"] * 3 + ["too_few_frames"]
    assert not report.blocks_training
    assert check_dataset(tmp_path, min_frames=5).kind_counts()["no_videos"] == 1


def test_help_describes_the_command(capsys):
    parser = argparse.ArgumentParser(prog="magicpose")
    add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["check-data", "--help"])
    out = capsys.readouterr().out
    assert "--quarantine DIR" in out and "--split S" in out and "exit status" in out


def test_duplicate_stem_is_one_problem_and_the_loader_skips_it(tmp_path):
    _make_clean(tmp_path, splits=("train_set",))
    _noise(1).save(tmp_path / "train_set/v0/0001.jpg")  # beside 0001.png: which one is the frame?
    report = check_dataset(tmp_path)
    assert [(p.kind, p.path.name) for p in report.problems] == [("duplicate_stem", "0001.jpg")]
    with pytest.warns(UserWarning, match=r"ambiguous stem\(s\) with two files \(0001\)"):
        dataset = TikTokPairDataset(tmp_path, size=8)
    assert len(dataset) == 11
