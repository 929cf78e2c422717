"""diffusers' calling conventions shared by the pipelines: prompt / embedding arguments and step-end callbacks.

* `prompt_embeds` / `negative_prompt_embeds` replace encoding `prompt` / `negative_prompt`; giving a prompt and its
  embeddings together is an error, as in diffusers. Embeddings are `b l d` (b = 1 today: one prompt per call).
* `callback_on_step_end(pipe, step_index, timestep, callback_kwargs) -> dict` runs after each denoising step with
  the tensors named in `callback_on_step_end_tensor_inputs` (checked against the pipeline's
  `_callback_tensor_inputs`); what it returns replaces those tensors. diffusers' `PipelineCallback` and
  `MultiPipelineCallbacks` name their own tensor inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

StepEndCallback = Callable[[Any, int, torch.Tensor, dict[str, Any]], dict[str, Any]]


class TextConditioned:
    """What both pipelines share about text: CLIP prompt encoding (the same embeddings `prompt_embeds` takes), the
    embeddings' dtype, and diffusers' `num_timesteps`. A mixin for `DiffusionPipeline`s with `text_encoder`,
    `tokenizer` and (optionally) `unet`."""

    @property
    def num_timesteps(self) -> int | None:
        """The number of denoising steps of the latest call (None before the first)."""
        return getattr(self, "_num_timesteps", None)

    @property
    def _embedding_dtype(self) -> torch.dtype:
        """The dtype prompt embeddings are given in: the UNet's, or the text encoder's in a pipeline without UNet."""
        unet = getattr(self, "unet", None)
        return (unet if unet is not None else self.text_encoder).dtype

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """`1 l d` CLIP embedding of one prompt (padded to the tokenizer's max length, as SD does): what
        `prompt_embeds` / `negative_prompt_embeds` of `__call__` take in place of a prompt."""
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self._execution_device))[0].to(self._embedding_dtype)


def check_prompt_inputs(
    prompt: str | None,
    negative_prompt: str | None,
    prompt_embeds: torch.Tensor | None,
    negative_prompt_embeds: torch.Tensor | None,
) -> None:
    """A prompt or its embeddings and a negative prompt or its embeddings, never both; embeddings `1 l d`."""
    if prompt is not None and prompt_embeds is not None:
        raise ValueError("pass prompt or prompt_embeds, not both")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError("pass negative_prompt or negative_prompt_embeds, not both")
    for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
        if embeds is not None and (embeds.ndim != 3 or embeds.shape[0] != 1):
            raise ValueError(f"{name} must be `b l d` with b = 1 (one prompt per call), got {tuple(embeds.shape)}")


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
