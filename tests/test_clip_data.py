"""Tests for magicpose.data.tiktok.TikTokClipDataset (stage-3 clips): tiny datasets drawn with PIL or the toy world."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from magicpose.data.tiktok import DatasetWarning, TikTokClipDataset, TikTokPairDataset
from magicpose.errors import UserError
from magicpose.training.data import training_loader

SIZE = 16
TENSORS = ("pixel_values", "ref_pixel_values", "pose_pixel_values", "frame_index", "frame_indices",
           "ref_frame_index")


def _colour(video: int, frame: int) -> tuple[int, int, int]:
    """A colour that encodes (video, frame), channels far apart so resampling cannot confuse them."""
    return 20 + 40 * video, 10 + 20 * frame, 200


def _decode(tensor: torch.Tensor, signed: bool) -> tuple[int, int]:
    """(video, frame) of a (3, S, S) item tensor filled with a `_colour`."""
    mean = tensor.mean(dim=(1, 2)).numpy()
    rgb = (mean + 1) * 127.5 if signed else mean * 255
    return round((rgb[0] - 20) / 40), round((rgb[1] - 10) / 20)


def _save(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _make_coloured(root: Path, videos: int = 2, frames: int = 10, size: tuple[int, int] = (24, 40)) -> None:
    """Frame f of video v and its pose map are filled with `_colour(v, f)`, named `f.png` (unpadded, so natural
    order matters); the pose maps are written in a shuffled order."""
    order = [(v, f) for v in range(videos) for f in range(frames)]
    for v, f in order:
        _save(root / "train_set" / f"v{v}" / f"{f}.png", Image.new("RGB", size, _colour(v, f)))
    random.Random(0).shuffle(order)
    for v, f in order:
        _save(root / "pose_map_train_set" / f"v{v}" / f"{f}.png", Image.new("RGB", size, _colour(v, f)))


def _clip(root: Path, **kwargs) -> TikTokClipDataset:
    kwargs.setdefault("size", SIZE)
    return TikTokClipDataset(root, **kwargs)


def _signature(item: dict) -> tuple:
    return (item["video_id"], tuple(item["frame_indices"].tolist()), item["ref_frame_index"],
            round(item["pixel_values"].sum().item(), 3), round(item["ref_pixel_values"].sum().item(), 3))


# --- items -------------------------------------------------------------------------------------------------


def test_shapes_ranges_and_collated_batch(tmp_path):
    _make_coloured(tmp_path)
    dataset = _clip(tmp_path, num_frames=4, frame_stride=2, random_resized_crop=(0.5, 1.0))
    assert len(dataset) == 2 * (10 - 6)  # starts 0..3 in each video: 3 * 2 + 1 = 7 frames per clip
    item = dataset[0]
    assert item["pixel_values"].shape == item["pose_pixel_values"].shape == (4, 3, SIZE, SIZE)
    assert item["ref_pixel_values"].shape == (3, SIZE, SIZE)
    assert item["pixel_values"].dtype == item["pose_pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min() >= -1 and item["pixel_values"].max() <= 1
    assert item["ref_pixel_values"].min() >= -1 and item["ref_pixel_values"].max() <= 1
    assert item["pose_pixel_values"].min() >= 0 and item["pose_pixel_values"].max() <= 1
    assert item["pixel_values"].min() < 0  # signed images, unsigned pose maps
    assert item["video_id"] == "v0" and item["frame_index"] == 0 and item["frame_indices"].tolist() == [0, 2, 4, 6]

    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["pixel_values"].shape == batch["pose_pixel_values"].shape == (3, 4, 3, SIZE, SIZE)
    assert batch["ref_pixel_values"].shape == (3, 3, SIZE, SIZE)
    assert batch["frame_indices"].shape == (3, 4) and batch["frame_index"].shape == (3,)
    assert batch["video_id"] == ["v0", "v0", "v0"]


def test_clips_take_name_paired_frames_at_the_stride(tmp_path):
    _make_coloured(tmp_path, frames=12)
    (tmp_path / "pose_map_train_set/v1/3.png").unlink()  # frame 3 of v1 has no pose map: it leaves the list
    with pytest.warns(DatasetWarning, match="1 frame"):
        dataset = _clip(tmp_path, num_frames=3, frame_stride=2)
    assert [v.stems for v in dataset.videos][1] == ["0", "1", "2", "4", "5", "6", "7", "8", "9", "10", "11"]
    assert len(dataset) == (12 - 4) + (11 - 4)
    starts = []
    for index in range(len(dataset)):
        item = dataset[index]
        v = int(item["video_id"][1:])
        stems = dataset.videos[v].stems
        indices = item["frame_indices"].tolist()
        assert indices == [item["frame_index"] + k * 2 for k in range(3)]
        for k, frame in enumerate(indices):
            got = _decode(item["pixel_values"][k], signed=True)
            assert got == (v, int(stems[frame])), f"item {index} frame {k}"
            assert _decode(item["pose_pixel_values"][k], signed=False) == got, f"item {index}: pose of another frame"
        ref = _decode(item["ref_pixel_values"], signed=True)
        assert ref == (v, int(stems[item["ref_frame_index"]]))  # the reference comes from the same video
        starts.append((v, item["frame_index"]))
    assert starts == [(0, i) for i in range(8)] + [(1, i) for i in range(7)]  # every valid start, in order
    # v1's clip from paired index 2 skips the frame without pose map: stems 2, 5, 7
    item = dataset[8 + 2]
    assert [_decode(f, signed=True)[1] for f in item["pixel_values"]] == [2, 5, 7]


def test_one_frame_clips_and_exact_length_videos(tmp_path):
    _make_coloured(tmp_path, videos=1, frames=5)
    assert len(_clip(tmp_path, num_frames=1)) == 5
    exact = _clip(tmp_path, num_frames=3, frame_stride=2)  # 5 frames: one clip, 0 2 4
    assert len(exact) == 1 and exact[0]["frame_indices"].tolist() == [0, 2, 4]


# --- geometry ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resize_mode", ["crop", "pad"])
def test_one_window_for_every_frame_pose_map_and_the_reference(tmp_path, resize_mode):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (40, 24, 3), dtype=np.uint8)).resize((48, 80))
    for f in range(6):  # every frame and every pose map is the same picture
        _save(tmp_path / "train_set/v0" / f"{f}.png", picture)
        _save(tmp_path / "pose_map_train_set/v0" / f"{f}.png", picture)
    dataset = _clip(tmp_path, num_frames=4, resize_mode=resize_mode, random_resized_crop=(0.2, 0.6))
    firsts = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            frames, poses = item["pixel_values"], item["pose_pixel_values"]
            for k in range(1, 4):
                assert torch.equal(frames[k], frames[0]) and torch.equal(poses[k], poses[0])
            assert torch.equal(item["ref_pixel_values"], frames[0])
            torch.testing.assert_close(poses * 2 - 1, frames, rtol=0, atol=1e-5)
            firsts.append(frames[0])
    # the window is random: items (and epochs) differ
    assert sum(not torch.equal(firsts[0], other) for other in firsts[1:]) >= len(firsts) - 2


# --- reference and randomness ------------------------------------------------------------------------------


def test_reference_anywhere_in_the_video_or_within_max_frame_distance_of_the_clip(tmp_path):
    _make_coloured(tmp_path, videos=1, frames=12)
    free = _clip(tmp_path, num_frames=3, frame_stride=2)
    limited = _clip(tmp_path, num_frames=3, frame_stride=2, max_frame_distance=1)
    inside, outside, offsets = 0, 0, set()
    for epoch in range(12):
        for index in range(len(free)):
            item = free.item(index, epoch)
            frames = item["frame_indices"].tolist()
            inside += item["ref_frame_index"] in frames
            outside += item["ref_frame_index"] not in frames
            near = limited.item(index, epoch)
            first, last = near["frame_indices"][0].item(), near["frame_indices"][-1].item()
            assert first - 1 <= near["ref_frame_index"] <= last + 1
            offsets.add(near["ref_frame_index"] - first)
    assert inside > 0 and outside > 0  # clip frames may be the reference too
    assert {-1, 0, 4, 5} <= offsets


def test_items_reproducible_per_seed_epoch_index_and_change_across_epochs(tmp_path):
    _make_coloured(tmp_path, frames=8)
    def make(seed: int = 0) -> TikTokClipDataset:
        return _clip(tmp_path, num_frames=3, random_resized_crop=(0.3, 1.0), seed=seed)

    first, second = make(), make()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    epoch0 = [_signature(first[i]) for i in range(len(first))]
    torch.manual_seed(123)  # global RNG state does not matter ...
    np.random.seed(123)
    assert [_signature(second[i]) for i in range(len(second))] == epoch0
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    first[3]
    assert torch.equal(torch.get_rng_state(), torch_state)  # ... nor is it touched
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])

    first.set_epoch(1)
    epoch1 = [_signature(first[i]) for i in range(len(first))]
    assert sum(a != b for a, b in zip(epoch0, epoch1)) > len(epoch0) // 2
    assert [_signature(first.item(i, 0)) for i in range(len(first))] == epoch0
    assert [_signature(make(seed=1)[i]) for i in range(len(first))] != epoch0


def _stream(loader, batches: int) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == batches:
            return out
    raise AssertionError("loader ended")


def test_training_loader_shards_ranks_and_resumes_exactly(tmp_path):
    _make_coloured(tmp_path, videos=3, frames=5, size=(16, 16))
    dataset = _clip(tmp_path, num_frames=2, frame_stride=2, size=8, random_resized_crop=(0.5, 1.0))
    n = len(dataset)
    assert n == 3 * 3  # 3 starts a video
    batch, per_rank = 2, n // 2  # each rank: 4 items a pass
    ranks = []
    for rank in range(2):
        loader = training_loader(dataset, batch, 0, rank, 2, seed=7, samples_seen=0)
        batches = _stream(loader, per_rank // batch)
        items = [(v, int(f)) for b in batches for v, f in zip(b["video_id"], b["frame_index"])]
        assert len(set(items)) == per_rank
        ranks.append(set(items))
    assert not ranks[0] & ranks[1]  # disjoint within a pass

    whole = _stream(training_loader(dataset, batch, 0, 0, 2, seed=7, samples_seen=0), 7)  # crosses 3 passes
    resumed = _stream(training_loader(dataset, batch, 0, 0, 2, seed=7, samples_seen=3 * batch), 4)
    for a, b in zip(whole[3:], resumed):
        assert a["video_id"] == b["video_id"]
        for key in TENSORS:
            assert torch.equal(a[key], b[key]), key


# --- landmark dropout --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    from magicpose.toy import generate_toy_dataset

    root = tmp_path_factory.mktemp("toy") / "toy"
    generate_toy_dataset(root, videos=1, test_videos=0, frames=6, size=64, seed=0)
    return root


def _dropped(dataset: TikTokClipDataset, stored: TikTokClipDataset, index: int, epoch: int) -> list[bool]:
    """Per clip frame: does its pose map differ from the stored one (same window: same draws)?"""
    got, kept = dataset.item(index, epoch)["pose_pixel_values"], stored.item(index, epoch)["pose_pixel_values"]
    return [not torch.equal(a, b) for a, b in zip(got, kept)]


def test_landmark_dropout_drops_the_same_parts_on_every_frame_of_a_clip(toy_root):
    options = dict(num_frames=3, size=64, random_resized_crop=(0.6, 1.0))
    dataset = _clip(toy_root, face_dropout=0.5, hand_dropout=0.5, **options)
    stored = _clip(toy_root, **options)
    outcomes = []
    for epoch in range(6):
        for index in range(len(dataset)):
            dropped = _dropped(dataset, stored, index, epoch)
            assert len(set(dropped)) == 1, f"epoch {epoch} item {index}: {dropped}"
            outcomes.append(dropped[0])
    assert any(outcomes) and not all(outcomes)


def test_a_clip_with_a_frame_without_keypoints_keeps_its_stored_pose_maps(toy_root, tmp_path):
    import shutil

    root = tmp_path / "toy"
    shutil.copytree(toy_root, root)
    (root / "keypoints_train_set/video_0000/0003.json").unlink()
    options = dict(num_frames=2, size=32)
    dataset, stored = _clip(root, face_dropout=1.0, **options), _clip(root, **options)
    for index in range(len(dataset)):
        frames = dataset[index]["frame_indices"].tolist()
        assert _dropped(dataset, stored, index, 0) == [3 not in frames] * 2, frames


# --- errors ------------------------------------------------------------------------------------------------


def test_too_short_videos_are_one_line_user_error_naming_split_frames_stride_and_longest(tmp_path):
    _make_coloured(tmp_path, videos=2, frames=5)
    with pytest.warns(DatasetWarning, match="2 video"), pytest.raises(UserError) as info:
        _clip(tmp_path, num_frames=4, frame_stride=2)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "train_set"))
    assert "clips of 4 frames at stride 2" in message and "7 paired frames" in message
    assert "the longest video has 5" in message


@pytest.mark.parametrize(("kwargs", "key"), [(dict(num_frames=0), "num_frames=0"),
                                             (dict(frame_stride=0), "frame_stride=0"),
                                             (dict(num_frames=2.5), "num_frames=2.5")])
def test_bad_frame_arguments_are_user_errors(tmp_path, kwargs, key):
    _make_coloured(tmp_path, videos=1, frames=3)
    with pytest.raises(UserError, match=key):
        _clip(tmp_path, **kwargs)


# --- config ------------------------------------------------------------------------------------------------


def test_config_round_trip_and_make_train_loader_builds_clips(tmp_path):
    from magicpose.config import FitConfig, load_config, to_yaml
    from magicpose.training.magicpose import make_train_loader

    _make_coloured(tmp_path / "data", videos=2, frames=6, size=(16, 16))
    assert FitConfig().data.num_frames is None and FitConfig().data.frame_stride == 1
    path = tmp_path / "clips.yaml"
    path.write_text(f"data:\n  root: {tmp_path / 'data'}\n  size: 8\n  batch_size: 2\n  num_workers: 0\n"
                    "  num_frames: 3\n  frame_stride: 2\n")
    config = load_config([path], schema=FitConfig)
    assert (config.data.num_frames, config.data.frame_stride) == (3, 2)
    saved = tmp_path / "saved.yaml"
    saved.write_text(to_yaml(config))
    assert load_config([saved], schema=FitConfig) == config

    batch = next(iter(make_train_loader(config, rank=0, world_size=1, global_step=0)))
    assert batch["pixel_values"].shape == batch["pose_pixel_values"].shape == (2, 3, 3, 8, 8)
    assert batch["ref_pixel_values"].shape == (2, 3, 8, 8)
    pairs = load_config([path], ["data.num_frames=null"], schema=FitConfig)
    loader = make_train_loader(pairs, rank=0, world_size=1, global_step=0)
    assert isinstance(loader.dataset.base, TikTokPairDataset)
    assert next(iter(loader))["pixel_values"].shape == (2, 3, 8, 8)
