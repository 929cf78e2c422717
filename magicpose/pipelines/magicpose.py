"""MagicPosePipeline: animate a reference image with a sequence of pose maps (inference only).

Per denoising step the appearance UNet runs once on the reference; its bank serves every frame and both guidance
halves. Frames are denoised in batches of `frames_per_batch`; each batch keeps its own copy of the scheduler so that
multistep schedulers see one consistent sample history.

diffusers' calling conventions: `prompt_embeds` / `negative_prompt_embeds` in place of prompts, `reference_latents`
in place of a reference image, `callback_on_step_end` once per timestep (after every batch of frames has stepped,
with the latents of all frames) and `num_timesteps`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from magicpose.config.magicpose import ModelSpec
from magicpose.models.attention import AttentionBackend
from magicpose.models.components import build_components, vae_scale_factor
from magicpose.models.magicpose import (
    GUIDANCE_MODES,
    GuidanceInputs,
    GuidanceMode,
    MagicPoseModel,
    guided_prediction,
)
from magicpose.pipelines.conventions import (
    StepEndCallback,
    TextConditioned,
    callback_tensor_inputs,
    check_embedding_shapes,
    check_prompt_inputs,
    step_end,
)


@dataclass
class MagicPoseOutput(BaseOutput):
    """`frames`: a list of PIL images, a `f h w 3` float array in [0, 1] (`np`), or `f c h w` latents (`latent`)."""

    frames: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class MagicPosePipeline(TextConditioned, DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->appearance_unet->controlnet->unet->vae"
    _optional_components = ["controlnet", "vae"]
    # what `callback_on_step_end_tensor_inputs` may name; `prompt_embeds` / `negative_prompt_embeds` are `1 l d`
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL | None,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        appearance_unet: UNet2DConditionModel,
        controlnet: ControlNetModel | None,
        scheduler: SchedulerMixin,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            appearance_unet=appearance_unet,
            controlnet=controlnet,
            scheduler=scheduler,
        )
        # Without a VAE the UNets work on RGB pixels in [-1, 1] (pixel-space models such as the toy world's).
        self.vae_scale_factor = vae_scale_factor(vae)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True)
        self.pose_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        self._model = MagicPoseModel(unet, appearance_unet, controlnet).prepare()  # only what is missing

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> MagicPosePipeline:
        """Build from a model spec: local pretrained folders and/or seeded random init (see `build_components`)."""
        pipe = cls(**build_components(spec))
        pipe.set_attention_backend(spec.attention)
        return pipe

    @classmethod
    def from_model(
        cls,
        model: MagicPoseModel,
        vae: AutoencoderKL | None,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin,
    ) -> MagicPosePipeline:
        """A pipeline around a ready `MagicPoseModel` (e.g. a training run's): its networks are shared, not copied,
        and nothing about them (processors, backend, `requires_grad`, train mode) is changed."""
        pipe = cls(vae, text_encoder, tokenizer, model.unet, model.appearance_unet, model.controlnet, scheduler)
        pipe._model = model.prepare()
        return pipe

    @property
    def attention(self) -> AttentionBackend | None:
        """The attention backend of the reference processors (`sdpa` or `xformers`)."""
        return self.magicpose_model.attention

    def set_attention_backend(self, backend: AttentionBackend) -> None:
        """`sdpa` (PyTorch scaled-dot-product attention, the default) or `xformers` (CUDA only)."""
        if backend not in ("sdpa", "xformers"):
            raise ValueError(f"unknown attention backend {backend!r} (choose 'sdpa' or 'xformers')")
        self.magicpose_model.prepare(backend)

    @property
    def magicpose_model(self) -> MagicPoseModel:
        """The wiring of unet / appearance_unet / controlnet, re-wrapped (not reconfigured) if a component was swapped."""
        model = self._model
        parts = (self.unet, self.appearance_unet, self.controlnet)
        if model is None or (model.unet, model.appearance_unet, model.controlnet) != parts:
            model = self._model = MagicPoseModel(*parts).prepare()
        return model

    @torch.no_grad()
    def encode_reference_image(self, image: PipelineImageInput, height: int, width: int) -> torch.Tensor:
        """`1 c h w` latent of the reference (posterior mode: deterministic), scaled for the UNet.

        What `reference_latents` of `__call__` takes in place of a reference image (`height` / `width` in pixels).
        """
        pixels = self.image_processor.preprocess(image, height=height, width=width)
        if self.vae is None:
            return pixels.to(self._execution_device, self.unet.dtype)
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        return self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor

    def prepare_poses(self, pose_images: PipelineImageInput, height: int, width: int) -> torch.Tensor:
        """`f 3 h w` pose maps in [0, 1] at pixel size."""
        poses = self.pose_processor.preprocess(pose_images, height=height, width=width)
        return poses.to(self._execution_device, self.unet.dtype)

    def _check_inputs(
        self,
        pose_images,
        guidance_mode: str,
        frames_per_batch: int,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        reference_image: PipelineImageInput | None = None,
        reference_latents: torch.Tensor | None = None,
    ) -> None:
        check_prompt_inputs(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        if reference_image is not None and reference_latents is not None:
            raise ValueError("pass reference_image or reference_latents, not both")
        if guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {GUIDANCE_MODES}, got {guidance_mode!r}")
        if frames_per_batch < 1:
            raise ValueError(f"frames_per_batch must be >= 1, got {frames_per_batch}")
        if pose_images is None and self.controlnet is not None:
            raise ValueError("pose_images is required")
        if pose_images is not None and self.controlnet is None:
            raise ValueError("this pipeline has no pose ControlNet: pass pose_images=None and num_frames=")

    def _prompt_embeddings(
        self,
        prompt: str | None,
        negative_prompt: str | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        guidance_mode: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, uncond text), each `1 l d`: given embeddings, else encoded prompts.

        The unconditional text is the negative prompt's; without one, `balance` uses the empty prompt and
        `controlnet_important` the prompt itself (as the original did).
        """
        device, dtype = self._execution_device, self._embedding_dtype
        if prompt_embeds is None:
            text = self.encode_prompt("" if prompt is None else prompt)
        else:
            text = prompt_embeds.to(device=device, dtype=dtype)
        if negative_prompt_embeds is not None:
            uncond_text = negative_prompt_embeds.to(device=device, dtype=dtype)
        elif guidance_mode == "balance":
            uncond_text = self.encode_prompt(negative_prompt or "")
        else:
            uncond_text = text if negative_prompt is None else self.encode_prompt(negative_prompt)
        check_embedding_shapes(text, uncond_text)
        return text, uncond_text

    def _reference_latents(self, reference_latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Given reference latents, checked against the size of the frames and put on the execution device."""
        shape = (1, self.appearance_unet.config.in_channels)
        shape += (height // self.vae_scale_factor, width // self.vae_scale_factor)
        if tuple(reference_latents.shape) != shape:
            raise ValueError(f"reference_latents must be {shape} (as encode_reference_image returns for this "
                             f"size), got {tuple(reference_latents.shape)}")
        return reference_latents.to(device=self._execution_device, dtype=self.appearance_unet.dtype)

    def _initial_latents(
        self,
        num_frames: int,
        height: int,
        width: int,
        shared_noise: bool,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
    ) -> torch.Tensor:
        shape = (1 if shared_noise else num_frames, self.unet.config.in_channels)
        shape += (height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        elif latents.shape[0] not in (1, num_frames) or latents.shape[1:] != shape[1:]:
            raise ValueError(f"latents must be (1 or {num_frames}, {', '.join(map(str, shape[1:]))}), got {tuple(latents.shape)}")
        latents = latents.to(self._execution_device, self.unet.dtype) * self.scheduler.init_noise_sigma
        return latents.expand(num_frames, -1, -1, -1).clone()

    def _step_kwargs(self, scheduler: SchedulerMixin, generator, eta: float) -> dict:
        params = set(inspect.signature(scheduler.step).parameters)
        kwargs = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    @torch.no_grad()
    def __call__(
        self,
        reference_image: PipelineImageInput | None = None,
        pose_images: PipelineImageInput | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.0,
        guidance_mode: GuidanceMode = "controlnet_important",
        controlnet_conditioning_scale: float = 1.0,
        frames_per_batch: int = 8,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        shared_noise: bool = True,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        reference_latents: torch.Tensor | None = None,
        callback_on_step_end: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> MagicPoseOutput | tuple:
        """Generate one frame per pose map, all in the appearance of `reference_image`.

        Args:
            reference_image: the person to animate; `None` (and no `reference_latents`) switches the appearance
                branch off.
            pose_images: OpenPose maps (PIL images, a list of them, or a `f 3 h w` tensor in [0, 1]).
            prompt: the text (default: the empty prompt). Not together with `prompt_embeds`.
            negative_prompt: the text of the unconditional half (default: the prompt itself in
                `controlnet_important` mode, the empty prompt in `balance` mode). Not together with
                `negative_prompt_embeds`.
            guidance_mode: `controlnet_important` (Image-CFG: guide on reference + pose against the plain UNet) or
                `balance` (text CFG with reference and pose in both halves).
            frames_per_batch: frames denoised together; results do not depend on it.
            shared_noise: one initial noise for all frames (the original's choice, steadier video) or one per frame.
            num_frames: only for a pipeline without ControlNet; otherwise the number of pose maps.
            latents: initial noise, `1 c h w` (shared by all frames) or `f c h w`.
            output_type: `pil`, `np` or `latent`.
            prompt_embeds: `b l d` text embeddings used in place of encoding `prompt` (b = 1: one prompt per
                call), e.g. from `encode_prompt`; the same embeddings give exactly the prompt's frames.
            negative_prompt_embeds: `b l d` embeddings used in place of encoding `negative_prompt` (same shape as
                the prompt's embeddings); the defaults without it are those of `negative_prompt`.
            reference_latents: `1 c h w` latents of the reference, already scaled by the VAE's scaling factor
                (`h = height // vae_scale_factor`), used in place of `reference_image`; exactly what
                `encode_reference_image(reference_image, height, width)` returns, with the same frames as a result.
                Not together with `reference_image`.
            callback_on_step_end: called once per denoising step, after every batch of frames has stepped, as
                `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`; `callback_kwargs` holds the
                tensors named in `callback_on_step_end_tensor_inputs` (`latents`: `f c h w`, all frames). A dict it
                returns may replace them (`latents` of the same shape) for the following steps and the output.
                A diffusers `PipelineCallback` / `MultiPipelineCallbacks` names its own tensor inputs.
            callback_on_step_end_tensor_inputs: names from `MagicPosePipeline._callback_tensor_inputs`
                (`latents`, `prompt_embeds`, `negative_prompt_embeds`) passed to the callback.
        """
        callback_names = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        self._check_inputs(
            pose_images, guidance_mode, frames_per_batch, prompt, negative_prompt, prompt_embeds,
            negative_prompt_embeds, reference_image, reference_latents,
        )
        device = self._execution_device
        if pose_images is not None:
            height, width = self.pose_processor.get_default_height_width(_first_image(pose_images), height, width)
            poses = self.prepare_poses(pose_images, height, width)
            num_frames = poses.shape[0]
        else:
            poses = None
            default = self.unet.config.sample_size * self.vae_scale_factor
            height, width = height or default, width or default
            if not num_frames:
                raise ValueError("num_frames is required without pose images")

        model = self.magicpose_model
        prompt_embeds, negative_prompt_embeds = self._prompt_embeddings(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, guidance_mode
        )
        reference = None
        if reference_latents is not None:
            reference = self._reference_latents(reference_latents, height, width)
        elif reference_image is not None:
            reference = self.encode_reference_image(reference_image, height, width)

        latents = self._initial_latents(num_frames, height, width, shared_noise, generator, latents)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        batches = [slice(i, i + frames_per_batch) for i in range(0, num_frames, frames_per_batch)]
        schedulers = [copy.deepcopy(self.scheduler) for _ in batches]
        step_kwargs = self._step_kwargs(self.scheduler, generator, eta)

        with self.progress_bar(total=len(timesteps) * len(batches)) as progress:
            for i, t in enumerate(timesteps):
                bank = None if reference is None else model.encode_reference(reference, t, prompt_embeds)
                stepped = torch.empty_like(latents)  # a new tensor per step: callbacks may keep the old one
                for frames, scheduler in zip(batches, schedulers):
                    pose = None if poses is None else poses[frames]
                    inputs = GuidanceInputs(prompt_embeds, negative_prompt_embeds, pose, bank)
                    sample = scheduler.scale_model_input(latents[frames], t)
                    eps = guided_prediction(
                        model, sample, t, inputs, guidance_scale, guidance_mode, controlnet_conditioning_scale
                    )
                    stepped[frames] = scheduler.step(eps, t, latents[frames], **step_kwargs, return_dict=False)[0]
                    progress.update()
                latents = stepped

                latents, prompt_embeds, negative_prompt_embeds = step_end(
                    self, callback_on_step_end, callback_names, i, t,
                    latents=latents, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                )

        frames_out = self._decode(latents, output_type, frames_per_batch)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames_out,)
        return MagicPoseOutput(frames=frames_out)

    def _decode(self, latents: torch.Tensor, output_type: str, frames_per_batch: int):
        if output_type == "latent":
            return latents
        if self.vae is None:
            return self.image_processor.postprocess(latents.clamp(-1, 1), output_type=output_type)
        images = [
            self.vae.decode(latents[i : i + frames_per_batch] / self.vae.config.scaling_factor, return_dict=False)[0]
            for i in range(0, latents.shape[0], frames_per_batch)
        ]
        return self.image_processor.postprocess(torch.cat(images), output_type=output_type)


def _first_image(images: PipelineImageInput):
    if isinstance(images, list):
        return images[0]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return images[:1]
    return images
