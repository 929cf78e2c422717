"""MagicPosePipeline: animate reference images with sequences of pose maps (inference only).

Per denoising step the appearance UNet runs once on the references (one batched pass); each reference's bank
serves every frame of its videos and both guidance halves. Frames are denoised in batches of `frames_per_batch`;
each (video, batch of frames) keeps its own copy of the scheduler so that multistep schedulers see one consistent
sample history. With `context_length`, the noise of each video is predicted per overlapping window of frames and
blended per frame (`windows.py`, shared with Follow-Your-Pose); the bank written once per step serves every window.
Without a motion module frames are independent, so windows are frame batches: the result equals the unwindowed one.
With a `motion_adapter` (stage 3; AnimateDiff's temporal layers, see `magicpose.models.motion`) the frames of a
window see each other; windows default to 16 frames overlapping by 4 then, and the bank still serves every frame.

diffusers' calling conventions: a call makes `batch x num_videos_per_prompt` videos (`batch`: several references,
prompts or pose sequences; the others broadcast), `.frames` is a batch of videos for every `output_type`,
`prompt_embeds` / `negative_prompt_embeds` in place of prompts, `reference_latents` in place of reference images,
`cross_attention_kwargs` next to our bank, `callback_on_step_end` once per timestep (after every batch of frames has
stepped, with the latents of all videos) and `num_timesteps`. Any VAE (`AutoencoderKL`, `AutoencoderTiny`) or none
(pixel-space models). `enable_attention_slicing()` and `enable_xformers_memory_efficient_attention()` keep the
appearance branch on: the slicing / backend they choose is taken over by our processors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import ControlNetModel, DiffusionPipeline, MotionAdapter, SchedulerMixin, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor
from einops import rearrange
from transformers import CLIPTextModel, CLIPTokenizer

from magicpose.config.magicpose import ModelSpec
from magicpose.models.attention import AttentionBackend, uniform_backend
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
    batch_size,
    callback_tensor_inputs,
    check_embedding_shapes,
    check_generators,
    check_prompt_inputs,
    per_video,
    postprocess_videos,
    scheduler_step_kwargs,
    step_end,
    video_noise,
)
from magicpose.pipelines.windows import blend_windows, check_window

MOTION_CONTEXT_LENGTH = 16  # default window with a motion module: AnimateDiff's 16-frame clips (overlap: the call's)


@dataclass
class MagicPoseOutput(BaseOutput):
    """`frames`: a batch of videos: `b f h w 3` (`np`) or `b f 3 h w` (`pt`) in [0, 1], a list of b lists of f PIL
    images (`pil`), or `b f c h w` latents (`latent`)."""

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor


class MagicPosePipeline(TextConditioned, DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->appearance_unet->controlnet->unet->vae"
    _optional_components = ["controlnet", "vae", "motion_adapter"]
    _default_negative_prompt = None  # the guidance mode decides: the prompt itself (Image-CFG) or "" (balance)
    # what `callback_on_step_end_tensor_inputs` may name: `latents` `(b n) f c h w`, the embeddings `(b n) l d`
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: torch.nn.Module | None,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        appearance_unet: UNet2DConditionModel,
        controlnet: ControlNetModel | None,
        scheduler: SchedulerMixin,
        motion_adapter: MotionAdapter | None = None,
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
            motion_adapter=motion_adapter,
        )
        self._model: MagicPoseModel | None = None

    # ----- components --------------------------------------------------------------------------------------
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
        vae: torch.nn.Module | None,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin,
    ) -> MagicPosePipeline:
        """A pipeline around a ready `MagicPoseModel` (e.g. a training run's): its networks are shared, not copied,
        and nothing about them (processors, backend, `requires_grad`, train mode) is changed."""
        pipe = cls(vae, text_encoder, tokenizer, model.unet, model.appearance_unet, model.controlnet, scheduler,
                   model.motion_adapter)
        pipe._model = model.prepare()
        return pipe

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent side of the current VAE (1 without one: pixel-space models)."""
        return vae_scale_factor(getattr(self, "vae", None))

    # built for the current VAE, so a VAE swapped after construction leaves no stale scale factor
    @property
    def image_processor(self) -> VideoProcessor:
        """Reference images and decoded frames: [-1, 1] <-> images, at multiples of `vae_scale_factor`."""
        return VideoProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True)

    @property
    def pose_processor(self) -> VaeImageProcessor:
        """Pose maps in [0, 1], as the ControlNet takes them."""
        return VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False)

    @property
    def magicpose_model(self) -> MagicPoseModel:
        """The wiring of unet / appearance_unet / controlnet / motion_adapter (a wrapper: it changes nothing about
        them)."""
        model = self._model
        parts = (self.unet, self.appearance_unet, self.controlnet, getattr(self, "motion_adapter", None))
        if model is None or (model.unet, model.appearance_unet, model.controlnet, model.motion_adapter) != parts:
            model = self._model = MagicPoseModel(*parts)
        return model

    # ----- attention ---------------------------------------------------------------------------------------------
    # The appearance branch lives in our attention processors, which a call puts on the networks for its duration
    # (`MagicPoseModel.reference_attention`), taking over each layer's backend and slice size from what is installed.
    # So diffusers' own methods (`enable_attention_slicing`, `enable_xformers_memory_efficient_attention`,
    # `set_default_attn_processor`, their `disable_*`) work as they do on any pipeline, and never switch the branch off.
    @property
    def attention(self) -> AttentionBackend | None:
        """The attention backend the main UNet runs with (`sdpa` or `xformers`)."""
        return uniform_backend(self.unet)

    def set_attention_backend(self, backend: AttentionBackend) -> None:
        """`sdpa` (PyTorch scaled-dot-product attention, the default) or `xformers` (CUDA only): diffusers'
        `enable_xformers_memory_efficient_attention` / `disable_...`, or, for a prepared model (a training run's),
        its own processors."""
        if backend not in ("sdpa", "xformers"):
            raise ValueError(f"unknown attention backend {backend!r} (choose 'sdpa' or 'xformers')")
        if self.magicpose_model.attention is not None:  # ours are installed for good: change them in place
            self.magicpose_model.prepare(backend)
        elif backend == "xformers":
            self.enable_xformers_memory_efficient_attention()
        elif self.attention == "xformers":
            self.disable_xformers_memory_efficient_attention()

    # ----- inputs --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference_image(self, image: PipelineImageInput, height: int, width: int) -> torch.Tensor:
        """`r c h w` latents of r reference images (posterior mode: deterministic), scaled for the UNet.

        What `reference_latents` of `__call__` takes in place of reference images (`height` / `width` in pixels).
        """
        pixels = self.image_processor.preprocess(image, height=height, width=width)
        if self.vae is None:
            return pixels.to(self._execution_device, self.unet.dtype)
        pixels = pixels.to(self._execution_device, self.vae.dtype)
        latents = retrieve_latents(self.vae.encode(pixels), sample_mode="argmax")
        return latents * self.vae.config.scaling_factor

    def prepare_poses(self, pose_images: PipelineImageInput, height: int, width: int) -> torch.Tensor:
        """`f 3 h w` pose maps in [0, 1] at pixel size (one sequence)."""
        poses = self.pose_processor.preprocess(pose_images, height=height, width=width)
        return poses.to(self._execution_device, self.unet.dtype)

    def _pose_sequences(self, pose_images: Any, height: int | None, width: int | None
                        ) -> tuple[list[torch.Tensor], int, int]:
        """One sequence, or a list of sequences of equal length (one per batch item) -> `f 3 h w` tensors."""
        sequences = pose_images if _is_sequence_list(pose_images) else [pose_images]
        first = _first_image(sequences[0])
        height, width = self.pose_processor.get_default_height_width(first, height, width)
        poses = [self.prepare_poses(seq, height, width) for seq in sequences]
        if len({p.shape[0] for p in poses}) > 1:
            raise ValueError(f"pose sequences of one call must have the same length, got {[p.shape[0] for p in poses]}")
        return poses, height, width

    def _check_inputs(self, pose_images, guidance_mode: str, frames_per_batch: int, prompt, negative_prompt,
                      prompt_embeds, negative_prompt_embeds, reference_image, reference_latents,
                      num_videos_per_prompt: int, context_length: int | None = None, context_overlap: int = 4) -> None:
        check_prompt_inputs(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        check_window(context_length, context_overlap)
        if reference_image is not None and reference_latents is not None:
            raise ValueError("pass reference_image or reference_latents, not both")
        if guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {GUIDANCE_MODES}, got {guidance_mode!r}")
        if frames_per_batch < 1:
            raise ValueError(f"frames_per_batch must be >= 1, got {frames_per_batch}")
        if num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}")
        if pose_images is None and self.controlnet is not None:
            raise ValueError("pose_images is required")
        if pose_images is not None and self.controlnet is None:
            raise ValueError("this pipeline has no pose ControlNet: pass pose_images=None and num_frames=")

    def _prompt_embeddings(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, guidance_mode: str
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, uncond text), each `p l d` (one row per prompt): given embeddings, else encoded prompts.

        The unconditional text is the negative prompt's; without one, `balance` uses the empty prompt and
        `controlnet_important` the prompt itself (as the original did).
        """
        device, dtype = self._execution_device, self._embedding_dtype
        if prompt_embeds is None:
            text = self.encode_text("" if prompt is None else prompt)
        else:
            text = prompt_embeds.to(device=device, dtype=dtype)
        if negative_prompt_embeds is not None:
            uncond_text = negative_prompt_embeds.to(device=device, dtype=dtype)
        elif guidance_mode == "balance":
            uncond_text = self.encode_text(negative_prompt or "")
        else:
            uncond_text = text if negative_prompt is None else self.encode_text(negative_prompt)
        if uncond_text.shape[0] != text.shape[0]:  # one negative for several prompts, or the other way round
            rows = batch_size(prompts=text.shape[0], negative_prompts=uncond_text.shape[0])
            text, uncond_text = per_video(text, rows, 1), per_video(uncond_text, rows, 1)
        check_embedding_shapes(text, uncond_text)
        return text, uncond_text

    def _references(self, reference_image, reference_latents, height: int, width: int) -> torch.Tensor | None:
        """`r c h w` reference latents (given, or encoded from the images), checked against the frame size."""
        if reference_latents is None:
            return None if reference_image is None else self.encode_reference_image(reference_image, height, width)
        shape = (self.appearance_unet.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        if reference_latents.ndim != 4 or tuple(reference_latents.shape[1:]) != shape:
            raise ValueError(f"reference_latents must be (r, {', '.join(map(str, shape))}) (as encode_reference_image "
                             f"returns for this size), got {tuple(reference_latents.shape)}")
        return reference_latents.to(device=self._execution_device, dtype=self.appearance_unet.dtype)

    def _initial_latents(self, videos: int, num_frames: int, height: int, width: int, shared_noise: bool,
                         generator: torch.Generator | list[torch.Generator] | None, latents: torch.Tensor | None
                         ) -> torch.Tensor:
        """`v f c h w` initial latents: one noise per video shared by its frames, or one per frame."""
        frame_shape = (self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        shape = (videos, 1 if shared_noise else num_frames, *frame_shape)
        if latents is None:
            check_generators(generator, videos)
            latents = video_noise(shape, generator, self._execution_device, self.unet.dtype)
        else:
            if latents.ndim == 4 and videos == 1:  # one video: `1 c h w` or `f c h w`
                latents = latents.unsqueeze(0)
            if latents.ndim != 5 or latents.shape[0] != videos or latents.shape[1] not in (1, num_frames) \
                    or tuple(latents.shape[2:]) != frame_shape:
                raise ValueError(f"latents must be ({videos}, 1 or {num_frames}, {', '.join(map(str, frame_shape))}) "
                                 f"(one video: also without the first axis), got {tuple(latents.shape)}")
        latents = latents.to(self._execution_device, self.unet.dtype) * self.scheduler.init_noise_sigma
        return latents.expand(-1, num_frames, -1, -1, -1).clone()

    # ----- the call ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        reference_image: PipelineImageInput | None = None,
        pose_images: PipelineImageInput | list[PipelineImageInput] | None = None,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
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
        num_videos_per_prompt: int = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
        context_length: int | None = None,
        context_overlap: int = 4,
    ) -> MagicPoseOutput | tuple:
        """Generate videos of reference images following pose sequences: one frame per pose map.

        A call makes `batch x num_videos_per_prompt` videos, laid out `(batch n)`. `batch` is the number of
        references, prompts or pose sequences given (those with more than one item must agree; a single one serves
        every video). Video `i` of a batch made with a list of generators equals the single-video call with
        generator `i`.

        Args:
            reference_image: the person to animate (an image), or one per batch item (a list, or an `r 3 h w`
                tensor); `None` (and no `reference_latents`) switches the appearance branch off.
            pose_images: one sequence of OpenPose maps (PIL images, a list of them, or an `f 3 h w` tensor in
                [0, 1]) for every video, or a list of sequences of equal length, one per batch item.
            prompt: the text, or a list of texts, one per batch item (default: the empty prompt). Not together
                with `prompt_embeds`.
            negative_prompt: the text (or texts) of the unconditional half (default: the prompt itself in
                `controlnet_important` mode, the empty prompt in `balance` mode). Not together with
                `negative_prompt_embeds`.
            guidance_mode: `controlnet_important` (Image-CFG: guide on reference + pose against the plain UNet) or
                `balance` (text CFG with reference and pose in both halves).
            frames_per_batch: frames denoised together; results do not depend on it.
            num_frames: only for a pipeline without ControlNet; otherwise the number of pose maps.
            shared_noise: one initial noise per video shared by its frames (the original's choice, steadier
                video) or one per frame.
            generator: one generator, or a list with one per video.
            latents: initial noise `v (1 or f) c h w` for v videos (one video: also `1 c h w` or `f c h w`).
            output_type: `pil`, `np`, `pt` or `latent`; `.frames` is a batch of videos in each (see
                `MagicPoseOutput`), so `export_to_video(pipe(...).frames[0], "out.mp4")` writes the first.
            prompt_embeds: `b l d` text embeddings (one row per prompt) used in place of encoding `prompt`, e.g.
                from `encode_prompt`; the same embeddings give exactly the prompt's frames.
            negative_prompt_embeds: `b l d` embeddings used in place of encoding `negative_prompt`.
            reference_latents: `r c h w` latents of the references, already scaled by the VAE's scaling factor
                (`h = height // vae_scale_factor`), used in place of `reference_image`; exactly what
                `encode_reference_image(reference_image, height, width)` returns, with the same frames as a result.
            callback_on_step_end: called once per denoising step, after every batch of frames has stepped, as
                `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)`; `callback_kwargs` holds the
                tensors named in `callback_on_step_end_tensor_inputs` (`latents`: `v f c h w`, every frame of every
                video). A dict it returns may replace them (same shapes) for the following steps and the output.
                A diffusers `PipelineCallback` / `MultiPipelineCallbacks` names its own tensor inputs.
            callback_on_step_end_tensor_inputs: names from `MagicPosePipeline._callback_tensor_inputs`.
            num_videos_per_prompt: videos per batch item, each from its own noise.
            cross_attention_kwargs: passed to the attention processors of both UNets next to the reference bank
                (as diffusers passes them to a UNet's; e.g. a LoRA `scale`).
            context_length / context_overlap: the sliding window of frames (None: batches of `frames_per_batch`;
                with a motion module: 16 frames, overlap 4): each window of `context_length` frames is one pass,
                consecutive windows share `context_overlap` frames and their predictions are blended per frame.
                Without a motion module the frames do not interact, so this equals the unwindowed result (to float
                rounding) and a window is a frame batch; with one, a window's frames see each other.
        """
        callback_names = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        self._check_inputs(pose_images, guidance_mode, frames_per_batch, prompt, negative_prompt, prompt_embeds,
                           negative_prompt_embeds, reference_image, reference_latents, num_videos_per_prompt,
                           context_length, context_overlap)
        device = self._execution_device
        if pose_images is not None:
            poses, height, width = self._pose_sequences(pose_images, height, width)
            num_frames = poses[0].shape[0]
        else:
            poses = None
            default = self.unet.config.sample_size * self.vae_scale_factor
            height, width = height or default, width or default
            if not num_frames:
                raise ValueError("num_frames is required without pose images")

        model = self.magicpose_model
        if model.temporal:
            context_length, context_overlap = self._motion_window(context_length, context_overlap)
        text, uncond_text = self._prompt_embeddings(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds,
                                                    guidance_mode)
        references = self._references(reference_image, reference_latents, height, width)
        batch = batch_size(prompts=text.shape[0], references=1 if references is None else references.shape[0],
                           pose_sequences=1 if poses is None else len(poses))
        per = num_videos_per_prompt
        videos = batch * per
        latents = self._initial_latents(videos, num_frames, height, width, shared_noise, generator, latents)
        # the appearance UNet runs on one (reference, prompt) pair per batch item, or once when they are shared
        bank_units = batch if references is not None and (references.shape[0] > 1 or text.shape[0] > 1) else 1
        if references is not None:
            references = per_video(references, bank_units, 1)
        bank_text = per_video(text, bank_units, 1)
        text, uncond_text = per_video(text, batch, per), per_video(uncond_text, batch, per)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps, self._guidance_scale, self._interrupt = len(timesteps), guidance_scale, False
        chunks = [slice(i, i + frames_per_batch) for i in range(0, num_frames, frames_per_batch)]
        schedulers = [[copy.deepcopy(self.scheduler) for _ in chunks] for _ in range(videos)]
        step_kwargs = scheduler_step_kwargs(self.scheduler, generator, eta)

        with self.progress_bar(total=len(timesteps) * videos * len(chunks)) as progress, model.reference_attention():
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                bank = None
                if references is not None:
                    bank = model.encode_reference(references, t, bank_text, cross_attention_kwargs)
                stepped = torch.empty_like(latents)  # a new tensor per step: callbacks may keep the old one
                for v in range(videos):
                    unit_bank = None if bank is None else (bank if bank_units == 1 else bank.select(v // per))
                    video_poses = None if poses is None else poses[0 if len(poses) == 1 else v // per]
                    inputs = GuidanceInputs(text[v : v + 1], uncond_text[v : v + 1], video_poses, unit_bank,
                                            cross_attention_kwargs)
                    sample = torch.cat([scheduler.scale_model_input(latents[v, frames], t)
                                        for frames, scheduler in zip(chunks, schedulers[v])])
                    eps = self._video_noise(model, sample, t, inputs, chunks, (context_length, context_overlap),
                                            (self.guidance_scale, guidance_mode, controlnet_conditioning_scale))
                    for frames, scheduler in zip(chunks, schedulers[v]):
                        out = scheduler.step(eps[frames], t, latents[v, frames], **step_kwargs, return_dict=False)[0]
                        stepped[v, frames] = out
                        progress.update()
                latents = stepped
                latents, text, uncond_text = step_end(
                    self, callback_on_step_end, callback_names, i, t,
                    latents=latents, prompt_embeds=text, negative_prompt_embeds=uncond_text,
                )

        frames_out = latents if output_type == "latent" else self._decode(latents, output_type, frames_per_batch)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames_out,)
        return MagicPoseOutput(frames=frames_out)

    def _motion_window(self, length: int | None, overlap: int) -> tuple[int, int]:
        """The window with a motion module: the given one (at most the module's frame positions), else
        `MOTION_CONTEXT_LENGTH` frames (a shorter video is one window)."""
        if type(getattr(self.unet, "_hf_hook", None)).__name__ == "CpuOffload":
            # model offload moves the UNet to the device when *its* forward runs; the motion UNet, which shares its
            # modules, calls them directly, so they would stay on the CPU
            raise ValueError("enable_model_cpu_offload() does not cover the motion module yet: use "
                             "enable_sequential_cpu_offload() or keep the pipeline on the device")
        limit = self.motion_adapter.config.motion_max_seq_length
        if length is None:
            length = min(MOTION_CONTEXT_LENGTH, limit)
            overlap = min(overlap, length - 1)
        if length > limit:
            raise ValueError(f"context_length {length} exceeds the motion module's {limit} frame positions")
        return length, overlap

    @staticmethod
    def _video_noise(model: MagicPoseModel, sample: torch.Tensor, t: torch.Tensor, inputs: GuidanceInputs,
                     chunks: list[slice], window: tuple[int | None, int], guidance: tuple[float, str, float]
                     ) -> torch.Tensor:
        """The guided noise `f c h w` of one video's scaled latents `sample`: one pass per batch of frames
        (`chunks`), or, with a window length or a motion module, per context window, blended per frame. `inputs` covers every frame;
        its reference bank (written once this step) serves every pass."""

        def predict(frames: slice | range) -> torch.Tensor:
            part = slice(frames.start, frames.stop)
            poses = None if inputs.pose_images is None else inputs.pose_images[part]
            return guided_prediction(model, sample[part], t, replace(inputs, pose_images=poses), *guidance)

        if window[0] is None and not model.temporal:
            return torch.cat([predict(frames) for frames in chunks])
        return blend_windows(predict, sample.shape[0], *window, dim=0)

    def decode_latents(self, latents: torch.Tensor, frames_per_batch: int = 8) -> torch.Tensor:
        """`v f c h w` latents -> `v f 3 H W` pixels in [-1, 1], `frames_per_batch` frames per VAE call."""
        flat = rearrange(latents, "v f c h w -> (v f) c h w")
        if self.vae is None:
            pixels = flat.clamp(-1, 1)
        else:
            pixels = torch.cat([
                self.vae.decode(flat[i : i + frames_per_batch] / self.vae.config.scaling_factor, return_dict=False)[0]
                for i in range(0, flat.shape[0], frames_per_batch)
            ])  # fmt: skip
        return rearrange(pixels, "(v f) c h w -> v f c h w", v=latents.shape[0])

    def _decode(self, latents: torch.Tensor, output_type: str, frames_per_batch: int):
        return postprocess_videos(self.image_processor, self.decode_latents(latents, frames_per_batch), output_type)


def _is_sequence_list(pose_images: Any) -> bool:
    """A list of pose sequences (one per batch item), rather than one sequence of pose maps."""
    if isinstance(pose_images, torch.Tensor):
        return pose_images.ndim == 5
    if isinstance(pose_images, np.ndarray):
        return pose_images.ndim == 5
    return isinstance(pose_images, (list, tuple)) and bool(pose_images) and isinstance(
        pose_images[0], (list, tuple, torch.Tensor, np.ndarray)) and not (
        isinstance(pose_images[0], (torch.Tensor, np.ndarray)) and pose_images[0].ndim == 3)


def _first_image(images: PipelineImageInput):
    if isinstance(images, list):
        return images[0]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return images[:1]
    return images
