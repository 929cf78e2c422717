"""`magicpose fit`: train either system from YAML configs (the config's `system:` picks the trainer)."""

from __future__ import annotations

import argparse

from magicpose.commands.outputs import add_config_argument

EPILOG = """examples:
  magicpose fit -c configs/magicpose/stage1_appearance.yaml                 # stage 1 (appearance control)
  magicpose fit -c configs/magicpose/stage2_pose.yaml data.batch_size=4     # stage 2 (+ pose ControlNet)
  magicpose fit -c configs/magicpose/stage2_pose.yaml --resume              # continue a killed run
  magicpose fit -c configs/magicpose/stage3_temporal.yaml                   # stage 3 (motion module, clips)
multi-GPU / multi-node: the same command under torchrun or srun (see scripts/ and scripts/slurm/)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="train MagicPose (stage 1, 2 or 3) or Follow-Your-Pose from YAML configs",
                       description="Train MagicPose with Lightning. The run folder (run_dir) gets the resolved "
                                   "config, resume checkpoints, safetensors of the trained modules, TensorBoard "
                                   "logs, sample clips and, at the end, a pipeline folder for `magicpose animate`.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key, e.g. train.max_steps=1000")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magicpose.config import FypFitConfig, config_system, load_config, schema_for

    schema = schema_for(config_system(args.config), "fit")
    config = load_config(args.config, list(args.overrides), schema=schema)
    from magicpose.training.fit import run_fit  # after the config: its mistakes show before Lightning loads

    run_dir = run_fit(config, resume=args.resume)
    if isinstance(config, FypFitConfig):
        print(f"trained; run folder {run_dir} (pipeline for `magicpose fyp-sample`: model.pretrained={run_dir / 'pipeline'})")
    else:
        print(f"trained; run folder {run_dir} (pipeline for `magicpose animate`: {run_dir / 'pipeline'})")
    return 0
