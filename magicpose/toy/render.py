"""The toy world's rasteriser: a dancer drawn from its keypoints over its background.

`render_person(identity, keypoints, size)` paints a few large flat-coloured shapes (capsule limbs, a torso
polygon, a head disc with hair, hands and face features) with hard edges (no anti-aliasing), so the returned
mask is exact and every pixel outside it is exactly the background (`render_background`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from magicpose.toy.world import (
    EYE_WHITE,
    HEAD_R,
    L_ANK,
    L_EAR,
    L_EL,
    L_HIP,
    L_KNEE,
    L_SH,
    L_WR,
    MOUTH_INSIDE,
    NECK,
    NOSE,
    PUPIL,
    R_ANK,
    R_EAR,
    R_EL,
    R_HIP,
    R_KNEE,
    R_SH,
    R_WR,
    RGB,
    STANDARD_BODY,
    TORSO,
    Background,
    Identity,
    Proportions,
    face_colours,
)

if TYPE_CHECKING:  # the pose module imports cv2: keep it out of `magicpose --help`
    from magicpose.pose.openpose import PersonKeypoints

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so small figures move smoothly
_ONE = 1 << _SHIFT


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(points * _ONE).astype(np.int32).reshape(-1, 2)


# Unit half circle (cos, sin) from -90 to +90 degrees: the round ends of a capsule polygon.
_HALF_CIRCLE = np.stack([np.cos(a := np.linspace(-math.pi / 2, math.pi / 2, 12)), np.sin(a)], 1)


class _Canvas:
    """An RGBA canvas: colours go to RGB, 255 to alpha, so one cv2 call paints the image and the mask.

    It starts as the background with alpha 0; hard-edged (LINE_8) shapes make the alpha an exact mask.
    """

    def __init__(self, background_rgba: np.ndarray) -> None:
        import cv2

        self.cv2 = cv2
        self.rgba = background_rgba.copy()

    def poly(self, points: np.ndarray, colour: RGB) -> None:
        self.cv2.fillPoly(self.rgba, [_fixed(points)], (*colour, 255), self.cv2.LINE_8, _SHIFT)

    def disc(self, centre: np.ndarray, radius: float, colour: RGB) -> None:
        x, y = centre.tolist()
        r = int(round(max(radius, 0.5) * _ONE))
        self.cv2.circle(
            self.rgba, (round(x * _ONE), round(y * _ONE)), r, (*colour, 255), -1, self.cv2.LINE_8, _SHIFT
        )

    def capsule(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float, colour: RGB) -> None:
        """A limb: two round ends (radii `ra`, `rb`) and the tapered band between them, as one polygon."""
        ra, rb = max(ra, 0.5), max(rb, 0.5)
        d = b - a
        u = d / (math.hypot(*d.tolist()) + 1e-9)
        ends = _HALF_CIRCLE @ np.array([u, [-u[1], u[0]]])  # the half circle facing along a -> b
        self.poly(np.concatenate([b + rb * ends, a - ra * ends]), colour)

    def lines(self, chains: list[np.ndarray], colour: RGB, thickness: int) -> None:
        pts = [_fixed(c) for c in chains]
        self.cv2.polylines(self.rgba, pts, False, (*colour, 255), thickness, self.cv2.LINE_8, _SHIFT)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(RGB image, bool mask)."""
        return self.cv2.cvtColor(self.rgba, self.cv2.COLOR_RGBA2RGB), self.rgba[..., 3] > 0


