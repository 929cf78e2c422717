"""The toy model shipped in `pretrained_weights/toy/`: its targets, ablations, export, verification and use.

`bash scripts/train_toy.sh` trains it: the quickstart's path (`run_quickstart`) at the `TOY_MODEL` scale, then
`export_toy_model` writes the folder. `bash scripts/quickstart.sh --pretrained` (`run_pretrained`) checks its hashes,
animates the quickstart's held-out dancers with it and writes the quickstart's outputs, in under a minute.

The folder: `pipeline/` (a MagicPosePipeline folder, fp16 safetensors; `MagicPosePipeline.from_spec` casts them to
float32), `metrics.json` (the training record: scale, seconds, the held-out metrics of the exported weights, the
targets, the ablations), `stage1.yaml` / `stage2.yaml` (the resolved training configs), `README.md`, and
`SHA256SUMS` (`sha256sum -c` format) over every other file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from magicpose.errors import UserError
from magicpose.paths import REPO_ROOT, staged_folder

TOY_MODEL_DIR = REPO_ROOT / "pretrained_weights" / "toy"
CHECKSUMS = "SHA256SUMS"
TRAIN_COMMAND = "bash scripts/train_toy.sh"
# the targets on held-out dancers (the quickstart's protocol)
MIN_IOU_GAIN, MIN_IOU_GAIN_SE, MAX_FIGURE_COLOUR_RATIO = 0.15, 3.0, 0.5


# ----- targets and ablations -----------------------------------------------------------------------------------
def toy_targets(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Does a model learn both halves? Pose: figure-mask IoU gain over copying the reference >= 0.15 and >= 3
    standard errors. Appearance: figure colour distance with the right reference <= 0.5 x with another dancer's.
    Image quality: L1 no worse and SSIM no worse than copying the reference."""
    from magicpose.toy.quickstart import headline

    gen, copy, gain = metrics["generated"], metrics["copy_reference"], metrics["mask_iou_gain"]
    ratio = headline(metrics)["figure_colour_ratio"]
    return {
        "pose": {"iou_gain": gain["mean"], "stderr": gain["stderr"], "min": MIN_IOU_GAIN,
                 "passed": bool(gain["mean"] >= MIN_IOU_GAIN and gain["mean"] >= MIN_IOU_GAIN_SE * gain["stderr"])},
        "figure_colour": {"ratio_right_over_wrong": ratio, "max": MAX_FIGURE_COLOUR_RATIO,
                          "passed": bool(ratio <= MAX_FIGURE_COLOUR_RATIO)},
        "l1": {"generated": gen["l1"], "copy_reference": copy["l1"], "passed": bool(gen["l1"] <= copy["l1"])},
        "ssim": {"generated": gen["ssim"], "copy_reference": copy["ssim"],
                 "passed": bool(gen["ssim"] >= copy["ssim"])},
    }  # fmt: skip


def targets_text(targets: dict[str, dict[str, Any]]) -> str:
    def mark(part: str) -> str:
        return "ok" if targets[part]["passed"] else "MISSED"

    p, f, l1, ssim = (targets[k] for k in ("pose", "figure_colour", "l1", "ssim"))
    return "\n".join([
        f"pose: mask IoU gain over copy-reference {p['iou_gain']:+.3f} +- {p['stderr']:.3f} (target >= {p['min']} "
        f"and >= {MIN_IOU_GAIN_SE:g} s.e.): {mark('pose')}",
        f"appearance: figure colour distance right / wrong reference {f['ratio_right_over_wrong']:.3f} "
        f"(target <= {f['max']}): {mark('figure_colour')}",
        f"L1 {l1['generated']:.4f} vs copy-reference {l1['copy_reference']:.4f}: {mark('l1')};  "
        f"SSIM {ssim['generated']:.3f} vs copy-reference {ssim['copy_reference']:.3f}: {mark('ssim')}",
    ])  # fmt: skip


def ablation_settings(guidance_scale: float) -> dict[str, dict[str, Any]]:
    """name -> `evaluate_pipeline` keyword arguments: the model as shipped and with one part switched off."""
    settings: dict[str, dict[str, Any]] = {f"full model (Image-CFG {guidance_scale:g})": {}}
    # the other side of Image-CFG: none when the model samples with it, scale 2 when it samples without
    other = 1.0 if guidance_scale != 1.0 else 2.0
    settings[f"Image-CFG scale {other:g}" + (" (no guidance)" if other == 1.0 else "")] = {"guidance_scale": other}
    settings["appearance branch off (reference_image=None)"] = {"reference_off": True}
    settings["pose branch off (ControlNet scale 0)"] = {"call_kwargs": {"controlnet_conditioning_scale": 0.0}}
    return settings


