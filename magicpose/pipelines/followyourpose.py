"""FollowYourPosePipeline: text + a skeleton sequence -> a video (inference only).

The original's sampler (DDIM, text CFG, the pose features added in both guidance halves, i.i.d. initial noise per
frame) plus what it lacked:

* **any length at bounded memory**: with `context_length` shorter than the clip, each denoising step runs the video
  UNet on overlapping windows of `context_length` frames (consecutive windows share `context_overlap` frames, the
  last window ends at the last frame) and blends their noise predictions per frame with weights that ramp down
  towards the window edges; the scheduler then steps the whole clip at once. Blending predictions before a
  (per-element affine) DDIM step equals blending the windows' stepped latents. A window as long as the clip is a
  plain single pass.
* `pose_scale` (the original: 1), `pose_on_uncond` (the original: true), `guidance_scale <= 1` without a CFG batch,
  pose sizes following `height`/`width` (the original forced 512).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, T2IAdapter
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange
from transformers import CLIPTextModel, CLIPTokenizer

from magicpose.config.followyourpose import FypModelSpec
from magicpose.models.components import vae_scale_factor
from magicpose.models.fyp_components import build_fyp_components
from magicpose.models.pose_adapter import pose_features
from magicpose.models.video_unet import VideoUNet


@dataclass
class FollowYourPoseOutput(BaseOutput):
    """`frames`: a list of PIL images, an `f h w 3` float array in [0, 1] (`np`), or `1 c f h w` latents (`latent`)."""

    frames: list[PIL.Image.Image] | np.ndarray | torch.Tensor


def context_windows(num_frames: int, length: int | None, overlap: int) -> list[range]:
    """Frame windows of `length` (all frames when None or >= num_frames), consecutive ones sharing `overlap`."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if length is None or length >= num_frames:
        return [range(num_frames)]
    if length < 1 or not 0 <= overlap < length:
        raise ValueError(f"need 1 <= context_length and 0 <= context_overlap < context_length, got {length}, {overlap}")
    starts = list(range(0, num_frames - length + 1, length - overlap))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)  # the last window ends at the last frame
    return [range(s, s + length) for s in starts]


def window_weights(length: int, overlap: int) -> torch.Tensor:
    """Per-frame blend weights of one window: 1 in the middle, ramping down over the `overlap` frames at each edge."""
    index = torch.arange(length, dtype=torch.float64)
    ramp = torch.minimum(index + 1, length - index) / (overlap + 1)
    return ramp.clamp(max=1.0)


class FollowYourPosePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->pose_adapter->unet->vae"
    _optional_components = ["pose_adapter"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: VideoUNet,
        pose_adapter: T2IAdapter | None,
        scheduler: SchedulerMixin,
    ) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              pose_adapter=pose_adapter, scheduler=scheduler)
        self.vae_scale_factor = vae_scale_factor(vae)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.pose_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True,
                                                do_normalize=False)

    @classmethod
    def from_spec(cls, spec: FypModelSpec) -> FollowYourPosePipeline:
        """Build from a model spec: local folders and/or seeded random init (see `build_fyp_components`)."""
        return cls(**build_fyp_components(spec))

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """`1 l d` CLIP embedding, padded to the tokenizer's max length (as SD)."""
        ids = self.tokenizer(prompt, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self._execution_device))[0].to(self.unet.dtype)

    def prepare_skeleton(self, skeleton, height: int, width: int) -> torch.Tensor:
        """`f 3 h w` pose maps in [0, 1] at pixel size (PIL images, or a tensor already in [0, 1])."""
        poses = self.pose_processor.preprocess(skeleton, height=height, width=width)
        return poses.to(self._execution_device, self.unet.dtype)

    @torch.no_grad()
    def encode_skeleton(self, poses: torch.Tensor, scale: float, batch: int = 8) -> list[torch.Tensor]:
        """Adapter features of every frame, `f c h w` per down block (frames are independent: any batching)."""
        chunks = [pose_features(self.pose_adapter, poses[i : i + batch], scale) for i in range(0, len(poses), batch)]
        return [torch.cat(level) for level in zip(*chunks, strict=True)]

    def _step_kwargs(self, generator, eta: float) -> dict:
        params = set(inspect.signature(self.scheduler.step).parameters)
        return {k: v for k, v in (("eta", eta), ("generator", generator)) if k in params}

    def _check(self, skeleton, num_frames, context_length, context_overlap) -> None:
        if skeleton is not None and self.pose_adapter is None:
            raise ValueError("this pipeline has no pose adapter: pass skeleton=None and num_frames=")
        if skeleton is None and not num_frames:
            raise ValueError("num_frames is required without a skeleton")
        if context_length is not None:
            context_windows(max(context_length + 1, 2), context_length, context_overlap)  # validates the pair

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        skeleton: list[PIL.Image.Image] | torch.Tensor | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 12.5,
        negative_prompt: str | None = None,
        pose_scale: float = 1.0,
        pose_on_uncond: bool = True,
        context_length: int | None = None,
        context_overlap: int = 4,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> FollowYourPoseOutput | tuple:
        """Generate one frame per skeleton frame (or `num_frames` frames without a skeleton).

        Args:
            skeleton: pose maps (COCO-17/mmpose or OpenPose style on black) as PIL images or an `f 3 h w` tensor in
                [0, 1]; None: text-to-video.
            context_length / context_overlap: the sliding window (None: all frames at once).
            latents: initial noise `1 c f h/8 w/8` (default: i.i.d. normal per frame, as the original).
            output_type: `pil`, `np` or `latent`.
        """
        self._check(skeleton, num_frames, context_length, context_overlap)
        device = self._execution_device
        default = self.unet.unet.config.sample_size * self.vae_scale_factor
        height, width = height or default, width or default
        poses = None if skeleton is None else self.prepare_skeleton(skeleton, height, width)
        num_frames = num_frames if poses is None else poses.shape[0]
        feats = None if poses is None else self.encode_skeleton(poses, pose_scale)

        cfg = guidance_scale > 1.0
        text = self.encode_prompt(prompt)
        if cfg:
            text = torch.cat([self.encode_prompt(negative_prompt or ""), text])
        shape = (1, self.unet.unet.config.in_channels, num_frames, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must be {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device, self.unet.dtype) * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        windows = context_windows(num_frames, context_length, context_overlap)
        step_kwargs = self._step_kwargs(generator, eta)
        with self.progress_bar(total=len(self.scheduler.timesteps) * len(windows)) as progress:
            for t in self.scheduler.timesteps:
                eps = self._predict(latents, t, text, feats, windows, guidance_scale, pose_on_uncond,
                                    context_overlap, progress)
                latents = self.scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]

        frames = self._decode(latents, output_type)
        self.maybe_free_model_hooks()
        return FollowYourPoseOutput(frames=frames) if return_dict else (frames,)

    def _predict(self, latents, t, text, feats, windows, guidance_scale, pose_on_uncond, overlap, progress):
        """The guided noise prediction `1 c f h w` of the whole clip, window by window."""
        if len(windows) == 1:
            progress.update()
            return self._guided(latents, t, text, feats, guidance_scale, pose_on_uncond)
        total = torch.zeros_like(latents, dtype=torch.float64)
        weight = torch.zeros(latents.shape[2], dtype=torch.float64, device=latents.device)
        for window in windows:
            index = list(window)
            w = window_weights(len(index), overlap).to(latents.device)
            part = None if feats is None else [f[index] for f in feats]
            eps = self._guided(latents[:, :, index], t, text, part, guidance_scale, pose_on_uncond)
            total[:, :, index] += eps.double() * w.view(1, 1, -1, 1, 1)
            weight[index] += w
            progress.update()
        return (total / weight.view(1, 1, -1, 1, 1)).to(latents.dtype)

    def _guided(self, latents, t, text, feats, guidance_scale, pose_on_uncond):
        cfg = guidance_scale > 1.0
        sample = torch.cat([latents, latents]) if cfg else latents
        sample = self.scheduler.scale_model_input(sample, t)
        if feats is not None and cfg:
            # batch (uncond, cond), frames folded `(b f)`: the uncond half gets the pose too unless asked otherwise
            feats = [torch.cat([f if pose_on_uncond else torch.zeros_like(f), f]) for f in feats]
        eps = self.unet(sample, t, text, pose_features=feats)
        if not cfg:
            return eps
        uncond, cond = eps.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def _decode(self, latents: torch.Tensor, output_type: str, batch: int = 8):
        if output_type == "latent":
            return latents
        flat = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config.scaling_factor
        images = [self.vae.decode(flat[i : i + batch].to(self.vae.dtype), return_dict=False)[0]
                  for i in range(0, flat.shape[0], batch)]
        return self.image_processor.postprocess(torch.cat(images), output_type=output_type)
