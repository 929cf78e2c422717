"""The TikTok evaluation protocol (DisCo's, as MagicPose used it): pair frames, score them, write one JSON.

Inputs: two folders of frames, predictions and ground truth, in either layout

    <root>/<video>/<frame>.png          (what `magicpose infer-tiktok` writes)
    <root>/<video>_<frame>.png          (DisCo's flat layout, e.g. TiktokDance_00338_0017.png)

Frames are paired by (video, frame stem), never by position: a frame missing on one side is an error
naming it (or, with `ignore_unpaired`, left out and counted). Every frame is read as 8-bit RGB and, when
it is not `size` x `size` (256 by default, DisCo's resolution), resized to it with PIL bicubic; the count of
resized frames is recorded, because L1 (disco) and FID move with the resolution.

Metrics (means over every frame of every video; FID pools all frames; clips for the video metrics):

* `l1`, `psnr`, `ssim`, `lpips`: per frame, see `metrics.py` for the `disco` / `fixed` forms;
* `fid`: pytorch-fid InceptionV3 pool3 features of all predicted vs all ground-truth frames;
* `fid_vid`: 3D ResNet-50 features of 16-frame clips (DisCo's "FVD-3DRN50");
* `fvd`: I3D logits of the same clips (DisCo's "FVD-3DInception");
* `face_cos`: mean cosine similarity of ArcFace (iResNet) embeddings of the generated and the real face,
  both aligned with the ground truth's keypoints (`face.py`). Not one of DisCo's metrics: computed when a
  face model file is found or given (or when asked for by name, which names the missing file otherwise).
* `flicker` (with `flicker_energy_pred`, `flicker_energy_gt`, `flicker_energy_ratio`): mean |d_pred − d_gt| of
  the frame-to-frame differences of consecutive frames (`temporal.py`), mean over a video's pairs then over
  videos; whole frames (no masks here). Ours, not DisCo's: the same under both protocols; on by default (no
  weights). Consecutive = the successor rule of the clips below, so a missing frame breaks the pair.

Clips: every frame that has `clip_length - 1` successors starts one clip (stride 1, heavily overlapping:
"we concatenate every consecutive 16 frames to form a sample"). With numeric frame stems a successor is the
next *number* (a gap breaks the clip, as DisCo's name-based lookup does); otherwise the next name in natural
order. Videos shorter than a clip add no clip (DisCo's rule), unless `pad_short_videos`, which pads them with
their last frame to one clip (recorded). Fréchet distances need at least 2 samples; with fewer the metric is
skipped with the reason.

A weight file that is missing skips the metrics that need it (the reason names the file) and every other
metric still runs; a weight file in the wrong layout is an error naming the file and its bad keys.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from magicpose.device import resolve_device
from magicpose.errors import UserError
from magicpose.eval import features as F
from magicpose.eval import temporal
from magicpose.eval.face import FaceKeypoints, align_face, find_keypoints
from magicpose.eval.frechet import FRECHET_METHODS, frechet_distance_features
from magicpose.eval.metrics import (
    ALL_METRICS,
    CLIP_LENGTH,
    DEFAULT_SIZE,
    PROTOCOL_NAMES,
    get_protocol,
    l1,
    psnr,
    ssim,
)
from magicpose.eval.networks import METRIC_WEIGHTS, WEIGHT_FILES
from magicpose.eval.networks.arcface import FACE_FILE
from magicpose.eval.networks.weights import sha256_of
from magicpose.paths import resolve_path

FRAME_METRICS = ("l1", "ssim", "psnr")
EVAL_METRICS = (*ALL_METRICS, "face_cos", "flicker")  # DisCo's seven, then ours
DEFAULT_METRICS = (*ALL_METRICS, "flicker")  # everything but face_cos, which runs when its model is there
# `flicker` reports its temporal energies beside it (the JSON's and the table's order)
FLICKER_KEYS = ("flicker", "flicker_energy_pred", "flicker_energy_gt", "flicker_energy_ratio")
REPORT_KEYS = (*EVAL_METRICS, *FLICKER_KEYS[1:])
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff"})
_FLAT_NAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)$")
_SHOW = 5


@dataclass
class EvalOptions:
    """Every switch of one evaluation run (all of it goes into the JSON)."""

    protocols: tuple[str, ...] = PROTOCOL_NAMES
    # None: DisCo's seven, plus face_cos when a face model is given or found in weights_dir
    metrics: tuple[str, ...] | None = None
    weights_dir: Path = Path("pretrained_weights/eval")
    face_model: Path | None = None  # default: weights_dir / arcface_r100.pth
    keypoints: Path | None = None  # <video>/<frame>.json; default: the dataset named in infer.json
    keypoints_resize: str | None = None  # crop | pad; default: infer.json's inference.resize_mode, else crop
    size: int = DEFAULT_SIZE  # 0: keep the stored size (pred and gt must then agree)
    clip_length: int = CLIP_LENGTH
    clip_stride: int = 1
    pad_short_videos: bool = False
    frechet: str = "sqrtm"
    batch_size: int = 8
    device: str = "auto"
    ignore_unpaired: bool = False
    progress: bool = True

    def check(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOL_NAMES]
        if bad or not self.protocols:
            raise UserError(f"protocol: {bad or 'none'} given; choose from {', '.join(PROTOCOL_NAMES)}")
        unknown = [m for m in self.metrics or () if m not in EVAL_METRICS]
        if unknown:
            raise UserError(f"metrics: unknown {', '.join(unknown)}; choose from {', '.join(EVAL_METRICS)}")
        if self.frechet not in FRECHET_METHODS:
            raise UserError(f"frechet: {self.frechet!r} is not one of {', '.join(FRECHET_METHODS)}")
        if self.size < 0 or self.clip_length < 1 or self.clip_stride < 1 or self.batch_size < 1:
            raise UserError("size must be >= 0; clip length, clip stride and batch size must be >= 1")


# ----------------------------------------------------------------------------------------------------------
# Frames: discovery, pairing, loading
# ----------------------------------------------------------------------------------------------------------


def natural_key(name: str) -> tuple[list[int | str], str]:
    """`2.png` before `10.png`; the raw name breaks ties so the order is total."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)], name


