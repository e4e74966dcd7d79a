"""Training objectives shared by every model, each defined once.

Losses always run in float32, also under the GPU profile's bf16 autocast: their logits and
softmaxes are where low precision hurts, and they are cheap next to the encoders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import torch
from torch.nn import functional as F

P = ParamSpec("P")


def fp32(loss: Callable[P, torch.Tensor]) -> Callable[P, torch.Tensor]:
    """Run `loss` with autocast off and its tensor arguments cast to float32."""

    @functools.wraps(loss)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> torch.Tensor:
        cast = lambda v: v.float() if torch.is_tensor(v) and v.is_floating_point() else v  # noqa: E731
        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return loss(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper


IGNORED = -100  # a target that leaves the loss and its mean (cross_entropy's ignore_index)


@fp32
def info_nce(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with one positive per row: logits (b, m) similarities, target (b,) columns
    (`IGNORED`: the row is left out)."""
    return F.cross_entropy(logits / temperature, target, ignore_index=IGNORED)


@fp32
def masked_info_nce(
    logits: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE where `exclude` (b, m) True columns leave the softmax (the target never does):
    already-watched shows, an anchor itself."""
    exclude = exclude.clone()
    exclude[torch.arange(len(target), device=target.device), target] = False
    return F.cross_entropy(logits.masked_fill(exclude, float("-inf")) / temperature, target)


@fp32
def multi_positive_info_nce(
    z: torch.Tensor, n_anchors: int, weights: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Weighted multi-positive InfoNCE (SupCon / NT-Xent with several positives).

    z (m, p): L2-normalised vectors; the first n_anchors are anchors, all m are candidates
    (the rest: extra negatives). weights (n_anchors, m): positive weight of each candidate per
    anchor (0 = negative). The anchor itself is excluded from its own softmax:

        loss_a = - sum_c w_ac log softmax_c(z_a . z_c / temperature) / sum_c w_ac
    """
    logits = z[:n_anchors] @ z.T / temperature  # (n_anchors, m)
    self_mask = torch.eye(n_anchors, z.shape[0], dtype=torch.bool, device=z.device)
    log_p = torch.log_softmax(logits.masked_fill(self_mask, float("-inf")), dim=-1)
    w = weights.masked_fill(self_mask, 0.0)
    per_anchor = -(w * log_p.masked_fill(self_mask, 0.0)).sum(-1) / w.sum(-1).clamp(min=1e-9)
    return per_anchor.mean()


@fp32
def multinomial_nll(logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Multinomial likelihood over the catalogue (Mult-VAE/DAE): logits (b, n), counts (b, n)
    (a binary history); the mean over rows of -sum_j counts_j log softmax_j."""
    return -(torch.log_softmax(logits, dim=1) * counts).sum(dim=1).mean()


@fp32
def bpr(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: scores (b,) of a positive and (b,) or (b, k) of sampled
    negatives; -log sigmoid(pos - neg), averaged."""
    if negative.dim() == 2:
        positive = positive[:, None]
    return -F.logsigmoid(positive - negative).mean()


@fp32
def sampled_softmax(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 1.0,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over each query's positive and k shared sampled negatives.

    queries (b, d), positives (b, d), negatives (k, d); log_q (k,) the negatives' log
    sampling probabilities, subtracted (logQ correction) when sampling is by popularity."""
    pos = (queries * positives).sum(-1, keepdim=True)  # (b, 1)
    neg = queries @ negatives.T  # (b, k)
    if log_q is not None:
        neg = neg - log_q[None, :]
    logits = torch.cat([pos, neg], dim=1) / temperature  # (b, 1 + k)
    return F.cross_entropy(logits, torch.zeros(len(queries), dtype=torch.long, device=pos.device))
