from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from detection.engine.sampler import EpochBatchSampler, aspect_groups
from detection.engine.state import rng_state, set_rng_state


def _indices(sampler: EpochBatchSampler) -> list[list[int]]:
    return [[i for i, _ in b] for b in sampler]


def test_order_is_a_function_of_seed_and_epoch_and_can_start_mid_epoch() -> None:
    s = EpochBatchSampler(10, 3, seed=1)
    s.set_epoch(2)
    full = _indices(s)
    assert sorted(i for b in full for i in b) == list(range(10)) and len(full) == 4 == len(s)
    s.set_epoch(2, start=2)
    assert _indices(s) == full[2:] and len(s) == 2
    s.set_epoch(3)
    assert _indices(s) != full
    seeds = [seed for b in s for _, seed in b]
    assert len(set(seeds)) == 10  # one augmentation seed per sample


def test_ranks_share_the_epoch_without_overlap() -> None:
    shards = []
    for rank in range(2):
        s = EpochBatchSampler(9, 2, seed=0, rank=rank, world=2)
        s.set_epoch(1)
        shards.append([i for b in _indices(s) for i in b])
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0]) | set(shards[1]) == set(range(9))


def test_aspect_ratio_groups_fill_batches_of_one_shape() -> None:
    sizes = [(200, 100), (100, 200)] * 6
    groups = aspect_groups(sizes)
    assert groups[:2] == [2, 0]
    s = EpochBatchSampler(len(sizes), 3, seed=0, group_ids=groups)
    s.set_epoch(1)
    batches = _indices(s)
    assert len(batches) == s.batches_per_epoch() == 4
    assert all(len({groups[i] for i in b}) == 1 for b in batches)


def test_rng_state_round_trip_restores_every_generator() -> None:
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == pytest.approx(a, abs=0)
