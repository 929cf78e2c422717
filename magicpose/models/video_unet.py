"""Follow-Your-Pose's video UNet: a stock `UNet2DConditionModel` run on frames folded into the batch.

`VideoUNet` takes latents `b c f h w`, folds them to `(b f) c h w` and runs the stock diffusers UNet, changed only
through its extension points:

* **sparse-causal self-attention** (`SparseCausalProcessor` on every `attn1`): frame i attends with its queries to
  the keys/values of frame 0 and frame i-1 (frames 0 and 1 both to `[frame 0; frame 0]`); the frame's own tokens
  are not among them. The projections are SD's own; no parameters are added. diffusers' attention slicing and
  xformers (`set_attention_slice`, `set_use_memory_efficient_attention_xformers`, the pipeline's
  `enable_attention_slicing` / `enable_xformers_memory_efficient_attention`) keep these processors: the layers'
  settings are chosen by diffusers' own methods and then the sparse-causal processors go back on `attn1` with them.
* **temporal layers** attached to every `BasicTransformerBlock` and run by a forward hook after the block:
  `attn_temp` (self-attention over the f frames at each spatial site, pre-norm `norm_temp`, residual, no positional
  encoding, no mask) and then `conv_temporal` (a low-rank Conv1d over frames: `down` C->r, `up` r->C, kernel 3,
  no bias, no activation, residual; `up` zero-initialised, so the conv starts as the identity).
* **frame-pooled GroupNorm** (option, on by default): the original applied the ResNets' `norm1`/`norm2` and the
  final `conv_norm_out` to 5-D `b c f h w` tensors, so their statistics span all frames of the clip. The released
  weights were trained that way; `frame_pooled_norm=False` normalises each frame on its own.
* **pose**: the pose adapter's features go in as diffusers' `down_intrablock_additional_residuals`, which adds
  feature l after the last layer of down block l, before the skip connection is stored (the original's rule).

Parameter names equal the original UNet3D's under the prefix `unet.` (`unet.down_blocks.0.attentions.0.
transformer_blocks.0.attn_temp.to_q.weight`, `... .conv_temporal.down.weight`), so its checkpoints map 1:1.

The frame count reaches the processors, hooks and norms through a `FrameContext` owned by the model, set by
`VideoUNet.forward`. It stays set after the call, so activation checkpointing recomputes the same function in the
backward pass; run one clip length per forward/backward pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from einops import rearrange
from torch import nn

from magicpose.models.attention import AttentionSettings, attend_and_project, layer_settings

KV_FRAMES = ("first", "prev", "self")
TEMPORAL_MODULES = ("attn_temp", "norm_temp", "conv_temporal")


@dataclass
class FrameContext:
    """Per-model call state shared by the video modules: frames per clip and the GroupNorm mode."""

    num_frames: int = 1
    frame_pooled_norm: bool = True


# ----- sparse-causal attention ---------------------------------------------------------------------------------
def gather_frames(x: torch.Tensor, num_frames: int, frames: Sequence[str] = ("first", "prev")) -> torch.Tensor:
    """`(b f) n c` -> `(b f) (k n) c`: for each frame, the tokens of the k frames named in `frames`, concatenated.

    `first`: frame 0; `prev`: frame i-1 (frame 0 takes itself); `self`: frame i.
    """
    x = rearrange(x, "(b f) n c -> b f n c", f=num_frames)
    index = torch.arange(num_frames, device=x.device)
    picks = {"first": torch.zeros_like(index), "prev": (index - 1).clamp(min=0), "self": index}
    parts = [x[:, picks[name]] for name in frames]
    return rearrange(torch.cat(parts, dim=2), "b f n c -> (b f) n c")


class SparseCausalProcessor:
    """`attn1` processor: queries from frame i, keys/values from the frames in `frames` (default first + previous).

        out_i = to_out(softmax(q_i k^T / sqrt(d)) v),   q_i = to_q(x_i),   k = to_k([x_0; x_{i-1}]),   v likewise

    `settings`: how it attends (`AttentionSettings`: SDPA or xformers, and diffusers-style slicing, `slice_size`
    (batch x head) rows at a time; default: SDPA, unsliced); the same result whatever they are.
    """

    def __init__(self, context: FrameContext, frames: Sequence[str] = ("first", "prev"),
                 settings: AttentionSettings | None = None) -> None:
        unknown = [name for name in frames if name not in KV_FRAMES]
        if not frames or unknown:
            raise ValueError(f"sparse-causal frames must be a non-empty subset of {KV_FRAMES}, got {list(frames)}")
        self.context, self.frames, self.settings = context, tuple(frames), settings or AttentionSettings()

    @property
    def slice_size(self) -> int | None:
        return self.settings.slice_size

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError("sparse-causal attention expects plain self-attention on (b f) n c tokens")
        f = self.context.num_frames
        query = attn.to_q(hidden_states)
        # to_k/to_v are per token, so projecting every frame once and gathering equals projecting the gathered frames.
        key = gather_frames(attn.to_k(hidden_states), f, self.frames)
        value = gather_frames(attn.to_v(hidden_states), f, self.frames)
        return attend_and_project(attn, hidden_states, query, key, value, self.settings)


# ----- temporal layers -----------------------------------------------------------------------------------------
def effective_rank(dim: int, rank: int) -> int:
    """The original's guard: a rank above the layer width silently becomes width // 2 (32 -> 16, 64 -> 32)."""
    return rank if rank <= dim else dim // 2


