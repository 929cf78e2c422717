"""The CPU quickstart's run: toy data -> stage 1 -> stage 2 -> animate held-out dancers -> evaluate, in minutes.

`run_quickstart(QuickstartOptions(...))` does it all and returns what it wrote to `OUT/metrics.json`. The command
`magicpose quickstart` (`magicpose/commands/quickstart.py`, run by `bash scripts/quickstart.sh`) parses the flags,
and its help text documents the run; it exits 1 when an enforced learning check fails. `Scale` says how much the
run does: `FULL` (about 10 minutes on 2 CPU cores) or `FAST` (the same path with few steps, for CI).

What it writes (`OUT/animation.mp4`, `grid.mp4`, `metrics.json`, `data/`, `runs/`) and what the learning check
(`learning_check`) asks are documented once, in the command's help (`magicpose quickstart --help`).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from magicpose.errors import UserError
from magicpose.paths import REPO_ROOT

MARKER = ".quickstart"
STAGE1_CONFIG = "configs/magicpose/toy/stage1.yaml"
STAGE2_CONFIG = "configs/magicpose/toy/stage2.yaml"
STAGE3_CONFIG = "configs/magicpose/toy/stage3.yaml"
ENLARGE = 4  # the grid video shows 32 px frames 4x larger (nearest neighbour)


@dataclass
class Scale:
    """How much of everything the quickstart does (the full and the fast presets below)."""

    size: int = 32
    widths: tuple[int, ...] | None = (16, 32, 64)  # UNet/ControlNet block widths; None: configs/models/toy's
    train_videos: int = 40
    test_videos: int = 8
    frames: int = 48
    stage1_steps: int = 200
    stage2_steps: int = 380
    batch_size: int = 16
    eval_videos: int = 8
    eval_frames: int = 11  # frames stride, 2 stride, ... of each held-out video (frame 0 is the reference)
    eval_stride: int = 4
    sampler_steps: int = 4  # x0-prediction: 4, 20 and 40 DDIM steps gave the same mask IoU (0.541 / 0.538 / 0.540)
    guidance_scale: float = 1.0  # Image-CFG (the toy model is trained without reference dropout); 1: off
    shared_noise: bool = True  # one initial noise per video (the original's sampling); False: one per frame
    threads: int = 2
    stage3_steps: int = 600  # the motion module (--temporal): clips of eval_frames frames at eval_stride
    clip_batch: int = 2  # clips per stage-3 step
    # the longer recipes (TOY_MODEL) only
    ema_decay: float | None = None  # train.ema_decay of both stages (the exported pipeline holds the EMA weights)
    reference_dropout: float = 0.0  # train.reference_dropout: what Image-CFG (guidance_scale > 1) needs
    timestep_spacing: str = "leading"  # the exported DDIM scheduler's (diffusers' name; "trailing" starts at t=999)
    set_alpha_to_one: bool = False  # the DDIM scheduler's: True makes the last step return the model's x0 estimate
    eval_every: int = 0  # stage 2: evaluate the held-out dancers every this many steps (metrics.json `curve`); 0: never


FULL = Scale()
FAST = Scale(
    train_videos=8,
    test_videos=2,
    frames=8,
    stage1_steps=4,
    stage2_steps=6,
    batch_size=4,
    eval_videos=2,
    eval_frames=4,
    eval_stride=2,
    sampler_steps=2,
    stage3_steps=4,
)
# the shipped toy model's recipe (`bash scripts/train_toy.sh`, pretrained_weights/toy; README: the toy model)
TOY_MODEL = Scale(
    train_videos=320,
    stage1_steps=400,
    stage2_steps=6000,
    ema_decay=0.999,
    reference_dropout=0.1,
    timestep_spacing="trailing",
    set_alpha_to_one=True,
    eval_every=1000,
)


@dataclass
class QuickstartOptions:
    """One quickstart run; the defaults are `magicpose quickstart`'s without flags."""

    out: Path = Path("outputs/quickstart")
    scale: Scale = field(default_factory=Scale)  # FULL, FAST, or either with fields replaced
    fast: bool = False  # recorded in metrics.json: the scale is the FAST preset's (`--fast`)
    check: bool = True  # the learning check is enforced (recorded in metrics.json; see `check_passed`)
    min_iou_gain: float = 0.05
    min_iou_gain_se: float = 3.0
    max_colour_ratio: float = 0.8
    seed: int = 0  # toy-world seed (training seeds come from the configs)
    temporal: bool = False  # then stage 3 (the motion module) and the stage 2 vs stage 3 comparison
    temporal_only: bool = False  # stage 3 on OUT's finished quickstart (its data and stage-2 run), nothing else
    retarget_only: bool = False  # the retargeting proof (`magicpose.toy.retarget_proof`) on OUT's finished quickstart


