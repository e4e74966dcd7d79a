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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

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


class Histories:
    """Users' watch histories as one CSR matrix (rows: users, columns: show rows), handed to
    the encoder as bags of show rows: the encoder's cost grows with the shows watched, not
    with the catalogue."""

    def __init__(self, rows: list[list[int]], n_shows: int) -> None:
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        self.indptr = torch.zeros(len(rows) + 1, dtype=torch.long)  # (n_users + 1,)
        self.indptr[1:] = torch.cumsum(lengths, 0)
        self.indices = torch.tensor([s for r in rows for s in r], dtype=torch.long)  # (nnz,)
        self.n_shows = n_shows

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def _take(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bag id, show row) of every watched show of `users`, bag ids 0..len(users)-1."""
        start, end = self.indptr[users], self.indptr[users + 1]
        lengths = end - start  # (batch,)
        bag = torch.repeat_interleave(torch.arange(len(users)), lengths)  # (nnz_b,)
        first = torch.repeat_interleave(start - torch.cumsum(lengths, 0) + lengths, lengths)
        return bag, self.indices[first + torch.arange(len(bag))]

    def dense(self, users: torch.Tensor) -> torch.Tensor:
        """Binary histories (batch, n_shows): the reconstruction target."""
        bag, shows = self._take(users)
        x = torch.zeros(len(users), self.n_shows)
        x[bag, shows] = 1.0
        return x

    def bags(
        self, users: torch.Tensor, dropout: float = 0.0, generator: torch.Generator | None = None
    ) -> Bags:
        """The encoder's input for `users`: each history with a share `dropout` of its shows
        hidden, weighted as the dense Mult-DAE input x / (1 - p), normalised by sqrt(sum)."""
        bag, shows = self._take(users)
        if dropout > 0:
            keep = torch.rand(len(bag), generator=generator) >= dropout
            bag, shows = bag[keep], shows[keep]
        kept = torch.bincount(bag, minlength=len(users)).float()  # (batch,)
        scale = 1.0 / (1.0 - dropout)
        weight = scale / (kept * scale).clamp(min=1.0).sqrt()  # (batch,)
        offsets = torch.cumsum(kept.long(), 0) - kept.long()
        return Bags(shows, offsets, weight[bag], has_history=kept > 0)


@dataclass(frozen=True)
class Bags:
    """Bags of show rows for F.embedding_bag: flat show rows (nnz,), each bag's first index
    (batch,), per-row weights (nnz,), and whether a bag is non-empty (batch,)."""

    shows: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    has_history: torch.Tensor

    def to(self, device: torch.device) -> Bags:
        return Bags(*(t.to(device) for t in (self.shows, self.offsets, self.weights,
                                              self.has_history)))  # fmt: skip


class CollaborativeNet(nn.Module):
    def __init__(self, n_shows: int, dim: int) -> None:
        super().__init__()
        self.user_arch = nn.Linear(n_shows, dim)  # history -> user vector
        self.show_arch = nn.Linear(dim, n_shows)  # weight: show vectors, bias: show bias

    def embed_users(self, bags: Bags) -> torch.Tensor:
        """Weighted bags of watched shows -> (batch, dim) user vectors: the dense encoder
        tanh(W x + b) computed as a sum over the watched shows' columns of W."""
        pooled = F.embedding_bag(
            bags.shows, self.user_arch.weight.t(), bags.offsets,
            mode="sum", per_sample_weights=bags.weights,
        )  # fmt: skip
        return torch.tanh(pooled + self.user_arch.bias)  # (batch, dim)

    def forward(self, bags: Bags) -> torch.Tensor:
        """Logits over the catalogue: (batch, n_shows)."""
        return self.show_arch(self.embed_users(bags))


class _DenoisingTask(TrainTask):
    """Batches of users; each step reconstructs their (partly hidden) histories."""

    def __init__(self, net: CollaborativeNet, histories: Histories, cfg: CollaborativeConfig,
                 batch: int, device: torch.device) -> None:  # fmt: skip
        self.net, self.histories, self.cfg = net, histories, cfg
        self.batch, self.device = batch, device
        self.optimizer = torch.optim.Adam(
            net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )

    def plan(self, epoch: int, rngs: Rngs) -> Sequence[torch.Tensor]:
        order = torch.randperm(len(self.histories), generator=rngs.torch)
        return [order[s : s + self.batch] for s in range(0, len(order), self.batch)]

    def loss(self, batch: torch.Tensor, rngs: Rngs) -> StepResult:
        bags = self.histories.bags(batch, self.cfg.input_dropout, rngs.torch).to(self.device)
        target = self.histories.dense(batch).to(self.device)  # (batch, n_shows)
        loss = multinomial_nll(self.net(bags), target)
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(batch))


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
        histories = self._history_bags(users)
        self.net = CollaborativeNet(len(self.show_ids), cfg.dim).to(rt.device)
        batch = cfg.batch_size * rt.batch_multiplier
        task = _DenoisingTask(self.net, histories, cfg, batch, rt.device)
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

    def _history_bags(self, users: list[str]) -> Histories:
        return Histories([self.histories.get(u, []) for u in users], len(self.show_ids))

    def fold_in(self, events: pd.DataFrame) -> bool:
        """New users are encoded from their histories like any other (Mult-DAE's fold-in)."""
        self.histories |= {u: sorted(r) for u, r in self.fold_rows(events).items()}
        return True

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
            device = next(net.parameters()).device
            for start in range(0, len(user_ids), 1024):
                chunk = user_ids[start : start + 1024]
                bags = self._history_bags(chunk).bags(torch.arange(len(chunk))).to(device)
                h = net.embed_users(bags) * bags.has_history[:, None]  # (chunk, dim)
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
