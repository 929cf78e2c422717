"""Follow-Your-Pose training data: per-image captions (stage 1) and the original's HD-VILA layout (stage 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from magicpose.config import FypFitConfig, load_config
from magicpose.data.hdvila import HdVilaDataset, hdvila_window, read_hdvila_csv, segment_caption
from magicpose.data.image_captions import CaptionedPairs
from magicpose.data.tiktok import DatasetWarning, TikTokPairDataset
from magicpose.data.video_caption import VideoCaptionDataset
from magicpose.errors import UserError
from magicpose.media import write_video
from magicpose.training.followyourpose import FollowYourPoseTraining, make_fyp_loader

from .conftest import REPO

STAGE1 = REPO / "configs/followyourpose/tiny_stage1.yaml"
STAGE2 = REPO / "configs/followyourpose/tiny_stage2.yaml"


# ----- stage 1: per-image captions -------------------------------------------------------------------------
@pytest.fixture
def pairs_root(tmp_path):
    """Two videos of three frames each, with pose maps, in the TikTok layout."""
    root = tmp_path / "pairs"
    for video in ("v1", "v2"):
        for split in ("train_set", "pose_map_train_set"):
            (root / split / video).mkdir(parents=True)
            for frame in range(3):
                Image.new("RGB", (16, 16), (frame * 40, 0, 0)).save(root / split / video / f"{frame:04d}.png")
    return root


def _captions_by_item(dataset: CaptionedPairs) -> dict[str, str]:
    out = {}
    for index in range(len(dataset)):
        video_number, frame = dataset.pairs.locate(index)
        out[f"{dataset.pairs.videos[video_number].video_id}/{frame}"] = dataset.caption(index)
    return out


def test_image_captions_sidecar_then_file_then_prompt(pairs_root, tmp_path):
    (pairs_root / "train_set/v1/0000.txt").write_text("  a sidecar caption\n")
    (pairs_root / "train_set/v1/0002.txt").write_text("\n")  # empty: as if absent
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"v1/0000.png": "loses to the sidecar", "v1/0001": "frame caption",
                                    "v2": "video caption"}))
    pairs = TikTokPairDataset(pairs_root, size=16)
    dataset = CaptionedPairs(pairs, "the prompt", captions)
    assert _captions_by_item(dataset) == {
        "v1/0": "a sidecar caption", "v1/1": "frame caption", "v1/2": "the prompt",
        "v2/0": "video caption", "v2/1": "video caption", "v2/2": "video caption",
    }  # fmt: skip
    assert dataset.item(0, epoch=0)["caption"] == "a sidecar caption"
    assert CaptionedPairs(pairs, "the prompt").caption(1) == "the prompt"  # no file: data.prompt


def test_image_captions_file_checks(pairs_root, tmp_path):
    pairs = TikTokPairDataset(pairs_root, size=16)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"v9/0000": "x", "v8": "y"}))
    with pytest.raises(UserError, match=r"other.json: none of its 2 keys names a video or frame"):
        CaptionedPairs(pairs, "", other)
    partly = tmp_path / "partly.json"
    partly.write_text(json.dumps({"v1": "x", "v9": "y"}))
    with pytest.warns(DatasetWarning, match=r"1 key\(s\) name no video or frame .*'v9'"):
        CaptionedPairs(pairs, "", partly)
    broken = tmp_path / "broken.json"
    broken.write_text('["a list"]')
    with pytest.raises(UserError, match="expected one JSON object"):
        CaptionedPairs(pairs, "", broken)


def test_stage1_batches_carry_the_per_image_captions(pairs_root, tmp_path):
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"v1": "first video", "v2": "second video"}))
    config = load_config([STAGE1], [f"data.root={pairs_root}", f"data.image_captions={captions}", "data.size=16",
                                    "data.batch_size=6"], schema=FypFitConfig)
    FollowYourPoseTraining.check_data(config)
    batch = next(iter(make_fyp_loader(config, rank=0, world_size=1, global_step=0)))
    assert sorted(batch["caption"]) == ["first video"] * 3 + ["second video"] * 3
    missing = load_config([STAGE1], [f"data.root={pairs_root}", f"data.image_captions={tmp_path}/nope.json"],
                          schema=FypFitConfig)
    with pytest.raises(UserError, match=r"nope.json: no such file \(data.image_captions"):
        FollowYourPoseTraining.check_data(missing)


# ----- stage 2: the HD-VILA layout -------------------------------------------------------------------------
def _gray_clip(path, count, size=32):
    """A clip whose frame i is gray level 2 i (so decoded frames tell which source frames were taken)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, [np.full((size, size, 3), 2 * i, np.uint8) for i in range(count)], fps=8)


