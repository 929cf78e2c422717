"""MagicPoseModel: frozen SD UNet + appearance UNet (reference bank) + pose ControlNet, and Image-CFG.

Shapes (einops notation): latents `b c h w`, text embeddings `b l d`, pose maps `b 3 H W` in [0, 1] at pixel size
(H = h * vae_scale_factor). A batch of B targets may share R references (R divides B, layout `(n r)`, see
`magicpose.models.attention`).

With a motion adapter (stage 3) the main UNet is the `UNetMotionModel` of the frozen UNet and the adapter (modules
shared, `magicpose.models.motion`): the batch is then videos of `num_frames` consecutive frames, `(b f) c h w`, and
the reference bank, the pose residuals and the text stay per frame. Without one nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import ControlNetModel, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from torch import nn

from magicpose.models.attention import (
    BANK_KWARG,
    AttentionBackend,
    ReferenceBank,
    ensure_processors,
    installed_backend,
)
from magicpose.models.motion import denoise_frames, motion_unet

GuidanceMode = Literal["controlnet_important", "balance"]
GUIDANCE_MODES: tuple[str, ...] = ("controlnet_important", "balance")
PoseResiduals = tuple[list[torch.Tensor], torch.Tensor]


class MagicPoseModel(nn.Module):
    """Predicts the noise (or v, or x0) of target latents given a reference latent, a pose map and text.

    A wrapper that stores the networks and changes nothing about them: `prepare()` installs the reference
    processors (for good, as training does, or for one call: `reference_attention()`, as the pipeline does), and
    whoever trains decides what is frozen. A frozen main UNet
    (MagicPose keeps the pretrained SD UNet frozen) stays in eval mode whatever `train()` is called with.
    An optional `motion_adapter` adds the temporal layers (see the module docstring).
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        appearance_unet: UNet2DConditionModel,
        controlnet: ControlNetModel | None = None,
        motion_adapter: MotionAdapter | None = None,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.appearance_unet = appearance_unet
        self.controlnet = controlnet
        self.motion_adapter = motion_adapter
        # (unet, adapter, their UNetMotionModel): a plain tuple, so the motion model, whose parameters are the UNet's
        # and the adapter's, is not registered a second time
        self._motion_cache: tuple[Any, Any, UNetMotionModel] | None = None

    @property
    def temporal(self) -> bool:
        """Whether frames of a video see each other (a motion adapter is present)."""
        return self.motion_adapter is not None

    @property
    def main_unet(self) -> UNet2DConditionModel | UNetMotionModel:
        """The network that denoises: the UNet, or with a motion adapter their shared `UNetMotionModel`."""
        if self.motion_adapter is None:
            return self.unet
        cache = self._motion_cache
        if cache is None or cache[0] is not self.unet or cache[1] is not self.motion_adapter:
            cache = self._motion_cache = (self.unet, self.motion_adapter, motion_unet(self.unet, self.motion_adapter))
        return cache[2]

    def prepare(self, attention: AttentionBackend | None = None) -> MagicPoseModel:
        """Install the reference read / write processors (and bank-tolerant ones on the ControlNet).

        `attention` (`sdpa` or `xformers`) reinstalls them with that backend; `None` only installs what is missing
        and keeps the backend already there, so wrapping networks that were prepared elsewhere (a training run's,
        shared with a sampling pipeline) never resets their configuration.
        """
        backend = attention or self.attention
        ensure_processors(self.main_unet, "reader", backend)
        ensure_processors(self.appearance_unet, "writer", backend)
        if self.controlnet is not None:
            ensure_processors(self.controlnet, "plain", backend)
        return self

    @property
    def attention(self) -> AttentionBackend | None:
        """The attention backend of the installed reference processors; None before `prepare()`."""
        return installed_backend(self.main_unet, "reader")

    @contextmanager
    def reference_attention(self) -> Iterator[MagicPoseModel]:
        """Our processors on the three networks for the duration, then the previous ones back.

        What a pipeline does around a call: between calls the networks may carry whatever diffusers' methods
        installed (`enable_attention_slicing`, `enable_xformers_memory_efficient_attention`,
        `set_default_attn_processor`, ...); each layer's backend and slice size are taken over by ours for the call,
        so the appearance branch is always on. Processors that are ours already (a prepared model) stay as they are.
        """
        networks = [n for n in (self.main_unet, self.appearance_unet, self.controlnet) if n is not None]
        before = [(net, net.attn_processors) for net in networks]
        self.prepare()
        try:
            yield self
        finally:
            for net, processors in before:
                net.set_attn_processor(processors)

    def train(self, mode: bool = True) -> MagicPoseModel:
        super().train(mode)
        if not any(p.requires_grad for p in self.unet.parameters()):
            self.unet.eval()  # frozen: no dropout, and DDP sees no parameter of it
        return self

    def encode_reference(
        self,
        reference_latents: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> ReferenceBank:
        """Run the appearance UNet once on `r c h w` reference latents; return its recorded `attn1` inputs.

        The original feeds the clean reference latent at the target's timestep; the caller chooses what to pass.
        The appearance UNet's own output (its `conv_out`) is not used. `cross_attention_kwargs` go to its attention
        processors next to the bank (as diffusers passes them to a UNet's).
        """
        bank = ReferenceBank()
        n_refs = reference_latents.shape[0]
        self.appearance_unet(
            reference_latents,
            _per_item(timestep, n_refs, reference_latents.device),
            encoder_hidden_states=_first(encoder_hidden_states, n_refs),
            cross_attention_kwargs={**(cross_attention_kwargs or {}), BANK_KWARG: bank},
            return_dict=False,
        )
        if not len(bank):
            raise RuntimeError("the appearance UNet recorded nothing: its attn1 layers lack the reference write "
                               "processors (call MagicPoseModel.prepare(); a method that replaced processors "
                               "switched the appearance branch off)")
        return bank

    def pose_residuals(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        pose_images: torch.Tensor,
        conditioning_scale: float = 1.0,
    ) -> PoseResiduals:
        """ControlNet residuals for the 12 skip connections (on SD-1.5) and the middle block."""
        if self.controlnet is None:
            raise ValueError("this MagicPoseModel has no pose ControlNet (stage 1 model)")
        down, mid = self.controlnet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=pose_images.to(sample.dtype),
            conditioning_scale=conditioning_scale,
            return_dict=False,
        )
        return list(down), mid

    def denoise(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        reference_bank: ReferenceBank | None = None,
        residuals: PoseResiduals | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        num_frames: int | None = None,
    ) -> torch.Tensor:
        """One main-UNet pass. Without bank and residuals this is the plain, frozen SD UNet (with a motion adapter:
        AnimateDiff's UNet). `num_frames`: frames per video of `(b f) c h w` latents; only a motion UNet uses it, and
        then it is required."""
        down, mid = residuals if residuals is not None else (None, None)
        encoder_hidden_states = _first(encoder_hidden_states, sample.shape[0])  # a batch-1 prompt broadcasts
        reads = None if reference_bank is None else reference_bank.reads
        kwargs = dict(cross_attention_kwargs or {})
        if reference_bank is not None:
            kwargs[BANK_KWARG] = reference_bank
        unet_kwargs = dict(encoder_hidden_states=encoder_hidden_states, down_block_additional_residuals=down,
                           mid_block_additional_residual=mid, cross_attention_kwargs=kwargs or None)
        if self.temporal:
            if num_frames is None:
                raise ValueError("a MagicPoseModel with a motion adapter denoises videos: pass num_frames")
            unet_kwargs.pop("encoder_hidden_states")
            out = denoise_frames(self.main_unet, sample, timestep, encoder_hidden_states, num_frames, **unet_kwargs)
        else:
            out = self.unet(sample, timestep, **unet_kwargs, return_dict=False)[0]
        if reads is not None and reference_bank.reads == reads:
            raise RuntimeError("the main UNet ignored the reference bank: its attn1 layers lack the reference read "
                               "processors (call MagicPoseModel.prepare(); a method that replaced processors "
                               "switched the appearance branch off)")
        return out

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        reference_latents: torch.Tensor | None = None,
        pose_images: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
        num_frames: int | None = None,
    ) -> torch.Tensor:
        """Training-style forward: `b c h w` noisy latents -> prediction, with every condition given.

        `reference_latents` is `r c h w` with r dividing b; reference r serves items b % r and takes the timestep
        and text of item r. Pass `pose_images=None` for stage 1 (no pose) and `reference_latents=None` to drop
        the appearance branch. With `num_frames` (clips, a motion adapter) the batch is `(r f) c h w`: r clips of
        f frames, clip r reading reference r and taking the timestep and text of its first frame.
        """
        bank = None
        encoder_hidden_states = _first(encoder_hidden_states, sample.shape[0])  # a batch-1 prompt broadcasts
        if reference_latents is not None:
            n_refs = reference_latents.shape[0]
            ref_t = _per_item(timestep, sample.shape[0], sample.device)
            text = encoder_hidden_states
            if num_frames is not None:  # one reference per clip: the first frame of each clip speaks for it
                ref_t, text = ref_t[::num_frames], text[::num_frames]
            bank = self.encode_reference(reference_latents, _first(ref_t, n_refs), text)
            bank.grouped = num_frames is not None
        residuals = None
        if pose_images is not None:
            residuals = self.pose_residuals(sample, timestep, encoder_hidden_states, pose_images, conditioning_scale)
        return self.denoise(sample, timestep, encoder_hidden_states, bank, residuals, num_frames=num_frames)