def _images(folder: Path) -> list[Path]:
    return [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS
    ]  # fmt: skip


def scan_frames(root: str | Path) -> dict[str, dict[str, Path]]:
    """video -> {frame stem -> path} of a prediction or ground-truth folder (either layout)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of frames")
    videos: dict[str, dict[str, Path]] = {}
    subfolders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    for folder in subfolders:
        frames = {p.stem: p for p in _images(folder)}
        if frames:
            videos[folder.name] = frames
    if videos:
        return videos
    for path in _images(root):  # flat layout: <video>_<frame>.png
        match = _FLAT_NAME.match(path.stem)
        video, stem = (match["video"], match["frame"]) if match else ("", path.stem)
        videos.setdefault(video, {})[stem] = path
    if not videos:
        raise UserError(f"{root}: no frames (expected <video>/<frame>.png or <video>_<frame>.png)")
    return videos


@dataclass
class Pairing:
    """Frames present on both sides: video -> stems (natural order), and the paths of each side."""

    videos: dict[str, list[str]]
    pred: dict[str, dict[str, Path]]
    gt: dict[str, dict[str, Path]]
    unpaired_pred: int = 0
    unpaired_gt: int = 0

    @property
    def frames(self) -> int:
        return sum(len(stems) for stems in self.videos.values())


def pair_frames(pred_root: str | Path, gt_root: str | Path, ignore_unpaired: bool = False) -> Pairing:
    """Pair predictions with ground truth by (video, frame stem); unpaired frames are an error by default."""
    pred, gt = scan_frames(pred_root), scan_frames(gt_root)
    only_pred = [f"{v}/{s}" for v in pred for s in pred[v] if s not in gt.get(v, {})]
    only_gt = [f"{v}/{s}" for v in gt for s in gt[v] if s not in pred.get(v, {})]
    if (only_pred or only_gt) and not ignore_unpaired:
        parts = []
        for name, items, root in (("prediction", only_pred, pred_root), ("ground truth", only_gt, gt_root)):
            if items:
                shown = ", ".join(sorted(items, key=natural_key)[:_SHOW])
                parts.append(f"{len(items)} {name} frame(s) in {root} have no partner ({shown})")
        raise UserError("; ".join(parts) + " (pass --ignore-unpaired to evaluate the common frames only)")
    videos = {}
    for video in sorted(set(pred) & set(gt), key=natural_key):
        stems = sorted(set(pred[video]) & set(gt[video]), key=natural_key)
        if stems:
            videos[video] = stems
    if not videos:
        raise UserError(f"{pred_root} and {gt_root}: no frame is present in both")
    return Pairing(videos, pred, gt, len(only_pred), len(only_gt))


def load_frame(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """(`size size 3` uint8 RGB, whether it was resized); `size` 0 keeps the stored size."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{path}: cannot read as an image ({exc.__class__.__name__})") from exc
    if size and rgb.size != (size, size):
        if rgb.width != rgb.height:
            raise UserError(f"{path}: {rgb.width}x{rgb.height} is not square; the protocol compares square frames")
        return np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC)), True
    return np.asarray(rgb), False


