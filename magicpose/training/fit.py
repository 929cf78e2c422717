"""`magicpose fit`: config -> Trainer + the system's LightningModule; run folder, resume, export.

Run folder (`run_dir`): `config.yaml` (resolved), `checkpoints/` (Lightning resume states holding only the
trained modules + optimizer, LR schedule and step; `last.ckpt`), `weights/step-N/` (safetensors of the trained
modules), `samples/` (MagicPose), `tb/` (TensorBoard), and at the end `pipeline/` (a pipeline folder for
`magicpose animate` or `magicpose fyp-sample`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from magicpose.config import FitConfig, FypFitConfig, to_yaml
from magicpose.errors import UserError
from magicpose.paths import staged_folder
from magicpose.training.base import DiffusionTraining

AnyFitConfig = FitConfig | FypFitConfig


def _precision(name: str) -> str:
    if name != "auto":
        return name
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def prepare_run_dir(config: AnyFitConfig, resume: bool) -> tuple[Path, Path | None]:
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


def build_trainer(config: AnyFitConfig, run_dir: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
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


def training_module(config: AnyFitConfig) -> type[DiffusionTraining]:
    """The LightningModule class of a fit config's system."""
    if isinstance(config, FypFitConfig):
        from magicpose.training.followyourpose import FollowYourPoseTraining

        return FollowYourPoseTraining
    from magicpose.training.magicpose import MagicPoseTraining

    return MagicPoseTraining


def run_fit(config: AnyFitConfig, resume: bool = False, callbacks: tuple[pl.Callback, ...] = ()) -> Path:
    """Train one stage of either system; the run folder gets config.yaml, checkpoints/, weights/step-N/, tb/,
    samples/ (MagicPose) and, at the end, pipeline/. `callbacks`: more Lightning callbacks (e.g. an evaluation)."""
    from magicpose.convert.cache import convert_sources
    from magicpose.training.callbacks import Throughput, TrainedWeights

    cls = training_module(config)
    cls.check_data(config)
    config.model = convert_sources(config.model)  # the originals' single files, converted once into a cache
    run_dir, ckpt = prepare_run_dir(config, resume)
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    module = cls(config)
    callbacks: list[pl.Callback] = [
        TrainedWeights(run_dir / "weights", config.train.checkpoint_every, config.train.keep_last),
        Throughput(config.train.log_every, config.data.batch_size),
        *callbacks,
    ]
    return fit_and_export(config, module, run_dir, ckpt, callbacks)


def fit_and_export(config: AnyFitConfig, module: DiffusionTraining, run_dir: Path, ckpt: Path | None,
                   callbacks: list[pl.Callback]) -> Path:
    """Train `module` (from `ckpt` if resuming), with config.yaml written first and pipeline/ exported last."""
    trainer = build_trainer(config, run_dir, callbacks)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(config))
    trainer.fit(module, ckpt_path=str(ckpt) if ckpt else None)
    if trainer.is_global_zero:
        export_pipeline(module, run_dir / "pipeline")
    return run_dir


def export_pipeline(module: DiffusionTraining, folder: Path) -> None:
    """The final pipeline folder (EMA weights if enabled), for `magicpose animate` / `magicpose fyp-sample`."""
    with staged_folder(folder) as partial:
        module.pipeline(use_ema=True).save_pretrained(partial, safe_serialization=True)

