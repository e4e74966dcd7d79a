"""The shared parts of models/layers.py that every model's batches go through."""

from __future__ import annotations

import numpy as np
import torch

from tvrec.models.layers import pad_histories, seen_mask


def test_pad_histories_keeps_the_latest_shows_right_aligned() -> None:
    histories = [np.array([7, 8, 9, 10, 11]), [3], [], np.array([], dtype=np.int64), [4, 5]]
    index, mask = pad_histories(histories, 3)
    assert index.tolist() == [[9, 10, 11], [0, 0, 3], [0, 0, 0], [0, 0, 0], [0, 4, 5]]
    assert mask.tolist() == [
        [True, True, True],
        [False, False, True],
        [False, False, False],
        [False, False, False],
        [False, True, True],
    ]
    assert index.dtype == torch.long and mask.dtype == torch.bool


def test_pad_histories_of_no_users_and_of_random_lengths() -> None:
    index, mask = pad_histories([], 4)
    assert index.shape == mask.shape == (0, 4)
    gen = np.random.default_rng(0)
    histories = [gen.integers(1, 100, int(gen.integers(0, 12))) for _ in range(50)]
    index, mask = pad_histories(histories, 6)
    for row, history in enumerate(histories):
        tail = history[-6:]
        assert index[row, 6 - len(tail) :].tolist() == tail.tolist()
        assert int(mask[row].sum()) == len(tail) and not mask[row, : 6 - len(tail)].any()


def test_seen_mask_marks_only_real_history_entries() -> None:
    index, mask = pad_histories([[2, 0], [1]], 3)  # show 0 is real in the first row only
    assert seen_mask(index, mask, 4).tolist() == [
        [True, False, True, False],
        [False, True, False, False],
    ]
