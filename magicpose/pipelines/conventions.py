"""diffusers' calling conventions shared by the pipelines: prompt / embedding arguments and step-end callbacks.

* batches: a call makes `batch x num_videos_per_prompt` videos, laid out `(b n)` as diffusers does; `batch` is the
  length of whatever batched input is longer than one (prompts, references, ...; the others broadcast), and a list
  of generators holds one generator per video (`video_noise`: video i then equals a one-video call with generator
  i; one generator draws the videos one after another, so the first equals a one-video call's).
* `prompt_embeds` / `negative_prompt_embeds` replace encoding `prompt` / `negative_prompt`; giving a prompt and its
  embeddings together is an error, as in diffusers. Embeddings are `b l d`, one row per prompt.
* `.frames` is a batch of videos for every `output_type`: `np` `b f h w 3`, `pt` `b f 3 h w` (both in [0, 1]),
  `pil` a list of b lists of f images (diffusers' `VideoProcessor.postprocess_video`), so
  `export_to_video(pipe(...).frames[0], "out.mp4")` works.
* `callback_on_step_end(pipe, step_index, timestep, callback_kwargs) -> dict` runs after each denoising step with
  the tensors named in `callback_on_step_end_tensor_inputs` (checked against the pipeline's
  `_callback_tensor_inputs`); what it returns replaces those tensors. diffusers' `PipelineCallback` and
  `MultiPipelineCallbacks` name their own tensor inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

StepEndCallback = Callable[[Any, int, torch.Tensor, dict[str, Any]], dict[str, Any]]


class TextConditioned:
    """What both pipelines share about text and the denoising loop: CLIP prompt encoding, diffusers' `encode_prompt`
    contract, the embeddings' dtype, and the loop state diffusers' callbacks read or change (`guidance_scale`,
    `num_timesteps`, `interrupt`). A mixin for `DiffusionPipeline`s with `text_encoder`, `tokenizer` and (optionally)
    `unet`."""

    # the unconditional text when no negative prompt is given; None: the pipeline's guidance mode decides
    _default_negative_prompt: str | None = ""

    @property
    def num_timesteps(self) -> int | None:
        """The number of denoising steps of the latest call (None before the first)."""
        return getattr(self, "_num_timesteps", None)

    @property
    def guidance_scale(self) -> float | None:
        """The guidance scale in use: read at every step, so a callback may change `_guidance_scale` (as diffusers'
        `SDCFGCutoffCallback` does)."""
        return getattr(self, "_guidance_scale", None)

    @property
    def interrupt(self) -> bool:
        """Set `_interrupt` from a callback to skip the remaining denoising steps."""
        return getattr(self, "_interrupt", False)

    @property
    def _embedding_dtype(self) -> torch.dtype:
        """The dtype prompt embeddings are given in: the UNet's, or the text encoder's in a pipeline without UNet."""
        unet = getattr(self, "unet", None)
        return (unet if unet is not None else self.text_encoder).dtype

    @torch.no_grad()
    def encode_text(self, prompt: str | list[str]) -> torch.Tensor:
        """`b l d` CLIP embeddings of a prompt (b = 1) or a list of b prompts, padded to the tokenizer's max length
        as SD does: what `prompt_embeds` / `negative_prompt_embeds` of `__call__` take in place of prompts. Needs only
        the text encoder and the tokenizer."""
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self._execution_device))[0].to(self._embedding_dtype)

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None = None,
        device: torch.device | None = None,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """diffusers' contract: `(prompt_embeds, negative_prompt_embeds)`, each `(b n) l d` for b prompts and
        `num_videos_per_prompt` n, ready for `__call__(prompt_embeds=..., negative_prompt_embeds=...)`.

        Given embeddings are kept; the negative is encoded from `negative_prompt`, else from the pipeline's default
        (`""` for text CFG), and is None without guidance or where the pipeline's guidance mode picks it
        (MagicPose: the prompt itself in `controlnet_important` mode). Needs only the text encoder and tokenizer.
        """
        if prompt_embeds is None:
            prompt_embeds = self.encode_text("" if prompt is None else prompt)
        if negative_prompt_embeds is None and do_classifier_free_guidance:
            negative = self._default_negative_prompt if negative_prompt is None else negative_prompt
            if negative is not None:
                negative_prompt_embeds = self.encode_text(negative)
        if device is not None:
            prompt_embeds = prompt_embeds.to(device)
        prompt_embeds = prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        if negative_prompt_embeds is not None:
            if device is not None:
                negative_prompt_embeds = negative_prompt_embeds.to(device)
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        return prompt_embeds, negative_prompt_embeds


def check_prompt_inputs(
    prompt: str | list[str] | None,
    negative_prompt: str | list[str] | None,
    prompt_embeds: torch.Tensor | None,
    negative_prompt_embeds: torch.Tensor | None,
) -> None:
    """A prompt or its embeddings and a negative prompt or its embeddings, never both; embeddings `b l d`."""
    if prompt is not None and prompt_embeds is not None:
        raise ValueError("pass prompt or prompt_embeds, not both")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError("pass negative_prompt or negative_prompt_embeds, not both")
    for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
        if embeds is not None and embeds.ndim != 3:
            raise ValueError(f"{name} must be `b l d` (one row per prompt), got {tuple(embeds.shape)}")
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if value is not None and not isinstance(value, str) and not (
            isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f"{name} must be a string or a non-empty list of strings, got {type(value).__name__}")


def count(prompt: str | list[str] | None, embeds: torch.Tensor | None = None) -> int:
    """How many prompts: a list's length, the embeddings' rows, else 1."""
    if embeds is not None:
        return embeds.shape[0]
    return len(prompt) if isinstance(prompt, (list, tuple)) else 1


def batch_size(**counts: int) -> int:
    """The batch of a call: every batched input has 1 item (it broadcasts) or the same number B > 1."""
    sizes = {n for n in counts.values() if n != 1}
    if len(sizes) > 1:
        given = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise ValueError(f"batched inputs must have the same length or length 1, got {given}")
    return sizes.pop() if sizes else 1


def per_video(items: torch.Tensor, batch: int, num_per_item: int) -> torch.Tensor:
    """`n ...` (n = 1 or `batch`) -> `(batch num_per_item) ...`: broadcast, then each item repeated for its videos."""
    if items.shape[0] == batch and num_per_item == 1:
        return items  # as it is: a copy could change its memory layout (and a conv's rounding) for nothing
    if items.shape[0] == 1 and batch > 1:
        items = items.expand(batch, *items.shape[1:])
    return items.repeat_interleave(num_per_item, dim=0)


def check_generators(generator: torch.Generator | list[torch.Generator] | None, videos: int) -> None:
    if isinstance(generator, list) and len(generator) != videos:
        raise ValueError(f"a list of generators needs one per video: {videos} videos "
                         f"(batch x num_videos_per_prompt), got {len(generator)} generators")


def video_noise(
    shape: Sequence[int],
    generator: torch.Generator | list[torch.Generator] | None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Initial noise of `shape[0]` videos (`shape`: `(b n) ...`), drawn video by video: with a list of generators
    (one per video, see `check_generators`) video i comes from generator i, as diffusers' `randn_tensor` does, so it
    equals the noise of a one-video call with that generator; one generator draws the videos one after another from
    itself, so the first video's noise equals a one-video call's with it (a batch of one is exactly that call)."""
    if generator is None or isinstance(generator, list):
        return randn_tensor(tuple(shape), generator=generator, device=device, dtype=dtype)
    return randn_tensor(tuple(shape), generator=[generator] * shape[0], device=device, dtype=dtype)


