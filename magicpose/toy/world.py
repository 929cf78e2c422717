"""The toy world's dancers and their dances: identities, body geometry, motion and keypoints.

An *identity* (`sample_identity`) is what a dancer looks like: skin, hair, clothes and background, with every
garment far enough from its neighbours and the background far from every colour of the figure. A *motion*
(`dance_motion`) is one dict of joint angles (see `CHANNELS`) and placement per frame. `motion_keypoints` turns
a motion into OpenPose keypoints (body 18, hands 21, face 70) in pixels; `magicpose.toy.render` draws them.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:  # the pose module imports cv2: keep it out of `magicpose --help`
    from magicpose.pose.openpose import PersonKeypoints

RGB: TypeAlias = tuple[int, int, int]
Motion: TypeAlias = dict[str, float]

# ----------------------------------------------------------------------------------------------------------
# Body geometry, in "body units": the standing figure (ankle to hair top, plus shoes) is about 1 tall.
# Coordinates are image-like (x right, y down) with the pelvis (mid-hip) at the origin.
# ----------------------------------------------------------------------------------------------------------

TORSO = 0.31  # pelvis -> neck
SHOULDER = 0.105  # half shoulder width
HIP = 0.07  # half hip width
UPPER_ARM, FOREARM, HAND = 0.15, 0.135, 0.075
THIGH, SHIN = 0.235, 0.225
HEAD_R = 0.085  # head disc radius
HEAD_UP = 0.115  # neck -> head centre
FOOT = 0.05  # shoes reach this far below the ankle
PAD = 0.05  # limb thickness and hair beyond the keypoints, kept inside the canvas too
MARGIN = 0.02  # free border of the canvas, as a fraction of its side

# Ranges of the motion channels (radians unless noted). Each video uses a random sub-range of each.
CHANNELS: dict[str, tuple[float, float]] = {
    "lean": (-0.2, 0.2),  # torso sway about the pelvis
    "turn": (-0.5, 0.5),  # body yaw: narrows shoulders and hips by cos(turn)
    "head_yaw": (-0.55, 0.55),
    "head_roll": (-0.25, 0.25),
    "r_shoulder": (0.05, 2.75), "l_shoulder": (0.05, 2.75),  # upper arm from hanging (0) to raised (pi)
    "r_elbow": (-1.7, 1.9), "l_elbow": (-1.7, 1.9),  # forearm relative to upper arm; < 0 bends inwards
    "r_wrist": (-0.6, 0.6), "l_wrist": (-0.6, 0.6),
    "r_grip": (0.0, 1.0), "l_grip": (0.0, 1.0),  # 0 open hand, 1 fist
    "r_hip": (-0.08, 0.5), "l_hip": (-0.08, 0.5),  # thigh outwards from vertical
    "r_knee": (0.0, 0.9), "l_knee": (0.0, 0.9),  # knee bend: shin swings back inwards
    "mouth": (0.0, 1.0),  # closed .. wide open
    "brows": (-1.0, 1.0),  # frown .. raised
    "gaze": (-1.0, 1.0),  # pupils left .. right
    "step": (-1.0, 1.0),  # side step, scaled to what fits in the frame
}  # fmt: skip
_FAST_CHANNELS = frozenset({"mouth", "brows", "gaze"})  # faces move faster than limbs

# OpenPose COCO-18 body rows.
NOSE, NECK, R_SH, R_EL, R_WR, L_SH, L_EL, L_WR = range(8)
R_HIP, R_KNEE, R_ANK, L_HIP, L_KNEE, L_ANK, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)

# ----------------------------------------------------------------------------------------------------------
# Identities
# ----------------------------------------------------------------------------------------------------------

SKIN_TONES: tuple[RGB, ...] = (
    (255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 66), (141, 85, 36), (92, 56, 32),
)  # fmt: skip
HAIR_COLOURS: tuple[RGB, ...] = (
    (25, 20, 20), (60, 40, 30), (110, 70, 40), (215, 180, 110), (160, 65, 30), (175, 175, 175),
)  # fmt: skip
EYE_WHITE: RGB = (245, 245, 240)
PUPIL: RGB = (30, 25, 25)
MOUTH_INSIDE: RGB = (70, 20, 25)
MIN_CLOTH_DISTANCE = 70.0  # RGB distance between neighbouring garments (and skin)
MIN_BACKGROUND_DISTANCE = 60.0  # RGB distance between the background and every colour of the figure


@dataclass(frozen=True)
class Background:
    """`plain` (colour), `gradient` (colour -> colour2 along `angle`) or `checker` (`cells` across)."""

    kind: str
    colour: RGB
    colour2: RGB
    angle: float = 0.0
    cells: int = 8


@dataclass(frozen=True)
class Proportions:
    """A dancer's body: factors on the standard body's lengths (1 = the constants above).

    `height` scales every length; the others scale one segment on top of it (`shoulders` and `hips`: the half
    widths, `head`: the head's radius and its height above the neck, and the face; a hand follows its forearm).
    """

    height: float = 1.0
    torso: float = 1.0
    shoulders: float = 1.0
    hips: float = 1.0
    upper_arm: float = 1.0
    forearm: float = 1.0
    thigh: float = 1.0
    shin: float = 1.0
    head: float = 1.0

    def length(self, segment: str) -> float:
        """The factor on one segment's standard length: height times the segment's own."""
        return self.height * getattr(self, segment)


STANDARD_BODY = Proportions()  # every factor 1: the toy world's body before version 2
HEIGHT_RANGE = (0.9, 1.1)  # default variation of `sample_proportions`: height +-10 %
SEGMENT_RANGE = (0.88, 1.12)  # ... every segment +-12 % on top of it


def sample_proportions(
    rng: np.random.Generator,
    height: tuple[float, float] = HEIGHT_RANGE,
    segment: tuple[float, float] = SEGMENT_RANGE,
) -> Proportions:
    """Random proportions: height in `height`, each other factor independently in `segment` (uniform)."""
    h = float(round(rng.uniform(*height), 4))
    names = [f for f in Proportions.__dataclass_fields__ if f != "height"]
    others = {f: float(round(rng.uniform(*segment), 4)) for f in names}
    return Proportions(height=h, **others)


@dataclass(frozen=True)
class Identity:
    """What a dancer looks like; everything a model must copy from the reference frame."""

    skin: RGB
    hair: RGB
    hair_style: str  # short | long | bun
    shirt: RGB
    pattern: str  # plain | stripes
    stripe: RGB  # second shirt colour (stripes only)
    sleeves: str  # none | short | long
    trousers: RGB
    legs: str  # long | shorts
    shoes: RGB
    build: float  # limb and torso thickness factor
    background: Background
    body: Proportions = STANDARD_BODY  # height, limb lengths, widths, head size

    def to_json(self) -> dict:
        """Plain JSON-able dict (colours as [r, g, b])."""
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> Identity:
        """The inverse of `to_json` (a record without `body`, from toy-world version 1, gets the standard body)."""
        fields = dict(record)
        background = dict(fields.pop("background"))
        background["colour"], background["colour2"] = tuple(background["colour"]), tuple(background["colour2"])
        body = Proportions(**fields.pop("body", {}))
        colours = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        return cls(**colours, background=Background(**background), body=body)


def _rgb(values: Sequence[float]) -> RGB:
    r, g, b = (int(round(min(max(v, 0.0), 255.0))) for v in values)
    return r, g, b


def _hsv(h: float, s: float, v: float) -> RGB:
    return _rgb([c * 255.0 for c in colorsys.hsv_to_rgb(h % 1.0, s, v)])


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.dist(a, b)


def _pick(rng: np.random.Generator, options: Sequence[str], weights: Sequence[float]) -> str:
    p = np.asarray(weights, np.float64)
    return str(options[int(rng.choice(len(options), p=p / p.sum()))])


def _skin(rng: np.random.Generator) -> RGB:
    """A point between two neighbouring skin tones, slightly jittered."""
    i = int(rng.integers(len(SKIN_TONES) - 1))
    w = rng.random()
    mix = [(1 - w) * a + w * b for a, b in zip(SKIN_TONES[i], SKIN_TONES[i + 1])]
    return _rgb(np.asarray(mix) + rng.normal(0.0, 6.0, 3))


def _hair(rng: np.random.Generator) -> RGB:
    if rng.random() < 0.12:  # dyed
        return _hsv(rng.random(), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))
    base = HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))]
    return _rgb(np.asarray(base) + rng.normal(0.0, 8.0, 3))


def _cloth(rng: np.random.Generator) -> RGB:
    """Mostly saturated colours (easy to tell apart at 32 px), sometimes white, grey or black."""
    if rng.random() < 0.2:
        return _hsv(0.0, 0.0, float(rng.choice([0.12, 0.45, 0.92])))
    return _hsv(rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.95))


def _trouser(rng: np.random.Generator) -> RGB:
    if rng.random() < 0.5:  # jeans, black, khaki, grey
        base = ((45, 70, 120), (30, 30, 35), (190, 165, 120), (110, 110, 115))[int(rng.integers(4))]
        return _rgb(np.asarray(base) + rng.normal(0.0, 8.0, 3))
    return _cloth(rng)


def _distinct(
    rng: np.random.Generator,
    sample: Callable[[np.random.Generator], RGB],
    avoid: Sequence[RGB],
    min_dist: float,
) -> RGB:
    """A sample at least `min_dist` from every colour in `avoid` (else the farthest of 64 tries)."""
    best, best_dist = None, -1.0
    for _ in range(64):
        colour = sample(rng)
        dist = min((_distance(colour, a) for a in avoid), default=math.inf)
        if dist >= min_dist:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def _sample_background(rng: np.random.Generator) -> Background:
    kind = _pick(rng, ("plain", "gradient", "checker"), (0.5, 0.3, 0.2))
    h, s, v = rng.random(), rng.uniform(0.05, 0.6), rng.uniform(0.35, 0.95)
    colour = _hsv(h, s, v)
    if kind == "gradient":
        v2 = v + (-1.0 if v > 0.65 else 1.0) * rng.uniform(0.15, 0.3)
        colour2 = _hsv(h + rng.uniform(-0.08, 0.08), s, v2)
    elif kind == "checker":
        colour2 = _hsv(h, s, v * rng.uniform(0.72, 0.85))  # low contrast: a floor or wall, not a distraction
    else:
        colour2 = colour
    return Background(
        kind, colour, colour2, float(round(rng.uniform(0.0, math.pi), 4)), int(rng.integers(4, 11))
    )


def _background_colours(background: Background) -> list[RGB]:
    """Colours that occur in the background (a gradient is sampled along its length)."""
    a, b = np.asarray(background.colour, np.float64), np.asarray(background.colour2, np.float64)
    return [_rgb(a + w * (b - a)) for w in np.linspace(0.0, 1.0, 9)]


def figure_colours(identity: Identity) -> list[RGB]:
    """Every colour `render_person` may paint on the dancer."""
    colours = [identity.skin, identity.hair, identity.shirt, identity.trousers, identity.shoes]
    if identity.pattern == "stripes":
        colours.append(identity.stripe)
    return colours + [EYE_WHITE, PUPIL, MOUTH_INSIDE, *face_colours(identity).values()]


def face_colours(identity: Identity) -> dict[str, RGB]:
    """The colours of the lips, the nose line and the brows, derived from the skin and the hair."""
    skin = np.asarray(identity.skin, np.float64)
    return {
        "lips": _rgb(0.5 * skin + 0.5 * np.array([175.0, 45.0, 60.0])),
        "nose": _rgb(0.78 * skin),
        "brows": _rgb(0.7 * np.asarray(identity.hair, np.float64)),
    }


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random dancer: skin, hair, shirt (plain or striped), sleeves, trousers or shorts, shoes, background,
    and body proportions (`sample_proportions`, drawn last: the colours are those of toy-world version 1).

    Garments differ from each other and from the skin, and the background differs from every colour of the
    figure (>= 60 RGB units), so the figure always stands out and its mask is recoverable from the image.
    """
    skin, hair = _skin(rng), _hair(rng)
    shirt = _distinct(rng, _cloth, [skin], MIN_CLOTH_DISTANCE)
    stripe = _distinct(rng, _cloth, [shirt, skin], MIN_CLOTH_DISTANCE)
    trousers = _distinct(rng, _trouser, [shirt, skin], MIN_CLOTH_DISTANCE)
    shoes = _distinct(rng, _cloth, [trousers], 40.0)
    identity = Identity(
        skin=skin,
        hair=hair,
        hair_style=_pick(rng, ("short", "long", "bun"), (0.45, 0.4, 0.15)),
        shirt=shirt,
        pattern=_pick(rng, ("plain", "stripes"), (0.7, 0.3)),
        stripe=stripe,
        sleeves=_pick(rng, ("none", "short", "long"), (0.25, 0.45, 0.3)),
        trousers=trousers,
        legs=_pick(rng, ("long", "shorts"), (0.65, 0.35)),
        shoes=shoes,
        build=float(round(rng.uniform(0.85, 1.2), 4)),
        background=Background("plain", (0, 0, 0), (0, 0, 0)),
    )
    identity = _with_background(rng, identity)
    return replace(identity, body=sample_proportions(rng))


def _with_background(rng: np.random.Generator, identity: Identity) -> Identity:
    """Attach a background far from all figure colours (the farthest of 64 tries if none is far enough)."""
    figure = figure_colours(identity)
    best, best_dist = None, -1.0
    for _ in range(64):
        background = _sample_background(rng)
        dist = min(_distance(c, f) for c in _background_colours(background) for f in figure)
        if dist >= MIN_BACKGROUND_DISTANCE:
            best = background
            break
        if dist > best_dist:
            best, best_dist = background, dist
    return replace(identity, background=best)


# ----------------------------------------------------------------------------------------------------------
# Motion
# ----------------------------------------------------------------------------------------------------------


def _channel(rng: np.random.Generator, t: np.ndarray, beat: float, fast: bool) -> np.ndarray:
    """A smooth signal in [-1, 1]: three sinusoids at multiples of the video's beat, random phases.

    A random activity (amplitude) and centre make each video use its own part of the channel's range,
    e.g. one dancer keeps the arms low while another waves them overhead.
    """
    multiples = (1.0, 2.0, 3.0) if fast else (0.5, 1.0, 1.0, 2.0)
    freqs = beat * rng.choice(multiples, 3) * rng.uniform(0.93, 1.07, 3)
    amps = rng.uniform(0.2, 1.0, 3)
    phases = rng.uniform(0.0, 2 * math.pi, 3)
    waves = np.sin(2 * math.pi * freqs[:, None] * t + phases[:, None])  # (3, T)
    wave = amps @ waves / amps.sum()
    activity = rng.uniform(0.35, 1.0)
    centre = rng.uniform(activity - 1.0, 1.0 - activity)
    return centre + activity * wave


def _couple(own: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """Blend a left-side signal towards the right side's (mirrored moves) or its negation (alternating)."""
    return (1.0 - abs(weight)) * own + weight * other


def dance_motion(rng: np.random.Generator, frames: int, body: Proportions = STANDARD_BODY) -> list[Motion]:
    """`frames` motion states: joint angles (see `CHANNELS`) plus the figure's placement in the frame.

    Every channel is a sum of sinusoids at multiples of one per-video beat (14-36 frames per cycle), so the
    dance is smooth and rhythmic. Arms are partly mirrored and legs partly alternate, as dancers do. The
    placement keys are `scale` (body units -> fraction of the frame side), `x` (pelvis, fraction of the
    width) and `ground` (floor line, fraction of the height); they are chosen for the whole video so that
    every keypoint, limb and hair stays inside the frame while the figure fills most of its height
    (of the dancer `body`: the joint angles do not depend on it, the placement does).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    t = np.arange(frames, dtype=np.float64)
    beat = 1.0 / rng.uniform(14.0, 36.0)
    unit = {name: _channel(rng, t, beat, name in _FAST_CHANNELS) for name in CHANNELS}
    arms, legs = rng.uniform(0.0, 0.7), rng.uniform(-0.6, 0.0)
    for joint, weight in (("shoulder", arms), ("elbow", arms), ("hip", legs), ("knee", legs)):
        unit[f"l_{joint}"] = _couple(unit[f"l_{joint}"], unit[f"r_{joint}"], weight)
    channels = {name: lo + (hi - lo) * 0.5 * (unit[name] + 1.0) for name, (lo, hi) in CHANNELS.items()}
    channels.update(_placement(rng, channels, body))
    return [{name: float(values[i]) for name, values in channels.items()} for i in range(frames)]


def _placement(
    rng: np.random.Generator, channels: dict[str, np.ndarray], body: Proportions
) -> dict[str, np.ndarray]:
    """Scale, ground line and side steps for a whole video, so that every frame fits in the canvas."""
    points = _grounded(_skeleton(channels, body))
    xy = np.concatenate([points[k] for k in ("body", "left_hand", "right_hand", "face", "head_top")], 1)
    x0, x1 = xy[..., 0].min(1) - PAD, xy[..., 0].max(1) + PAD  # per frame, around the pelvis
    top, bottom = xy[..., 1].min() - PAD, FOOT + PAD
    free = 1.0 - 2.0 * MARGIN
    scale = min(rng.uniform(0.8, 0.9), free / (bottom - top), free / (x1.max() - x0.min()))
    # Ground: feet near the bottom, like a phone propped on the floor; any spare room goes above the head.
    low, high = MARGIN - scale * top, 1.0 - MARGIN - scale * bottom
    ground = high - rng.uniform(0.0, 0.3) * max(high - low, 0.0)
    # Side steps: the largest amplitude (up to 12 % of the width) for which one centre fits every frame.
    lo_x, hi_x = MARGIN - scale * x0, 1.0 - MARGIN - scale * x1
    step = channels["step"]
    amplitude = rng.uniform(0.0, 0.12)
    while amplitude > 1e-4 and (lo_x - amplitude * step).max() > (hi_x - amplitude * step).min():
        amplitude *= 0.5
    if amplitude <= 1e-4:  # the scale above guarantees a fit without steps
        amplitude = 0.0
    c_lo, c_hi = (lo_x - amplitude * step).max(), (hi_x - amplitude * step).min()
    centre = float(np.clip(0.5 + rng.uniform(-0.08, 0.08), c_lo, c_hi))
    frames = len(step)
    return {
        "scale": np.full(frames, scale), "x": centre + amplitude * step, "ground": np.full(frames, ground),
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Keypoints. Vectorised over frames: every channel is a (T,) array and every point a (T, 2) array.
# ----------------------------------------------------------------------------------------------------------


def _xy(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y), -1)


def _col(values: np.ndarray) -> np.ndarray:
    """(T,) -> (T, 1), to scale (T, 2) vectors frame by frame."""
    return np.asarray(values)[..., None]


def _unit(angle: np.ndarray) -> np.ndarray:
    """Direction `angle` radians clockwise from straight up (y points down)."""
    return _xy(np.sin(angle), -np.cos(angle))


def _perp(v: np.ndarray) -> np.ndarray:
    """`v` turned 90 degrees clockwise: image-right of an up vector."""
    return _xy(-v[..., 1], v[..., 0])


def _rotate(v: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return _xy(c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1])


def _face_template(mouth: float, brows: float, gaze: float) -> np.ndarray:
    """The 70 face points (68 iBUG landmarks + 2 pupils) of a frontal face, in head radii.

    x right, y down, head centre at 0; the subject's right side (iBUG's first of each pair) is image-left.
    """
    jaw_a = np.linspace(0.0, math.pi, 17)
    jaw = np.stack([-0.92 * np.cos(jaw_a), -0.05 + 0.97 * np.sin(jaw_a)], 1)
    u = np.linspace(0.0, 1.0, 5)
    brow_y = -0.42 - 0.08 * np.sin(math.pi * u) - 0.12 * brows
    r_brow = np.stack([-0.64 + 0.5 * u, brow_y], 1)
    l_brow = np.stack([0.14 + 0.5 * u, brow_y[::-1]], 1)
    bridge = np.stack([np.zeros(4), np.linspace(-0.24, 0.2, 4)], 1)
    nostrils = np.array([[-0.16, 0.27], [-0.08, 0.31], [0.0, 0.33], [0.08, 0.31], [0.16, 0.27]])
    eye = np.array([[-1.0, 0.0], [-0.35, -1.0], [0.35, -1.0], [1.0, 0.0], [0.35, 1.0], [-0.35, 1.0]])
    eye = eye * (0.15, 0.075 + 0.02 * brows)
    r_eye, l_eye = eye + (-0.36, -0.12), eye + (0.36, -0.12)
    w, my, gap = 0.28 * (1.0 - 0.15 * mouth), 0.56, 0.22 * mouth
    outer = np.array([
        [-w, my], [-0.6 * w, my - 0.05], [-0.25 * w, my - 0.07], [0.0, my - 0.06], [0.25 * w, my - 0.07],
        [0.6 * w, my - 0.05], [w, my], [0.6 * w, my + 0.06 + 0.8 * gap], [0.25 * w, my + 0.08 + gap],
        [0.0, my + 0.085 + gap], [-0.25 * w, my + 0.08 + gap], [-0.6 * w, my + 0.06 + 0.8 * gap],
    ])  # fmt: skip
    inner = np.array([
        [-0.8 * w, my], [-0.3 * w, my - 0.015], [0.0, my - 0.015], [0.3 * w, my - 0.015], [0.8 * w, my],
        [0.3 * w, my + 0.015 + 0.9 * gap], [0.0, my + 0.015 + gap], [-0.3 * w, my + 0.015 + 0.9 * gap],
    ])  # fmt: skip
    pupils = np.array([[-0.36, -0.12], [0.36, -0.12]]) + (0.06 * gaze, 0.0)
    return np.concatenate([jaw, r_brow, l_brow, bridge, nostrils, r_eye, l_eye, outer, inner, pupils])


@functools.cache
def _face_basis() -> np.ndarray:
    """(4, 70, 2): the template is linear in (mouth, brows, gaze), so a frame costs one small product."""
    base = _face_template(0.0, 0.0, 0.0)
    return np.stack([base] + [_face_template(*np.eye(3)[i]) - base for i in range(3)])


def _face(mouth: np.ndarray, brows: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """(T, 70, 2) frontal face templates."""
    weights = np.stack(np.broadcast_arrays(1.0, mouth, brows, gaze), -1)
    return np.tensordot(weights, _face_basis(), 1)


def _turn_face(points: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Turn frontal templates on a vertical cylinder (the nose, which sticks out, moves a bit more)."""
    out = points.copy()
    out[..., 0] = np.sin(np.arcsin(np.clip(points[..., 0], -1.0, 1.0)) + _col(yaw))
    out[:, 27:36, 0] += 0.15 * _col(np.sin(yaw))
    return out


# Hand layout in hand lengths, in (along the hand, towards the thumb) coordinates.
_THUMB = np.array([[0.12, 0.13], [0.25, 0.27], [0.36, 0.36], [0.45, 0.42]])
_FINGER_BASE = np.array([[0.42, 0.17], [0.42, 0.055], [0.42, -0.055], [0.42, -0.16]])  # index .. little
_FINGER_SPREAD = np.array([0.12, 0.03, -0.06, -0.15])  # radians towards the thumb
_FINGER_LENGTH = np.array([0.5, 0.58, 0.52, 0.42])
_PHALANX = np.array([0.45, 0.32, 0.23])


def _hand(
    wrist: np.ndarray, forearm: np.ndarray, side: int, rotation: np.ndarray, grip: np.ndarray,
    length: float = HAND,
) -> np.ndarray:
    """(T, 21, 2) OpenPose hand points; the thumb is on the outer side when the arm hangs (palm forward)."""
    d = _rotate(forearm / (np.linalg.norm(forearm, axis=-1, keepdims=True) + 1e-9), rotation)
    p = _rotate(d, -side * math.pi / 2)  # towards the thumb
    g = np.asarray(grip)[:, None, None]
    # Curling fingers fold towards the thumb and, pointing at the camera, look shorter.
    angles = _FINGER_SPREAD[:, None] + 0.25 * g * np.arange(1, 4)  # (T, 4, 3)
    steps = (_FINGER_LENGTH[:, None] * _PHALANX * (1.0 - 0.55 * g))[..., None] * np.stack(
        [np.cos(angles), np.sin(angles)], -1
    )
    base = np.broadcast_to(_FINGER_BASE[:, None], (len(g), 4, 1, 2))
    fingers = np.concatenate([base, base + np.cumsum(steps, 2)], 2).reshape(len(g), 16, 2)
    thumb = _THUMB * _xy(1.0, 1.0 - 0.35 * g[:, 0])
    local = np.concatenate([np.zeros((len(g), 1, 2)), thumb, fingers], 1)
    return wrist[:, None] + length * (local[..., :1] * d[:, None] + local[..., 1:] * p[:, None])


def _skeleton(ch: dict[str, np.ndarray], body_: Proportions = STANDARD_BODY) -> dict[str, np.ndarray]:
    """Body (T, 18, 2), hands (T, 21, 2), face (T, 70, 2) and hair top (T, 1, 2), body units, pelvis at 0."""
    size = body_.length
    torso, shoulder, hip_w = TORSO * size("torso"), SHOULDER * size("shoulders"), HIP * size("hips")
    upper_arm, forearm = UPPER_ARM * size("upper_arm"), FOREARM * size("forearm")
    hand = HAND * size("forearm")
    thigh_l, shin_l, head_r, head_up_l = THIGH * size("thigh"), SHIN * size("shin"), HEAD_R * size("head"), \
        HEAD_UP * size("head")
    lean, turn = ch["lean"], ch["turn"]
    up = _unit(lean)
    right = _perp(up)
    neck = torso * up
    width = _col(shoulder * np.cos(turn))
    body = np.zeros((len(lean), 18, 2))
    body[:, NECK] = neck
    body[:, R_SH], body[:, L_SH] = neck - width * right - 0.015 * up, neck + width * right - 0.015 * up
    hip_axis = _xy(np.cos(0.4 * lean), np.sin(0.4 * lean)) * _col(hip_w * np.cos(turn))
    body[:, R_HIP], body[:, L_HIP] = -hip_axis, hip_axis
    hands = {}
    for side, (sh, el, wr), key in ((-1, (R_SH, R_EL, R_WR), "r"), (1, (L_SH, L_EL, L_WR), "l")):
        alpha, bent = _col(ch[f"{key}_shoulder"]), _col(ch[f"{key}_shoulder"] + ch[f"{key}_elbow"])
        upper = -up * np.cos(alpha) + side * right * np.sin(alpha)
        fore = -up * np.cos(bent) + side * right * np.sin(bent)
        body[:, el] = body[:, sh] + upper_arm * upper
        body[:, wr] = body[:, el] + forearm * fore
        hands[key] = _hand(body[:, wr], fore, side, ch[f"{key}_wrist"], ch[f"{key}_grip"], hand)
    for side, (hip, knee, ankle), key in (
        (-1, (R_HIP, R_KNEE, R_ANK), "r"),
        (1, (L_HIP, L_KNEE, L_ANK), "l"),
    ):
        psi, kappa = ch[f"{key}_hip"], ch[f"{key}_knee"]
        shin = np.maximum(psi - kappa, -0.3)
        # A bent knee points the thigh at the camera: it looks shorter, so the dancer sinks.
        thigh = _col(thigh_l * (1.0 - 0.2 * kappa)) * _xy(side * np.sin(psi), np.cos(psi))
        body[:, knee] = body[:, hip] + thigh
        body[:, ankle] = body[:, knee] + shin_l * _xy(side * np.sin(shin), np.cos(shin))
    head_up = _unit(lean + ch["head_roll"])
    head_right = _perp(head_up)
    centre = neck + head_up_l * head_up
    local = _turn_face(_face(ch["mouth"], ch["brows"], ch["gaze"]), ch["head_yaw"])
    face = centre[:, None] + head_r * (
        local[..., :1] * head_right[:, None] - local[..., 1:] * head_up[:, None]
    )
    body[:, NOSE], body[:, R_EYE], body[:, L_EYE] = (
        face[:, 30],
        face[:, 36:42].mean(1),
        face[:, 42:48].mean(1),
    )
    # Ears at +-90 degrees on the head cylinder: their midpoint is the head centre for any yaw, which is
    # where the renderer puts the head.
    ear = _col(head_r * np.cos(ch["head_yaw"])) * head_right
    body[:, R_EAR], body[:, L_EAR] = centre - ear, centre + ear
    return {
        "body": body, "right_hand": hands["r"], "left_hand": hands["l"], "face": face,
        "head_top": (centre + 1.75 * head_r * head_up)[:, None],
    }  # fmt: skip


def _grounded(points: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Shift so that the lower ankle stands on y = 0 (the dancer never floats or sinks into the floor)."""
    floor = np.maximum(points["body"][:, R_ANK, 1], points["body"][:, L_ANK, 1])
    shift = _xy(0.0, floor)[:, None]
    return {k: v - shift for k, v in points.items()}


def motion_keypoints(
    motion: Sequence[Motion], size: int, body: Proportions = STANDARD_BODY
) -> list[PersonKeypoints]:
    """`pose_keypoints` of many frames at once (vectorised: a whole video costs about one frame)."""
    from magicpose.pose.openpose import PersonKeypoints

    ch = {
        name: np.array([m[name] for m in motion], np.float64) for name in (*CHANNELS, "scale", "x", "ground")
    }
    points = _grounded(_skeleton(ch, body))
    origin = _xy(ch["x"], ch["ground"])[:, None]
    parts = {}
    for name in ("body", "left_hand", "right_hand", "face"):
        xy = (origin + ch["scale"][:, None, None] * points[name]) * size
        # 1/100 px: short JSON, and the renderer draws from exactly the values the JSON holds.
        parts[name] = np.concatenate([np.round(xy, 2), np.ones_like(xy[..., :1])], -1).astype(np.float32)
    return [PersonKeypoints(**{name: parts[name][i] for name in parts}) for i in range(len(motion))]


def pose_keypoints(motion_t: Motion, size: int, body: Proportions = STANDARD_BODY) -> PersonKeypoints:
    """OpenPose keypoints (body 18, both hands 21, face 70; confidence 1) in pixels of a `size` square."""
    return motion_keypoints([motion_t], size, body)[0]


def performed_motion(
    driving: Sequence[Motion], own: Sequence[Motion], driving_body: Proportions, own_body: Proportions
) -> list[Motion]:
    """A dancer (`own_body`, filmed as in its video `own`) performing another dancer's motion `driving`.

    The joint angles (and face) are the driving dancer's; the camera (`scale`, `ground`) is the own video's; the
    figure starts where the own dancer stood in its first frame and side-steps as the driving dancer does,
    scaled by the ratio of the two figures' heights on screen (a bigger figure takes bigger steps). Rendered
    with `motion_keypoints(..., own_body)` and `render_person(own_identity, ...)`, this is the ground truth of
    retargeting the driving video onto the own dancer's first frame. With `driving` = `own` (and the same
    body) it is `own` itself.
    """
    if not driving or not own:
        raise ValueError("performed_motion needs at least one frame of each motion")
    d0, o0 = driving[0], own[0]
    ratio = (o0["scale"] * own_body.height) / (d0["scale"] * driving_body.height)
    out = []
    for d in driving:
        m = dict(d)
        m.update(scale=o0["scale"], ground=o0["ground"], x=o0["x"] + ratio * (d["x"] - d0["x"]))
        out.append(m)
    return out
