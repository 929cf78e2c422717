"""Pose retargeting (`magicpose.pose.retarget`, `magicpose retarget-pose`, `animate --retarget`'s inputs).

The geometry is checked on synthetic skeletons made by a small forward-kinematics helper: per-bone directions
over time (the motion), per-identity bone lengths, head and hand sizes, and a root path scaled by the body's
height. Two identities performing the same motion differ only by their bodies, so retargeting one onto the
other's first frame must give the other's keypoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from magicpose.cli import main
from magicpose.errors import UserError
from magicpose.pose.mmpose import render_mmpose
from magicpose.pose.openpose import (
    PersonKeypoints,
    PoseFrame,
    read_keypoints_json,
    render_pose,
    write_keypoints_json,
)
from magicpose.pose.retarget import (
    BONES,
    HEIGHT_BONES,
    PARENT,
    bone_name,
    find_keypoints,
    retarget_frames,
    retarget_parts,
    to_parts,
)

SIZE = 512
FRAMES = 24

# Image directions (radians, y down) of every bone in the rest pose, facing the camera.
REST = {
    (1, 2): np.pi, (1, 5): 0.0, (2, 3): np.pi / 2 + 0.3, (3, 4): np.pi / 2 + 0.2, (5, 6): np.pi / 2 - 0.3,
    (6, 7): np.pi / 2 - 0.2, (1, 8): np.pi / 2 + 0.25, (8, 9): np.pi / 2 + 0.05, (9, 10): np.pi / 2,
    (1, 11): np.pi / 2 - 0.25, (11, 12): np.pi / 2 - 0.05, (12, 13): np.pi / 2, (1, 0): -np.pi / 2,
    (0, 14): -np.pi / 2 - 0.9, (14, 16): np.pi, (0, 15): -np.pi / 2 + 0.9, (15, 17): 0.0,
}  # fmt: skip
HEAD = {(0, 14): 10.0, (14, 16): 14.0, (0, 15): 10.0, (15, 17): 14.0}  # at head scale 1


@dataclass
class Body:
    """An identity: limb lengths (px), a head scale (eye/ear bones and face), hands scaled with the forearms."""

    shoulder: float
    upper_arm: float
    forearm: float
    torso: float
    thigh: float
    shin: float
    neck: float
    head: float
    placement: tuple[float, float]

    def lengths(self) -> dict[tuple[int, int], float]:
        sides = {(1, 2): self.shoulder, (2, 3): self.upper_arm, (3, 4): self.forearm, (1, 8): self.torso,
                 (8, 9): self.thigh, (9, 10): self.shin}  # fmt: skip
        mirrored = {(1, 5): self.shoulder, (5, 6): self.upper_arm, (6, 7): self.forearm, (1, 11): self.torso,
                    (11, 12): self.thigh, (12, 13): self.shin}  # fmt: skip
        head = {bone: self.head * length for bone, length in HEAD.items()}
        return {**sides, **mirrored, (1, 0): self.neck, **head}

    def height(self) -> float:
        lengths = self.lengths()
        return sum(lengths[bone] for bone in HEIGHT_BONES)


B = Body(40, 55, 50, 110, 80, 75, 35, 1.0, (300.0, 150.0))  # the driving dancer
A = Body(50, 48, 62, 95, 92, 86, 30, 1.35, (220.0, 170.0))  # the reference person


@dataclass
class Motion:
    """Bone directions over time, out-of-plane tilts (foreshortening), and a root path in body heights."""

    angles: dict[tuple[int, int], np.ndarray]  # bone -> (T,)
    tilt: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # bone -> (T,) radians
    root: np.ndarray = field(default_factory=lambda: np.zeros((FRAMES, 2)))  # (T, 2), in body heights
    face: np.ndarray = field(default_factory=lambda: np.zeros((70, 2)))  # offsets from the nose at head scale 1
    hand: np.ndarray = field(default_factory=lambda: np.zeros((21, 2)))  # offsets from the wrist per forearm px


def dance(seed: int = 0, frames: int = FRAMES) -> Motion:
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / frames * 2 * np.pi
    angles = {}
    for bone, rest in REST.items():
        amplitude = 0.15 if bone in ((1, 2), (1, 5), (1, 8), (1, 11)) else 0.6
        angles[bone] = rest + amplitude * np.sin(rng.uniform(1, 3) * t + rng.uniform(0, 2 * np.pi))
    root = np.stack([0.25 * np.sin(t), 0.04 * np.cos(2 * t)], axis=1)
    face = rng.uniform(-15, 15, (70, 2))
    face[30] = 0  # the nose tip is the nose
    hand = np.concatenate([np.zeros((1, 2)), rng.uniform(-0.4, 0.4, (20, 2)) + [0.5, 0.0]])
    return Motion(angles, {}, root, face, hand)


def perform(body: Body, motion: Motion) -> list[dict[str, np.ndarray]]:
    """`body` performing `motion`: one person per frame as float64 arrays (confidence 1)."""
    lengths = body.lengths()
    frames = []
    for t in range(len(motion.root)):
        points = np.zeros((18, 3))
        points[1, :2] = np.asarray(body.placement) + body.height() * motion.root[t]
        for bone in BONES:
            parent, child = bone
            angle = motion.angles[bone][t]
            length = lengths[bone] * np.cos(motion.tilt.get(bone, np.zeros(FRAMES))[t])
            points[child, :2] = points[parent, :2] + length * np.array([np.cos(angle), np.sin(angle)])
        points[:, 2] = 1.0
        head = motion.angles[(1, 0)][t] + np.pi / 2
        face = points[0, :2] + body.head * motion.face @ rotation(head).T
        parts = {"body": points, "face": np.column_stack([face, np.ones(70)])}
        for part, (elbow, wrist) in (("left_hand", (6, 7)), ("right_hand", (3, 4))):
            angle = motion.angles[(elbow, wrist)][t]
            hand = points[wrist, :2] + body.forearm * motion.hand @ rotation(angle).T
            parts[part] = np.column_stack([hand, np.ones(21)])
        frames.append(parts)
    return frames


def rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def as_frames(people: list[dict[str, np.ndarray]], size: int = SIZE) -> list[PoseFrame]:
    return [PoseFrame([PersonKeypoints(p["body"], p.get("left_hand"), p.get("right_hand"), p.get("face"))],
                      size, size) for p in people]


def length(points: np.ndarray, bone: tuple[int, int]) -> float:
    return float(np.hypot(*(points[bone[1], :2] - points[bone[0], :2])))


def max_error(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> float:
    return max(float(np.abs(g[part] - w[part]).max()) for g, w in zip(got, want) for part in w)


# ----------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------


def test_retargeting_a_sequence_to_its_own_first_frame_is_the_identity():
    sequence = perform(B, dance())
    moved, plan = retarget_parts(sequence[0], sequence)
    assert max_error(moved, sequence) < 1e-6
    assert plan.height_ratio == pytest.approx(1, abs=1e-12)
    assert all(entry.ratio == pytest.approx(1, abs=1e-12) and entry.source == "measured"
               for entry in plan.bones.values())
    # Through PoseFrames (float32 keypoints: ~3e-5 px resolution at 512 px).
    frames = as_frames(sequence)
    result = retarget_frames(frames[0], frames)
    for got, want in zip(result.frames, frames):
        np.testing.assert_allclose(got.people[0].body, want.people[0].body, atol=1e-3)
        np.testing.assert_allclose(got.people[0].face, want.people[0].face, atol=1e-3)


def test_every_bone_gets_the_reference_length_in_every_frame():
    driving = perform(B, dance())
    reference = perform(A, dance(seed=5))[0]  # another motion: only A's body matters
    moved, _ = retarget_parts(reference, driving)
    for frame in moved:
        for bone in BONES:
            assert length(frame["body"], bone) == pytest.approx(length(reference["body"], bone), abs=1e-6)


def test_geometry_recovery_same_motion_on_another_body():
    """B dances M; retargeted onto A's first frame it is A dancing M (bodies, face, hands and root path)."""
    motion = dance(seed=1)
    tilt = np.zeros(FRAMES)
    tilt[3:8] = np.radians([20, 40, 60, 40, 20])  # her right forearm points at the camera for a while
    motion.tilt = {(3, 4): tilt, (9, 10): np.roll(tilt, 10)}
    driving, truth = perform(B, motion), perform(A, motion)
    moved, plan = retarget_parts(truth[0], driving)
    assert max_error(moved, truth) < 1e-6
    assert plan.height_ratio == pytest.approx(A.height() / B.height())
    assert plan.head_ratio == pytest.approx(A.head / B.head)
    assert plan.hand_ratios["right_hand"] == pytest.approx(A.forearm / B.forearm)
    # Through PoseFrames at 512 px: well under half a pixel.
    result = retarget_frames(as_frames(truth[:1])[0], as_frames(driving))
    assert max_error([to_parts(frame.people[0]) for frame in result.frames], truth) < 0.5


