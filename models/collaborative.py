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

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from .base import MANIFEST, ModelManifest, Recommender, TrainingData
from .runtime import Runtime, progress_bar


@dataclass
class CollaborativeConfig:
    dim: int = 200
    epochs: int = 80
    batch_size: int = 256  # users per step; the GPU profile multiplies it
    lr: float = 1e-3
    weight_decay: float = 1e-5
    input_dropout: float = 0.5  # denoising: hide half of each history while training
    seed: int = 0


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


class CollaborativeModel(Recommender):
    name: ClassVar[str] = "collaborative"
    feature_service: ClassVar[str] = "collaborative_v1"
    config_class: ClassVar[type] = CollaborativeConfig
    prior_column: ClassVar[bool] = True

    def __init__(
        self, config: CollaborativeConfig | None = None, runtime: Runtime | None = None
    ) -> None:
        self.config = config or CollaborativeConfig()
        self.runtime = runtime or Runtime.detect()
        self.show_ids: list[str] = []
        self.histories: dict[str, list[int]] = {}  # user -> show rows watched before as-of
        self.net: CollaborativeNet | None = None

    # ---- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, rt = self.config, self.runtime
        torch.manual_seed(cfg.seed)
        self.show_ids = list(data.show_ids)
        self.histories = self._histories(data.frame)
        users = sorted(self.histories)
        x = self._history_matrix(users)  # (n_users, n_shows)
        self.net = CollaborativeNet(len(self.show_ids), cfg.dim).to(rt.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        batch = cfg.batch_size * rt.batch_multiplier
        gen = torch.Generator().manual_seed(cfg.seed)
        losses: list[float] = []
        with progress_bar("train collaborative", cfg.epochs) as advance:
            for _ in range(cfg.epochs):
                order = torch.randperm(len(users), generator=gen)
                total = sum(
                    self._step(opt, x[order[s : s + batch]]) for s in range(0, len(users), batch)
                )
                losses.append(total / max(1, len(users)))
                advance(loss=losses[-1])
        self.manifest = ModelManifest(
            model_name=self.name,
            model_version=f"{self.name}-{data.as_of:%Y%m%dT%H%M%S}-{data.data_snapshot[:8]}",
            feature_service=self.feature_service,
            data_snapshot=data.data_snapshot,
            as_of=data.as_of.isoformat(),
            dim=cfg.dim + 1,
            config=asdict(cfg),
            metrics={
                "train_loss": losses,
                "n_users": len(users),
                "profile": rt.profile,
                "n_pairs": int(sum(len(h) for h in self.histories.values())),
            },
        )
        return self.manifest.metrics

    def _step(self, opt: torch.optim.Optimizer, xb: torch.Tensor) -> float:
        """One step of the multinomial likelihood; returns the batch's summed loss."""
        net = self._net()
        xb = xb.to(self.runtime.device)
        with self.runtime.autocast():
            logits = net(xb, self.config.input_dropout)  # (batch, n_shows)
        log_p = torch.log_softmax(logits.float(), dim=1)
        loss = -(log_p * xb).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()) * len(xb)

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

    def known_users(self) -> list[str]:
        return sorted(self.histories)

    def _net(self) -> CollaborativeNet:
        if self.net is None:
            raise RuntimeError("model is not fitted")
        return self.net

    # ---- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self._net().state_dict(), directory / "weights.pt")
        payload = {"shows": self.show_ids, "histories": self.histories}
        (directory / "state.json").write_text(json.dumps(payload))
        assert self.manifest is not None
        (directory / MANIFEST).write_text(json.dumps(self.manifest.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> CollaborativeModel:
        directory = Path(directory)
        manifest = ModelManifest.read(directory)
        model = cls(CollaborativeConfig(**manifest.config), Runtime.cpu())
        state = json.loads((directory / "state.json").read_text())
        model.show_ids, model.histories = state["shows"], state["histories"]
        model.net = CollaborativeNet(len(model.show_ids), model.config.dim)
        model.net.load_state_dict(torch.load(directory / "weights.pt", map_location="cpu"))
        model.manifest = manifest
        return model
