"""Appearance control as attention processors ("multi-source self-attention").

The appearance UNet (a trainable copy of the SD UNet) runs on the reference latent. A *write* processor on each of
its self-attention layers (`attn1`) records the hidden states entering the layer, i.e. the output of the transformer
block's `norm1`. The frozen main UNet's `attn1` layers get a *read* processor that attends from the target tokens to
the target tokens and the recorded reference tokens:

    q = to_q(h),  k = to_k(cat[h, ref]),  v = to_v(cat[h, ref])      (concatenation over tokens)

The projections are the main UNet's own; no parameters are added. Layers are matched by module name, which is the
same in both UNets because they share one architecture.

The recorded states travel in a `ReferenceBank` handed in per call through the UNet's `cross_attention_kwargs`
(`{"reference_bank": bank}`), so no global state exists and gradient checkpointing keeps working: the bank is an
ordinary argument of every checkpointed block.

Broadcasting: a bank holds R references. The main UNet's batch B must be a multiple of R, laid out as `(n r)`:
batch item b reads reference `b % R`. So one reference serves any number of target frames (and both CFG halves)
without running the appearance UNet again, and R references with n = 1 is the usual training batch. A bank made
`grouped` serves clips instead: the batch is `(r n)` (the n frames of a clip consecutive, as a motion UNet flattens
them) and item b reads reference `b // n`.

With a motion module (`magicpose.models.motion`) only the spatial `attn1` layers read the bank; the temporal layers
(inside `motion_modules`) attend over frames and keep stock behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor2_0,
    SlicedAttnProcessor,
    XFormersAttnProcessor,
)
from einops import rearrange
from torch import nn

from magicpose.models.motion import is_temporal

AttentionBackend = Literal["sdpa", "xformers"]
BANK_KWARG = "reference_bank"


class ReferenceBank:
    """Hidden states recorded by the appearance UNet: `{attn1 module name: (r, n_tokens, channels)}`."""

    def __init__(self) -> None:
        self._states: dict[str, torch.Tensor] = {}
        self.reads = 0  # lookups by read processors: 0 after a UNet call means nothing read the bank
        self.grouped = False  # False: batch `(n r)`, item b reads b % R; True: batch `(r n)`, item b reads b // n

    def write(self, name: str, hidden_states: torch.Tensor) -> None:
        # A layer may write twice: gradient checkpointing re-runs the appearance UNet's blocks during the
        # backward pass, producing the same states again. The latest write wins.
        self._states[name] = hidden_states

    def read(self, name: str) -> torch.Tensor | None:
        self.reads += 1
        return self._states.get(name)

    def select(self, index: int) -> ReferenceBank:
        """A bank of reference `index` alone (views of these states): what serves that reference's videos."""
        bank = ReferenceBank()
        bank._states = {name: states[index : index + 1] for name, states in self._states.items()}
        bank.grouped = self.grouped
        return bank

    @property
    def num_references(self) -> int:
        first = next(iter(self._states.values()), None)
        return 0 if first is None else first.shape[0]

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __contains__(self, name: object) -> bool:
        return name in self._states


@dataclass(frozen=True)
class AttentionSettings:
    """How one layer attends: `backend` (`sdpa`: PyTorch's scaled-dot-product attention; `xformers`, CUDA only) and
    `slice_size` (attention computed `slice_size` heads x items at a time to save memory, as diffusers' attention
    slicing; None: all at once)."""

    backend: AttentionBackend = "sdpa"
    slice_size: int | None = None


def _stock_processor(settings: AttentionSettings):
    if settings.slice_size:
        return SlicedAttnProcessor(settings.slice_size)
    if settings.backend == "sdpa":
        return AttnProcessor2_0()
    if settings.backend == "xformers":
        return XFormersAttnProcessor()
    raise ValueError(f"unknown attention backend {settings.backend!r} (choose 'sdpa' or 'xformers')")


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, backend: AttentionBackend, slice_size: int | None
) -> torch.Tensor:
    """Multi-head attention on `(b, heads, tokens, d)` tensors, `slice_size` (batch x head) rows at a time."""
    if backend == "xformers":
        import xformers.ops  # optional dependency, CUDA only

        q, k, v = (rearrange(t, "b h n d -> b n h d").contiguous() for t in (query, key, value))
        out = xformers.ops.memory_efficient_attention(q, k, v)
        return rearrange(out, "b n h d -> b h n d")
    if not slice_size:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
    b, h = query.shape[:2]
    q, k, v = (rearrange(t, "b h n d -> (b h) 1 n d") for t in (query, key, value))
    out = torch.cat([
        F.scaled_dot_product_attention(q[i : i + slice_size], k[i : i + slice_size], v[i : i + slice_size])
        for i in range(0, b * h, slice_size)
    ])  # fmt: skip
    return rearrange(out, "(b h) 1 n d -> b h n d", b=b)


