"""Tests for magicpose.data.tiktok: every dataset is drawn with PIL under tmp_path (tiny frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from magicpose.bench.data import benchmark_loader
from magicpose.data.tiktok import (
    DatasetWarning,
    TikTokPairDataset,
    TikTokVideoDataset,
    scan_split,
)
from magicpose.errors import UserError

SIZE = 32
ITEM_TENSORS = ("pixel_values", "ref_pixel_values", "pose_pixel_values", "frame_index", "ref_frame_index")


def _colour(video: int, frame: int) -> tuple[int, int, int]:
    """A colour that encodes (video, frame); channels 40 apart so JPEG / resampling cannot confuse them."""
    return 20 + 40 * video, 10 + 20 * frame, 200


def _decode(rgb: np.ndarray) -> tuple[int, int]:
    """(video, frame) of a `_colour` (inverse, rounded)."""
    return round((rgb[0] - 20) / 40), round((rgb[1] - 10) / 20)


def _save(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _make_coloured(root: Path, videos: int = 3, frames: int = 6, size: tuple[int, int] = (64, 64),
                   split: str = "train_set") -> None:
    """Frame f of video v and its pose map are both filled with `_colour(v, f)`; video 0 is JPEG."""
    for v in range(videos):
        for f in range(frames):
            image = Image.new("RGB", size, _colour(v, f))
            ext = "jpg" if v == 0 else "png"
            _save(root / split / f"v{v}" / f"{f:04d}.{ext}", image)
            _save(root / f"pose_map_{split}" / f"v{v}" / f"{f:04d}.png", image)


def _rgb255(tensor: torch.Tensor, signed: bool) -> np.ndarray:
    """Mean colour of a (3, S, S) item tensor in 0-255."""
    mean = tensor.mean(dim=(1, 2)).numpy()
    return (mean + 1) * 127.5 if signed else mean * 255


def _as_uint8(tensor: torch.Tensor, signed: bool) -> np.ndarray:
    """(S, S, 3) uint8 image of an item tensor (numpy: torch's round is oddly slow on tiny tensors here)."""
    values = tensor.numpy().transpose(1, 2, 0)
    values = (values + 1) * 127.5 if signed else values * 255
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# --- pairing -----------------------------------------------------------------------------------------------


def test_pairs_by_name_and_skips_unpaired_frames_with_one_warning(tmp_path):
    _make_coloured(tmp_path)
    (tmp_path / "pose_map_train_set/v1/0003.png").unlink()  # frame without pose map
    (tmp_path / "train_set/v2/0000.png").unlink()  # pose map without frame
    with pytest.warns(DatasetWarning) as record:
        dataset = TikTokPairDataset(tmp_path, size=SIZE)
    messages = [str(w.message) for w in record if issubclass(w.category, DatasetWarning)]
    assert len(messages) == 2  # one per affected video
    assert any("v1" in m and "1 frame(s) without pose map (0003)" in m for m in messages)
    assert any("v2" in m and "1 pose map(s) without frame (0000)" in m for m in messages)
    assert len(dataset) == 16

    for index in range(len(dataset)):
        item = dataset[index]
        video = dataset.videos[int(item["video_id"][1:])]
        target = _decode(_rgb255(item["pixel_values"], signed=True))
        pose = _decode(_rgb255(item["pose_pixel_values"], signed=False))
        ref = _decode(_rgb255(item["ref_pixel_values"], signed=True))
        assert target == pose, f"item {index}: frame {target} got the pose map of {pose}"
        assert video.stems[item["frame_index"]] == f"{target[1]:04d}"
        assert video.stems[item["ref_frame_index"]] == f"{ref[1]:04d}"
        assert ref[0] == target[0] and item["ref_frame_index"] != item["frame_index"]


def test_scan_split_lists_each_folder_once_in_natural_order(tmp_path):
    for name in ("10", "2", "1"):
        for tree in ("train_set", "pose_map_train_set"):
            _save(tmp_path / tree / "v10" / f"{name}.png", Image.new("RGB", (8, 8)))
            _save(tmp_path / tree / "v2" / f"{name}.png", Image.new("RGB", (8, 8)))
    videos = scan_split(tmp_path, "train_set")
    assert [v.video_id for v in videos] == ["v2", "v10"]
    assert videos[0].stems == ["1", "2", "10"]
    assert all(p.stem == f.stem for v in videos for p, f in zip(v.poses, v.frames))
    assert videos[0].keypoints == [None, None, None]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda root: None, "no such dataset folder"),
        (lambda root: (root / "train_set").mkdir(parents=True), "no such pose-map folder"),
        (lambda root: (root / "pose_map_train_set").mkdir(parents=True), "no such split folder"),
        (lambda root: [(root / t).mkdir(parents=True) for t in ("train_set", "pose_map_train_set")],
         "no video folders"),
    ],
)
def test_broken_root_is_one_line_user_error_naming_the_path(tmp_path, break_it, expected):
    root = tmp_path / "data"
    break_it(root)
    with pytest.raises(UserError, match=expected) as info:
        TikTokPairDataset(root, size=SIZE)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(root))


