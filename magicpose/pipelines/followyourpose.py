"""FollowYourPosePipeline: text + a skeleton sequence -> a video (inference only).

The original's sampler (DDIM, text CFG, the pose features added in both guidance halves, i.i.d. initial noise per
frame) plus what it lacked:

* **any length at bounded memory**: with `context_length` shorter than the clip, each denoising step runs the video
  UNet on overlapping windows of `context_length` frames (consecutive windows share `context_overlap` frames, the
  last window ends at the last frame) and blends their noise predictions per frame with weights that ramp down
  towards the window edges; the scheduler then steps the whole clip at once. Blending predictions before a
  (per-element affine) DDIM step equals blending the windows' stepped latents. A window as long as the clip is a
  plain single pass. The window logic is `windows.py`'s, shared with `MagicPosePipeline`.
* `pose_scale` (the original: 1), `pose_on_uncond` (the original: true), `guidance_scale <= 1` without a CFG batch,
  pose sizes following `height`/`width` (the original forced 512).
* diffusers' calling conventions (see `conventions.py`): batches of videos (a list of prompts, `num_videos_per_prompt`,
  one generator per video), `.frames` a batch of videos for every `output_type`, `prompt_embeds` /
  `negative_prompt_embeds` in place of prompts, `cross_attention_kwargs`, `callback_on_step_end` after each
  denoising step, `num_timesteps`, attention slicing / xformers that keep the sparse-causal attention; the guided
  step itself is public: `guided_noise` (one window) and `predict_noise` (the windows blended), which `__call__` runs
  once per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DiffusionPipeline, SchedulerMixin, T2IAdapter
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor
from einops import rearrange
from transformers import CLIPTextModel, CLIPTokenizer

from magicpose.config.followyourpose import FypModelSpec
from magicpose.models.components import vae_scale_factor
from magicpose.models.fyp_components import build_fyp_components
from magicpose.models.pose_adapter import pose_features
from magicpose.models.video_unet import VideoUNet
from magicpose.pipelines.conventions import (
    StepEndCallback,
    TextConditioned,
    batch_size,
    callback_tensor_inputs,
    check_embedding_shapes,
    check_generators,
    check_prompt_inputs,
    count,
    per_video,
    postprocess_videos,
    scheduler_step_kwargs,
    step_end,
    video_noise,
)
from magicpose.pipelines.windows import blend_windows, check_window, context_windows

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class FollowYourPoseOutput(BaseOutput):
    """`frames`: a batch of b videos (b = prompts x `num_videos_per_prompt`, laid out `(b n)`): `pil` a list of b
    lists of f PIL images, `np` a `b f h w 3` float array in [0, 1], `pt` a `b f 3 h w` tensor in [0, 1], `latent`
    the `b c f h w` latents. `export_to_video(output.frames[0], "out.mp4")` writes the first video."""

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor


class FollowYourPosePipeline(TextConditioned, DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->pose_adapter->unet->vae"
    _optional_components = ["pose_adapter"]
    # what `callback_on_step_end_tensor_inputs` may name; `prompt_embeds` / `negative_prompt_embeds` are `(b n) l d`,
    # one row per video
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderTiny | None,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: VideoUNet | None,
        pose_adapter: T2IAdapter | None,
        scheduler: SchedulerMixin | None,
    ) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              pose_adapter=pose_adapter, scheduler=scheduler)

    # ----- what follows the current VAE (properties: replacing `pipe.vae` leaves nothing stale) -----
    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent side: 2 per VAE down block but the last (8 on SD); 8 (SD's) without a VAE, as diffusers."""
        vae = getattr(self, "vae", None)
        return 8 if vae is None else vae_scale_factor(vae)

    @property
    def video_processor(self) -> VideoProcessor:
        """Decoded frames in [-1, 1] -> `.frames` (diffusers' `VideoProcessor`, for the current VAE)."""
        return VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)

    @property
    def pose_processor(self) -> VaeImageProcessor:
        """Skeleton images -> `f 3 h w` pose maps in [0, 1] (sizes rounded down to multiples of `vae_scale_factor`)."""
        return VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False)

    # ----- attention: diffusers' switches, keeping the video UNet's sparse-causal attention -----
    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op=None) -> None:
        """diffusers' own switch (with its errors when xformers or CUDA are missing: then nothing changes), then the
        video UNet's sparse-causal processors go back on `attn1` with the backend diffusers chose (the switch walks
        every submodule and would leave stock processors there). `enable_xformers_memory_efficient_attention` and
        `disable_xformers_memory_efficient_attention` come here; `enable_attention_slicing` reaches
        `VideoUNet.set_attention_slice`."""
        super().set_use_memory_efficient_attention_xformers(valid, attention_op)
        if isinstance(getattr(self, "unet", None), VideoUNet):
            self.unet.install_video_processors()

    @classmethod
    def from_spec(cls, spec: FypModelSpec) -> FollowYourPosePipeline:
        """Build from a model spec: local folders and/or seeded random init (see `build_fyp_components`)."""
        return cls(**build_fyp_components(spec))

    def prepare_skeleton(self, skeleton, height: int, width: int) -> torch.Tensor:
        """`f 3 h w` pose maps in [0, 1] at pixel size (PIL images, or a tensor already in [0, 1])."""
        poses = self.pose_processor.preprocess(skeleton, height=height, width=width)
        return poses.to(self._execution_device, self.unet.dtype)

    @torch.no_grad()
    def encode_skeleton(self, poses: torch.Tensor, scale: float, batch: int = 8) -> list[torch.Tensor]:
        """Adapter features of every frame, `f c h w` per down block (frames are independent: any batching)."""
        chunks = [pose_features(self.pose_adapter, poses[i : i + batch], scale) for i in range(0, len(poses), batch)]
        return [torch.cat(level) for level in zip(*chunks, strict=True)]

    def _check(self, skeleton, num_frames, context_length, context_overlap, output_type="pil",
               num_videos_per_prompt=1, prompt=None, negative_prompt=None, prompt_embeds=None,
               negative_prompt_embeds=None) -> None:
        check_prompt_inputs(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        if prompt is None and prompt_embeds is None:
            raise ValueError("pass prompt or prompt_embeds")
        if skeleton is not None and self.pose_adapter is None:
            raise ValueError("this pipeline has no pose adapter: pass skeleton=None and num_frames=")
        if skeleton is None and not num_frames:
            raise ValueError("num_frames is required without a skeleton")
        check_window(context_length, context_overlap)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {list(OUTPUT_TYPES)}, got {output_type!r}")
        if output_type != "latent" and self.vae is None:
            raise ValueError("this pipeline has no VAE: use output_type='latent'")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be an integer >= 1, got {num_videos_per_prompt!r}")

    def _prompt_embeddings(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, cfg: bool,
                           batch: int, num_videos_per_prompt: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(text, uncond text) `(b n) l d`, one row per video: given embeddings, else encoded prompts (one row or b
        rows each, broadcast to the batch); uncond None without CFG unless given."""
        device, dtype = self._execution_device, self._embedding_dtype
        text = self.encode_text(prompt) if prompt_embeds is None else prompt_embeds.to(device, dtype)
        uncond = None
        if negative_prompt_embeds is not None:
            uncond = negative_prompt_embeds.to(device, dtype)
        elif cfg:
            uncond = self.encode_text(negative_prompt if negative_prompt is not None else "")
        text = per_video(text, batch, num_videos_per_prompt)
        uncond = None if uncond is None else per_video(uncond, batch, num_videos_per_prompt)
        check_embedding_shapes(text, uncond)
        return text, uncond

    def _initial_latents(self, latents, generator, shape: tuple[int, ...]) -> torch.Tensor:
        """Given `1 c f h w` (shared by every video) or `(b n) c f h w` latents, or noise drawn by `video_noise`."""
        device, dtype = self._execution_device, self.unet.dtype
        if latents is None:
            return video_noise(shape, generator, device, dtype)
        if latents.ndim != 5 or tuple(latents.shape[1:]) != shape[1:] or latents.shape[0] not in (1, shape[0]):
            one = (1, *shape[1:])
            raise ValueError(f"latents must be {one} (shared by every video) or {shape} (one per video), "
                             f"got {tuple(latents.shape)}")
        return latents.expand(shape).to(device, dtype)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        skeleton: list[PIL.Image.Image] | torch.Tensor | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 12.5,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        pose_scale: float = 1.0,
        pose_on_uncond: bool = True,
        context_length: int | None = None,
        context_overlap: int = 4,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> FollowYourPoseOutput | tuple:
        """Generate videos with one frame per skeleton frame (or `num_frames` frames without a skeleton).

        A call makes `b x num_videos_per_prompt` videos, laid out `(b n)` (all videos of prompt 0 first), where b is
        the number of prompts (a list's length, the rows of `prompt_embeds`; a single negative prompt serves all).
        Every video follows the same skeleton. A batch gives each video what a call for it alone gives (up to
        float rounding in batched convolutions).

        Args:
            prompt: the text, or a list of b texts; this or `prompt_embeds` is required, not both.
            skeleton: pose maps (COCO-17/mmpose or OpenPose style on black) as PIL images or an `f 3 h w` tensor in
                [0, 1], shared by every video; None: text-to-video.
            guidance_scale: text CFG scale; `<= 1` runs the conditional half only.
            negative_prompt: the text of the unconditional half (default: the empty prompt), or a list of b. Not
                together with `negative_prompt_embeds`.
            num_videos_per_prompt: videos per prompt (different noise each).
            context_length / context_overlap: the sliding window (None: all frames at once).
            generator: one generator, or a list of one per video (video i then equals a one-video call with
                generator i); one generator draws the videos' initial noise one video after another, so the first
                video's noise is a one-video call's (with `eta > 0` DDIM's step noise is drawn for the whole batch).
            latents: initial noise `1 c f h/8 w/8` (shared by every video) or `(b n) c f h/8 w/8` (one per video);
                default: i.i.d. normal per frame, as the original.
            output_type: `pil`, `np`, `pt` or `latent`; `.frames` is a batch of videos in every case (see
                `FollowYourPoseOutput`).
            prompt_embeds: `b l d` text embeddings used in place of encoding `prompt`, e.g. from `encode_prompt`;
                the same embeddings give exactly the prompts' frames.
            negative_prompt_embeds: `b l d` (or `1 l d`, shared) embeddings of the unconditional half used in place of
                encoding `negative_prompt`; ignored without CFG.
            cross_attention_kwargs: passed to the video UNet's attention processors (`UNet2DConditionModel`'s
                `cross_attention_kwargs`) in every pass.
            callback_on_step_end: called after each denoising step as
                `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`; `callback_kwargs` holds the
                tensors named in `callback_on_step_end_tensor_inputs` (`latents`: `(b n) c f h w`). A dict it returns
                may replace them (`latents` of the same shape) for the following steps and the output. A diffusers
                `PipelineCallback` / `MultiPipelineCallbacks` names its own tensor inputs.
            callback_on_step_end_tensor_inputs: names from `FollowYourPosePipeline._callback_tensor_inputs`
                (`latents`; `prompt_embeds`, `negative_prompt_embeds`: `(b n) l d`, one row per video, the latter
                None without CFG) passed to the callback.
        """
        callback_names = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        self._check(skeleton, num_frames, context_length, context_overlap, output_type, num_videos_per_prompt,
                    prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        batch = batch_size(prompt=count(prompt, prompt_embeds),
                           negative_prompt=count(negative_prompt, negative_prompt_embeds))
        videos = batch * num_videos_per_prompt
        check_generators(generator, videos)
        device = self._execution_device
        default = self.unet.unet.config.sample_size * self.vae_scale_factor
        height, width = height or default, width or default
        poses = None if skeleton is None else self.prepare_skeleton(skeleton, height, width)
        num_frames = num_frames if poses is None else poses.shape[0]
        feats = None if poses is None else self.encode_skeleton(poses, pose_scale)

        prompt_embeds, negative_prompt_embeds = self._prompt_embeddings(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, guidance_scale > 1.0, batch,
            num_videos_per_prompt,
        )
        shape = (videos, self.unet.unet.config.in_channels, num_frames, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        latents = self._initial_latents(latents, generator, shape) * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps, self._guidance_scale, self._interrupt = len(timesteps), guidance_scale, False
        num_windows = len(context_windows(num_frames, context_length, context_overlap))
        step_kwargs = scheduler_step_kwargs(self.scheduler, generator, eta)
        with self.progress_bar(total=len(timesteps) * num_windows) as progress:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                eps = self.predict_noise(latents, t, prompt_embeds, negative_prompt_embeds, feats, self.guidance_scale,
                                         pose_on_uncond, context_length, context_overlap,
                                         cross_attention_kwargs=cross_attention_kwargs)
                latents = self.scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
                progress.update(num_windows)
                latents, prompt_embeds, negative_prompt_embeds = step_end(
                    self, callback_on_step_end, callback_names, i, t,
                    latents=latents, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                )

        frames = self._decode(latents, output_type)
        self.maybe_free_model_hooks()
        return FollowYourPoseOutput(frames=frames) if return_dict else (frames,)

    @torch.no_grad()
    def predict_noise(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | int,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        pose_features: list[torch.Tensor] | None = None,
        guidance_scale: float = 12.5,
        pose_on_uncond: bool = True,
        context_length: int | None = None,
        context_overlap: int = 4,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The guided noise prediction `b c f h w` of whole clips at `timestep`: what `__call__` steps with.

        With `context_length` shorter than the clip, `guided_noise` runs on each window of `context_windows` and the
        windows' predictions are blended per frame with `window_weights` (in float64); otherwise it is one
        `guided_noise` pass over all frames.

        Args:
            latents: `b c f h w`, the current latents of every frame of b videos (`scheduler.scale_model_input` is
                applied inside, as in `__call__`).
            timestep: the current timestep (of `self.scheduler.timesteps`).
            prompt_embeds / negative_prompt_embeds / pose_features / guidance_scale / pose_on_uncond /
                cross_attention_kwargs: as in `guided_noise`; `pose_features` covers all `f` frames.
            context_length / context_overlap: the sliding window, as in `__call__`.
        """
        windows = context_windows(latents.shape[2], context_length, context_overlap)
        if len(windows) > 1 and guidance_scale > 1.0 and negative_prompt_embeds is None:
            negative_prompt_embeds = self.encode_text("")  # once for all windows, not once per window

        def window_noise(window: range) -> torch.Tensor:
            if len(window) == latents.shape[2]:  # the whole clip: the tensors as given
                return self.guided_noise(latents, timestep, prompt_embeds, negative_prompt_embeds, pose_features,
                                         guidance_scale, pose_on_uncond, cross_attention_kwargs)
            index = list(window)
            part = None if pose_features is None else [f[index] for f in pose_features]
            return self.guided_noise(latents[:, :, index], timestep, prompt_embeds, negative_prompt_embeds, part,
                                     guidance_scale, pose_on_uncond, cross_attention_kwargs)

        return blend_windows(window_noise, latents.shape[2], context_length, context_overlap, dim=2,
                             dtype=latents.dtype)

    @torch.no_grad()
    def guided_noise(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | int,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        pose_features: list[torch.Tensor] | None = None,
        guidance_scale: float = 12.5,
        pose_on_uncond: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The text-CFG noise prediction `b c f h w` for the frames of one window (or whole clips) in one pass.

        With `guidance_scale > 1`: one video-UNet pass on the batch (unconditional, conditional) and
        `eps_u + guidance_scale * (eps_c - eps_u)`; otherwise the conditional pass alone.

        Args:
            latents: `b c f h w`, the current latents of these frames of b videos (`scheduler.scale_model_input` is
                applied inside).
            timestep: the current timestep.
            prompt_embeds: `b l d` (one row per video) or `1 l d` (shared), e.g. `encode_text(prompt)`.
            negative_prompt_embeds: `b l d` or `1 l d` of the unconditional half (default: the empty prompt's);
                unused without CFG.
            pose_features: the pose adapter's features of these `f` frames (`encode_skeleton`: `f c h w` per down
                block), shared by the b videos, or None for text only.
            guidance_scale: the text CFG scale.
            pose_on_uncond: the pose features in the unconditional half too (the original), or zeros there.
            cross_attention_kwargs: passed to the video UNet's attention processors.
        """
        videos = latents.shape[0]
        cfg = guidance_scale > 1.0
        sample = torch.cat([latents, latents]) if cfg else latents
        sample = self.scheduler.scale_model_input(sample, timestep)
        text = _rows(prompt_embeds, videos, "prompt_embeds")
        if cfg:
            if negative_prompt_embeds is None:
                negative_prompt_embeds = self.encode_text("")
            text = torch.cat([_rows(negative_prompt_embeds, videos, "negative_prompt_embeds"), text])
        feats = pose_features
        if feats is not None and videos > 1:
            feats = [f.repeat(videos, *([1] * (f.ndim - 1))) for f in feats]  # `(b f) c h w`: every video, all frames
        if feats is not None and cfg:
            # batch (uncond, cond), frames folded `(b f)`: the uncond half gets the pose too unless asked otherwise
            feats = [torch.cat([f if pose_on_uncond else torch.zeros_like(f), f]) for f in feats]
        eps = self.unet(sample, timestep, text, pose_features=feats, cross_attention_kwargs=cross_attention_kwargs)
        if not cfg:
            return eps
        uncond, cond = eps.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def _decode(self, latents: torch.Tensor, output_type: str, chunk: int = 8):
        """`b c f h w` latents -> `.frames`: the VAE decodes `chunk` frames at a time (diffusers' convention:
        `vae.decode(latents / scaling_factor)[0]`, in [-1, 1]), the `VideoProcessor` makes videos of them."""
        if output_type == "latent":
            return latents
        flat = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config.scaling_factor
        pixels = torch.cat([self.vae.decode(flat[i : i + chunk].to(self.vae.dtype), return_dict=False)[0]
                            for i in range(0, flat.shape[0], chunk)])
        videos = rearrange(pixels, "(b f) c h w -> b f c h w", b=latents.shape[0])
        return postprocess_videos(self.video_processor, videos, output_type)


def _rows(embeds: torch.Tensor, videos: int, name: str) -> torch.Tensor:
    """`b l d` embeddings for b videos: as they are, or one row shared by all."""
    if embeds.shape[0] == videos:
        return embeds
    if embeds.shape[0] == 1:
        return embeds.expand(videos, *embeds.shape[1:])
    raise ValueError(f"{name} has {embeds.shape[0]} rows for {videos} videos (need {videos} or 1)")