class TemporalConv(nn.Module):
    """Low-rank Conv1d over frames (the original's `LoRALinearLayer`): `(b n) c f -> (b n) c f`, no residual here."""

    def __init__(self, dim: int, rank: int = 160, kernel_size: int = 3) -> None:
        super().__init__()
        rank = effective_rank(dim, rank)
        self.down = nn.Conv1d(dim, rank, kernel_size, padding=kernel_size // 2, bias=False)
        self.up = nn.Conv1d(rank, dim, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.normal_(self.down.weight, std=1.0 / rank)
        nn.init.zeros_(self.up.weight)  # identity at init: the residual branch adds nothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def temporal_mixing(block: nn.Module, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
    """After a transformer block: `h += attn_temp(norm_temp(h))` over frames, then `h += conv_temporal(h)`.

    `hidden`: `(b f) n c`.
    """
    n = hidden.shape[1]
    attn_temp = getattr(block, "attn_temp", None)
    if attn_temp is not None:
        t = rearrange(hidden, "(b f) n c -> (b n) f c", f=num_frames)
        t = t + attn_temp(block.norm_temp(t))
        hidden = rearrange(t, "(b n) f c -> (b f) n c", n=n)
    conv = getattr(block, "conv_temporal", None)
    if conv is not None:
        s = rearrange(hidden, "(b f) n c -> (b n) c f", f=num_frames)
        s = s + conv(s)
        hidden = rearrange(s, "(b n) c f -> (b f) n c", n=n)
    return hidden


class TemporalHook:
    """Forward hook on a `BasicTransformerBlock`: replaces its output by `temporal_mixing(output)`."""

    def __init__(self, context: FrameContext) -> None:
        self.context = context

    def __call__(self, block: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return temporal_mixing(block, output, self.context.num_frames)


# ----- frame-pooled GroupNorm ----------------------------------------------------------------------------------
class FramePooledGroupNorm(nn.GroupNorm):
    """GroupNorm on `(b f) c h w` whose statistics span all f frames of a clip (when the context says so).

    Equals `nn.GroupNorm` applied to the 5-D `b c f h w` tensor, the original's computation. Same parameters.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float, affine: bool, context: FrameContext) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.context = context

    @classmethod
    def like(cls, norm: nn.GroupNorm, context: FrameContext) -> FramePooledGroupNorm:
        new = cls(norm.num_groups, norm.num_channels, norm.eps, norm.affine, context)
        new.load_state_dict(norm.state_dict())
        return new.to(device=norm.weight.device, dtype=norm.weight.dtype) if norm.affine else new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.context.num_frames
        if not self.context.frame_pooled_norm or f == 1:
            return super().forward(x)
        clip = rearrange(x, "(b f) c h w -> b c f h w", f=f)
        clip = F.group_norm(clip, self.num_groups, self.weight, self.bias, self.eps)
        return rearrange(clip, "b c f h w -> (b f) c h w")


# ----- the model -----------------------------------------------------------------------------------------------
class VideoUNet(ModelMixin, ConfigMixin):
    """The inflated UNet. Constructors build (random init); load weights with `from_pretrained`, `from_unet2d` or
    `magicpose.convert.followyourpose`.

    Args:
        unet_config: the SD `unet/config.json` as a dict (any `UNet2DConditionModel` config).
        temporal_attention / temporal_conv: add `attn_temp` + `norm_temp` / `conv_temporal` to every transformer block.
        temporal_heads: heads of `attn_temp`; None: as the block's `attn1` (the original: 8 on SD).
        temporal_rank, temporal_kernel: of `conv_temporal` (original: 160, 3; rank > width becomes width // 2).
        frame_pooled_norm: ResNet / output GroupNorm statistics over all frames (the original) or per frame.
        sparse_causal_frames: which frames `attn1` attends to (`first`, `prev`, `self`); the original: first + prev.
        zero_init_temporal_attention: zero `attn_temp.to_out` so that a new model starts as SD plus sparse-causal
            attention (the original did not; irrelevant when loading trained weights).
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet_config: dict | None = None,
        temporal_attention: bool = True,
        temporal_conv: bool = True,
        temporal_heads: int | None = None,
        temporal_rank: int = 160,
        temporal_kernel: int = 3,
        frame_pooled_norm: bool = True,
        sparse_causal_frames: Sequence[str] = ("first", "prev"),
        zero_init_temporal_attention: bool = True,
    ) -> None:
        super().__init__()
        if unet_config is None:
            raise ValueError("VideoUNet needs unet_config (the 2D UNet's config)")
        self.unet = UNet2DConditionModel.from_config(dict(unet_config))
        self.frame_context = FrameContext(frame_pooled_norm=frame_pooled_norm)
        self._inflate()

    def _inflate(self) -> None:
        config = self.config
        for block in self.transformer_blocks():
            add_temporal_layers(block, config.temporal_attention, config.temporal_conv, config.temporal_heads,
                                config.temporal_rank, config.temporal_kernel, config.zero_init_temporal_attention)
            block.register_forward_hook(TemporalHook(self.frame_context))
        pool_group_norms(self.unet, self.frame_context)
        install_video_processors(self.unet, self.frame_context, tuple(config.sparse_causal_frames))

    # ----- structure -----
    def transformer_blocks(self) -> list[BasicTransformerBlock]:
        return [m for m in self.unet.modules() if isinstance(m, BasicTransformerBlock)]

    def set_frame_pooled_norm(self, enabled: bool) -> None:
        self.frame_context.frame_pooled_norm = enabled

    def enable_gradient_checkpointing(self, *args: Any, **kwargs: Any) -> None:
        self.unet.enable_gradient_checkpointing(*args, **kwargs)

    # ----- attention settings (diffusers' methods, keeping the sparse-causal processors) -----
    def install_video_processors(self) -> None:
        """Put the sparse-causal processors (back) on every `attn1`, each with the settings (backend, slice size) of
        the processor there now; the other layers keep theirs. See `install_video_processors`."""
        install_video_processors(self.unet, self.frame_context, tuple(self.config.sparse_causal_frames))

    def set_attention_slice(self, slice_size: str | int | list[int] | None = "auto") -> None:
        """diffusers' attention slicing (`"auto"`: half of each layer's heads, `"max"`: one, an int, a list of one
        per layer, None: off), as `UNet2DConditionModel.set_attention_slice` resolves it for every attention layer
        (`attn1`, `attn2`, `attn_temp`); `attn1` then gets its sparse-causal processor back with the slice size
        chosen for it, the others keep diffusers' stock (sliced) processors. The result does not change."""
        self.unet.set_attention_slice(slice_size)
        self.install_video_processors()

    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op: Any = None) -> None:
        """diffusers' xformers switch (its own checks and errors: xformers and CUDA are required), then the
        sparse-causal processors go back on `attn1` with the backend it chose (`attention_op` applies to the stock
        processors of the other layers only)."""
        super().set_use_memory_efficient_attention_xformers(valid, attention_op)
        self.install_video_processors()

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, **options: Any) -> VideoUNet:
        """Inflate a (pretrained) 2D UNet: its weights are copied; only the temporal modules are new."""
        model = cls(unet_config=dict(unet.config), **options)
        if (model.device, model.dtype) != (unet.device, unet.dtype):
            model.to(device=unet.device, dtype=unet.dtype)
        load_unet2d_weights(model, unet.state_dict(), source="the 2D UNet")
        return model

    # ----- forward -----
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        pose_features: Sequence[torch.Tensor] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """`sample` b c f h w, `timestep` scalar or (b,), `encoder_hidden_states` b l d (one prompt per clip),
        `pose_features`: per down block `(b f) c h w` (already scaled). Returns the prediction `b c f h w`."""
        b, _, f = sample.shape[:3]
        self.frame_context.num_frames = f
        x = rearrange(sample, "b c f h w -> (b f) c h w")
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 1:
            t = t.repeat_interleave(f)  # one timestep per clip, the same for its frames
        text = encoder_hidden_states.repeat_interleave(f, dim=0)
        residuals = None if pose_features is None else list(pose_features)  # diffusers pops from this list
        out = self.unet(x, t, text, down_intrablock_additional_residuals=residuals,
                        cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]
        return rearrange(out, "(b f) c h w -> b c f h w", b=b)


def add_temporal_layers(
    block: BasicTransformerBlock,
    attention: bool,
    conv: bool,
    heads: int | None,
    rank: int,
    kernel: int,
    zero_init_attention: bool,
) -> None:
    """Attach `attn_temp`, `norm_temp`, `conv_temporal` to one transformer block (names as the original)."""
    dim = block.norm1.normalized_shape[0]
    if attention:
        heads = heads or block.attn1.heads
        block.attn_temp = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        block.norm_temp = nn.LayerNorm(dim)
        if zero_init_attention:
            nn.init.zeros_(block.attn_temp.to_out[0].weight)
            nn.init.zeros_(block.attn_temp.to_out[0].bias)
    if conv:
        block.conv_temporal = TemporalConv(dim, rank, kernel)


def pool_group_norms(unet: UNet2DConditionModel, context: FrameContext) -> None:
    """Swap the ResNets' norm1/norm2 and `conv_norm_out` for frame-pooled GroupNorms (same parameters)."""
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            module.norm1 = FramePooledGroupNorm.like(module.norm1, context)
            module.norm2 = FramePooledGroupNorm.like(module.norm2, context)
    if isinstance(unet.conv_norm_out, nn.GroupNorm):
        unet.conv_norm_out = FramePooledGroupNorm.like(unet.conv_norm_out, context)


def install_video_processors(unet: UNet2DConditionModel, context: FrameContext, frames: Sequence[str]) -> None:
    """Sparse-causal processors on every `attn1`, keeping each layer's settings (backend, slice size: read off a stock
    processor by `layer_settings`, so what `set_attention_slice` or xformers chose stays); the other layers (`attn2`,
    `attn_temp`) keep the stock processor they have (on a fresh UNet: PyTorch SDPA)."""
    processors = {}
    for name, current in unet.attn_processors.items():
        if name.removesuffix(".processor").endswith("attn1"):
            settings = current.settings if isinstance(current, SparseCausalProcessor) else layer_settings(current)
            processors[name] = SparseCausalProcessor(context, frames, settings)
        else:
            processors[name] = current
    unet.set_attn_processor(processors)


def is_temporal_key(key: str) -> bool:
    return any(f".{name}." in key for name in TEMPORAL_MODULES)


def load_unet2d_weights(model: VideoUNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Load SD 2D UNet weights into `model.unet`: every 2D key must be used; only temporal keys may be missing."""
    missing, unexpected = model.unet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not is_temporal_key(k)]
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not match the video UNet: {len(missing)} missing "
                         f"(e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})")


def trainable_parameter_names(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Parameters of the modules whose name ends with one of `patterns` (the original's freezing rule)."""
    names = []
    for module_name, module in model.named_modules():
        if module_name and any(module_name.endswith(p) for p in patterns):
            names.extend(f"{module_name}.{n}" for n, _ in module.named_parameters())
    return sorted(set(names))