def prepare_out(out: Path) -> None:
    """Replace an earlier quickstart folder; refuse to touch anything else."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
            raise UserError(f"{out}: exists and is not a quickstart output folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # the marker's text since the run was `magicpose.quickstart`, kept: the output files stay the same
    (out / MARKER).write_text("written by magicpose.quickstart; a re-run replaces this folder\n")


def model_configs(folder: Path, scale: Scale) -> str:
    """A copy of `configs/models/toy` in `folder` with the scale's block widths (if set) and sampling settings."""
    shutil.copytree(REPO_ROOT / "configs" / "models" / "toy", folder, dirs_exist_ok=True)
    if scale.widths:
        for name in ("unet", "controlnet", "motion_adapter"):
            edit_config(folder / name, block_out_channels=list(scale.widths))
    sampler_config(folder / "scheduler", scale)
    return str(folder)


def edit_config(folder: Path, **fields: Any) -> None:
    """Set `fields` in the `*config.json` of a component folder."""
    path = next(folder.glob("*config.json"))
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}, indent=2) + "\n")


def sampler_config(folder: Path, scale: Scale) -> None:
    """Write the scale's sampling settings into a DDIM scheduler config folder (a pipeline's `scheduler/`)."""
    edit_config(folder, timestep_spacing=scale.timestep_spacing, set_alpha_to_one=scale.set_alpha_to_one)


def fit(config_file: str, overrides: list[str], callbacks: tuple[Any, ...] = ()) -> Path:
    from magicpose.config import FitConfig, load_config
    from magicpose.training.fit import run_fit

    return run_fit(load_config([config_file], overrides, schema=FitConfig), callbacks=callbacks)


def held_out_curve(every: int, videos: list[dict], scale: Scale) -> Any:
    """A Lightning callback that evaluates the training module's (EMA) pipeline on `videos` every `every` steps and
    keeps one row of headline numbers per evaluation in `.rows` (printed too): the learning curve."""
    from magicpose.training.callbacks import PeriodicSamples

    class HeldOutCurve(PeriodicSamples):
        what = "held-out evaluations"

        def __init__(self) -> None:
            super().__init__(every)
            self.rows: list[dict[str, float]] = []

        def sample(self, trainer: Any, module: Any, step: int) -> None:
            metrics, _ = evaluate_pipeline(module.pipeline(use_ema=True), videos, scale)
            self.rows.append({"step": step, **headline(metrics)})
            print(f"[quickstart] held-out at stage-2 step {step}: " +
                  ", ".join(f"{k} {v:.4g}" for k, v in self.rows[-1].items() if k != "step"), flush=True)

    return HeldOutCurve()


def headline(metrics: dict) -> dict[str, float]:
    """The numbers the toy world's targets are about, from `evaluate_toy` metrics."""
    gen, copy, wrong = metrics["generated"], metrics["copy_reference"], metrics.get("wrong_reference")
    return {
        "mask_iou_gain": metrics["mask_iou_gain"]["mean"], "mask_iou_gain_stderr": metrics["mask_iou_gain"]["stderr"],
        "mask_iou": gen["mask_iou"], "l1": gen["l1"], "l1_copy_reference": copy["l1"], "ssim": gen["ssim"],
        "ssim_copy_reference": copy["ssim"],
        "colour_ratio": _ratio(gen, wrong, "colour_distance"),
        "figure_colour_ratio": _ratio(gen, wrong, "figure_colour_distance"),
    }  # fmt: skip


def _ratio(right: dict, wrong: dict | None, key: str) -> float:
    """right[key] / wrong[key]; nan without a wrong-reference baseline (or a zero one)."""
    return right[key] / wrong[key] if wrong and wrong.get(key) else float("nan")


def load_video(root: Path, video: str, frames: int, stride: int) -> dict[str, np.ndarray]:
    """Ground-truth frames, masks and pose maps of one toy test video (uint8 / bool arrays)."""
    from PIL import Image

    def read(tree: str, mode: str = "RGB") -> np.ndarray:
        paths = sorted((root / tree / video).glob("*.png"))[: frames * stride : stride]
        return np.stack([np.asarray(Image.open(p).convert(mode)) for p in paths])

    return {
        "target": read("test_set"),
        "pose": read("pose_map_test_set"),
        "target_mask": read("mask_test_set", "L") > 127,
    }