def test_a_foreshortened_bone_keeps_one_ratio_so_nothing_jitters():
    motion = dance(seed=2)
    tilt = np.radians(np.where(np.arange(FRAMES) % 3, 55.0, 0.0))  # 2/3 of the frames: her forearm foreshortened
    motion.tilt = {(6, 7): tilt}
    driving, truth = perform(B, motion), perform(A, motion)
    moved, plan = retarget_parts(perform(A, dance())[0], driving)
    scale = [length(m["body"], (6, 7)) / length(d["body"], (6, 7)) for m, d in zip(moved, driving)]
    np.testing.assert_allclose(scale, plan.ratio((6, 7)), rtol=1e-9)  # one ratio for every frame
    assert plan.bones[(6, 7)].driving == pytest.approx(B.forearm)  # the 90th percentile: the true length
    assert plan.ratio((6, 7)) == pytest.approx(A.forearm / B.forearm)
    for m, w in zip(moved, truth):  # so the foreshortened frames get A's foreshortened forearm
        assert length(m["body"], (6, 7)) == pytest.approx(length(w["body"], (6, 7)))
    # The median would take the foreshortened length for the true one and stretch her forearm.
    _, median = retarget_parts(perform(A, dance())[0], driving, percentile=50)
    assert median.ratio((6, 7)) == pytest.approx(A.forearm / (B.forearm * np.cos(np.radians(55))))