def test_videos_too_short_are_skipped_and_none_left_is_an_error(tmp_path):
    _make_coloured(tmp_path, videos=2, frames=1)
    with pytest.warns(DatasetWarning, match="2 video"), pytest.raises(UserError, match="no video has 2"):
        TikTokPairDataset(tmp_path, size=SIZE)


# --- geometry ----------------------------------------------------------------------------------------------


def _marker_pair(root: Path, size: tuple[int, int], frames: int = 4) -> None:
    """Frames (black, a red stripe, a white marker) and pose maps (black, the same marker) of size (W, H)."""
    width, height = size
    box = (width * 2 // 5, height * 2 // 5, width * 2 // 5 + 5, height * 2 // 5 + 5)
    for f in range(frames):
        frame, pose = Image.new("RGB", size), Image.new("RGB", size)
        ImageDraw.Draw(frame).rectangle((0, height - 5, width - 1, height - 2), fill=(255, 0, 0))
        for image in (frame, pose):
            ImageDraw.Draw(image).rectangle(box, fill=(255, 255, 255))
        _save(root / "train_set" / "v0" / f"{f}.png", frame)
        _save(root / "pose_map_train_set" / "v0" / f"{f}.png", pose)


def _white(image: np.ndarray) -> np.ndarray:
    return (image > 127).all(axis=-1)


@pytest.mark.parametrize("frame_size", [(48, 80), (80, 48)])
@pytest.mark.parametrize("resize_mode", ["crop", "pad"])
@pytest.mark.parametrize("rrc", [None, (0.3, 1.0)])
def test_target_and_pose_share_every_transform(tmp_path, frame_size, resize_mode, rrc):
    _marker_pair(tmp_path, frame_size)
    dataset = TikTokPairDataset(tmp_path, size=SIZE, resize_mode=resize_mode, random_resized_crop=rrc)
    seen, ref_differs = 0, 0
    for epoch in range(10):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            target = _white(_as_uint8(item["pixel_values"], signed=True))
            pose = _white(_as_uint8(item["pose_pixel_values"], signed=False))
            ref = _white(_as_uint8(item["ref_pixel_values"], signed=True))
            np.testing.assert_array_equal(target, pose, err_msg=f"epoch {epoch} item {index}")
            seen += bool(target.any())
            ref_differs += bool((ref != target).any())
    assert seen >= 20  # the marker was inside the window most of the time
    if rrc is None:
        assert ref_differs == 0  # deterministic geometry: every frame is transformed alike
    else:
        assert ref_differs > 0  # the reference draws its own window


def test_centre_crop_puts_the_marker_where_geometry_says(tmp_path):
    _marker_pair(tmp_path, (48, 80))  # marker at x 19..24, y 32..37; centre square is rows 16..63
    item = TikTokPairDataset(tmp_path, size=48, resize_mode="crop")[0]
    ys, xs = np.nonzero(_white(_as_uint8(item["pose_pixel_values"], signed=False)))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (19, 24, 16, 21)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_deterministic_geometry_equals_inference_to_square(mode):
    from magicpose.data.transforms import SquareCrop, transform_image
    from magicpose.media import to_square

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (81, 47, 3), dtype=np.uint8))
    expected = np.asarray(to_square(image, SIZE, mode))
    np.testing.assert_array_equal(np.asarray(transform_image(image, SIZE, mode, SquareCrop())), expected)


# --- randomness --------------------------------------------------------------------------------------------


def _long_video(root: Path, frames: int = 12) -> None:
    _make_coloured(root, videos=1, frames=frames, size=(16, 16))


