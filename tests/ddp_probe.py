"""Run by tests/test_training.py in a subprocess: 2-process CPU DDP (gloo) on the tiny config.

Lightning's `ddp` strategy re-launches this script for rank 1, which is why it is a script and not a test.
Each rank writes what it saw (items, first noise value per step) and a checksum of its trained weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from magicpose.config import FitConfig, load_config
from magicpose.training.fit import build_trainer
from magicpose.training.magicpose import MagicPoseTraining


class Probe(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out, self.items, self.noise = out, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.items += [f"{v}/{int(f)}" for v, f in zip(batch["video_id"], batch["frame_index"])]
        self.noise.append(torch.randn(1, generator=module.step_generator(batch_idx)).item())

    def on_train_end(self, trainer, module):
        weights = torch.cat([p.detach().flatten() for p in module.trainable_parameters()])
        record = {"rank": trainer.global_rank, "world": trainer.world_size, "items": self.items,
                  "noise": self.noise, "checksum": weights.double().sum().item(), "first": weights[:8].tolist()}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def main() -> None:
    out, data_root, config_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    extra = sys.argv[4:]  # more overrides, after (so over) these
    config = load_config([config_path], [f"data.root={data_root}", f"run_dir={out / 'run'}", "train.max_steps=3",
                                         "train.sample_every=0", "train.stage=2", "model.paths.appearance_unet=null",
                                         "trainer.devices=2", "trainer.strategy=ddp", *extra], schema=FitConfig)
    pl.seed_everything(0, verbose=False)
    module = MagicPoseTraining(config)
    trainer = build_trainer(config, out / "run", [Probe(out)])
    trainer.fit(module)


if __name__ == "__main__":
    main()
