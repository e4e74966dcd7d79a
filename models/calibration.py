"""A recommendation's `confidence` as the chance it is watched, learned on the fusion's window.

The fusion's own uncertainty (its heads' spread: epistemic; its predicted noise: aleatoric;
the share of noisy draws keeping the show in the top ten) said next to nothing about which
recommendations are watched: AUC 0.511 on anime's held-out part, 0.495 among recommendations
at the same rank (docs/benchmarks.md). A logistic regression over those, the fused score, its
softmax among the candidates, the place in the list and the context (the user's history
length and idle days, the show's popularity and trend) is fitted on the window the fusion
trained on (labels: what each window user watched in it; no member saw those events) and
gives `confidence` = P(watched in a window like the fusion's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MIN_LABELS = 10  # hits and misses each: fewer and the fit says nothing (no calibration)
L2 = 1e-3  # on the standardised features' weights
FEATURES = ("score", "log softmax", "heads' spread", "log noise sd", "stay share", "log place")


def confidence_features(
    logits: torch.Tensor,
    log_var: torch.Tensor,
    score: torch.Tensor,
    top: torch.Tensor,
    context: torch.Tensor,
    stay: np.ndarray,
) -> np.ndarray:
    """(b, k, F) per chosen candidate: FEATURES, then the candidate's context row.

    logits (b, N, H) the heads', log_var (b, N), score (b, N) as served (-inf: no candidate),
    top (b, k) chosen candidates, context (b, N, C) standardised, stay (b, k)."""
    b, k = top.shape
    pick = lambda x: x.gather(1, top)  # noqa: E731  (b, N) -> (b, k)
    columns = [
        pick(score),
        pick(score.log_softmax(1)),
        pick(logits.std(-1, unbiased=False)),
        pick(0.5 * log_var),
        torch.as_tensor(stay, dtype=torch.float32),
        torch.log1p(torch.arange(k, dtype=torch.float32)).expand(b, k),
    ]
    ctx = context.gather(1, top[..., None].expand(b, k, context.shape[-1]))  # (b, k, C)
    feats = torch.cat([torch.stack(columns, -1), ctx], -1)
    # a place past the user's candidates (-inf score): finite, its row is not served anyway
    return torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=-30.0).numpy()


@dataclass
class Calibration:
    """confidence = sigmoid(w . (features - mean) / std + bias)."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    weights: np.ndarray  # (F,)
    bias: float

    @classmethod
    def fit(cls, feats: np.ndarray, watched: np.ndarray) -> Calibration | None:
        """Logistic regression of `watched` (n,) on `feats` (n, F); None with fewer than
        MIN_LABELS hits or misses."""
        hits = int(watched.sum())
        if min(hits, watched.size - hits) < MIN_LABELS:
            return None
        mean, std = feats.mean(0), feats.std(0) + 1e-6
        x = torch.as_tensor((feats - mean) / std, dtype=torch.float32)
        y = torch.as_tensor(watched, dtype=torch.float32)
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(x @ w + b, y) + L2 * (w**2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return cls(mean, std, w.detach().numpy().copy(), float(b.detach()))

    def probability(self, feats: np.ndarray) -> np.ndarray:
        """(..., F) -> (...) the chance each is watched."""
        z = ((feats - self.mean) / self.std) @ self.weights + self.bias
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {
            "mean": torch.as_tensor(self.mean),
            "std": torch.as_tensor(self.std),
            "weights": torch.as_tensor(self.weights),
            "bias": self.bias,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Calibration | None:
        if state is None:
            return None
        return cls(
            state["mean"].numpy(), state["std"].numpy(), state["weights"].numpy(), state["bias"]
        )
