"""The original projects' argument and config names, and what each is here (torch-free).

Users of the original MagicDance (`train_tiktok.py`, `test_any_image_pose.py`, `test_tiktok.py`) and Follow-Your-Pose
(`txt2video.py`, `configs/pose_{train,sample}.yaml`) arrive with their names in their fingers. When one of them is
given here, as a flag (`--control_mode`) or as a config key (`control_mode=...`), the error names ours
(`original_name_hint`). `docs/migrating.md` is the same table, with the scripts, paths and output files.
"""

from __future__ import annotations

# original name -> what it is here. "MagicDance" arguments first, then Follow-Your-Pose's.
ORIGINAL_NAMES: dict[str, str] = {
    # MagicDance: train_tiktok.py / test_*.py arguments
    "model_config": "-c/--config YAML (configs/magicpose/*.yaml; the model is its model: section)",
    "init_path": "model.paths.unet / vae / text_encoder (configs/magicpose/base.yaml names control_sd15_ini.ckpt)",
    "output_dir": "run_dir=DIR (fit) or --out DIR (animate, infer-tiktok, fyp-sample)",
    "local_image_dir": "run_dir=DIR (fit: samples/ in it) or --out DIR (animate, infer-tiktok)",
    "local_log_dir": "run_dir=DIR (fit: tb/ in it)",
    "image_pretrain_dir": "model.paths.appearance_unet=FILE_OR_DIR (stage 2) or model.pretrained=FILE_OR_DIR "
                          "(animate, infer-tiktok)",
    "pose_pretrain_dir": "model.paths.controlnet=FILE_OR_DIR",
    "train_batch_size": "data.batch_size (per GPU)",
    "val_batch_size": "inference.frames_per_batch (--frames-per-batch)",
    "num_workers": "data.num_workers",
    "lr": "train.lr",
    "weight_decay": "train.weight_decay",
    "lr_anneal_steps": "train.warmup_steps",
    "ema_rate": "train.ema_decay",
    "num_train_steps": "train.max_steps",
    "grad_clip_norm": "train.grad_clip",
    "gradient_accumulation_steps": "train.accumulate_grad_batches",
    "logging_steps": "train.log_every",
    "logging_gen_steps": "train.sample_every",
    "save_steps": "train.checkpoint_every",
    "save_total_limit": "train.keep_last",
    "use_fp16": "trainer.precision (auto: bf16-mixed on CUDA) for training, model.dtype=float16 for inference",
    "image_size": "data.size / inference.size (--size), in pixels: 8 x the original's latent image_size",
    "control_mode": "inference.guidance_mode (--guidance-mode controlnet_important|balance)",
    "control_type": "nothing: pose maps are always body+hand+face",
    "train_dataset": "data.root=DATASET (any TikTok-format folder)",
    "img_bin_limit": "data.max_frame_distance (training) or --max-frames N (infer-tiktok)",
    "wonoise": "train.reference_noise (false, the default, is the original's --wonoise)",
    "with_text": "inference.prompt (empty by default, which is what the original's --with_text flag gave)",
    "text_prompt": "inference.prompt=TEXT",
    "empty_text_prob": "nothing: MagicPose trains with the empty prompt",
    "v4": "nothing: pose maps are always read as RGB",
    "finetune_control": "train.stage=2 (configs/magicpose/stage2_pose.yaml)",
    "sd_locked": "train.train_unet (false, the default, keeps the SD UNet frozen as sd_locked did)",
    "control_dropout": "train.pose_dropout",
    "local_pose_path": "--poses DIR_OR_VIDEO (animate)",
    "local_cond_image_path": "--reference IMAGE (animate)",
    "resume_dir": "--resume (fit continues run_dir)",
    "eta": "nothing: DDIM with eta 0, as the original ran it (inference.scheduler swaps the sampler)",
    # Follow-Your-Pose: txt2video.py / train_followyourpose.py / configs/pose_*.yaml
    "skeleton_path": "--skeleton VIDEO_OR_DIR (fyp-sample), or --video RAW.mp4 to extract the skeleton first; "
                     "train.sample_skeleton for validation videos during training",
    "pretrained_model_path": "model.paths.unet / vae / text_encoder / tokenizer (configs/followyourpose/base.yaml)",
    "resume_from_checkpoint": "model.pretrained=followyourpose_checkpoint-1000 (converted once on first use)",
    "validation_data": "inference.* (fyp-sample); `magicpose convert fyp-config` converts a whole original YAML",
    "train_data": "data.* (configs/followyourpose/stage2.yaml); `magicpose convert fyp-config` converts a whole YAML",
    "prompts": "--prompt TEXT (fyp-sample; repeat it for several videos) or inference.prompts; "
               "train.sample_prompts for validation videos during training",
    "video_length": "inference.frames (--frames)",
    "frame_skeleton_stride": "inference.stride (--stride)",
    "num_inference_steps": "inference.steps (--steps)",
    "learning_rate": "train.lr",
    "max_train_steps": "train.max_steps",
    "checkpointing_steps": "train.checkpoint_every",
    "validation_steps": "train.sample_every",
    "n_sample_frames": "data.frames",
    "sample_frame_rate": "data.stride",
    "mixed_precision": "trainer.precision (auto: bf16-mixed on CUDA)",
    "enable_xformers_memory_efficient_attention": "model.attention=xformers (MagicPose); Follow-Your-Pose uses "
                                                  "PyTorch SDPA, which needs no switch",
    "trainable_modules": "train.trainable_modules",
    "max_grad_norm": "train.grad_clip",
    "gpu_ids": "trainer.devices (CUDA_VISIBLE_DEVICES picks which)",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "config": "-c/--config YAML",
}


def original_name_hint(name: str) -> str | None:
    """'<name> is the original's name; here: <ours>' for an original flag (`--control_mode`) or config key
    (`control_mode`, `validation_data.prompts`), else None."""
    bare = name.split("=", 1)[0].lstrip("-")
    for candidate in (bare, bare.replace("-", "_"), bare.rsplit(".", 1)[-1]):
        if candidate in ORIGINAL_NAMES:
            return f"'{name.split('=', 1)[0]}' is the original's name; here: {ORIGINAL_NAMES[candidate]}"
    return None