class BankAwareProcessor:
    """The stock diffusers processor, accepting (and ignoring) the reference bank.

    Installed on every attention layer that neither reads nor writes (cross-attention `attn2`, and all layers of a
    plain UNet), so that passing the bank through `cross_attention_kwargs` reaches our processors without
    diffusers warning about an unexpected argument in every other layer.
    """

    def __init__(self, backend: AttentionBackend = "sdpa", slice_size: int | None = None) -> None:
        self.settings = AttentionSettings(backend, slice_size)
        self.stock = _stock_processor(self.settings)

    @property
    def backend(self) -> AttentionBackend:
        return self.settings.backend

    def _stock(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb) -> torch.Tensor:
        # the sliced stock processor takes no `temb` (a spatial-norm input SD's layers never get)
        kwargs = {} if temb is None else {"temb": temb}
        return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
    ) -> torch.Tensor:
        return self._stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceWriteProcessor(BankAwareProcessor):
    """On the appearance UNet's `attn1`: record the incoming (already `norm1`-ed) states, then attend as usual."""

    def __init__(self, name: str, backend: AttentionBackend = "sdpa", slice_size: int | None = None) -> None:
        super().__init__(backend, slice_size)
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
    ) -> torch.Tensor:
        if reference_bank is not None:
            reference_bank.write(self.name, hidden_states)
        return self._stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadProcessor(BankAwareProcessor):
    """On the main UNet's spatial `attn1`: self-attention whose keys/values also cover the reference tokens.

    Without a bank (or without an entry for this layer) it is exactly the stock processor.
    """

    def __init__(self, name: str, backend: AttentionBackend = "sdpa", slice_size: int | None = None) -> None:
        super().__init__(backend, slice_size)
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
    ) -> torch.Tensor:
        reference = None if reference_bank is None else reference_bank.read(self.name)
        if reference is None:
            return self._stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError(f"{self.name}: reference attention expects plain self-attention on (b, n, c) tokens")
        return self._attend_with_reference(attn, hidden_states, reference, reference_bank.grouped)

    def _attend_with_reference(self, attn: Attention, h: torch.Tensor, reference: torch.Tensor, grouped: bool
                               ) -> torch.Tensor:
        batch, n_refs = h.shape[0], reference.shape[0]
        if batch % n_refs:
            raise ValueError(f"{self.name}: batch {batch} is not a multiple of the {n_refs} references in the bank")
        repeats = batch // n_refs
        reference = reference.to(h.dtype)

        def tile(x: torch.Tensor) -> torch.Tensor:
            return x.repeat_interleave(repeats, dim=0) if grouped else x.repeat(repeats, 1, 1)

        # to_k/to_v are linear, so projecting the reference once and tiling it equals projecting cat[h, ref] per
        # item; it saves (repeats - 1) projections of the reference tokens.
        key = torch.cat([attn.to_k(h), tile(attn.to_k(reference))], dim=1)
        value = torch.cat([attn.to_v(h), tile(attn.to_v(reference))], dim=1)
        return attend_and_project(attn, h, attn.to_q(h), key, value, self.settings)


def attend_and_project(
    attn: Attention,
    hidden_states: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    settings: AttentionSettings = AttentionSettings(),
) -> torch.Tensor:
    """The stock processor's second half, for projected `b n (h d)` queries and `b m (h d)` keys/values.

    Splits heads, applies the layer's q/k norms, attends (with `settings`' backend and slicing), merges heads, runs
    `to_out`, adds the residual and rescales, as diffusers' `AttnProcessor2_0` does. Our processors differ only in
    which keys/values they build.
    """
    query, key, value = (rearrange(t, "b n (h d) -> b h n d", h=attn.heads) for t in (query, key, value))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = _attend(query, key, value, settings.backend, settings.slice_size)
    out = rearrange(out, "b h n d -> b n (h d)").to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


def self_attention_names(unet: nn.Module) -> list[str]:
    """Names of the spatial `attn1` modules of the transformer blocks (16 on SD-1.5), in registration order (the
    temporal ones of a motion UNet excluded)."""
    return [name for name, module in unet.named_modules() if isinstance(module, Attention) and is_reference_layer(name)]