def generate(
    pipe: Any, reference: np.ndarray | None, poses: np.ndarray, steps: int, seed: int, guidance_scale: float = 1.0,
    shared_noise: bool = True, **call_kwargs: Any,
) -> np.ndarray:
    """One video (`T H W 3` uint8) of `reference` (None: the appearance branch off) following `poses`."""
    import torch
    from PIL import Image

    frames = pipe(
        None if reference is None else Image.fromarray(reference),
        [Image.fromarray(p) for p in poses],
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        frames_per_batch=len(poses),
        generator=torch.Generator().manual_seed(seed),
        shared_noise=shared_noise,
        output_type="np",
        **call_kwargs,
    ).frames[0]
    return np.rint(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)


def load_pipeline(pipeline_dir: Path) -> Any:
    """A pixel-space MagicPosePipeline folder (float32, progress bars off)."""
    from magicpose.models.components import ModelSpec
    from magicpose.pipelines.magicpose import MagicPosePipeline

    pipe = MagicPosePipeline.from_spec(ModelSpec(components=None, pretrained=str(pipeline_dir), pixel_space=True))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def animate_and_evaluate(out: Path, data: Path, pipeline_dir: Path, scale: Scale) -> tuple[dict, list[dict]]:
    """Load the pipeline folder `pipeline_dir` and `evaluate_pipeline` it on the held-out dancers of `data`."""
    return evaluate_pipeline(load_pipeline(pipeline_dir), eval_videos(data, scale), scale)


def eval_videos(data: Path, scale: Scale) -> list[dict]:
    """The first `scale.eval_videos` held-out dancers of `data`: frame 0 the reference (not evaluated), then
    `scale.eval_frames` frames at `scale.eval_stride` with their pose maps and masks, and the re-rendered
    background the figure is segmented against."""
    from magicpose.toy.metrics import toy_background, toy_identities

    identities = toy_identities(data, "test")
    videos = []
    for name in sorted(identities)[: scale.eval_videos]:
        v = load_video(data, name, scale.eval_frames + 1, scale.eval_stride)
        v["reference"], v["reference_mask"] = v["target"][0], v["target_mask"][0]  # frame 0; not evaluated
        v.update({key: v[key][1:] for key in ("target", "target_mask", "pose")})
        v["background"] = toy_background(identities[name], scale.size)
        v["name"] = name
        videos.append(v)
    return videos


def evaluate_pipeline(
    pipe: Any, videos: list[dict], scale: Scale, wrong_reference: bool = True, reference_off: bool = False,
    call_kwargs: dict[str, Any] | None = None,
) -> tuple[dict, list[dict]]:
    """Animate each video's poses from its reference (seed = its index; `reference_off`: from none) and, with
    `wrong_reference`, from the next video's reference (the wrong-reference baseline, same seed); `evaluate_toy`
    the lot. `call_kwargs` go to the pipeline call. Returns the metrics and the videos (new dicts) with
    `generated` (and `wrong_generated`) added."""
    from magicpose.toy.metrics import evaluate_toy

    videos = [dict(v) for v in videos]

    def animate(reference: np.ndarray | None, poses: np.ndarray, seed: int) -> np.ndarray:
        return generate(pipe, None if reference_off else reference, poses, scale.sampler_steps, seed=seed,
                        guidance_scale=scale.guidance_scale, shared_noise=scale.shared_noise, **(call_kwargs or {}))

    for i, v in enumerate(videos):
        v["generated"] = animate(v["reference"], v["pose"], i)
        if wrong_reference and len(videos) > 1:  # the same poses (and noise) from the next dancer's reference
            other = videos[(i + 1) % len(videos)]
            v["wrong_generated"] = animate(other["reference"], v["pose"], i)
            v["wrong_background"] = other["background"]
    metrics = evaluate_toy(videos)
    metrics["videos"] = [v["name"] for v in videos]
    return metrics, videos


def write_videos(out: Path, videos: list[dict], fps: float = 8.0) -> None:
    from magicpose.media import write_video

    def big(a: np.ndarray) -> np.ndarray:
        return a.repeat(ENLARGE, -3).repeat(ENLARGE, -2)

    frames = min(len(v["generated"]) for v in videos)
    animation = [np.concatenate([v["generated"][t] for v in videos], 1) for t in range(frames)]
    write_video(out / "animation.mp4", [big(a) for a in animation], fps)
    rows = []
    for v in videos:
        ref = np.broadcast_to(v["reference"], v["generated"].shape)
        rows.append(np.concatenate([ref, v["pose"], v["generated"], v["target"]], 2)[:frames])  # T H 4W 3
    write_video(out / "grid.mp4", [big(np.concatenate([r[t] for r in rows], 0)) for t in range(frames)], fps)


