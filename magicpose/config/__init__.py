"""The one config system: YAML files with `base:` chains and `key=value` overrides, read into typed schemas.

    config = load_config(["configs/magicpose/tiny.yaml"], ["inference.steps=20"])   # a MagicPoseConfig
    fit = load_config(files, overrides, schema=schema_for(config_system(files), "fit"))

Schemas are plain dataclasses (`magicpose.py`, `followyourpose.py`); reading a YAML never imports torch.
"""

from magicpose.config.followyourpose import (
    SYSTEM,
    FypConfig,
    FypDataConfig,
    FypFitConfig,
    FypInferenceConfig,
    FypModelSpec,
    FypTrainConfig,
    VideoOptions,
    check_system,
)
from magicpose.config.loader import config_system, load_config, schema_for, to_container, to_yaml
from magicpose.config.magicpose import (
    DataConfig,
    FitConfig,
    InferenceConfig,
    MagicPoseConfig,
    ModelSpec,
    TrainConfig,
    TrainerConfig,
)

__all__ = [
    "SYSTEM", "DataConfig", "FitConfig", "FypConfig", "FypDataConfig", "FypFitConfig", "FypInferenceConfig",
    "FypModelSpec", "FypTrainConfig", "InferenceConfig", "MagicPoseConfig", "ModelSpec", "TrainConfig",
    "TrainerConfig", "VideoOptions", "check_system", "config_system", "load_config", "schema_for", "to_container",
    "to_yaml",
]  # fmt: skip