ABLATION_METRICS = ("mask_iou", "l1", "ssim", "colour_distance", "figure_colour_distance")


def ablations(pipe: Any, videos: list[dict], scale: Any) -> dict[str, dict[str, float]]:
    """Each `ablation_settings` row on the same dancers, frames and seeds: the metric means and the IoU gain."""
    from magicpose.toy.quickstart import evaluate_pipeline

    rows = {}
    for name, kwargs in ablation_settings(scale.guidance_scale).items():
        setting = replace(scale, guidance_scale=kwargs.pop("guidance_scale", scale.guidance_scale))
        metrics, _ = evaluate_pipeline(pipe, videos, setting, wrong_reference=False, **kwargs)
        rows[name] = {**{m: metrics["generated"][m] for m in ABLATION_METRICS},
                      "mask_iou_gain": metrics["mask_iou_gain"]["mean"]}
    return rows


def ablation_table(rows: dict[str, dict[str, float]]) -> str:
    head = f"{'setting':<48}{'IoU gain':>10}{'mask IoU':>10}{'L1':>8}{'SSIM':>8}{'colour':>8}{'fig. col.':>10}"
    lines = [head]
    for name, r in rows.items():
        lines.append(f"{name:<48}{r['mask_iou_gain']:>+10.3f}{r['mask_iou']:>10.3f}{r['l1']:>8.4f}{r['ssim']:>8.3f}"
                     f"{r['colour_distance']:>8.4f}{r['figure_colour_distance']:>10.4f}")
    return "\n".join(lines)


