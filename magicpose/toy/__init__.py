"""A procedural "toy dance world": a TikTok-format dataset a tiny MagicPose model can learn on a CPU.

Every video is one cartoon dancer (an *identity*: skin, hair, clothes, background and body proportions: height,
limb lengths, shoulder and hip width, head size) performing one smooth
random dance (a *motion*: joint angles as sums of sinusoids). Each frame is written four ways, paired by
file name, in the project's TikTok layout (see `magicpose.data.tiktok`)::

    ROOT/train_set/video_0000/0000.png              the rendered frame (RGB)
    ROOT/pose_map_train_set/video_0000/0000.png     OpenPose map of the same keypoints (body, hands, face)
    ROOT/keypoints_train_set/video_0000/0000.json   the keypoints as OpenPose JSON
    ROOT/mask_train_set/video_0000/0000.png         the dancer's exact mask (0/255)
    ROOT/test_set/...                               the same four trees, other identities and dances
    ROOT/toy_world.json                             version, seed, arguments, every video's identity

Why it is learnable but not trivial: the pose map alone fixes where every limb is but not its colours, and
the reference frame alone fixes the colours but not the limbs, so a model must use both. The figure is
built from a few large flat-coloured shapes (capsule limbs, a torso polygon, a head disc with hair), so
32-64 px is enough to learn it, and it fills most of the frame's height, like a TikTok dancer.

The renderer draws from the keypoints only (`render_person(identity, keypoints, size)`), so the pose map,
the JSON and the picture always agree. Edges are hard (no anti-aliasing): every pixel outside the mask is
exactly the background. Everything is seeded: the same arguments give byte-identical files (with the same
numpy and OpenCV builds; keypoints are rounded to 1/100 px so tiny float differences rarely show).

Building blocks, usable on their own::

    rng = np.random.default_rng(0)
    identity = sample_identity(rng)
    motion = dance_motion(rng, frames=48, body=identity.body)  # one dict of angles (and placement) per frame
    keypoints = pose_keypoints(motion[0], size=128, body=identity.body)  # PersonKeypoints in pixels
    image, mask = render_person(identity, keypoints, size=128)
    every_frame = motion_keypoints(motion, size=128, body=identity.body)  # vectorised: a whole video at once

Another dancer performing this motion (its own body, filmed as in its own video `own`): the ground truth of
pose retargeting, `magicpose.toy.retarget_proof`::

    done = performed_motion(motion, own, identity.body, other.body)
    image, mask = render_person(other, motion_keypoints(done, 128, other.body)[0], size=128)

The modules, each importing only the ones above it:

    world.py       identities, body geometry, motion channels, keypoints (skeleton, face and hand templates)
    render.py      the rasteriser: a dancer drawn from its keypoints over its background, and its mask
    writer.py      the dataset writer: layout, per-video seeds, toy_world.json, `generate_toy_dataset`
    metrics.py     toy-world metrics: figure masks, mask IoU, colour distances, `evaluate_toy`
    quickstart.py  the CPU quickstart (`magicpose quickstart`): toy data -> train -> animate -> evaluate
    retarget_proof.py  A animated with B's motion, raw vs retargeted, against A doing B (`--retarget-only`)
    temporal.py    stage 2 vs stage 3 (the motion module) on the held-out dancers (`--temporal`)
    shipped.py     the toy model in pretrained_weights/toy: targets, ablations, export, hashes (`--pretrained`)

This package imports numpy only (OpenCV and the pose module load when a frame is drawn or written), so
`magicpose toy-data --help` stays fast; `metrics`, `quickstart`, `retarget_proof`, `temporal` and `shipped` are not imported here.
"""

from magicpose.toy.render import render_background, render_person
from magicpose.toy.world import (
    CHANNELS,
    RGB,
    Background,
    Identity,
    Motion,
    Proportions,
    dance_motion,
    figure_colours,
    motion_keypoints,
    performed_motion,
    pose_keypoints,
    sample_identity,
    sample_proportions,
)
from magicpose.toy.writer import (
    MAX_SIZE,
    MIN_SIZE,
    SPLITS,
    TOY_WORLD_VERSION,
    TREES,
    WORLD_FILE,
    check_request,
    check_root,
    generate_toy_dataset,
)

__all__ = [
    "CHANNELS", "MAX_SIZE", "MIN_SIZE", "RGB", "SPLITS", "TOY_WORLD_VERSION", "TREES", "WORLD_FILE",
    "Background", "Identity", "Motion", "Proportions", "check_request", "check_root", "dance_motion", "figure_colours",
    "generate_toy_dataset", "motion_keypoints", "performed_motion", "pose_keypoints", "render_background",
    "render_person", "sample_identity", "sample_proportions",
]  # fmt: skip
