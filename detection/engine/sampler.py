"""Batches that are a pure function of (seed, epoch): exact mid-epoch resume and any number of workers.

``EpochBatchSampler`` draws each epoch's order from its own generator seeded by ``(seed, epoch)``,
optionally groups images of like aspect ratio into the same batch (as torchvision's references do),
shards the order over DDP ranks, and can start at any batch of the epoch. Each index goes out with a
per-sample seed; ``SeededSamples`` re-seeds the augmentation with it before reading the sample, so an
image's augmentation does not depend on the worker that reads it, nor on where a run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * 1_000_003 + epoch * 100_019 + index * 7_919) % (2**32)


def aspect_groups(sizes: Sequence[tuple[int, int]]) -> list[int]:
    """Group id per image (width, height): 0 for portrait, 1 for square-ish, 2 for landscape."""
    groups = []
    for w, h in sizes:
        r = w / max(1, h)
        groups.append(0 if r < 0.8 else 2 if r > 1.25 else 1)
    return groups


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    def __init__(
        self,
        n: int,
        batch: int,
        seed: int = 0,
        shuffle: bool = True,
        group_ids: Sequence[int] | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.n, self.batch, self.seed, self.shuffle = n, batch, seed, shuffle
        self.group_ids = list(group_ids) if group_ids is not None else None
        self.rank, self.world = rank, world
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch ``epoch`` from its batch ``start`` (the batches already trained are skipped, not read)."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world > 1:  # pad so that every rank gets as many samples (DistributedSampler does the same)
            per_rank = math.ceil(self.n / self.world)
            order = (order * self.world)[: per_rank * self.world][self.rank :: self.world]
        return order

    def batches(self) -> list[list[int]]:
        order = self._order()
        if self.group_ids is None:
            return [order[i : i + self.batch] for i in range(0, len(order), self.batch)]
        out, buckets, rest = [], {}, []
        for i in order:
            bucket = buckets.setdefault(self.group_ids[i], [])
            bucket.append(i)
            if len(bucket) == self.batch:
                out.append(bucket[:])
                bucket.clear()
        for bucket in buckets.values():
            rest.extend(bucket)
        rest.sort(key=order.index)
        out.extend(rest[i : i + self.batch] for i in range(0, len(rest), self.batch))
        return out

    def batches_per_epoch(self) -> int:
        per_rank = math.ceil(self.n / self.world)
        if self.group_ids is None:
            return math.ceil(per_rank / self.batch)
        return len(self.batches())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in self.batches()[self.start :]:
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in b]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start


class SeededSamples(Dataset):
    """``dataset[(index, seed)]``: the sample ``index`` with its augmentation re-seeded by ``seed``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            transform = getattr(self.dataset, "transform", None)
            if transform is not None and hasattr(transform, "set_random_seed"):
                transform.set_random_seed(seed)
            return self.dataset[index]
        return self.dataset[key]