def is_reference_layer(name: str) -> bool:
    """A layer that reads (main UNet) or writes (appearance UNet) the bank: a spatial self-attention `attn1`."""
    name = name.removesuffix(".processor")
    return name.endswith("attn1") and not is_temporal(name)


ROLES = {"reader": ReferenceReadProcessor, "writer": ReferenceWriteProcessor, "plain": BankAwareProcessor}


def layer_settings(processor: object) -> AttentionSettings:
    """The settings a processor runs with: ours carry them; diffusers' stock ones are read off their type
    (`SlicedAttnProcessor`: its slice size; `XFormersAttnProcessor`: xformers; anything else: SDPA)."""
    if isinstance(processor, BankAwareProcessor):
        return processor.settings
    if isinstance(processor, SlicedAttnProcessor):
        return AttentionSettings("sdpa", processor.slice_size)
    if isinstance(processor, XFormersAttnProcessor):
        return AttentionSettings("xformers")
    return AttentionSettings()


def install_processors(
    model: nn.Module, role: str, backend: AttentionBackend | None = None
) -> None:
    """Our processors for `role` on every layer of `model`: `reader` (main UNet: `attn1` attends to the bank too),
    `writer` (appearance UNet: `attn1` records into the bank) or `plain` (e.g. the pose ControlNet).

    Each layer keeps the settings it runs with now (a stock processor's are read off it, see `layer_settings`), so
    what a diffusers method such as `enable_attention_slicing` chose is kept; `backend` replaces the backend.
    """
    attn1 = ROLES[role]
    processors = {}
    for name, current in model.attn_processors.items():  # "down_blocks.0...transformer_blocks.0.attn1.processor"
        settings = layer_settings(current)
        settings = AttentionSettings(backend or settings.backend, settings.slice_size)
        module_name = name.removesuffix(".processor")
        kind = attn1 if is_reference_layer(module_name) else BankAwareProcessor
        if backend is None and isinstance(current, kind) and (kind is not BankAwareProcessor or
                                                              type(current) is BankAwareProcessor):
            processors[name] = current  # ours already, with its settings (or a subclass that adds to it)
        elif kind is BankAwareProcessor:
            processors[name] = BankAwareProcessor(settings.backend, settings.slice_size)
        else:
            processors[name] = kind(module_name, settings.backend, settings.slice_size)
    model.set_attn_processor(processors)


def install_reference_writer(unet: nn.Module, backend: AttentionBackend = "sdpa") -> None:
    """Make `unet` the appearance UNet: its `attn1` layers record their inputs into the bank it is given."""
    install_processors(unet, "writer", backend)


def install_reference_reader(unet: nn.Module, backend: AttentionBackend = "sdpa") -> None:
    """Make `unet` the main UNet: its `attn1` layers also attend to the reference tokens of the bank it is given."""
    install_processors(unet, "reader", backend)


def installed_backend(model: nn.Module, role: str) -> AttentionBackend | None:
    """The backend of `model`'s processors if every layer has ours for `role` (reader / writer / plain), else None.

    `attn1` must carry the role's processor and every other layer a `BankAwareProcessor`; anything else (stock
    processors, e.g. after a diffusers method replaced them) counts as not installed.
    """
    expected = ROLES[role]
    backends = set()
    for name, processor in model.attn_processors.items():
        if is_reference_layer(name):
            ours = isinstance(processor, expected)  # a subclass (e.g. one that also records) counts
        else:
            ours = type(processor) is BankAwareProcessor
        if not ours:
            return None
        backends.add(processor.backend)
    return backends.pop() if len(backends) == 1 else None


def uniform_backend(model: nn.Module) -> AttentionBackend | None:
    """The backend every layer of `model` runs with (ours or stock processors), None if they differ."""
    backends = {layer_settings(p).backend for p in model.attn_processors.values()}
    return backends.pop() if len(backends) == 1 else None


def ensure_processors(model: nn.Module, role: str, backend: AttentionBackend | None = None) -> None:
    """Install the processors of `role` on `model` unless they are there already with this backend.

    `backend=None` keeps whatever is installed (ours, or what a stock processor implies: SDPA by default), so wiring
    a model that was configured elsewhere (e.g. a training run's UNets with xformers) never resets it.
    """
    current = installed_backend(model, role)
    if current is None or (backend is not None and backend != current):
        install_processors(model, role, backend)