def clip_windows(stems: list[str], length: int, stride: int = 1, pad_short: bool = False) -> list[list[int]]:
    """Frame-index lists of the clips of one video (see the module docstring for the rules)."""
    if len(stems) < length:
        return [list(range(len(stems))) + [len(stems) - 1] * (length - len(stems))] if pad_short and stems else []
    numeric = all(s.isdigit() for s in stems)
    position = {int(s): i for i, s in enumerate(stems)} if numeric else {}
    clips = []
    for start in range(0, len(stems), stride):
        if numeric:
            first = int(stems[start])
            window = [position.get(first + k) for k in range(length)]
            if all(i is not None for i in window):
                clips.append([int(i) for i in window])
        elif start + length <= len(stems):
            clips.append(list(range(start, start + length)))
    return clips


# ----------------------------------------------------------------------------------------------------------
# Weights and networks
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Networks:
    nets: dict[str, torch.nn.Module] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    faces: FaceKeypoints | None = None  # where Face-Cos finds the ground truth's keypoints


def load_networks(metrics: tuple[str, ...], weights_dir: Path, device: torch.device) -> Networks:
    """The networks the requested metrics need; a metric whose file is missing is skipped with the reason."""
    from magicpose.eval import networks as N

    loaders: dict[str, Callable[..., torch.nn.Module]] = {
        "fid": N.load_inception, "lpips": N.load_lpips, "fvd": N.load_i3d, "fid_vid": N.load_resnet3d,
    }  # fmt: skip
    out = Networks()
    for metric in (m for m in metrics if m in METRIC_WEIGHTS):
        keys = METRIC_WEIGHTS[metric]
        paths = [weights_dir / WEIGHT_FILES[k].filename for k in keys]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            out.skipped[metric] = f"{', '.join(missing)}: no such file (see docs/evaluation.md for where it comes from)"
            continue
        for key, path in zip(keys, paths):
            out.files[key] = _file_record(key, path)
        out.nets[metric] = loaders[metric](*paths).to(device).eval()
    return out


def face_model_path(options: EvalOptions, weights_dir: Path) -> Path:
    return resolve_path(options.face_model) if options.face_model is not None else weights_dir / FACE_FILE.filename


def requested_metrics(options: EvalOptions, weights_dir: Path) -> tuple[str, ...]:
    """The metrics to compute: as given, or DisCo's seven and flicker, plus face_cos when a face model is found."""
    if options.metrics is not None:
        return options.metrics
    with_face = options.face_model is not None or face_model_path(options, weights_dir).is_file()
    return EVAL_METRICS if with_face else DEFAULT_METRICS


def load_face(options: EvalOptions, weights_dir: Path, device: torch.device, out: Networks, roots: tuple[Path, Path]) -> None:
    """The iResNet and the keypoints for Face-Cos; a missing file or missing keypoints skips it with the reason."""
    from magicpose.eval.networks.arcface import load_arcface

    path = face_model_path(options, weights_dir)
    if not path.is_file():
        out.skipped["face_cos"] = f"{path}: no such file (see docs/evaluation.md for where it comes from)"
        return
    faces = find_keypoints(*roots, options.keypoints, options.keypoints_resize)
    if isinstance(faces, str):
        out.skipped["face_cos"] = faces
        return
    net = load_arcface(path)
    out.files[FACE_FILE.key] = {**_file_record(FACE_FILE.key, path), "depth": net.depth}
    out.nets["face_cos"] = net.to(device).eval()
    out.faces = faces