def learning_check(metrics: dict, min_iou_gain: float, min_iou_gain_se: float, max_colour_ratio: float) -> dict:
    gain = metrics["mask_iou_gain"]
    clear = gain["mean"] >= min_iou_gain and gain["mean"] >= min_iou_gain_se * gain["stderr"]
    ratio = headline(metrics)["colour_ratio"]
    return {
        "pose_following": {
            "iou_gain": gain["mean"],
            "iou_gain_stderr": gain["stderr"],
            "frames_won": gain["wins"],
            "min": min_iou_gain,
            "min_standard_errors": min_iou_gain_se,
            "passed": bool(clear),
        },
        "appearance": {
            "colour_ratio_right_over_wrong": ratio,
            "max": max_colour_ratio,
            "passed": bool(ratio <= max_colour_ratio),
        },
    }


def table(metrics: dict) -> str:
    from magicpose.toy.metrics import LOWER_IS_BETTER, METRICS

    cols = [c for c in ("generated", "copy_reference", "wrong_reference") if c in metrics]
    lines = [f"{'metric':<22}" + "".join(f"{c:>17}" for c in cols)]
    for m in METRICS:
        arrow = "(lower better)" if m in LOWER_IS_BETTER else "(higher better)"
        lines.append(f"{m:<22}" + "".join(f"{metrics[c][m]:>17.3f}" for c in cols) + f"   {arrow}")
    lines.append(
        f"mask extractor IoU on ground truth: {metrics['mask_extractor_iou']:.3f} "
        f"({metrics['frames']} frames, {len(metrics['videos'])} held-out videos)"
    )
    return "\n".join(lines)


def stage3_overrides(out: Path, scale: Scale, stage2_pipeline: Path) -> list[str]:
    """The toy stage-3 run: clips as long as the evaluated videos, at the same stride, from the stage-2 model."""
    return [
        f"data.root={out / 'data'}",
        f"data.size={scale.size}",
        f"inference.size={scale.size}",
        f"model.components={model_configs(out / 'model', scale)}",
        f"model.pretrained={stage2_pipeline}",
        f"run_dir={out / 'runs' / 'stage3'}",
        f"train.max_steps={scale.stage3_steps}",
        f"data.num_frames={scale.eval_frames}",
        f"data.frame_stride={scale.eval_stride}",
        f"data.batch_size={scale.clip_batch}",
    ]


def stage3_and_compare(out: Path, scale: Scale, stage2_videos: list[dict], lap: Laps) -> dict[str, Any]:
    """Train the motion module on the stage-2 model, animate the same held-out dancers with the same seeds and
    settings as stage 2, compare (`magicpose.toy.temporal`) and write `temporal.mp4`; return the record's `temporal`
    part. Compared twice: with one initial noise per frame (`per_frame_noise`: AnimateDiff's setting, the one the
    motion module is trained for; the check and the video) and with the quickstart's shared noise (`shared_noise`,
    itself a flicker remedy; reported beside). `stage2_videos` are stage 2's, sampled with `scale.shared_noise`."""
    from magicpose.toy.temporal import compare_stages, temporal_check, write_side_by_side

    t = time.perf_counter()
    stage2 = out / "runs" / "stage2" / "pipeline"
    shutil.rmtree(out / "runs" / "stage3", ignore_errors=True)  # inside the quickstart folder: a re-run replaces it
    stage3 = fit(STAGE3_CONFIG, stage3_overrides(out, scale, stage2))
    t = lap("stage 3", t)
    record: dict[str, Any] = {"stage3_steps": scale.stage3_steps, "clip_batch": scale.clip_batch}
    for shared in (False, True):
        setting = replace(scale, shared_noise=shared)
        before = stage2_videos if shared == scale.shared_noise else \
            animate_and_evaluate(out, out / "data", stage2, setting)[1]
        metrics, after = animate_and_evaluate(out, out / "data", stage3 / "pipeline", setting)
        comparison = compare_stages(before, after)
        record["shared_noise" if shared else "per_frame_noise"] = {
            "comparison": comparison, "check": temporal_check(comparison), "stage3_metrics": metrics}
        if not shared:
            write_side_by_side(out / "temporal.mp4", before, after)
    record["check"] = record["per_frame_noise"]["check"]
    lap("stage 2 and 3 animate + evaluate", t)
    return record


