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
without running the appearance UNet again, and R references with n = 1 is the usual training batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, XFormersAttnProcessor
from einops import rearrange
from torch import nn

AttentionBackend = Literal["sdpa", "xformers"]
BANK_KWARG = "reference_bank"


class ReferenceBank:
    """Hidden states recorded by the appearance UNet: `{attn1 module name: (r, n_tokens, channels)}`."""

    def __init__(self) -> None:
        self._states: dict[str, torch.Tensor] = {}
        self.reads = 0  # lookups by read processors: 0 after a UNet call means nothing read the bank

    def write(self, name: str, hidden_states: torch.Tensor) -> None:
        # A layer may write twice: gradient checkpointing re-runs the appearance UNet's blocks during the
        # backward pass, producing the same states again. The latest write wins.
        self._states[name] = hidden_states

    def read(self, name: str) -> torch.Tensor | None:
        self.reads += 1
        return self._states.get(name)

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


def _stock_processor(backend: AttentionBackend):
    if backend == "sdpa":
        return AttnProcessor2_0()
    if backend == "xformers":
        return XFormersAttnProcessor()
    raise ValueError(f"unknown attention backend {backend!r} (choose 'sdpa' or 'xformers')")


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, backend: AttentionBackend) -> torch.Tensor:
    """Multi-head attention on `(b, heads, tokens, d)` tensors."""
    if backend == "xformers":
        import xformers.ops  # optional dependency, CUDA only

        q, k, v = (rearrange(t, "b h n d -> b n h d").contiguous() for t in (query, key, value))
        out = xformers.ops.memory_efficient_attention(q, k, v)
        return rearrange(out, "b n h d -> b h n d")
    return F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)


class BankAwareProcessor:
    """The stock diffusers processor, accepting (and ignoring) the reference bank.

    Installed on every attention layer that neither reads nor writes (cross-attention `attn2`, and all layers of a
    plain UNet), so that passing the bank through `cross_attention_kwargs` reaches our processors without
    diffusers warning about an unexpected argument in every other layer.
    """

    def __init__(self, backend: AttentionBackend = "sdpa") -> None:
        self.backend = backend
        self.stock = _stock_processor(backend)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
    ) -> torch.Tensor:
        return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceWriteProcessor(BankAwareProcessor):
    """On the appearance UNet's `attn1`: record the incoming (already `norm1`-ed) states, then attend as usual."""

    def __init__(self, name: str, backend: AttentionBackend = "sdpa") -> None:
        super().__init__(backend)
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
        return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadProcessor(BankAwareProcessor):
    """On the main UNet's `attn1`: self-attention whose keys/values also cover the reference tokens.

    Without a bank (or without an entry for this layer) it is exactly the stock processor.
    """

    def __init__(self, name: str, backend: AttentionBackend = "sdpa") -> None:
        super().__init__(backend)
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
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError(f"{self.name}: reference attention expects plain self-attention on (b, n, c) tokens")
        return self._attend_with_reference(attn, hidden_states, reference)

    def _attend_with_reference(self, attn: Attention, h: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        batch, n_refs = h.shape[0], reference.shape[0]
        if batch % n_refs:
            raise ValueError(f"{self.name}: batch {batch} is not a multiple of the {n_refs} references in the bank")
        repeats = batch // n_refs
        reference = reference.to(h.dtype)
        # to_k/to_v are linear, so projecting the reference once and tiling it equals projecting cat[h, ref] per
        # item; it saves (repeats - 1) projections of the reference tokens.
        key = torch.cat([attn.to_k(h), attn.to_k(reference).repeat(repeats, 1, 1)], dim=1)
        value = torch.cat([attn.to_v(h), attn.to_v(reference).repeat(repeats, 1, 1)], dim=1)
        return attend_and_project(attn, h, attn.to_q(h), key, value, self.backend)


def attend_and_project(
    attn: Attention,
    hidden_states: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    backend: AttentionBackend = "sdpa",
) -> torch.Tensor:
    """The stock processor's second half, for projected `b n (h d)` queries and `b m (h d)` keys/values.

    Splits heads, applies the layer's q/k norms, attends, merges heads, runs `to_out`, adds the residual and
    rescales, as diffusers' `AttnProcessor2_0` does. Our processors differ only in which keys/values they build.
    """
    query, key, value = (rearrange(t, "b n (h d) -> b h n d", h=attn.heads) for t in (query, key, value))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = _attend(query, key, value, backend)
    out = rearrange(out, "b h n d -> b n (h d)").to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


def self_attention_names(unet: nn.Module) -> list[str]:
    """Names of the `attn1` modules of the transformer blocks (16 on SD-1.5), in registration order."""
    return [name for name, module in unet.named_modules() if isinstance(module, Attention) and name.endswith("attn1")]


def _set_processors(unet: nn.Module, make_attn1_processor, backend: AttentionBackend) -> None:
    processors = {}
    for name in unet.attn_processors:  # keys look like "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"
        module_name = name.removesuffix(".processor")
        if module_name.endswith("attn1") and make_attn1_processor is not None:
            processors[name] = make_attn1_processor(module_name, backend)
        else:
            processors[name] = BankAwareProcessor(backend)
    unet.set_attn_processor(processors)


def install_reference_writer(unet: nn.Module, backend: AttentionBackend = "sdpa") -> None:
    """Make `unet` the appearance UNet: its `attn1` layers record their inputs into the bank it is given."""
    _set_processors(unet, ReferenceWriteProcessor, backend)


def install_reference_reader(unet: nn.Module, backend: AttentionBackend = "sdpa") -> None:
    """Make `unet` the main UNet: its `attn1` layers also attend to the reference tokens of the bank it is given."""
    _set_processors(unet, ReferenceReadProcessor, backend)


def install_plain_attention(model: nn.Module, backend: AttentionBackend = "sdpa") -> None:
    """Stock attention everywhere (e.g. the pose ControlNet), still tolerant of a bank in the kwargs."""
    _set_processors(model, None, backend)


ROLES = {"reader": ReferenceReadProcessor, "writer": ReferenceWriteProcessor, "plain": BankAwareProcessor}
_INSTALL = {"reader": install_reference_reader, "writer": install_reference_writer, "plain": install_plain_attention}


def installed_backend(model: nn.Module, role: str) -> AttentionBackend | None:
    """The backend of `model`'s processors if every layer has ours for `role` (reader / writer / plain), else None.

    `attn1` must carry the role's processor and every other layer a `BankAwareProcessor`; anything else (stock
    processors, e.g. after a diffusers method replaced them) counts as not installed.
    """
    expected = ROLES[role]
    backends = set()
    for name, processor in model.attn_processors.items():
        is_attn1 = name.removesuffix(".processor").endswith("attn1")
        wanted = expected if is_attn1 else BankAwareProcessor
        if type(processor) is not wanted:
            return None
        backends.add(processor.backend)
    return backends.pop() if len(backends) == 1 else None


def ensure_processors(model: nn.Module, role: str, backend: AttentionBackend | None = None) -> AttentionBackend:
    """Install the processors of `role` on `model` unless they are there already with this backend.

    `backend=None` keeps whatever backend is installed (SDPA where nothing of ours is), so wiring a model that was
    configured elsewhere (e.g. a training run's UNets with xformers) never resets it. Returns the backend in use.
    """
    current = installed_backend(model, role)
    wanted = backend or current or "sdpa"
    if current != wanted:
        _INSTALL[role](model, wanted)
    return wanted