def test_face_and_hands_scale_with_the_head_and_forearm_ratios():
    driving = perform(B, dance(seed=3))
    moved, plan = retarget_parts(perform(A, dance())[0], driving)
    for m, d in zip(moved, driving):
        np.testing.assert_allclose(m["face"][:, :2] - m["body"][0, :2],
                                   plan.head_ratio * (d["face"][:, :2] - d["body"][0, :2]), atol=1e-9)
        for part, wrist, forearm in (("left_hand", 7, (6, 7)), ("right_hand", 4, (3, 4))):
            np.testing.assert_allclose(m[part][:, :2] - m["body"][wrist, :2],
                                       plan.ratio(forearm) * (d[part][:, :2] - d["body"][wrist, :2]), atol=1e-9)
    assert plan.head_ratio == pytest.approx(1.35) and "eye and ear" in plan.head_source


def test_placement_follows_the_root_scaled_by_the_height_ratio():
    still = perform(B, Motion({bone: np.full(FRAMES, angle) for bone, angle in REST.items()}))
    shifts = np.random.default_rng(4).uniform(-40, 40, (FRAMES, 2))
    shifts[0] = 0
    driving = []
    for person, shift in zip(still, shifts):
        driving.append({part: points + [*shift, 0.0] for part, points in person.items()})
    reference = perform(A, dance())[0]
    moved, plan = retarget_parts(reference, driving)
    np.testing.assert_allclose(moved[0]["body"][1, :2], reference["body"][1, :2])  # from where she stands
    for frame, shift in zip(moved, shifts):
        for part, points in frame.items():
            moved_by = points[:, :2] - moved[0][part][:, :2]
            np.testing.assert_allclose(moved_by, np.broadcast_to(plan.height_ratio * shift, moved_by.shape), atol=1e-9)
    record = plan.to_json()["offset"]
    assert record["driving_root_frame"] == 0
    np.testing.assert_allclose(record["reference_root"], reference["body"][1, :2], atol=1e-3)


