#!/usr/bin/env python
"""Regenerate every shipped example input, deterministically, from our own code (and one public-domain photo).

    .venv/bin/python scripts/tools/make_examples.py            # rewrites the files in the repository
    .venv/bin/python scripts/tools/make_examples.py --root /tmp/examples

Writes, in the original repositories' layouts:
  example_data/image/out-of-domain/astronaut.png   scikit-image's NASA astronaut photograph (public domain)
  example_data/pose_sequence/<id>/NNNN.png         OpenPose maps (MagicPose), magicpose.pose.examples.POSE_SEQUENCES
  pose_example/<name>.mp4                          mmpose-style skeleton videos (Follow-Your-Pose), SKELETON_VIDEOS
  example_data/image/toy/dancer_N.png              toy-world references (32 px): the quickstart's held-out dancers
  example_data/pose_sequence/toy/NNNN.png          toy-world pose maps (32 px): held-out dancer 4's dance
tests/test_examples.py checks that the shipped files equal what this writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, optimize=True)


def write_pose_sequence(folder: Path, name: str) -> None:
    from magicpose.pose.examples import pose_sequence_maps

    for old in folder.glob("*.png"):  # a shorter sequence must not keep stale frames
        old.unlink()
    for index, pose_map in enumerate(pose_sequence_maps(name), 1):
        write_png(folder / f"{index:04d}.png", pose_map)


TOY_REFERENCES = 4  # held-out dancers 0-3 (reference = their first frame); the pose maps are dancer 4's dance


def write_toy_examples(root: Path) -> list[Path]:
    """References and a pose sequence from the toy world's held-out split (seed 0, as the quickstart's): what the
    shipped toy model (pretrained_weights/toy) animates."""
    import shutil
    import tempfile

    from magicpose.toy import generate_toy_dataset

    with tempfile.TemporaryDirectory() as tmp:
        generate_toy_dataset(tmp, 1, TOY_REFERENCES + 1, 48, 32, 0)
        videos = sorted(p.name for p in (Path(tmp) / "test_set").iterdir())
        images = root / "example_data/image/toy"
        for index, video in enumerate(videos[:TOY_REFERENCES]):
            images.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sorted((Path(tmp) / "test_set" / video).glob("*.png"))[0], images / f"dancer_{index}.png")
        poses = root / "example_data/pose_sequence/toy"
        shutil.rmtree(poses, ignore_errors=True)
        poses.mkdir(parents=True)
        for index, frame in enumerate(sorted((Path(tmp) / "pose_map_test_set" / videos[-1]).glob("*.png")), 1):
            shutil.copyfile(frame, poses / f"{index:04d}.png")
    return [images, poses]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO, help="where to write (default: the repository)")
    root = parser.parse_args().root
    sys.path.insert(0, str(REPO))  # this checkout's code, wherever an editable install points
    from magicpose.media import write_video
    from magicpose.pose.examples import (
        POSE_SEQUENCES,
        SKELETON_VIDEOS,
        VIDEO_FPS,
        astronaut_image,
        skeleton_video_frames,
    )

    written = [root / "example_data/image/out-of-domain/astronaut.png"]
    write_png(written[0], astronaut_image())
    for name in POSE_SEQUENCES:
        write_pose_sequence(root / "example_data/pose_sequence" / name, name)
        written.append(root / "example_data/pose_sequence" / name)
    for name in SKELETON_VIDEOS:
        written.append(root / "pose_example" / f"{name}.mp4")
        write_video(written[-1], skeleton_video_frames(name), VIDEO_FPS)
    written += write_toy_examples(root)
    for path in written:
        size = sum(p.stat().st_size for p in path.glob("*")) if path.is_dir() else path.stat().st_size
        print(f"{size / 1024:8.1f} KiB  {path}")


if __name__ == "__main__":
    main()
