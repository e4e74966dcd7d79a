"""The shared training objectives (models/losses.py) on inputs with known answers, and their
float32 guarantee under the GPU profile's bf16 autocast. (The multi-positive InfoNCE's known
answer is in test_contrastive.py, next to the model that trains with it.)"""

from __future__ import annotations

import math

import pytest
import torch

from tvrec.models.losses import (
    bpr,
    info_nce,
    masked_info_nce,
    multi_positive_info_nce,
    multinomial_nll,
    sampled_softmax,
)

LOG2 = math.log(2.0)


def test_bpr_of_equal_scores_is_log_2() -> None:
    scores = torch.tensor([0.3, -1.0, 2.5])
    assert bpr(scores, scores.clone()).item() == pytest.approx(LOG2, rel=1e-6)
    # k negatives per positive, all scored like it
    assert bpr(scores, scores[:, None].expand(3, 4)).item() == pytest.approx(LOG2, rel=1e-6)
    # a margin of m: -log sigmoid(m)
    got = bpr(torch.tensor([2.0]), torch.tensor([0.5])).item()
    assert got == pytest.approx(math.log1p(math.exp(-1.5)), rel=1e-6)


def test_sampled_softmax_with_a_negative_like_the_positive_is_log_2() -> None:
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(4, 6, generator=gen)
    positive = torch.randn(1, 6, generator=gen)
    # every query's one negative is its positive itself: two equal logits
    got = sampled_softmax(queries, positive.expand(4, 6), positive, temperature=0.3)
    assert got.item() == pytest.approx(LOG2, rel=1e-6)
    # logQ correction: a negative scored like the positive but drawn with probability 1/2
    # gains log 2 (it stands for twice its own mass): softmax 1 / (1 + 2)
    ones = torch.ones(1, 6)
    got = sampled_softmax(ones, ones, ones, log_q=torch.tensor([math.log(0.5)]))
    assert got.item() == pytest.approx(math.log(3), rel=1e-6)


def test_info_nce_of_equal_logits_is_log_m() -> None:
    logits = torch.zeros(3, 5)
    got = info_nce(logits, torch.tensor([0, 2, 4]), temperature=0.1)
    assert got.item() == pytest.approx(math.log(5), rel=1e-6)


def test_masked_info_nce_never_masks_the_target() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    target = torch.tensor([1, 0])
    everything = torch.ones(2, 3, dtype=torch.bool)
    # all columns excluded: only the target is left, a certain pick
    assert masked_info_nce(logits, target, everything, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert everything.all()  # the caller's mask is not changed
    # excluding a column is the same as leaving it out
    exclude = torch.tensor([[False, False, True], [False, True, False]])
    got = masked_info_nce(logits, target, exclude, 0.5)
    loss_a = info_nce(logits[:1, :2], target[:1], 0.5)
    loss_b = info_nce(logits[1:, [0, 2]], target[1:], 0.5)
    assert got.item() == pytest.approx((loss_a.item() + loss_b.item()) / 2, rel=1e-6)


def test_multinomial_nll_of_uniform_logits_is_log_n_per_watch() -> None:
    counts = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0]])
    got = multinomial_nll(torch.zeros(2, 4), counts)
    assert got.item() == pytest.approx((1 + 2) * math.log(4) / 2, rel=1e-6)


def _cases() -> dict[str, tuple]:
    gen = torch.Generator().manual_seed(1)
    r = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    z = torch.nn.functional.normalize(r(6, 4), dim=1)
    return {
        "info_nce": (info_nce, (r(3, 5), torch.tensor([0, 1, 2]), 0.1)),
        "masked_info_nce": (
            masked_info_nce,
            (r(3, 5), torch.tensor([0, 1, 2]), torch.eye(3, 5, dtype=torch.bool), 0.1),
        ),
        "multi_positive_info_nce": (multi_positive_info_nce, (z, 4, r(4, 6).abs(), 0.4)),
        "multinomial_nll": (multinomial_nll, (r(2, 7), (r(2, 7) > 0).float())),
        "bpr": (bpr, (r(5), r(5, 3))),
        "sampled_softmax": (sampled_softmax, (r(3, 4), r(3, 4), r(6, 4), 0.5, r(6))),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_losses_are_float32_under_autocast(name: str) -> None:
    """Under bf16 autocast, with bf16 inputs, a loss still computes (and returns) float32:
    the same value as from the bf16 inputs cast to float32 up front."""
    loss, args = _cases()[name]
    low = [a.bfloat16() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(*low)
    assert got.dtype == torch.float32
    exact = loss(*[a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in low])
    assert got.item() == pytest.approx(exact.item(), rel=1e-6)