def test_missing_keypoints_stay_missing_and_the_chain_below_is_still_placed():
    driving = perform(B, dance(seed=6))
    driving[3]["body"][3, 2] = 0  # her right elbow, frame 3
    driving[5]["body"][0, 2] = 0  # the nose, frame 5 (the face hangs on its own nose tip then)
    driving[7]["body"][1, 2] = 0  # the neck, frame 7
    driving[9]["body"][7, 2] = 0  # her left wrist, frame 9 (the hand hangs on its own wrist point)
    truth = perform(A, dance(seed=6))
    moved, plan = retarget_parts(truth[0], driving)
    for t, joint in ((3, 3), (5, 0), (7, 1), (9, 7)):
        np.testing.assert_array_equal(moved[t]["body"][joint], [0, 0, 0])  # missing stays missing
        assert (moved[t]["body"][:, 2] > 0).sum() == 17
    # Below the missing elbow: the wrist hangs from the shoulder by the arm's length-weighted ratio.
    d, m = driving[3]["body"], moved[3]["body"]
    weights = np.array([B.upper_arm, B.forearm])
    chain = (weights @ [plan.ratio((2, 3)), plan.ratio((3, 4))]) / weights.sum()
    np.testing.assert_allclose(m[4, :2] - m[2, :2], chain * (d[4, :2] - d[2, :2]), atol=1e-9)
    # Without the neck, its children keep their own displacement, mapped like the root.
    d, m = driving[7]["body"], moved[7]["body"]
    for joint in (0, 2, 5, 8, 11):
        np.testing.assert_allclose(m[joint, :2], plan.place(d[joint, :2]), atol=1e-9)
    np.testing.assert_allclose(m[3, :2] - m[2, :2], plan.ratio((2, 3)) * (d[3, :2] - d[2, :2]), atol=1e-9)
    # Frames with everything present are unaffected; the face and hand with a missing anchor still match.
    assert max_error(moved[:3], truth[:3]) < 1e-6
    for t, part in ((5, "face"), (9, "left_hand")):
        np.testing.assert_allclose(moved[t][part], truth[t][part], atol=1e-6)
    # Without the nose, the eyes hang from the neck by the neck-nose-eye chain's ratio.
    d, m = driving[5]["body"], moved[5]["body"]
    weights = np.array([B.neck, B.head * HEAD[(0, 14)]])
    chain = (weights @ [plan.ratio((1, 0)), plan.ratio((0, 14))]) / weights.sum()
    np.testing.assert_allclose(m[14, :2] - m[1, :2], chain * (d[14, :2] - d[1, :2]), atol=1e-9)


def test_a_bone_the_reference_lacks_takes_the_mirrored_ratio_or_the_height_ratio():
    reference = perform(A, dance())[0]
    reference["body"][3, 2] = 0  # her right elbow: both right-arm bones are unknown
    reference["body"][[9, 12], 2] = 0  # both knees: thighs and shins on neither side
    _, plan = retarget_parts(reference, perform(B, dance(seed=7)))
    upper = plan.bones[(2, 3)]
    assert upper.reference is None and upper.ratio == plan.ratio((5, 6)) == pytest.approx(A.upper_arm / B.upper_arm)
    assert upper.source == "mirrored from l_shoulder-l_elbow (the reference lacks this bone)"
    shin = plan.to_json()["bones"]["r_knee-r_ankle"]
    assert shin["ratio"] == round(plan.height_ratio, 6) and shin["source"].startswith("height ratio")
    assert plan.height_bones == tuple(bone_name(b) for b in ((1, 0), (1, 8), (1, 11)))


