"""Training data plumbing: a resumable, rank-sharded sampler over TikTok-format pairs or clips (any `EpochItems`).

Every random choice of training is a function of (seed, position, rank): the sampler's order, the dataset's
per-item draws and (in the module) the noise and timesteps. Resuming at step k therefore continues exactly where
an uninterrupted run would be, without saving any RNG or sampler state, and DDP ranks never see the same item.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class StepSampler(Sampler[int]):
    """An endless sequence of shuffled passes over `num_items`, sharded by rank, starting at `start`.

    Pass e is the permutation seeded by (seed, e); rank r takes positions r, r + world, ... of it (the pass is
    truncated to a multiple of `world_size`, so ranks get the same count and disjoint items). Yields *virtual*
    indices `e * num_items + i`: the dataset wrapper turns them back into (item i, epoch e) so that each pass also
    redraws references and augmentations.
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1, seed: int = 0, start: int = 0) -> None:
        if num_items < world_size:
            raise ValueError(f"{num_items} training items cannot be shared by {world_size} ranks")
        self.num_items, self.rank, self.world_size = num_items, rank, world_size
        self.seed, self.start = seed, start
        self.per_rank = num_items // world_size

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
            mine = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
            for item in mine[offset:]:
                yield epoch * self.num_items + int(item)
            epoch, offset = epoch + 1, 0


class EpochItems(Protocol):
    """A map-style dataset whose items are a function of (index, epoch): `TikTokPairDataset`, `TikTokClipDataset`,
    `CaptionedPairs`, `VideoCaptionDataset`, `HdVilaDataset`."""

    def __len__(self) -> int: ...

    def item(self, index: int, epoch: int) -> dict[str, Any]: ...


class EpochIndexed(Dataset):
    """Maps the sampler's virtual index `e * n + i` to item i of the base dataset with the draws of pass e."""

    def __init__(self, base: EpochItems) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        epoch, item = divmod(index, len(self.base))
        return self.base.item(item, epoch)


def training_loader(
    dataset: EpochItems,
    batch_size: int,
    num_workers: int,
    rank: int,
    world_size: int,
    seed: int,
    samples_seen: int,
) -> DataLoader:
    """The training DataLoader for one rank, resuming after `samples_seen` samples of this rank."""
    sampler = StepSampler(len(dataset), rank, world_size, seed, start=samples_seen)
    return DataLoader(
        EpochIndexed(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
    )


def step_generator(seed: int, step: int, micro: int, rank: int, device: Any) -> torch.Generator:
    """The RNG of one micro-batch on one rank: noise, timesteps and dropout coins are a function of
    (seed, optimizer step, micro-batch, rank), so a resumed run draws exactly what an uninterrupted one would."""
    state = int(np.random.SeedSequence([seed, step, micro, rank]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)
