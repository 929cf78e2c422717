"""`magicpose fit`: config -> Trainer + MagicPoseTraining; run folder, resume, export.

Run folder (`run_dir`): `config.yaml` (resolved), `checkpoints/` (Lightning resume states holding only the
trained modules + optimizer, LR schedule and step; `last.ckpt`), `weights/step-N/` (safetensors of the trained
modules), `samples/`, `tb/` (TensorBoard), and at the end `pipeline/` (a MagicPosePipeline folder for
`magicpose animate`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from magicpose.config import to_yaml
from magicpose.errors import UserError
from magicpose.paths import resolve_path


def _precision(name: str) -> str:
    if name != "auto":
        return name
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def prepare_run_dir(config: Any, resume: bool) -> tuple[Path, Path | None]:
    """The run folder and the checkpoint to resume from; refuses to mix a new run into an old one."""
    run_dir = Path(config.run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise UserError(f"{last}: nothing to resume (no such checkpoint)")
        return run_dir, last
    if (run_dir / "checkpoints").exists() or (run_dir / "pipeline").exists():
        raise UserError(f"{run_dir}: holds an earlier run; pass --resume to continue it or set run_dir=...")
    return run_dir, None


def _check_data(config: Any) -> None:
    root = resolve_path(config.data.root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder (data.root); make a toy one with `magicpose toy-data`")
    config.data.root = str(root)


def build_trainer(config: Any, run_dir: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger

    # The frozen UNet, VAE and text encoder are in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")

    train, trainer = config.train, config.trainer
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="step-{trained_steps:07.0f}", auto_insert_metric_name=False,
        every_n_train_steps=train.checkpoint_every, save_top_k=train.keep_last, monitor="trained_steps", mode="max",
        save_last=True,
    )
    return pl.Trainer(
        accelerator=trainer.accelerator, devices=trainer.devices, num_nodes=trainer.num_nodes,
        strategy=trainer.strategy, precision=_precision(trainer.precision),
        max_steps=train.max_steps, max_epochs=-1, gradient_clip_val=train.grad_clip,
        accumulate_grad_batches=train.accumulate_grad_batches, log_every_n_steps=train.log_every,
        use_distributed_sampler=False,  # the StepSampler shards by rank itself (and resumes exactly)
        logger=TensorBoardLogger(save_dir=str(run_dir), name="", version="tb"),
        callbacks=[checkpoint, *callbacks], default_root_dir=str(run_dir), num_sanity_val_steps=0,
        enable_model_summary=False,
    )


def _sample_clip(config: Any) -> dict[str, Any] | None:
    from magicpose.data.tiktok import TikTokVideoDataset

    data = config.data
    if not data.val_split or not config.train.sample_every:
        return None
    try:
        videos = TikTokVideoDataset(data.root, data.val_split, size=data.size, resize_mode=data.resize_mode,
                                    max_frames=8)
    except UserError:
        return None  # no validation split: training still runs, without sample clips
    return videos[0]


def run_fit(config: Any, resume: bool = False) -> Path:
    from magicpose.training.callbacks import SampleClip, Throughput, TrainedWeights
    from magicpose.training.module import MagicPoseTraining

    _check_data(config)
    run_dir, ckpt = prepare_run_dir(config, resume)
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    module = MagicPoseTraining(config)
    callbacks: list[pl.Callback] = [
        TrainedWeights(run_dir / "weights", config.train.checkpoint_every, config.train.keep_last),
        Throughput(config.train.log_every, config.data.batch_size),
    ]
    clip = _sample_clip(config)
    if clip is not None:
        callbacks.append(SampleClip(clip, run_dir / "samples", config.train.sample_every, config.inference))
    return fit_and_export(config, module, run_dir, ckpt, callbacks)


def fit_and_export(config: Any, module: Any, run_dir: Path, ckpt: Path | None, callbacks: list[pl.Callback]) -> Path:
    """Train `module` (from `ckpt` if resuming), with config.yaml written first and pipeline/ exported last."""
    trainer = build_trainer(config, run_dir, callbacks)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(config))
    trainer.fit(module, ckpt_path=str(ckpt) if ckpt else None)
    if trainer.is_global_zero:
        export_pipeline(module, run_dir / "pipeline")
    return run_dir


def export_pipeline(module: Any, folder: Path) -> None:
    """The final MagicPosePipeline folder (EMA weights if enabled), loadable by `magicpose animate`."""
    partial = folder.with_name(folder.name + ".partial")
    module.pipeline(use_ema=True).save_pretrained(partial, safe_serialization=True)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    partial.rename(folder)