def _file_record(key: str, path: Path) -> dict[str, Any]:
    spec = FACE_FILE if key == FACE_FILE.key else WEIGHT_FILES[key]
    digest = sha256_of(path)
    known = spec.check_digest(digest)
    if known is False:
        print(f"warning: {path}: sha256 {digest[:12]}... differs from the published file's "
              f"({spec.sha256 or spec.sha256_prefix}); numbers may not match the papers", file=sys.stderr)
    return {"path": str(path), "sha256": digest, "matches_known_sha256": known, "source": spec.source}


# ----------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Totals:
    """Running sums of per-frame scores and the collected features."""

    scores: dict[str, list[float]] = field(default_factory=dict)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)
    resized: int = 0
    clips: int = 0
    frame_pairs: int = 0  # consecutive pairs the flicker error saw
    faces: dict[str, int] = field(default_factory=lambda: {"scored": 0, "no_keypoints": 0, "no_face": 0})

    def add(self, name: str, values: list[float]) -> None:
        self.scores.setdefault(name, []).extend(values)

    def feature(self, name: str, values: np.ndarray) -> None:
        if len(values):
            self.features.setdefault(name, []).append(values)

    def stacked(self, name: str) -> np.ndarray:
        parts = self.features.get(name, [])
        return np.concatenate(parts) if parts else np.zeros((0, 1))


def evaluate(pred_root: str | Path, gt_root: str | Path, options: EvalOptions | None = None) -> dict[str, Any]:
    """Run the protocol on two frame folders; returns the record that `write_record` saves as JSON."""
    options = options or EvalOptions()
    options.check()
    started = time.perf_counter()
    pairing = pair_frames(pred_root, gt_root, options.ignore_unpaired)
    device = resolve_device(options.device)
    # Relative to the working directory if it exists there, else to the checkout (like config paths).
    weights_dir = resolve_path(options.weights_dir)
    options = replace(options, metrics=requested_metrics(options, weights_dir))
    networks = load_networks(options.metrics, weights_dir, device)
    if "face_cos" in options.metrics:
        load_face(options, weights_dir, device, networks, (Path(pred_root), Path(gt_root)))
    totals = _Totals()
    videos = pairing.videos.items()
    if options.progress:
        from tqdm import tqdm

        videos = tqdm(videos, desc="evaluate", unit="video", total=len(pairing.videos))
    for video, stems in videos:
        _score_video(video, stems, pairing, options, networks, device, totals)
    metrics, skipped = _summarise(totals, options, networks)
    return {
        "command": "evaluate",
        "pred": str(pred_root),
        "gt": str(gt_root),
        "protocols": {name: get_protocol(name).record() for name in options.protocols},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "settings": _settings(options, networks),
        "counts": {
            "videos": len(pairing.videos), "frames": pairing.frames, "clips": totals.clips,
            "resized_frames": totals.resized, "unpaired_pred": pairing.unpaired_pred,
            "unpaired_gt": pairing.unpaired_gt,
            **({"frame_pairs": totals.frame_pairs} if "flicker" in options.metrics else {}),
        },
        "weights": networks.files,
        **({"face": _face_record(networks, totals)} if "face_cos" in options.metrics else {}),
        "metrics": metrics,
        "skipped": skipped,
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 2),
        "versions": _versions(),
    }  # fmt: skip


def _face_record(networks: Networks, totals: _Totals) -> dict[str, Any]:
    """Face-Cos counts (frames scored, without keypoints file, without a face) and where the keypoints came from."""
    found = networks.faces.record() if networks.faces is not None else {}
    return {**found, "frames": dict(totals.faces)}


def _settings(options: EvalOptions, networks: Networks) -> dict[str, Any]:
    """The fixed parts of the protocol, written out so a reader of the JSON needs no source code."""
    return {
        "frame_size": options.size or "as stored",
        "resize": "PIL bicubic on uint8 RGB, only for frames not already size x size",
        "ssim": "skimage structural_similarity on OpenCV gray (uint8), 7x7 uniform window, data range 255",
        "fid": "pytorch-fid InceptionV3 pool3 (2048-d), input [0, 1] resized to 299 bilinear inside, all frames pooled",
        "fid_vid": "3D ResNet-50 Kinetics pooled 2048-d, frames PIL-bicubic (float) to 112, minus mean "
                   "[114.7748, 107.7354, 99.4750], one feature per clip",
        "fvd": "I3D 400 logits averaged over time, frames PIL-bicubic (float) to 224, x/127.5-1, one feature per clip",
        "clips": f"{options.clip_length} frames, stride {options.clip_stride}, successor = next frame number "
                 "(next name when stems are not numeric)"
                 + (", short videos padded with their last frame" if options.pad_short_videos else ", short videos add no clip"),
        "frechet": options.frechet,
        "face_cos": FACE_SETTING if "face_cos" in (options.metrics or ()) else
                    f"not computed: no face model given or at {face_model_path(options, resolve_path(options.weights_dir))}",
        "flicker": temporal.SETTING if "flicker" in (options.metrics or ()) else "not computed: not in --metrics",
    }  # fmt: skip