def test_max_frame_distance_is_respected(tmp_path):
    _long_video(tmp_path)
    limited = TikTokPairDataset(tmp_path, size=8, max_frame_distance=2)
    free = TikTokPairDataset(tmp_path, size=8)
    limited_gaps, free_gaps = set(), set()
    for epoch in range(8):
        for dataset, gaps in ((limited, limited_gaps), (free, free_gaps)):
            dataset.set_epoch(epoch)
            for index in range(len(dataset)):
                gaps.add(dataset[index]["ref_frame_index"] - dataset[index]["frame_index"])
    assert limited_gaps == {-2, -1, 1, 2}
    assert 0 not in free_gaps and max(free_gaps) > 2 and min(free_gaps) < -2


def _signature(item: dict) -> tuple:
    return item["frame_index"], item["ref_frame_index"], item["pixel_values"].sum().item()


def test_items_reproducible_per_seed_epoch_index_and_change_across_epochs(tmp_path):
    _long_video(tmp_path)
    def make(seed: int = 0) -> TikTokPairDataset:
        return TikTokPairDataset(tmp_path, size=8, random_resized_crop=(0.3, 1.0), seed=seed)

    first, second = make(), make()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    epoch0 = [_signature(first[i]) for i in range(len(first))]
    torch.manual_seed(123)  # global RNG state must not matter ...
    np.random.seed(123)
    assert [_signature(second[i]) for i in range(len(second))] == epoch0
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    first[3]
    assert torch.equal(torch.get_rng_state(), torch_state)  # ... nor be touched
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])

    first.set_epoch(1)
    epoch1 = [_signature(first[i]) for i in range(len(first))]
    assert epoch1 != epoch0 and sum(a != b for a, b in zip(epoch0, epoch1)) > len(epoch0) // 2
    first.set_epoch(0)
    assert [_signature(first[i]) for i in range(len(first))] == epoch0
    assert [_signature(make(seed=1)[i]) for i in range(len(first))] != epoch0


def test_distributed_ranks_see_disjoint_samples_covering_the_epoch(tmp_path):
    _make_coloured(tmp_path, size=(16, 16))
    dataset = TikTokPairDataset(tmp_path, size=8)
    seen = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=2, rank=rank, shuffle=True, seed=0
        )
        sampler.set_epoch(0)
        seen.append({(dataset[i]["video_id"], dataset[i]["frame_index"]) for i in sampler})
    assert not seen[0] & seen[1]
    all_items = {(dataset[i]["video_id"], dataset[i]["frame_index"]) for i in range(len(dataset))}
    assert seen[0] | seen[1] == all_items and len(all_items) == 18


# --- landmark dropout --------------------------------------------------------------------------------------

FACE_BOX = (slice(4, 22), slice(22, 42))  # rows, cols
HAND_BOX = (slice(38, 62), slice(48, 62))


def _person():
    from magicpose.pose.openpose import PersonKeypoints

    body = np.zeros((18, 3), np.float32)  # head joints stay undetected so only the face draws up there
    for joint, (x, y) in {1: (32, 28), 2: (22, 30), 5: (42, 30), 8: (27, 56), 11: (37, 56)}.items():
        body[joint] = (x, y, 1.0)
    rng = np.random.default_rng(0)
    face = np.column_stack([rng.uniform(25, 39, 70), rng.uniform(7, 19, 70), np.ones(70)])
    hand = np.column_stack([rng.uniform(51, 59, 21), rng.uniform(41, 59, 21), np.ones(21)])
    return PersonKeypoints(body=body, left_hand=hand, face=face)


def _make_keypointed(root: Path, keypoints: bool = True) -> None:
    from magicpose.pose.openpose import PoseFrame, render_pose, write_keypoints_json

    frame = PoseFrame([_person()], 64, 64)
    for f in range(3):
        _save(root / "train_set/v0" / f"{f}.png", Image.new("RGB", (64, 64), (90, 90, 90)))
        _save(root / "pose_map_train_set/v0" / f"{f}.png", Image.fromarray(render_pose(frame)))
        if keypoints:
            write_keypoints_json(root / "keypoints_train_set/v0" / f"{f}.json", frame)


def _pose(dataset: TikTokPairDataset) -> np.ndarray:
    return _as_uint8(dataset[0]["pose_pixel_values"], signed=False)