@dataclass
class GuidanceInputs:
    """What one denoising step needs besides the latents; built once per generation.

    `text` / `uncond_text` are `1 l d` (broadcast over frames); `pose_images` is `f 3 H W` for the current frames;
    `reference_bank` is None when the appearance branch is off.
    """

    text: torch.Tensor
    uncond_text: torch.Tensor
    pose_images: torch.Tensor | None
    reference_bank: ReferenceBank | None
    cross_attention_kwargs: dict[str, Any] | None = None  # the user's, for the main UNet's attention processors


def guided_prediction(
    model: MagicPoseModel,
    latents: torch.Tensor,
    timestep: torch.Tensor | int,
    inputs: GuidanceInputs,
    guidance_scale: float,
    mode: GuidanceMode = "controlnet_important",
    conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """Image-CFG for `f c h w` latents (the frames of one video) that all share one reference bank.

    - `controlnet_important` (the paper's Image-CFG): `eps_u + s * (eps_c - eps_u)`, where eps_c has the reference
      bank, the pose residuals and the prompt, and eps_u is the plain frozen UNet with the negative prompt (or the
      prompt when none is given, as the original did). No ControlNet pass is spent on eps_u.
    - `balance`: ordinary text CFG, reference and pose in both halves, one batched pass.
    A scale of 1 skips the unconditional pass in both modes.
    """
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"unknown guidance mode {mode!r} (choose from {', '.join(GUIDANCE_MODES)})")
    frames = latents.shape[0]
    use_cfg = guidance_scale != 1.0
    if mode == "balance" and use_cfg:
        sample = torch.cat([latents, latents])
        text = torch.cat([inputs.uncond_text.expand(frames, -1, -1), inputs.text.expand(frames, -1, -1)])
        pose = None if inputs.pose_images is None else torch.cat([inputs.pose_images, inputs.pose_images])
        eps_u, eps_c = _conditional(model, sample, timestep, text, pose, inputs, conditioning_scale, frames).chunk(2)
        return eps_u + guidance_scale * (eps_c - eps_u)

    text = inputs.text.expand(frames, -1, -1)
    eps_c = _conditional(model, latents, timestep, text, inputs.pose_images, inputs, conditioning_scale, frames)
    if not use_cfg:
        return eps_c
    eps_u = model.denoise(latents, timestep, inputs.uncond_text.expand(frames, -1, -1),
                          cross_attention_kwargs=inputs.cross_attention_kwargs, num_frames=frames)
    return eps_u + guidance_scale * (eps_c - eps_u)


def _conditional(model, sample, timestep, text, pose, inputs: GuidanceInputs, conditioning_scale: float,
                 frames: int):
    residuals = None
    if pose is not None:
        residuals = model.pose_residuals(sample, timestep, text, pose, conditioning_scale)
    return model.denoise(sample, timestep, text, inputs.reference_bank, residuals, inputs.cross_attention_kwargs,
                         num_frames=frames)


def _per_item(timestep: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(timestep, device=device)
    return t.expand(batch) if t.ndim == 0 else t


def _first(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first n items of a batch-first tensor, broadcasting a batch of 1."""
    return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 else x[:n]
