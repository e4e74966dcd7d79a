"""The shared parts of models/layers.py that every model's batches go through."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tvrec.models.layers import (
    FAST_DROPOUT_MIN,
    CrossAttentionFusion,
    FastDropout,
    fast_dropout,
    packed_encoder,
    pad_histories,
    seen_mask,
)


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


def _encoder(dim: int = 32, heads: int = 4) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, 2 * dim, 0.1, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def _tokens(b: int = 64, n: int = 9, dim: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens and a padding mask hiding about half of them (the last never)."""
    gen = torch.Generator().manual_seed(0)
    pad = torch.rand(b, n, generator=gen) < 0.5  # (b, n)
    pad[:, -1] = False
    return torch.randn(b, n, dim, generator=gen), pad


def _without_dropout(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return module.train()


@pytest.mark.parametrize("group", [16, 256])  # rows attended together: four groups, one
def test_packed_encoder_is_the_stock_encoder_on_real_tokens(group: int) -> None:
    torch.manual_seed(0)
    encoder = _encoder().eval()
    tokens, pad = _tokens()
    with torch.no_grad():
        stock = encoder(tokens, src_key_padding_mask=pad)
        packed = packed_encoder(encoder, tokens, pad, group)
    assert torch.allclose(packed[~pad], stock[~pad], atol=1e-5)
    assert packed[pad].abs().max() == 0.0  # padding positions are zeros, not computed

    # training: the same gradients for every parameter and input (dropout off to compare)
    encoder = _without_dropout(encoder)
    weights = torch.randn_like(tokens) * (~pad).unsqueeze(-1)  # a loss on real tokens only
    grads = []
    stock_forward = lambda t: encoder(t, src_key_padding_mask=pad)  # noqa: E731
    packed_forward = lambda t: packed_encoder(encoder, t, pad, group)  # noqa: E731
    for forward in (stock_forward, packed_forward):
        encoder.zero_grad()
        given = tokens.clone().requires_grad_()
        (forward(given) * weights).sum().backward()
        grads.append([given.grad] + [p.grad.clone() for p in encoder.parameters()])
    for stock_grad, packed_grad in zip(*grads, strict=True):
        assert torch.allclose(packed_grad, stock_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "shape",
    [
        {"norm_first": False},  # post-norm
        {"activation": "relu"},
        {"activation": nn.GELU(approximate="tanh")},
        {"final_norm": True},
    ],
)
def test_packed_encoder_runs_another_encoder_shape_as_it_is(shape: dict) -> None:
    """The packed path computes a pre-norm, exact-GELU layer; any other layer (or a final
    norm) gets the stock encoder's own output, not a silently different one."""
    torch.manual_seed(0)
    final = shape.pop("final_norm", False)
    kwargs = {"activation": "gelu", "norm_first": True} | shape
    layer = nn.TransformerEncoderLayer(32, 4, 64, 0.1, batch_first=True, **kwargs)
    norm = nn.LayerNorm(32) if final else None
    encoder = nn.TransformerEncoder(layer, 2, norm=norm, enable_nested_tensor=False)
    encoder = _without_dropout(encoder)  # training mode: torch's fast path would hide tanh
    tokens, pad = _tokens()
    with torch.no_grad():
        stock = encoder(tokens, src_key_padding_mask=pad)
        packed = packed_encoder(encoder, tokens, pad)
    assert torch.allclose(packed[~pad], stock[~pad], atol=1e-6)
    assert packed[pad].abs().max() == 0.0


@pytest.mark.parametrize("training", [False, True])
def test_cross_attention_fusion_projects_only_real_content_tokens(training: bool) -> None:
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(32, 4, 2, 0.1)
    fusion = _without_dropout(fusion) if training else fusion.eval()
    content, pad = _tokens()
    text = torch.randn(64, 4, 32)
    kv = fusion.norm_content(content)
    stock, _ = fusion.cross(
        fusion.norm_text(text), kv, kv, key_padding_mask=pad, need_weights=False
    )
    assert torch.allclose(fusion._attend(fusion.norm_text(text), content, pad), stock, atol=1e-5)
    # what stands at a padded position does not matter
    noise = content + 100 * torch.randn_like(content) * pad.unsqueeze(-1)
    assert torch.allclose(fusion(text, noise, pad), fusion(text, content, pad), atol=1e-5)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_drops_a_share_p_and_rescales_the_rest(p: float) -> None:
    x = torch.rand(FAST_DROPOUT_MIN * 8) + 0.5  # no zeros of its own
    x.requires_grad_(True)
    y = fast_dropout(x, p, training=True)
    kept = y != 0
    # 262,144 draws: the kept share's standard error is under 0.001
    assert abs(float(kept.float().mean()) - (1 - p)) < 0.005
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    y.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))  # the same mask backwards


def test_fast_dropout_is_fixed_by_torch_seed_and_fresh_each_call() -> None:
    x = torch.ones(FAST_DROPOUT_MIN * 2)
    torch.manual_seed(3)
    first, second = fast_dropout(x, 0.2, True), fast_dropout(x, 0.2, True)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.2, True), first)
    assert not torch.equal(first, second)  # a new mask each call
    # masks of neighbouring calls are independent: agreement is what chance gives (0.68)
    assert abs(float(((first != 0) == (second != 0)).float().mean()) - 0.68) < 0.01


def test_fast_dropout_module_is_nn_dropout_outside_training() -> None:
    layer = FastDropout(0.3)
    x = torch.randn(4, FAST_DROPOUT_MIN)
    assert layer.state_dict() == {}  # swapping nn.Dropout for it leaves checkpoints as they were
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    small = torch.ones(10)  # below FAST_DROPOUT_MIN: torch's own dropout
    torch.manual_seed(0)
    expected = nn.functional.dropout(small, 0.3, True)
    torch.manual_seed(0)
    assert torch.equal(layer(small), expected)
    assert torch.equal(fast_dropout(x, 0.0, True), x)