def test_nobody_in_a_frame_stays_nobody_and_the_record_is_json():
    frames = as_frames(perform(B, dance()))
    frames[4] = PoseFrame([], SIZE, SIZE)
    reference = PoseFrame([frames[0].people[0]], 300, 400)
    result = retarget_frames(reference, frames)
    assert result.frames[4].people == [] and {(f.width, f.height) for f in result.frames} == {(300, 400)}
    record = json.loads(json.dumps(result.record()))
    assert record["frames"] == FRAMES and set(record["bones"]) == {bone_name(b) for b in BONES}
    assert set(record["hand_ratios"]) == {"left", "right"} and record["percentile"] == 90


def test_no_shared_bone_or_no_root_is_one_line():
    driving = perform(B, dance())
    empty = {"body": np.zeros((18, 3))}
    with pytest.raises(UserError, match="no bone in common"):
        retarget_parts(empty, driving)
    no_root = {part: points.copy() for part, points in driving[0].items()}
    no_root["body"][[1, 2], 2] = 0
    with pytest.raises(UserError, match="neither the neck nor both shoulders"):
        retarget_parts(no_root, driving)


def test_parents_come_before_their_children():
    placed = {1}
    for parent, child in BONES:
        assert parent in placed and PARENT[child] == parent
        placed.add(child)
    assert placed == set(range(18))


# ----------------------------------------------------------------------------------------------------------
# Files and the CLI
# ----------------------------------------------------------------------------------------------------------


def write_sequence(folder, people, size=SIZE, names=None):
    names = names or [f"{t + 1:04d}" for t in range(len(people))]
    for name, frame in zip(names, as_frames(people, size)):
        write_keypoints_json(folder / f"{name}.json", frame)
    return names


def write_inputs(folder):
    """A's first frame as `ref.json` and six frames of B dancing in `drv/` (512 px canvases)."""
    write_sequence(folder / "drv", perform(B, dance())[:6])
    write_keypoints_json(folder / "ref.json", as_frames(perform(A, dance())[:1])[0])
    return folder / "ref.json", folder / "drv"


@pytest.fixture
def files(tmp_path):
    return write_inputs(tmp_path)


def _retarget(reference, poses, out, *extra):
    poses = [str(p) for p in (poses if isinstance(poses, list) else [poses])]
    return main(["retarget-pose", "--reference", str(reference), "--poses", *poses, "--out", str(out), *extra])


def test_cli_writes_keypoints_maps_and_the_ratios(files, tmp_path, capsys):
    reference, poses = files
    out = tmp_path / "out"
    assert _retarget(reference, poses, out) == 0
    assert "retargeted 6 frames" in capsys.readouterr().out
    maps = sorted((out / "pose_maps").iterdir())
    keypoints = sorted((out / "keypoints").iterdir())
    assert [p.name for p in maps] == [f"000{i}.png" for i in range(1, 7)]
    assert [p.name for p in keypoints] == [f"000{i}.json" for i in range(1, 7)]
    frame = read_keypoints_json(keypoints[2])
    np.testing.assert_array_equal(np.asarray(Image.open(maps[2])), render_pose(frame))
    record = json.loads((out / "retarget.json").read_text())
    assert record["style"] == "openpose" and record["frames"] == 6
    assert record["height_ratio"] == pytest.approx(A.height() / B.height(), rel=1e-5)
    assert record["poses"] == [str(poses)] and len(record["pose_files"]) == 6
    assert read_keypoints_json(out / "reference.json").people  # the reference's keypoints, as used
    # Same folder again: refused without --overwrite; --style mmpose draws Follow-Your-Pose's maps.
    assert _retarget(reference, poses, out) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert _retarget(reference, poses, out, "--style", "mmpose", "--overwrite", "--size", "256") == 0
    frame = read_keypoints_json(out / "keypoints" / "0003.json")
    assert (frame.width, frame.height) == (256, 256)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "pose_maps" / "0003.png")), render_mmpose(frame))