# ----- the folder -----------------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    lines = [f"{sha256(p)}  {p.relative_to(folder).as_posix()}" for p in files]
    (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")


def verify_toy_model(folder: Path) -> None:
    """Every file listed in `folder/SHA256SUMS` exists with its hash; one-line `UserError` otherwise."""
    listing = folder / CHECKSUMS
    if not listing.is_file():
        raise UserError(f"{folder}: no toy model here ({CHECKSUMS} missing); train one with `{TRAIN_COMMAND}`")
    for line in listing.read_text().splitlines():
        expected, name = line.split(maxsplit=1)
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing from the toy model (listed in {CHECKSUMS})")
        if sha256(path) != expected:
            raise UserError(f"{path}: sha256 differs from {CHECKSUMS} (damaged or a Git LFS pointer); restore it "
                            f"with `git checkout -- {folder}` or re-train with `{TRAIN_COMMAND}`")


def load_toy_model(folder: Path = TOY_MODEL_DIR) -> tuple[Any, dict[str, Any]]:
    """The verified shipped pipeline (float32) and its metrics.json record."""
    from magicpose.toy.quickstart import load_pipeline

    folder = Path(folder)
    verify_toy_model(folder)
    return load_pipeline(folder / "pipeline"), json.loads((folder / "metrics.json").read_text())


def save_half(source: Path, target: Path) -> None:
    """Copy a pipeline folder with its float safetensors stored as fp16 (`target` may exist, empty)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target, dirs_exist_ok=True)
    for path in target.rglob("*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})


def export_toy_model(out: Path, dest: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write the shipped folder `dest` from the finished toy-model run in `out` (its stage-2 pipeline in fp16),
    re-evaluated from the fp16 files; returns the record written to `dest/metrics.json`. Replaces `dest` only when
    it holds an earlier export (a SHA256SUMS) or nothing."""
    from magicpose.toy.quickstart import (
        eval_videos,
        evaluate_pipeline,
        load_pipeline,
        recorded_scale,
        sampler_config,
    )

    if dest.exists() and any(dest.iterdir()) and not (dest / CHECKSUMS).is_file():
        raise UserError(f"{dest}: exists and is not a toy model folder; choose another --export")
    scale = recorded_scale(record)
    with staged_folder(dest) as partial:
        save_half(out / "runs" / "stage2" / "pipeline", partial / "pipeline")
        sampler_config(partial / "pipeline" / "scheduler", scale)  # the record's sampling settings, as measured
        for stage in ("stage1", "stage2"):
            shutil.copy(out / "runs" / stage / "config.yaml", partial / f"{stage}.yaml")
        pipe = load_pipeline(partial / "pipeline")
        videos = eval_videos(out / "data", scale)
        metrics, _ = evaluate_pipeline(pipe, videos, scale)
        shipped = {**record, "metrics_fp32": record["metrics"], "metrics": metrics, "targets": toy_targets(metrics),
                   "ablations": ablations(pipe, videos, scale), "train_command": TRAIN_COMMAND}
        (partial / "metrics.json").write_text(json.dumps(shipped, indent=1) + "\n")
        (partial / "README.md").write_text(FOLDER_README)
        write_checksums(partial)
    return shipped


FOLDER_README = f"""# The toy MagicPose model

A pixel-space MagicPose (main UNet, appearance UNet, pose ControlNet) trained on the procedural toy dance world at
32 px, on CPU. Trained by `{TRAIN_COMMAND}`; used by `bash scripts/quickstart.sh --pretrained` (animates the
quickstart's held-out dancers in under a minute) and by
`magicpose animate --config configs/magicpose/toy/pretrained.yaml --reference REF.png --poses POSES/ --out OUT/`.

- `pipeline/`: a `MagicPosePipeline` folder, weights as fp16 safetensors (loaded as float32).
- `metrics.json`: the recipe (`scale`), timings, held-out metrics of these fp16 weights (`metrics`; the fp32
  weights' in `metrics_fp32`), the targets and the ablations.
- `stage1.yaml`, `stage2.yaml`: the resolved training configs (paths are the training machine's).
- `SHA256SUMS`: `sha256sum -c SHA256SUMS` checks every file; the loader checks them too.

It has only seen toy dancers (flat colours and simple patterns at 32 px): photographs are far outside that.
"""


# ----- `quickstart --pretrained` ---
def write_still(path: Path, videos: list[dict], dancers: int = 4, frames: tuple[int, ...] = (4, 10),
                enlarge: int = 4) -> None:
    """A PNG grid: per dancer (row) the reference, then pose | generated | ground truth at each of `frames`."""
    import numpy as np
    from PIL import Image

    rows = []
    for v in videos[:dancers]:
        cells = [v["reference"]]
        for t in (t for t in frames if t < len(v["generated"])):
            cells += [v["pose"][t], v["generated"][t], v["target"][t]]
        rows.append(np.concatenate(cells, 1))
    grid = np.concatenate(rows, 0).repeat(enlarge, 0).repeat(enlarge, 1)
    Image.fromarray(grid).save(path)


def run_pretrained(out: Path, folder: Path, threads: int = 2) -> dict[str, Any]:
    """Animate the quickstart's held-out dancers with the shipped model; write OUT's quickstart outputs
    (`animation.mp4`, `grid.mp4`, `grid.png`: four dancers, two frames each, `metrics.json` with the targets and
    the ablations)."""
    import numpy as np
    import torch

    from magicpose.toy import generate_toy_dataset
    from magicpose.toy.quickstart import (
        Laps,
        eval_videos,
        evaluate_pipeline,
        prepare_out,
        recorded_scale,
        table,
        write_videos,
    )

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    out, folder = Path(out).resolve(), Path(folder)
    pipe, shipped = load_toy_model(folder)
    scale = recorded_scale(shipped, threads=threads)
    prepare_out(out)
    lap = Laps()
    t = time.perf_counter()
    # the held-out dancers depend on the seed only, not on the number of training videos (magicpose.toy.writer)
    generate_toy_dataset(out / "data", 1, scale.test_videos, scale.frames, scale.size, shipped.get("seed", 0))
    t = lap("toy data (held-out dancers)", t)
    videos = eval_videos(out / "data", scale)
    metrics, generated = evaluate_pipeline(pipe, videos, scale)
    t = lap("animate + evaluate", t)
    write_videos(out, generated)
    write_still(out / "grid.png", generated)
    rows = ablations(pipe, videos, scale)
    lap("ablations", t)
    reproduced = float(np.max([abs(metrics["generated"][m] - shipped["metrics"]["generated"][m])
                               for m in ("mask_iou", "l1", "ssim")]))
    record = {"pretrained": str(folder), "scale": shipped["scale"], "seconds": {**lap.times, "total": lap.total()},
              "metrics": metrics, "targets": toy_targets(metrics), "ablations": rows,
              "max_difference_from_shipped_metrics": reproduced}
    (out / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    print("\n" + table(metrics))
    print(targets_text(record["targets"]))
    print("\nablations (same dancers, frames and seeds):\n" + ablation_table(rows))
    print(f"\n[quickstart] the shipped toy model from {folder}: mask IoU, L1, SSIM within {reproduced:.1e} of its "
          f"metrics.json; {record['seconds']['total']:.0f} s in all; wrote {out}/animation.mp4, {out}/grid.mp4, "
          f"{out}/grid.png, {out}/metrics.json")
    return record