def test_landmark_dropout_rerenders_without_face_or_hands(tmp_path):
    _make_keypointed(tmp_path)
    full = _pose(TikTokPairDataset(tmp_path, size=64))
    no_face = _pose(TikTokPairDataset(tmp_path, size=64, face_dropout=1.0))
    no_hands = _pose(TikTokPairDataset(tmp_path, size=64, hand_dropout=1.0))
    assert _white(full[FACE_BOX]).sum() > 20 and full[HAND_BOX].any()
    assert not no_face[FACE_BOX].any() and no_face[HAND_BOX].any()
    assert not no_hands[HAND_BOX].any() and _white(no_hands[FACE_BOX]).sum() > 20
    torso = (slice(30, 56), slice(24, 40))
    assert no_face[torso].any() and no_hands[torso].any()  # the body stays


def test_landmark_dropout_probability_and_skip_without_keypoints(tmp_path):
    _make_keypointed(tmp_path / "with")
    dataset = TikTokPairDataset(tmp_path / "with", size=64, face_dropout=0.5)
    dropped = 0
    for epoch in range(40):
        dataset.set_epoch(epoch)
        dropped += not _pose(dataset)[FACE_BOX].any()
    assert 8 <= dropped <= 32

    _make_keypointed(tmp_path / "without", keypoints=False)
    stored = _pose(TikTokPairDataset(tmp_path / "without", size=64, face_dropout=1.0, hand_dropout=1.0))
    assert _white(stored[FACE_BOX]).sum() > 20  # no keypoints JSON: the stored pose map is used as is


# --- loaders -----------------------------------------------------------------------------------------------


def test_dataloader_with_workers_matches_single_process(tmp_path):
    _make_coloured(tmp_path, size=(24, 40))
    dataset = TikTokPairDataset(tmp_path, size=16, random_resized_crop=(0.5, 1.0))
    single = list(torch.utils.data.DataLoader(dataset, batch_size=4))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    batches = list(loader)
    assert len(batches) == len(single) == 5
    for a, b in zip(single, batches):
        assert a["video_id"] == b["video_id"] and isinstance(b["video_id"], list)
        assert b["pixel_values"].shape[1:] == (3, 16, 16) and b["pose_pixel_values"].shape[1:] == (3, 16, 16)
        for key in ITEM_TENSORS:
            assert torch.equal(a[key], b[key]), key
    # set_epoch reaches persistent workers (the epoch lives in shared memory).
    dataset.set_epoch(3)
    expected = [dataset[i]["ref_frame_index"] for i in range(len(dataset))]
    got = torch.cat([batch["ref_frame_index"] for batch in loader]).tolist()
    assert got == expected


def test_video_dataset_yields_whole_videos_in_order_with_first_frame_reference(tmp_path):
    for v, name in enumerate(["v10", "v2"]):
        for stem in ["10", "2", "1"]:
            order = {"1": 0, "2": 1, "10": 2}[stem]
            image = Image.new("RGB", (40, 24), _colour(v, order))
            _save(tmp_path / "test_set" / name / f"{stem}.png", image)
            _save(tmp_path / "pose_map_test_set" / name / f"{stem}.png", image)
    dataset = TikTokVideoDataset(tmp_path, size=SIZE)
    assert [dataset[i]["video_id"] for i in range(len(dataset))] == ["v2", "v10"]
    item = dataset[0]
    assert item["frame_names"] == ["1", "2", "10"]
    assert item["pixel_values"].shape == item["pose_pixel_values"].shape == (3, 3, SIZE, SIZE)
    assert torch.equal(item["ref_pixel_values"], item["pixel_values"][0])
    for f in range(3):
        assert _decode(_rgb255(item["pixel_values"][f], signed=True)) == (1, f)
        assert _decode(_rgb255(item["pose_pixel_values"][f], signed=False)) == (1, f)
    assert TikTokVideoDataset(tmp_path, size=SIZE, max_frames=2)[1]["pixel_values"].shape[0] == 2
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=None)))
    assert batch["pixel_values"].shape == (3, 3, SIZE, SIZE)


def test_benchmark_loader_reports_samples_per_second(tmp_path, capsys):
    _make_coloured(tmp_path, videos=2, frames=3, size=(16, 16))
    result = benchmark_loader(tmp_path, size=16, workers=(0,), batch_size=2, batches=3)
    assert set(result) == {0} and result[0] > 0
    assert "workers=0" in capsys.readouterr().out