def recorded_scale(record: dict[str, Any], **fields: Any) -> Scale:
    """The `Scale` a finished quickstart recorded in its metrics.json, with `fields` replaced."""
    recorded = {**record["scale"], "widths": tuple(record["scale"]["widths"] or ()) or None, **fields}
    return Scale(**{k: v for k, v in recorded.items() if k in Scale.__dataclass_fields__})


class Laps:
    """Named wall-clock laps, printed as they end and kept in `times` (seconds) for metrics.json."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.start = time.perf_counter()

    def __call__(self, name: str, t0: float) -> float:
        self.times[name] = round(time.perf_counter() - t0, 1)
        print(f"[quickstart] {name}: {self.times[name]} s", flush=True)
        return time.perf_counter()

    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def finished_record(out: Path, hint: str) -> dict[str, Any]:
    """OUT's metrics.json, refusing a folder without a finished quickstart (its stage-2 pipeline included)."""
    if not (out / MARKER).is_file() or not (out / "metrics.json").is_file() or \
            not (out / "runs" / "stage2" / "pipeline").is_dir():
        raise UserError(f"{out}: no finished quickstart here (run `bash scripts/quickstart.sh` first{hint})")
    return json.loads((out / "metrics.json").read_text())


def run_retarget_only(options: QuickstartOptions) -> dict[str, Any]:
    """The retargeting proof (`magicpose.toy.retarget_proof`) on OUT's finished quickstart, with its data, stage-2
    model and scale (`threads` from `options.scale`); adds `retarget` to its metrics.json, writes retarget.mp4."""
    import torch

    from magicpose.toy.retarget_proof import retarget_proof, retarget_table

    out = Path(options.out).resolve()
    record = finished_record(out, "")
    if int(json.loads((out / "data" / "toy_world.json").read_text()).get("version", 1)) < 2:
        raise UserError(f"{out}: its toy world is older than version 2 (no body proportions); run the quickstart "
                        "again first")
    scale = recorded_scale(record, threads=options.scale.threads)
    torch.set_num_threads(scale.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    pipe = load_pipeline(out / "runs" / "stage2" / "pipeline")
    record["retarget"] = retarget_proof(pipe, out / "data", scale, out)
    record["retarget"]["seconds"] = round(time.perf_counter() - start, 1)
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    part = record["retarget"]
    print("\nheld-out dancer A animated with dancer B's motion, B's poses as they are vs retargeted onto A:")
    print(retarget_table(part))
    print(f"retargeting: mask IoU and keypoint error better by more than {part['check']['min_se']:g} standard "
          f"errors: {'ok' if part['check']['passed'] else 'NOT MET'}; wrote {out}/retarget.mp4 (reference | raw "
          f"pose | generated | retargeted pose | generated | ground truth); {part['seconds']} s")
    return record


def run_temporal_only(options: QuickstartOptions) -> dict[str, Any]:
    """Stage 3 on OUT's finished quickstart: its toy data, its stage-2 run and its scale (stage-3 fields from
    `options.scale`); adds `temporal` to its metrics.json."""
    import torch

    out = Path(options.out).resolve()
    record = finished_record(out, ", or pass --temporal to run everything")
    scale = recorded_scale(record, stage3_steps=options.scale.stage3_steps, clip_batch=options.scale.clip_batch,
                           threads=options.scale.threads)
    torch.set_num_threads(scale.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    lap = Laps()
    _, stage2_videos = animate_and_evaluate(out, out / "data", out / "runs" / "stage2" / "pipeline", scale)
    lap("stage 2 animate (again, for the comparison)", lap.start)
    record["temporal"] = stage3_and_compare(out, scale, stage2_videos, lap)
    record["temporal"]["seconds"] = {**lap.times, "total": lap.total()}
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    print_temporal(record["temporal"], out)
    return record


def print_temporal(part: dict[str, Any], out: Path) -> None:
    from magicpose.toy.temporal import temporal_table

    for key, title in (("per_frame_noise", "one initial noise per frame (checked)"),
                       ("shared_noise", "one shared initial noise per video (reported)")):
        print(f"\nstage 2 (per frame) vs stage 3 (motion module), same dancers, seeds and sampling; {title}:")
        print(temporal_table(part[key]["comparison"]))
    check = part["check"]
    print(f"temporal: frame flicker gain {check['flicker_gain_se']:.1f} standard errors (need > {check['min_se']:g}); "
          f"mask IoU and colour distance no worse beyond {check['noise_se']:g} standard errors: "
          f"{'ok' if check['passed'] else 'NOT MET'}; wrote {out}/temporal.mp4 "
          "(reference | pose | stage 2 | stage 3 | ground truth)")


def check_passed(check: dict) -> bool:
    """Whether both parts of a `learning_check` result passed."""
    return all(part["passed"] for part in check.values())


def run_quickstart(options: QuickstartOptions) -> dict[str, Any]:
    """Run the whole quickstart (see the module docstring); return what it wrote to `OUT/metrics.json`.

    Prints progress, the metric table and the learning check; whether an enforced check failed is for the
    caller to act on (`options.check and not check_passed(record["check"])`).
    """
    import torch

    from magicpose.toy import generate_toy_dataset

    if options.temporal_only:
        return run_temporal_only(options)
    if options.retarget_only:
        return run_retarget_only(options)
    scale = options.scale
    torch.set_num_threads(scale.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    out = Path(options.out).resolve()
    prepare_out(out)
    lap = Laps()
    times = lap.times
    data = out / "data"
    t = time.perf_counter()
    generate_toy_dataset(data, scale.train_videos, scale.test_videos, scale.frames, scale.size, options.seed)
    t = lap("toy data", t)
    common = [
        f"data.root={data}",
        f"data.size={scale.size}",
        f"inference.size={scale.size}",
        f"data.batch_size={scale.batch_size}",
        f"model.components={model_configs(out / 'model', scale)}",
        f"train.reference_dropout={scale.reference_dropout}",
        *([f"train.ema_decay={scale.ema_decay}"] if scale.ema_decay else []),
    ]
    stage1 = fit(
        STAGE1_CONFIG,
        [*common, f"run_dir={out / 'runs' / 'stage1'}", f"train.max_steps={scale.stage1_steps}"],
    )
    t = lap("stage 1", t)
    # the held-out curve samples as the exported pipeline will (the scale's sampler settings, in the scheduler config)
    curve = held_out_curve(scale.eval_every, eval_videos(data, scale), scale) if scale.eval_every else None
    stage2 = fit(
        STAGE2_CONFIG,
        [
            *common,
            f"run_dir={out / 'runs' / 'stage2'}",
            f"train.max_steps={scale.stage2_steps}",
            f"model.paths.appearance_unet={stage1 / 'pipeline' / 'appearance_unet'}",
            f"model.paths.unet={stage1 / 'pipeline' / 'unet'}",
        ],
        callbacks=(curve,) if curve else (),
    )
    t = lap("stage 2", t)
    metrics, videos = animate_and_evaluate(out, data, stage2 / "pipeline", scale)
    t = lap("animate + evaluate", t)
    write_videos(out, videos)
    t = lap("videos", t)
    temporal = stage3_and_compare(out, scale, videos, lap) if options.temporal else None
    times["total"] = lap.total()
    check = learning_check(metrics, options.min_iou_gain, options.min_iou_gain_se, options.max_colour_ratio)
    record = {
        "scale": asdict(scale),
        "seed": options.seed,
        "fast": options.fast,
        "check_enforced": options.check,
        "seconds": times,
        "metrics": metrics,
        "check": check,
    }
    if curve is not None:
        record["curve"] = curve.rows
    if temporal is not None:
        record["temporal"] = temporal
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    print("\n" + table(metrics))
    p, a = check["pose_following"], check["appearance"]
    print(
        f"pose following: IoU gain over copy-reference {p['iou_gain']:+.3f} +- {p['iou_gain_stderr']:.3f} "
        f"(need >= {p['min']} and >= {p['min_standard_errors']:g} standard errors; generation wins on "
        f"{100 * p['frames_won']:.0f} % of frames): "
        f"{'ok' if p['passed'] else 'FAILED'}"
    )
    print(
        f"appearance: colour distance right/wrong reference {a['colour_ratio_right_over_wrong']:.3f} "
        f"(need <= {a['max']}): {'ok' if a['passed'] else 'FAILED'}"
    )
    if temporal is not None:
        print_temporal(temporal, out)
    if not options.check:
        print("(learning check not enforced: --fast or --no-check)")
    print(
        f"\n[quickstart] {times['total']:.0f} s in all; wrote {out}/animation.mp4, {out}/grid.mp4, "
        f"{out}/metrics.json"
    )
    return record