FACE_SETTING = (
    "ArcFace iResNet embeddings (L2-normalised, 512-d) of 112x112 crops aligned by the least-squares similarity "
    "from the ground truth's keypoints (5 points from OpenPose face landmarks: eye centres, nose tip, mouth "
    "corners; else 3 body points: eyes, nose) to insightface's arcface_dst; the same crop for pred and gt; "
    "input (x/255-0.5)/0.5 RGB; mean cosine over frames with a face"
)


def _score_video(
    video: str,
    stems: list[str],
    pairing: Pairing,
    options: EvalOptions,
    networks: Networks,
    device: torch.device,
    totals: _Totals,
) -> None:
    loaded = [(load_frame(pairing.pred[video][s], options.size), load_frame(pairing.gt[video][s], options.size)) for s in stems]
    totals.resized += sum(int(p[1]) + int(g[1]) for p, g in loaded)
    pred = np.stack([p[0] for p, _ in loaded])
    gt = np.stack([g[0] for _, g in loaded])
    if pred.shape != gt.shape:
        raise UserError(f"{video}: prediction frames are {pred.shape[1:3]}, ground truth {gt.shape[1:3]} (use --size)")
    wanted = set(options.metrics)
    if "ssim" in wanted:
        totals.add("ssim", [ssim(a, b) for a, b in zip(pred, gt)])
    for name in options.protocols:
        if "l1" in wanted:
            totals.add(f"{name}/l1", [l1(a, b, name) for a, b in zip(pred, gt)])
        if "psnr" in wanted:
            totals.add(f"{name}/psnr", [psnr(a, b, name) for a, b in zip(pred, gt)])
    bs = options.batch_size
    if "lpips" in networks.nets:
        for normalize in sorted({get_protocol(n).lpips_normalize for n in options.protocols}):
            totals.add(f"lpips/{normalize}", F.lpips_distances(networks.nets["lpips"], pred, gt, normalize, bs, device))
    if "fid" in networks.nets:
        totals.feature("fid/pred", F.inception_features(networks.nets["fid"], pred, bs, device))
        totals.feature("fid/gt", F.inception_features(networks.nets["fid"], gt, bs, device))
    if "face_cos" in networks.nets and networks.faces is not None:
        _score_faces(video, stems, pred, gt, networks, bs, device, totals)
    if "flicker" in wanted:
        _score_flicker(stems, pred, gt, totals)
    clips = clip_windows(stems, options.clip_length, options.clip_stride, options.pad_short_videos)
    totals.clips += len(clips)
    for metric, kind in (("fid_vid", "resnet3d"), ("fvd", "i3d")):
        if metric in networks.nets and clips:
            for side, frames in (("pred", pred), ("gt", gt)):
                inputs = F.video_inputs(frames, kind)
                totals.feature(f"{metric}/{side}", F.clip_features(networks.nets[metric], inputs, clips, bs, device))


def _score_flicker(stems: list[str], pred: np.ndarray, gt: np.ndarray, totals: _Totals) -> None:
    """One video's flicker terms; consecutive = a 2-frame clip (the same successor rule as FID-VID's clips)."""
    pairs = [(i, j) for i, j in clip_windows(stems, 2)]
    totals.frame_pairs += len(pairs)
    terms = temporal.video_terms(pred, gt, pairs)
    if terms is not None:  # one value per video: the pooling is a mean over videos
        for key, value in zip(FLICKER_KEYS[:3], terms):
            totals.add(key, [float(value)])