def test_cli_takes_json_files_and_extract_pose_layouts(files, tmp_path):
    reference, poses = files
    jsons = sorted(poses.glob("*.json"))[:3]
    assert _retarget(reference, jsons, tmp_path / "a") == 0
    assert len(list((tmp_path / "a" / "pose_maps").iterdir())) == 3
    # extract-pose's layout: OUT/keypoints beside OUT/pose_maps, found from either folder.
    layout = tmp_path / "extracted"
    (layout / "keypoints").mkdir(parents=True)
    (layout / "pose_maps").mkdir()
    for path in sorted(poses.glob("*.json")):
        (layout / "keypoints" / path.name).write_bytes(path.read_bytes())
        Image.new("RGB", (8, 8)).save(layout / "pose_maps" / f"{path.stem}.png")
    assert find_keypoints(layout) == find_keypoints(layout / "pose_maps") == sorted((layout / "keypoints").iterdir())
    # Sidecars beside the maps, and the TikTok layout's keypoints_<split>/<video> beside pose_map_<split>/<video>.
    sidecars = tmp_path / "sidecars"
    sidecars.mkdir()
    tiktok = tmp_path / "tiktok"
    for path in sorted(poses.glob("*.json"))[:2]:
        (sidecars / path.name).write_bytes(path.read_bytes())
        Image.new("RGB", (8, 8)).save(sidecars / f"{path.stem}.png")
        for tree in ("pose_map_test_set", "keypoints_test_set"):
            (tiktok / tree / "v1").mkdir(parents=True, exist_ok=True)
        (tiktok / "keypoints_test_set" / "v1" / path.name).write_bytes(path.read_bytes())
        Image.new("RGB", (8, 8)).save(tiktok / "pose_map_test_set" / "v1" / f"{path.stem}.png")
    assert find_keypoints(sidecars) == [sidecars / "0001.json", sidecars / "0002.json"]
    found = find_keypoints(tiktok / "pose_map_test_set" / "v1")
    assert found == [tiktok / "keypoints_test_set" / "v1" / name for name in ("0001.json", "0002.json")]
    # Maps with a sidecar missing: one line naming the map.
    (layout / "keypoints" / "0004.json").unlink()
    with pytest.raises(UserError, match=r"0004\.png: no keypoints JSON"):
        find_keypoints(layout / "pose_maps")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("magicpose retarget-pose: error:"), err
    return err


def test_cli_errors_are_one_line(files, tmp_path, capsys, monkeypatch):
    reference, poses = files
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _retarget(bad, poses, tmp_path / "o1") == 1
    assert "bad.json: not valid JSON" in _one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert _retarget(reference, tmp_path / "empty", tmp_path / "o2") == 1
    assert "empty: no keypoints JSON files" in _one_line_error(capsys)
    assert _retarget(reference, [poses / "0001.json", bad], tmp_path / "o3") == 1
    assert "bad.json: not valid JSON" in _one_line_error(capsys)
    assert _retarget(reference, [bad, bad], tmp_path / "o3") == 1
    assert "bad.json: two driving frames share this name" in _one_line_error(capsys)
    assert _retarget(reference, [poses, poses], tmp_path / "o4") == 1
    assert "give one folder or keypoints .json files" in _one_line_error(capsys)
    # An image reference needs the pose environment: without it, how to install it (or use a JSON).
    monkeypatch.setenv("MAGICPOSE_POSE_VENV", str(tmp_path / "no-venv"))
    Image.new("RGB", (64, 64)).save(tmp_path / "me.png")
    assert _retarget(tmp_path / "me.png", poses, tmp_path / "o5") == 1
    err = _one_line_error(capsys)
    assert "bash scripts/setup_pose.sh" in err and "keypoints JSON" in err
    assert not (tmp_path / "o5").exists() or not any((tmp_path / "o5").iterdir())

