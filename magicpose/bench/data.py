"""Training data-loader throughput (`magicpose benchmark data`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from magicpose.data.tiktok import TikTokPairDataset


def benchmark_loader(
    root: str | Path,
    size: int = 512,
    workers: Sequence[int] = (0, 2, 4),
    batch_size: int = 8,
    batches: int = 30,
    split: str = "train_set",
    **dataset_kwargs: object,
) -> dict[int, float]:
    """Samples per second of a shuffled `TikTokPairDataset` loader for each worker count; also printed.

    The clock starts before `iter(loader)`, so worker start-up and the first, unprefetched batches
    count: a conservative figure for short runs, close to steady state for long ones.
    """
    dataset = TikTokPairDataset(root, split, size=size, **dataset_kwargs)  # type: ignore[arg-type]
    # Sampling with replacement gives any number of batches, however small the dataset.
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=batches * batch_size,
        generator=torch.Generator().manual_seed(0),
    )
    results: dict[int, float] = {}
    for count in workers:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=count
        )
        start = time.perf_counter()
        samples = sum(len(batch["video_id"]) for batch in loader)
        results[count] = samples / (time.perf_counter() - start)
        print(
            f"workers={count}: {results[count]:.1f} samples/s "
            f"({samples} samples of {size}x{size}, batch {batch_size})"
        )
    return results