def _score_faces(
    video: str, stems: list[str], pred: np.ndarray, gt: np.ndarray, networks: Networks, batch: int,
    device: torch.device, totals: _Totals,
) -> None:  # fmt: skip
    """Cosine similarities of the aligned faces of one video's frames; frames without a face are counted."""
    from magicpose.eval.face import face_matrix
    from magicpose.eval.networks.arcface import embed_faces

    assert networks.faces is not None
    crops_pred, crops_gt = [], []
    for index, stem in enumerate(stems):
        points = networks.faces.points(video, stem)
        if isinstance(points, str):
            totals.faces["no_keypoints"] += 1
            continue
        matrix = None if points is None else face_matrix(points, gt.shape[2], gt.shape[1])
        if matrix is None:
            totals.faces["no_face"] += 1
            continue
        crops_pred.append(align_face(pred[index], matrix))
        crops_gt.append(align_face(gt[index], matrix))
    if crops_gt:
        net = networks.nets["face_cos"]
        a = embed_faces(net, np.stack(crops_pred), batch, device)
        b = embed_faces(net, np.stack(crops_gt), batch, device)
        totals.add("face_cos", (a * b).sum(1).tolist())
        totals.faces["scored"] += len(crops_gt)


def _summarise(totals: _Totals, options: EvalOptions, networks: Networks) -> tuple[dict, dict]:
    """Per-protocol metric means and Fréchet distances; reasons for every requested metric left out."""
    shared: dict[str, float] = {}
    skipped = dict(networks.skipped)
    if "ssim" in totals.scores:
        shared["ssim"] = float(np.mean(totals.scores["ssim"]))
    for metric in ("fid", "fid_vid", "fvd"):
        if metric not in networks.nets:
            continue
        a, b = totals.stacked(f"{metric}/pred"), totals.stacked(f"{metric}/gt")
        if min(len(a), len(b)) < 2:
            unit = "frames" if metric == "fid" else "clips"
            skipped[metric] = f"{min(len(a), len(b))} {unit}; a Fréchet distance needs at least 2"
            continue
        shared[metric] = frechet_distance_features(a, b, options.frechet)
    if "face_cos" in networks.nets:
        if totals.scores.get("face_cos"):
            shared["face_cos"] = float(np.mean(totals.scores["face_cos"]))
        else:
            f = totals.faces
            skipped["face_cos"] = f"no frame has a face ({f['no_keypoints']} without keypoints file, {f['no_face']} without a face)"
    if "flicker" in options.metrics:
        _summarise_flicker(totals, shared, skipped)
    metrics: dict[str, dict[str, float]] = {}
    for name in options.protocols:
        values = dict(shared)
        for metric in ("l1", "psnr"):
            if f"{name}/{metric}" in totals.scores:
                values[metric] = float(np.mean(totals.scores[f"{name}/{metric}"]))
        lpips_key = f"lpips/{get_protocol(name).lpips_normalize}"
        if lpips_key in totals.scores:
            values["lpips"] = float(np.mean(totals.scores[lpips_key]))
        metrics[name] = {m: values[m] for m in REPORT_KEYS if m in values}
    return metrics, skipped


def _summarise_flicker(totals: _Totals, shared: dict[str, float], skipped: dict[str, str]) -> None:
    """Pool the per-video flicker terms (mean over videos); the ratio only where the ground truth moves."""
    if not totals.scores.get("flicker"):
        skipped["flicker"] = "no video has two consecutive frames (next frame number) on both sides"
        return
    pooled = temporal.pool_videos(
        [np.array(row) for row in zip(*(totals.scores[key] for key in FLICKER_KEYS[:3]))]
    )
    shared.update(dict(zip(FLICKER_KEYS, (pooled.flicker, pooled.energy_pred, pooled.energy_gt))))
    if pooled.energy_ratio is not None:  # a static ground truth has no ratio: the key is left out
        shared["flicker_energy_ratio"] = pooled.energy_ratio


def _versions() -> dict[str, str]:
    import scipy
    import skimage

    import magicpose

    return {
        "magicpose": magicpose.__version__, "torch": torch.__version__, "numpy": np.__version__,
        "scipy": scipy.__version__, "scikit-image": skimage.__version__, "python": platform.python_version(),
    }  # fmt: skip


def write_record(record: dict[str, Any], out: str | Path) -> Path:
    """Write the metrics JSON (parent folders created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