@pytest.fixture(scope="module")
def hdvila(tmp_path_factory):
    """The released layout: ROOT/caption_rm2048_train.csv and ROOT/part_<id>/video_clips/<clip_id>."""
    root = tmp_path_factory.mktemp("hdvila")
    _gray_clip(root / "part_0/video_clips/abc.3.mp4", 120)
    _gray_clip(root / "part_1/video_clips/def.0.mp4", 20)
    _gray_clip(root / "part_1/video_clips/short.mp4", 2)
    (root / "caption_rm2048_train.csv").write_text(
        "clip_id,part_id,caption\n"
        "abc.3.mp4,0,segment zero\n"
        "abc.3.mp4,0,segment one\n"
        "gone.mp4,0,a clip that is not there\n"
        "short,1,two frames only\n"  # no extension: .mp4
        "def.0.mp4,1,a person dancing\n"
    )
    return root


def test_hdvila_window_is_the_original_rule():
    rng = np.random.default_rng(0)
    windows = [hdvila_window(100, 12, 4, rng) for _ in range(50)]
    assert all(np.diff(w).tolist() == [4] * 11 and w[0] % 4 == 0 and w[-1] < 100 for w in windows)
    assert len({w[0] for w in windows}) > 1  # a random contiguous run of candidates
    assert hdvila_window(30, 12, 4, rng) in ([2 * k for k in range(s, s + 12)] for s in range(4))  # 30 // 12 = 2
    assert hdvila_window(11, 12, 4, rng) is None
    assert segment_caption(["a", "b"], [60, 64, 68]) == "b" and segment_caption(["a", "b"], [0, 4]) == "a"
    assert segment_caption(["a", "b"], [200, 204]) == "b"  # past the last segment: the last caption


def test_hdvila_csv_groups_segments_and_accepts_both_headers(hdvila, tmp_path):
    clips = read_hdvila_csv(hdvila / "caption_rm2048_train.csv", hdvila)
    assert [c.path.relative_to(hdvila).as_posix() for c in clips] == [
        "part_0/video_clips/abc.3.mp4", "part_0/video_clips/gone.mp4", "part_1/video_clips/short.mp4",
        "part_1/video_clips/def.0.mp4"]  # fmt: skip
    assert clips[0].captions == ["segment zero", "segment one"]
    webvid = tmp_path / "results_2M_train.csv"
    webvid.write_text("videoid,contentUrl,duration,page_dir,name\n7,http://x,PT5S,000001_000050,a cat\n")
    (clip,) = read_hdvila_csv(webvid, tmp_path)
    assert clip.path == tmp_path / "000001_000050/7.mp4" and clip.captions == ["a cat"]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\nx.mp4,y\n")
    with pytest.raises(UserError, match=r"bad.csv: header path, text has neither 'clip_id, part_id, caption'"):
        read_hdvila_csv(bad, tmp_path)


def test_hdvila_dataset_strides_captions_and_skips(hdvila):
    dataset = HdVilaDataset(hdvila / "caption_rm2048_train.csv", hdvila, frames=3, stride=16, size=16, seed=1)
    for epoch in range(3):
        item = dataset.item(0, epoch)
        assert item["pixel_values"].shape == (3, 3, 16, 16)
        taken = ((item["pixel_values"].mean(dim=(1, 2, 3)) + 1) * 127.5 / 2).round().tolist()  # source frames
        assert np.diff(taken).tolist() == [16, 16] and taken[0] % 16 == 0
        assert item["caption"] == ("segment zero" if taken[1] < 64 else "segment one")
    with pytest.warns(DatasetWarning) as caught:  # the missing clip, then the too-short one: the next clip
        item = dataset.item(1, 0)
    assert item["caption"] == "a person dancing" and item["index"] == 1
    reasons = [str(w.message) for w in caught]
    assert any("gone.mp4: no such clip" in r for r in reasons)
    assert any("short.mp4: has 2 frames, fewer than the 3" in r for r in reasons)
    with pytest.raises(UserError, match="none of its first 4 clips exists under the root"):
        HdVilaDataset(hdvila / "caption_rm2048_train.csv", hdvila / "part_0", frames=3)


def test_hdvila_selected_by_config_and_refused_as_a_captions_file(hdvila):
    config = load_config([STAGE2], ["data.layout=hdvila", f"data.root={hdvila}", "data.frames=4", "data.stride=4",
                                    "data.size=16"], schema=FypFitConfig)
    FollowYourPoseTraining.check_data(config)  # data.csv: the released name, found under data.root
    assert config.data.csv == str(hdvila / "caption_rm2048_train.csv")
    batch = next(iter(make_fyp_loader(config, rank=0, world_size=1, global_step=0)))
    assert batch["pixel_values"].shape == (1, 4, 3, 16, 16) and isinstance(batch["caption"][0], str)
    with pytest.raises(UserError, match=r"an HD-VILA-layout CSV; read it with data.layout=hdvila"):
        VideoCaptionDataset(hdvila / "caption_rm2048_train.csv")
    with pytest.raises(UserError, match=r"data.layout: 'webvid' is not"):
        FollowYourPoseTraining.check_data(load_config([STAGE2], ["data.layout=webvid"], schema=FypFitConfig))