def scheduler_step_kwargs(scheduler: Any, generator: torch.Generator | list[torch.Generator] | None, eta: float
                ) -> dict[str, Any]:
    """The `eta` / `generator` arguments the scheduler's `step` takes (DDIM takes both, most others neither)."""
    params = set(inspect.signature(scheduler.step).parameters)
    return {k: v for k, v in (("eta", eta), ("generator", generator)) if k in params}


def postprocess_videos(processor: VideoProcessor, pixels: torch.Tensor, output_type: str
                       ) -> list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor:
    """`b f 3 h w` decoded frames in [-1, 1] -> the batch of videos `.frames` holds (see the module docstring)."""
    if output_type not in ("pil", "np", "pt"):
        raise ValueError(f"output_type must be one of 'pil', 'np', 'pt', 'latent', got {output_type!r}")
    return processor.postprocess_video(pixels.transpose(1, 2), output_type=output_type)


def check_embedding_shapes(prompt_embeds: torch.Tensor, negative_prompt_embeds: torch.Tensor | None) -> None:
    """The negative embeddings (given or encoded) must have the shape of the prompt's."""
    if negative_prompt_embeds is not None and negative_prompt_embeds.shape != prompt_embeds.shape:
        raise ValueError(
            "negative_prompt_embeds must have the shape of the prompt's embeddings: "
            f"{tuple(negative_prompt_embeds.shape)} != {tuple(prompt_embeds.shape)}"
        )


def callback_tensor_inputs(
    callback: StepEndCallback | PipelineCallback | MultiPipelineCallbacks | None,
    names: Sequence[str] | None,
    allowed: Sequence[str],
) -> list[str]:
    """The names of the tensors the callback gets (its own for diffusers' callback classes), checked."""
    if isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
        names = callback.tensor_inputs
    names = list(names or ())
    unknown = [k for k in names if k not in allowed]
    if unknown:
        raise ValueError(f"callback_on_step_end_tensor_inputs must be among {list(allowed)}, got unknown {unknown}")
    return names


def step_end(
    pipe: Any,
    callback: StepEndCallback | None,
    names: Sequence[str],
    step_index: int,
    timestep: torch.Tensor,
    **tensors: torch.Tensor | None,
) -> tuple[torch.Tensor | None, ...]:
    """Call `callback` with the named tensors; return `tensors` (in order) with what it returned in their place."""
    if callback is not None:
        outputs = callback(pipe, step_index, timestep, {k: tensors[k] for k in names}) or {}
        tensors = {k: outputs.get(k, v) for k, v in tensors.items()}
    return tuple(tensors.values())
