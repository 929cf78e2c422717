"""The toy dance world (see `magicpose.toy.world`)."""

from magicpose.toy.world import (
    CHANNELS,
    MAX_SIZE,
    MIN_SIZE,
    SPLITS,
    TOY_WORLD_VERSION,
    TREES,
    WORLD_FILE,
    Background,
    Identity,
    check_request,
    check_root,
    dance_motion,
    figure_colours,
    generate_toy_dataset,
    motion_keypoints,
    pose_keypoints,
    render_background,
    render_person,
    sample_identity,
)

__all__ = [
    "CHANNELS", "MAX_SIZE", "MIN_SIZE", "SPLITS", "TOY_WORLD_VERSION", "TREES", "WORLD_FILE", "Background",
    "Identity", "check_request", "check_root", "dance_motion", "figure_colours", "generate_toy_dataset",
    "motion_keypoints", "pose_keypoints", "render_background", "render_person", "sample_identity",
]  # fmt: skip
