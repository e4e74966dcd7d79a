"""Collaborative baseline: a history-encoder factorisation with a multinomial likelihood
(Mult-DAE, Liang et al. 2018, with a linear-tanh encoder).

Every seed model must beat it. It reads the positives of the Feast training set
(`collaborative_v1`), builds each user's watch history, and learns

    user_arch:  history (n_shows,) --dropout, normalise--> tanh(W_enc x + b)   (dim,)
    show_arch:  one output vector and bias per show                             (n_shows, dim + 1)
    score(u, s) = <user_arch(history_u), show_vec(s)> + show_bias(s)

trained with a softmax over the whole catalogue. A user is embedded from history, so users
who were not in training (but have history at recommendation time) are served too; users
with no history get [0, 1]: most-popular by bias. Exported for the index as user = [h, 1]
and show = [w, b], so a FAISS inner-product ("dot") search reproduces the score exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from .base import ModelConfig, Recommender, TrainingData
from .losses import multinomial_nll
from .trainer import Rngs, StepResult, TrainTask


class CollaborativeConfig(ModelConfig):
    dim: int = Field(200, ge=4)
    epochs: int = Field(80, ge=1)
    batch_size: int = Field(256, ge=1, description="users per step; the GPU profile multiplies it")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    input_dropout: float = Field(0.5, ge=0, lt=1, description="share of each history hidden")


class CollaborativeNet(nn.Module):
    def __init__(self, n_shows: int, dim: int) -> None:
        super().__init__()
        self.user_arch = nn.Linear(n_shows, dim)  # history -> user vector
        self.show_arch = nn.Linear(dim, n_shows)  # weight: show vectors, bias: show bias

    def embed_users(self, history: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """(batch, n_shows) binary histories -> (batch, dim) user vectors."""
        x = nn.functional.dropout(history, dropout, training=dropout > 0)
        x = x / x.sum(dim=1, keepdim=True).clamp(min=1.0).sqrt()
        return torch.tanh(self.user_arch(x))

    def forward(self, history: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """Logits over the catalogue: (batch, n_shows)."""
        return self.show_arch(self.embed_users(history, dropout))


class _DenoisingTask(TrainTask):
    """Batches of users; each step reconstructs their (partly hidden) histories."""

    def __init__(self, net: CollaborativeNet, x: torch.Tensor, cfg: CollaborativeConfig,
                 batch: int, device: torch.device) -> None:  # fmt: skip
        self.net, self.x, self.cfg, self.batch, self.device = net, x, cfg, batch, device
        self.optimizer = torch.optim.Adam(
            net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )

    def plan(self, epoch: int, rngs: Rngs) -> Sequence[torch.Tensor]:
        order = torch.randperm(len(self.x), generator=rngs.torch)
        return [order[s : s + self.batch] for s in range(0, len(self.x), self.batch)]

    def loss(self, batch: torch.Tensor, rngs: Rngs) -> StepResult:
        xb = self.x[batch].to(self.device)  # (batch, n_shows)
        loss = multinomial_nll(self.net(xb, self.cfg.input_dropout), xb)
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(xb))


class CollaborativeModel(Recommender, name="collaborative", config=CollaborativeConfig):
    prior_column = True
    net: CollaborativeNet | None = None

    # ---- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, rt = self.config, self.runtime
        torch.manual_seed(cfg.seed)
        self.show_ids = list(data.show_ids)
        self.histories = self._histories(data.frame)
        users = sorted(self.histories)
        x = self._history_matrix(users)  # (n_users, n_shows)
        self.net = CollaborativeNet(len(self.show_ids), cfg.dim).to(rt.device)
        task = _DenoisingTask(self.net, x, cfg, cfg.batch_size * rt.batch_multiplier, rt.device)
        history = self.trainer(data).fit(task)
        metrics = history.metrics() | {
            "n_users": len(users),
            "profile": rt.profile,
            "n_pairs": int(sum(len(h) for h in self.histories.values())),
        }
        self.make_manifest(data, cfg.dim + 1, metrics)
        return metrics

    def _histories(self, frame: pd.DataFrame) -> dict[str, list[int]]:
        """user -> sorted show rows of the training set's positives."""
        rows = {s: i for i, s in enumerate(self.show_ids)}
        pos = frame.loc[frame["label"] == 1, ["user_id", "show_id"]].drop_duplicates()
        pos = pos.assign(row=pos["show_id"].map(rows)).dropna(subset=["row"])
        return {u: sorted(g.astype(int).tolist()) for u, g in pos.groupby("user_id")["row"]}

    def _history_matrix(self, users: list[str]) -> torch.Tensor:
        """Binary histories (n_users, n_shows), filled with one scatter."""
        rows = [self.histories.get(u, []) for u in users]
        r = np.repeat(np.arange(len(users)), [len(h) for h in rows])
        c = np.fromiter((s for h in rows for s in h), dtype=np.int64, count=len(r))
        x = torch.zeros(len(users), len(self.show_ids))  # (n_users, n_shows)
        x[torch.from_numpy(r), torch.from_numpy(c)] = 1.0
        return x

    # ---- embeddings -------------------------------------------------------------------------
    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        arch = self._net().show_arch
        vec = torch.cat([arch.weight, arch.bias[:, None]], dim=1)  # (n_shows, dim + 1)
        return list(self.show_ids), vec.detach().float().cpu().numpy()

    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        net = self._net()
        out = np.zeros((len(user_ids), self.config.dim + 1), dtype=np.float32)
        out[:, -1] = 1.0  # the bias term; users without history score by popularity
        with torch.no_grad():
            for start in range(0, len(user_ids), 1024):
                chunk = user_ids[start : start + 1024]
                x = self._history_matrix(chunk).to(next(net.parameters()).device)
                h = net.embed_users(x) * (x.sum(1, keepdim=True) > 0)  # (chunk, dim)
                out[start : start + len(chunk), :-1] = h.float().cpu().numpy()
        return out

    def _net(self) -> CollaborativeNet:
        return self.fitted(self.net)

    # ---- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        net = self._net().state_dict()
        return {"net": net, "shows": self.show_ids, "histories": self.histories}

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.histories = state["shows"], state["histories"]
        self.net = CollaborativeNet(len(self.show_ids), self.config.dim)
        self.net.load_state_dict(state["net"])