@functools.lru_cache(maxsize=32)
def render_background(background: Background, size: int) -> np.ndarray:
    """The (read-only, cached) RGBA background of a `size` square, alpha 0: rendered once per video."""
    a, b = np.asarray(background.colour, np.float32), np.asarray(background.colour2, np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    if background.kind == "gradient":
        w = (xx - 0.5) * math.cos(background.angle) + (yy - 0.5) * math.sin(background.angle)
        w = (w - w.min()) / (w.max() - w.min() + 1e-9)
    elif background.kind == "checker":
        cells = background.cells
        w = ((np.floor(xx * cells * 0.999) + np.floor(yy * cells * 0.999)) % 2).astype(np.float32)
    else:
        w = np.zeros_like(xx)
    rgba = np.zeros((size, size, 4), np.uint8)  # alpha 0: no figure yet
    rgba[..., :3] = np.rint(a + w[..., None] * (b - a))
    rgba.setflags(write=False)
    return rgba


@dataclass
class _Body:
    """Keypoint-derived geometry in pixels: everything the renderer needs besides the identity."""

    body: np.ndarray  # (18, 2)
    hands: tuple[np.ndarray, np.ndarray]  # right, left (21, 2)
    face: np.ndarray  # (70, 2)
    k: float  # pixels per body unit of this dancer (its height times the world's pixels per unit)
    up: np.ndarray  # torso axis, towards the neck
    head: np.ndarray  # head centre
    head_right: np.ndarray
    head_r: float

    @classmethod
    def from_keypoints(cls, kp: PersonKeypoints, proportions: Proportions = STANDARD_BODY) -> _Body:
        body = kp.body[:, :2].astype(np.float64)
        hips = 0.5 * (body[R_HIP] + body[L_HIP])
        axis = body[NECK] - hips
        k = float(np.hypot(*axis)) / (TORSO * proportions.torso)
        head_axis = body[L_EAR] - body[R_EAR]
        hands = (kp.right_hand[:, :2].astype(np.float64), kp.left_hand[:, :2].astype(np.float64))
        return cls(
            body=body, hands=hands, face=kp.face[:, :2].astype(np.float64), k=k,
            up=axis / (k * TORSO * proportions.torso + 1e-9), head=0.5 * (body[R_EAR] + body[L_EAR]),
            head_right=head_axis / (np.hypot(*head_axis) + 1e-9), head_r=HEAD_R * proportions.head * k,
        )  # fmt: skip


def render_person(identity: Identity, keypoints: PersonKeypoints, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the dancer `identity` in the pose `keypoints` (from `pose_keypoints`, pixels of a `size` square).

    The keypoints must be of the identity's body (`motion_keypoints(..., identity.body)`): its proportions
    set the scale of the limbs' thickness and the head's size. Returns the (size, size, 3) uint8 RGB image and
    the (size, size) bool mask of the figure. Shapes are
    painted back to front: long hair, legs and shoes, waist, shirt, neck, arms and hands, head, hair, face.
    """
    canvas = _Canvas(render_background(identity.background, size))
    g = _Body.from_keypoints(keypoints, identity.body)
    b = identity.build * g.k  # pixels per body unit, times the dancer's build: limb and torso thickness
    if identity.hair_style == "long":  # hangs behind the shoulders
        canvas.capsule(
            g.head, g.head - 1.5 * g.head_r * _head_up(g), 1.05 * g.head_r, 1.0 * g.head_r, identity.hair
        )
    _draw_legs(canvas, g, identity, b)
    _draw_torso(canvas, g, identity, b)
    for side in (0, 1):
        _draw_arm(canvas, g, identity, b, side)
    _draw_head(canvas, g, identity)
    return canvas.result()


def _head_up(g: _Body) -> np.ndarray:
    return np.array([g.head_right[1], -g.head_right[0]])


def _draw_legs(canvas: _Canvas, g: _Body, identity: Identity, b: float) -> None:
    thigh, shin = 0.045 * b, 0.034 * b
    for side, (hip, knee, ankle) in ((-1, (R_HIP, R_KNEE, R_ANK)), (1, (L_HIP, L_KNEE, L_ANK))):
        h, kn, a = g.body[hip], g.body[knee], g.body[ankle]
        if identity.legs == "shorts":
            canvas.capsule(h, kn, thigh * 0.9, shin * 1.0, identity.skin)
            canvas.capsule(kn, a, shin, shin * 0.8, identity.skin)
            canvas.capsule(h, h + 0.6 * (kn - h), thigh, thigh * 0.95, identity.trousers)
        else:
            canvas.capsule(h, kn, thigh, shin * 1.05, identity.trousers)
            canvas.capsule(kn, a, shin * 1.05, shin * 0.9, identity.trousers)
        shoe = a + g.k * np.array([side * 0.02, 0.022])
        canvas.capsule(shoe - g.k * np.array([side * 0.018, 0.0]), shoe + g.k * np.array([side * 0.02, 0.0]),
                       0.022 * g.k, 0.02 * g.k, identity.shoes)  # fmt: skip
    # Waistband: joins the legs under the shirt.
    r, l_ = g.body[R_HIP], g.body[L_HIP]
    across = (l_ - r) / (np.hypot(*(l_ - r)) + 1e-9)
    w, lift = thigh, 0.07 * g.k * g.up
    canvas.poly(np.array([r - w * across, r - w * across + lift, l_ + w * across + lift, l_ + w * across]),
                identity.trousers)  # fmt: skip


def _draw_torso(canvas: _Canvas, g: _Body, identity: Identity, b: float) -> None:
    r_sh, l_sh, r_hip, l_hip = g.body[R_SH], g.body[L_SH], g.body[R_HIP], g.body[L_HIP]
    across_s = (l_sh - r_sh) / (np.hypot(*(l_sh - r_sh)) + 1e-9)
    across_h = (l_hip - r_hip) / (np.hypot(*(l_hip - r_hip)) + 1e-9)
    es, eh, top = 0.028 * b, 0.04 * b, 0.025 * g.k * g.up
    shape = np.array([
        r_sh - es * across_s + top, l_sh + es * across_s + top,
        l_hip + eh * across_h + 0.04 * g.k * g.up, r_hip - eh * across_h + 0.04 * g.k * g.up,
    ])  # fmt: skip
    canvas.poly(shape, identity.shirt)
    if identity.pattern == "stripes":
        _stripes(canvas, g, shape, identity.stripe)
    neck = g.body[NECK]
    canvas.capsule(neck - 0.01 * g.k * g.up, g.head, 0.028 * b, 0.03 * b, identity.skin)


def _stripes(canvas: _Canvas, g: _Body, shape: np.ndarray, colour: RGB) -> None:
    """Bands across the torso axis (they lean with the torso), painted inside the shirt polygon only."""
    import cv2

    h, w = canvas.rgba.shape[:2]
    x0, y0 = np.clip(np.floor(shape.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(shape.max(0)).astype(int) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [_fixed(shape - (x0, y0))], 1, cv2.LINE_8, _SHIFT)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    along = ((xx + 0.5 - g.body[NECK][0]) * g.up[0] + (yy + 0.5 - g.body[NECK][1]) * g.up[1]) / (0.06 * g.k)
    band = (inside > 0) & (np.floor(along).astype(int) % 2 == 1)
    canvas.rgba[y0:y1, x0:x1, :3][band] = colour


def _draw_arm(canvas: _Canvas, g: _Body, identity: Identity, b: float, side: int) -> None:
    sh, el, wr = (g.body[i] for i in ((R_SH, R_EL, R_WR), (L_SH, L_EL, L_WR))[side])
    upper, fore = 0.032 * b, 0.026 * b
    canvas.capsule(sh, el, upper, fore * 1.05, identity.skin)
    canvas.capsule(el, wr, fore * 1.05, fore * 0.85, identity.skin)
    _draw_hand(canvas, g.hands[side], identity.skin, g.k)
    if identity.sleeves == "short":
        canvas.capsule(sh, sh + 0.55 * (el - sh), upper * 1.2, upper * 1.15, identity.shirt)
    elif identity.sleeves == "long":
        canvas.capsule(sh, el, upper * 1.15, fore * 1.2, identity.shirt)
        canvas.capsule(el, el + 0.9 * (wr - el), fore * 1.2, fore * 1.1, identity.shirt)


def _draw_hand(canvas: _Canvas, hand: np.ndarray, skin: RGB, k: float) -> None:
    """Palm polygon plus one polyline per finger (1 px thick at 128 px)."""
    canvas.poly(hand[[0, 1, 2, 5, 9, 13, 17]], skin)
    thickness = max(1, int(round(0.016 * k)))
    # Thumb, index, middle, ring, little: base joint to tip.
    canvas.lines([hand[start : start + 4] for start in (1, 5, 9, 13, 17)], skin, thickness)


def _draw_head(canvas: _Canvas, g: _Body, identity: Identity) -> None:
    r, c, hr, hu = g.head_r, g.head, g.head_right, _head_up(g)
    canvas.disc(c, r, identity.skin)
    # Hair cap: the outer arc over the top, back along a hairline that shows the forehead; the hairline
    # shifts with the face so a turned head shows more hair on one side.
    yaw = float(np.clip((g.body[NOSE] - c) @ hr / (1.05 * r), -1.0, 1.0))
    a = np.linspace(math.radians(-15), math.radians(195), 15)  # from the right temple over the top
    outer = c + 1.08 * r * (np.cos(a)[:, None] * hr + np.sin(a)[:, None] * hu)
    inner_c = c + 0.15 * r * (-hu) + 0.25 * yaw * r * hr
    inner = inner_c + r * (0.8 * np.cos(a[::-1])[:, None] * hr + 0.65 * np.sin(a[::-1])[:, None] * hu)
    canvas.poly(np.concatenate([outer, inner]), identity.hair)
    if identity.hair_style == "bun":
        canvas.disc(c + 1.2 * r * hu, 0.5 * r, identity.hair)
    if r >= 4.0:  # below this the features are sub-pixel noise
        _draw_face(canvas, g, identity)


def _draw_face(canvas: _Canvas, g: _Body, identity: Identity) -> None:
    f, r, colours = g.face, g.head_r, face_colours(identity)
    thin = max(1, int(round(0.08 * r)))
    if r >= 7.0:
        canvas.poly(f[36:42], EYE_WHITE)
        canvas.poly(f[42:48], EYE_WHITE)
        canvas.lines([f[17:22], f[22:27]], colours["brows"], thin)
        canvas.lines([f[31:36]], colours["nose"], 1)
    canvas.disc(f[68], 0.09 * r, PUPIL)
    canvas.disc(f[69], 0.09 * r, PUPIL)
    canvas.poly(f[48:60], colours["lips"])
    if np.hypot(*(f[66] - f[62])) > 0.1 * r:  # open mouth
        canvas.poly(f[60:68], MOUTH_INSIDE)
