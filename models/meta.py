"""MLTA: a meta-learning adapter for fast adaptation to new users, genres and platforms.

A base user tower reads a user's recent shows; small *fast* parameters adapt it to one user
(or one new genre or platform) in a few gradient steps, and MAML learns their starting point
and step sizes so that a few steps on a user's first events predict what they watch next.

    show_arch    show vector = id embedding + mean genre embedding + mean platform embedding,
                 and a bias (the prior)                                         (n_shows, dim)
    user_arch    attention over the user's last `history_len` shows (HistoryAttention) and a
                 linear head                                                    (dim,)
    adapters     the fast parameters phi, one copy per task:
                   preference  p      (dim,)               added to the user vector
                   genre       A_g    (n_genres, dim)      a show-side offset per genre
                   platform    A_p    (n_platforms, dim)   a show-side offset per platform
                 v = user_head(user_arch(history)) + p
                 score(v, s) = <v, base_s> + G_s . (A_g v) + P_s . (A_p v) + bias_s
                 (G_s, P_s: the show's genre and platform shares, rows summing to 1)

Meta-training (phase "train"): a task is one user's first `support` (k = 5) events as the
support set and the following `query` events as the query set; half the tasks instead cut
the user's sequence at a random later point (a warm user's support is their recent history).
Tasks are sampled evenly across the (main genre, main platform) groups of their support. The
inner loop takes `inner_steps` steps on the support set's softmax likelihood over the catalogue,
phi' = phi - exp(log_lr) * grad (per-tensor step sizes learned, Meta-SGD), written with
`torch.func` (grad, vmapped over the tasks); the outer loss is the query set's likelihood under
phi', the support shows excluded. Second order by default; `first_order` detaches the inner
gradient (FOMAML).

Serving: every user is adapted on their own recent events (the same steps as in training), so
a user with five events gets five events' worth of adaptation. The adapted user is exported
as [v, A_g' v, A_p' v, 1] and a show as [base_s, G_s, P_s, bias_s]: the index's inner product is
the score.

New groups: a genre or platform whose first event is under `new_group_days` before the as-of
and that has at most `new_group_max_users` viewers is adapted at the end of `fit` on its early
viewers' events (`adapt_group`): its row of A_g or A_p takes `group_steps` inner steps.

Continual: with `warm_start`, a nightly run starts from the published model's weights (shows,
genres and platforms matched by id), trains `warm_epochs`, and replays the tasks of its episodic
memory (the `memory_size` most recent tasks, kept in the saved state) beside the new ones.

Point in time: tasks are built from the training set's positives, all before the as-of; a
query event always comes after its support events (on an untimed log, where no order exists,
each epoch draws a fresh random order per user).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.func import grad, vmap
from torch.nn import functional as F

from .base import ModelConfig, Recommender, TrainingData, UserTable
from .layers import HistoryAttention, pad_histories
from .trainer import Rngs, StepResult, TrainTask

log = logging.getLogger(__name__)
FAST = ("preference", "genre", "platform")  # the adapters' fast parameters, in order
NEG = -1e9  # a logit that no softmax picks


class MetaConfig(ModelConfig):
    dim: int = Field(64, ge=4)
    heads: int = Field(2, ge=1)
    history_len: int = Field(50, ge=2, description="recent shows the user tower reads")
    support: int = Field(5, ge=1, description="k: a task's support set is a user's first k events")
    query: int = Field(20, ge=1, description="events after the support a task predicts")
    long_share: float = Field(
        0.5, ge=0, le=1, description="share of tasks cut at a random later point of the sequence"
    )
    epochs: int = Field(20, ge=1)
    patience: int | None = Field(3, ge=1, description="early stopping on the validation users")
    val_users: int = Field(
        256, ge=0, description="users held out of meta-training: each epoch ends with their "
        "few-shot NDCG@10 (first `support` events in, the rest scored); 0: no validation",
    )  # fmt: skip
    tasks_per_user: int = Field(4, ge=1, description="tasks drawn per user and epoch")
    tasks_per_epoch: int | None = Field(
        4096, ge=1, description="tasks an epoch draws (the rest wait for later epochs); None: "
        "one per user",
    )  # fmt: skip
    batch_size: int = Field(64, ge=1, description="tasks per meta-batch; the GPU profile "
                            "multiplies it")  # fmt: skip
    inner_steps: int = Field(2, ge=0, description="adaptation steps in training and serving")
    inner_lr: float = Field(0.5, gt=0, description="the inner steps' starting size (learned)")
    first_order: bool = Field(False, description="FOMAML: no gradient through the inner steps")
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    base: Literal["ease", "none"] = Field(
        "none", description="a closed-form item-item base under the tower: EASE-TV fitted on "
        "the training users, its factors frozen, the tower and adapters learning on top; "
        "none: the tower alone",
    )  # fmt: skip
    base_rank: int = Field(256, ge=8, description="rank of the base's factorisation")
    base_grid: list[float] = Field(
        [100.0, 250.0, 500.0, 1000.0, 2500.0], min_length=1,
        description="the base's l2 values tried on the validation users' few-shot tasks",
    )  # fmt: skip
    base_max_shows: int = Field(20000, ge=1, description="larger catalogues: no base")
    # new genres and platforms
    group_steps: int = Field(5, ge=0, description="inner steps adapting a new genre/platform")
    new_group_days: int = Field(30, ge=1, description="a group first watched this recently is new")
    new_group_max_users: int = Field(20, ge=1, description="... and has at most this many viewers")
    # continual learning
    warm_start: bool = Field(
        False, description="start from the published model's weights (measured on MovieLens: "
        "0.35x the time, few-shot NDCG@10 0.459 against a cold start's 0.498; "
        "bench/bench_meta_warm.py)",
    )  # fmt: skip
    warm_epochs: int = Field(4, ge=1, description="epochs of a warm-started run")
    warm_lr: float = Field(
        3e-4, gt=0, description="learning rate of a warm-started run (a fresh optimiser at the "
        "full rate throws a trained model off)",
    )  # fmt: skip
    memory_size: int = Field(2048, ge=0, description="recent tasks kept for replay")
    replay_share: float = Field(0.25, ge=0, lt=1, description="share of a batch replayed")

    @model_validator(mode="after")
    def _consistent(self) -> MetaConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.support > self.history_len:
            raise ValueError(f"support ({self.support}) must be at most history_len "
                             f"({self.history_len})")  # fmt: skip
        return self


# ---- what a show belongs to ------------------------------------------------------------------
@dataclass
class Groups:
    """Each show's genre and platform shares, (n_shows, n_genres) and (n_shows, n_platforms)
    float32 rows summing to 1 (0 for a show without any), and the groups' names (id i - 1
    is names[i - 1]; column 0 is "unknown")."""

    genre: torch.Tensor
    platform: torch.Tensor
    genre_names: list[str]
    platform_names: list[str]

    @classmethod
    def of(cls, data: TrainingData) -> Groups:
        if data.content is None:
            raise ValueError("MLTA reads show genres and platforms: build its inputs with content")
        feats, vocab = data.content.features, data.content.vocab
        genres, platforms = list(vocab.get("genres", [])), list(vocab.get("platforms", []))
        return cls(
            _shares(feats["show_metadata__genre_ids"], len(genres) + 1),
            _shares(feats["show_metadata__platform_ids"], len(platforms) + 1),
            genres,
            platforms,
        )

    def matrix(self, kind: str) -> torch.Tensor:
        return self.genre if kind == "genre" else self.platform

    def names(self, kind: str) -> list[str]:
        return self.genre_names if kind == "genre" else self.platform_names


def _shares(ids: pd.Series, width: int) -> torch.Tensor:
    out = torch.zeros(len(ids), width)
    for i, row in enumerate(ids):
        row = [int(v) for v in (row if row is not None else []) if 0 < int(v) < width]
        if row:
            out[i, row] = 1.0 / len(row)
    return out


# ---- the network -------------------------------------------------------------------------------
class MetaNet(nn.Module):
    def __init__(self, n_shows: int, groups: Groups, cfg: MetaConfig, base_rank: int = 0) -> None:
        super().__init__()
        # the frozen base: a user's base vector is x L (x: their shows, binary), its scores
        # base_scale * x L R^T; width 0 without a base
        self.register_buffer("base_left", torch.zeros(n_shows, base_rank))  # (n_shows, r)
        self.register_buffer("base_right", torch.zeros(n_shows, base_rank))  # (n_shows, r)
        self.base_scale = nn.Parameter(torch.tensor(10.0))
        dim, n_genres, n_platforms = cfg.dim, groups.genre.shape[1], groups.platform.shape[1]
        self.register_buffer("genre_share", groups.genre, persistent=False)  # (n_shows, G)
        self.register_buffer("platform_share", groups.platform, persistent=False)  # (n_shows, P)
        # show_arch: what a show is, shared by every task
        self.show_id = nn.Embedding(n_shows, dim)
        nn.init.normal_(self.show_id.weight, std=0.05)
        self.genre_emb = nn.Parameter(torch.randn(n_genres, dim) * 0.05)
        self.platform_emb = nn.Parameter(torch.randn(n_platforms, dim) * 0.05)
        self.show_bias = nn.Parameter(torch.zeros(n_shows))
        # user_arch: the base user tower
        self.user_arch = HistoryAttention(dim, cfg.heads, cfg.history_len)
        self.user_head = nn.Linear(dim, dim)
        # zero-initialised: training starts from the base (and the prior) alone
        nn.init.zeros_(self.user_head.weight)
        nn.init.zeros_(self.user_head.bias)
        # adapters: the fast parameters' meta-learned starting point and step sizes
        self.preference = nn.Parameter(torch.zeros(dim))
        self.genre_adapter = nn.Parameter(torch.zeros(n_genres, dim))
        self.platform_adapter = nn.Parameter(torch.zeros(n_platforms, dim))
        self.log_lr = nn.Parameter(torch.full((len(FAST),), math.log(cfg.inner_lr)))

    def shows(self) -> torch.Tensor:
        """Base show vectors (n_shows, dim)."""
        return (
            self.show_id.weight
            + self.genre_share @ self.genre_emb
            + self.platform_share @ self.platform_emb
        )

    def users(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unadapted user vectors (b, dim) from padded show rows (b, L) and their mask."""
        return self.user_head(self.user_arch(self.shows()[history], mask))

    def fast(self) -> tuple[torch.Tensor, ...]:
        """The adapters' starting point: (preference (dim,), A_g (G, dim), A_p (P, dim))."""
        return self.preference, self.genre_adapter, self.platform_adapter

    def base_users(self, support: torch.Tensor) -> torch.Tensor:
        """Base user vectors (b, r) from support weights (b, n_shows): x L, x binary."""
        return (support > 0).to(self.base_left.dtype) @ self.base_left

    def base_scores(self, base_users: torch.Tensor) -> torch.Tensor:
        """The base's scores (b, n_shows) of base user vectors (b, r)."""
        return self.base_scale * base_users @ self.base_right.T

    def logits(
        self, fast: Sequence[torch.Tensor], user: torch.Tensor, shows: torch.Tensor,
        base: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """One task's scores over the catalogue (n_shows,): user (dim,), shows (n_shows, dim),
        base (n_shows,) the base's scores for the task."""
        v = user + fast[0]  # (dim,)
        genre = self.genre_share @ (fast[1] @ v)  # (n_shows,)
        platform = self.platform_share @ (fast[2] @ v)
        return shows @ v + genre + platform + self.show_bias + base

    def adapt(
        self,
        fast: Sequence[torch.Tensor],
        users: torch.Tensor,
        support: torch.Tensor,
        base: torch.Tensor,
        steps: int,
        first_order: bool,
        shows: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """`steps` inner steps per task: fast tensors batched (b, ...), users (b, dim), support
        (b, n_shows) weights of the support shows (rows summing to 1), base (b, n_shows) the
        base's scores -> adapted fast (b, ...)."""
        lr = self.log_lr.exp()

        def support_nll(
            f: tuple[torch.Tensor, ...], u: torch.Tensor, w: torch.Tensor, b: torch.Tensor
        ) -> torch.Tensor:
            return -(F.log_softmax(self.logits(f, u, shows, b), -1) * w).sum()

        step_grad = vmap(grad(support_nll))
        fast = tuple(fast)
        for _ in range(steps):
            grads = step_grad(fast, users, support, base)
            if first_order:
                grads = tuple(g.detach() for g in grads)
            fast = tuple(f - lr[i] * g for i, (f, g) in enumerate(zip(fast, grads, strict=True)))
        return fast

    def batched_fast(self, b: int) -> tuple[torch.Tensor, ...]:
        return tuple(f.unsqueeze(0).expand(b, *f.shape) for f in self.fast())

    def served(
        self, fast: Sequence[torch.Tensor], users: torch.Tensor, base_users: torch.Tensor
    ) -> torch.Tensor:
        """Index vectors of adapted users (b, dim + G + P + r + 1):
        [v, A_g v, A_p v, base_scale x L, 1]."""
        v = users + fast[0]  # (b, dim)
        genre = torch.einsum("bgd,bd->bg", fast[1], v)
        platform = torch.einsum("bpd,bd->bp", fast[2], v)
        base = self.base_scale * base_users
        return torch.cat([v, genre, platform, base, torch.ones_like(v[:, :1])], dim=1)

    def served_shows(self) -> torch.Tensor:
        """Index vectors of shows (n_shows, dim + G + P + r + 1): [show, G_s, P_s, R_s, bias]."""
        parts = [self.shows(), self.genre_share, self.platform_share, self.base_right]
        return torch.cat([*parts, self.show_bias[:, None]], 1)


# ---- tasks -----------------------------------------------------------------------------------
@dataclass
class Task:
    """Show rows: the support (oldest first) and the query that follows it."""

    support: np.ndarray
    query: np.ndarray


class Sequences:
    """Each user's distinct shows in first-watch order (rows), and whether the log has an order."""

    def __init__(self, users: list[str], rows: list[np.ndarray], last_us: np.ndarray,
                 timed: bool) -> None:  # fmt: skip
        self.users, self.rows, self.last_us, self.timed = users, rows, last_us, timed

    @classmethod
    def of(cls, positives: pd.DataFrame, row: Mapping[str, int]) -> Sequences:
        pos = positives[positives["show_id"].isin(row)]
        ts = pd.to_datetime(pos["event_timestamp"], utc=True).dt.as_unit("us").astype("int64")
        frame = pd.DataFrame(
            {"user": pos["user_id"].to_numpy(), "ts": ts,
             "row": pos["show_id"].map(row).to_numpy(np.int64)}
        )  # fmt: skip
        frame = frame.sort_values(["user", "ts", "row"], kind="stable")
        users, rows, last = [], [], []
        for user, g in frame.groupby("user", sort=True):
            users.append(str(user))
            rows.append(g["row"].to_numpy(np.int64))
            last.append(int(g["ts"].max()))
        timed = frame["ts"].nunique() > 1
        return cls(users, rows, np.asarray(last, dtype=np.int64), timed)

    def subset(self, keep: np.ndarray) -> Sequences:
        """These users (a boolean mask over `users`)."""
        at = np.flatnonzero(keep)
        return Sequences([self.users[i] for i in at], [self.rows[i] for i in at],
                         self.last_us[at], self.timed)  # fmt: skip

    def split(self, n_val: int, support: int, seed: int) -> tuple[Sequences, Sequences]:
        """(training users, up to `n_val` validation users with more than `support` events)."""
        eligible = np.flatnonzero([len(r) > support for r in self.rows])
        n_val = min(n_val, len(eligible) // 5)  # never most of the users
        val = np.zeros(len(self.users), dtype=bool)
        val[np.random.default_rng(seed).choice(eligible, n_val, replace=False)] = True
        return self.subset(~val), self.subset(val)

    def few_shot(self, support: int, seed: int) -> list[Task]:
        """The few-shot protocol's tasks: each user's first `support` events (a seeded random
        `support` of them on an untimed log) and all the rest."""
        rng = np.random.default_rng(seed)
        tasks = []
        for seq in self.rows:
            order = seq if self.timed else rng.permutation(seq)
            tasks.append(Task(order[:support], order[support:]))
        return tasks

    def tasks(self, cfg: MetaConfig, rng: np.random.Generator) -> list[Task]:
        """`tasks_per_user` tasks per user with more than `support` events: short (the first
        k) or, a share `long_share` of them, cut at a random later point."""
        out = []
        for seq in self.rows:
            if len(seq) <= cfg.support:
                continue
            for _ in range(cfg.tasks_per_user):
                order = seq if self.timed else rng.permutation(seq)
                cut = cfg.support
                if rng.random() < cfg.long_share:
                    cut = int(rng.integers(cfg.support, len(seq)))  # support = order[:cut]
                start = max(0, cut - cfg.history_len)
                out.append(Task(order[start:cut], order[cut : cut + cfg.query]))
        return out


def group_key(task: Task, groups: Groups) -> tuple[int, int]:
    """A task's (main genre, main platform): the columns with the most share in its support."""
    genre = int(groups.genre[task.support].sum(0).argmax())
    platform = int(groups.platform[task.support].sum(0).argmax())
    return genre, platform


def balanced_sample(tasks: list[Task], groups: Groups, n: int, rng: np.random.Generator
                    ) -> list[Task]:  # fmt: skip
    """`n` tasks (without replacement) drawn with each (genre, platform) group about as likely
    as any other: a task's weight is 1 / sqrt(its group's size)."""
    if n >= len(tasks):
        return [tasks[i] for i in rng.permutation(len(tasks))]
    keys = [group_key(t, groups) for t in tasks]
    sizes = pd.Series(keys).map(pd.Series(keys).value_counts()).to_numpy(np.float64)
    weight = 1.0 / np.sqrt(sizes)
    picked = rng.choice(len(tasks), size=n, replace=False, p=weight / weight.sum())
    return [tasks[i] for i in picked]


@dataclass
class TaskBatch:
    history: torch.Tensor  # (b, L) support rows, right-aligned (pad_histories)
    mask: torch.Tensor  # (b, L)
    support: torch.Tensor  # (b, n_shows) support weights, rows summing to 1
    query: torch.Tensor  # (b, n_shows) query weights, rows summing to 1
    seen: torch.Tensor  # (b, n_shows) NEG at support shows, else 0

    @classmethod
    def of(cls, tasks: Sequence[Task], n_shows: int, length: int) -> TaskBatch:
        history, mask = pad_histories([t.support for t in tasks], length)
        support = _weights([t.support for t in tasks], n_shows)
        query = _weights([t.query for t in tasks], n_shows)
        return cls(history, mask, support, query, support.gt(0) * NEG)

    def to(self, device: torch.device) -> TaskBatch:
        return TaskBatch(*(t.to(device) for t in (self.history, self.mask, self.support,
                                                  self.query, self.seen)))  # fmt: skip


def _weights(rows: Sequence[np.ndarray], n_shows: int) -> torch.Tensor:
    out = torch.zeros(len(rows), n_shows)
    for i, r in enumerate(rows):
        if len(r):
            out[i, torch.as_tensor(np.asarray(r, dtype=np.int64))] = 1.0 / len(r)
    return out


class _MetaTask(TrainTask):
    """Meta-batches of tasks; each step adapts per task and scores the query sets."""

    def __init__(self, model: MetaModel, seq: Sequences, memory: list[Task],
                 val: list[Task], lr: float) -> None:  # fmt: skip
        cfg = model.config
        self.model, self.cfg, self.net = model, cfg, model._net()
        self.seq, self.memory, self.val = seq, memory, val
        self.monitor = "val_ndcg" if val else None
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=lr, weight_decay=cfg.weight_decay, fused=True
        )
        self.batch = cfg.batch_size * model.runtime.batch_multiplier

    def plan(self, epoch: int, rngs: Rngs) -> list[list[Task]]:
        tasks = self.seq.tasks(self.cfg, rngs.numpy)  # fresh cuts every epoch
        n = self.cfg.tasks_per_epoch or len(tasks)
        fresh = balanced_sample(tasks, self.model._groups(), n, rngs.numpy)
        replay = round(self.batch * self.cfg.replay_share) if self.memory else 0
        size = self.batch - replay
        batches = []
        for start in range(0, len(fresh), size):
            chosen = fresh[start : start + size]
            if replay:
                picks = rngs.numpy.choice(len(self.memory), size=replay)
                chosen = chosen + [self.memory[i] for i in picks]
            batches.append(chosen)
        return batches

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"val_ndcg": self.model.few_shot_ndcg(self.val)} if self.val else {}

    def loss(self, tasks: list[Task], rngs: Rngs) -> StepResult:
        net, device = self.net, self.model.runtime.device
        batch = TaskBatch.of(tasks, len(self.model.show_ids), self.cfg.history_len).to(device)
        shows = net.shows()  # (n_shows, dim)
        users = net.user_head(net.user_arch(shows[batch.history], batch.mask))  # (b, dim)
        base = net.base_scores(net.base_users(batch.support))  # (b, n_shows)
        fast = net.adapt(net.batched_fast(len(tasks)), users, batch.support, base,
                         self.cfg.inner_steps, self.cfg.first_order, shows)  # fmt: skip
        logits = vmap(net.logits, in_dims=(0, 0, None, 0))(fast, users, shows, base)
        logp = F.log_softmax(logits.float() + batch.seen, -1)
        loss = -(logp * batch.query).sum(-1).mean()
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(tasks))


# ---- the model -----------------------------------------------------------------------------
class MetaModel(Recommender, name="meta", config=MetaConfig):
    needs_content = True
    reads_catalogue_only = True  # genres and platforms of the shows
    prior_column = True
    # ranks_new_shows stays True: a new show's vector is its never-trained ID row plus its
    # genres' and platforms', and alone it ranks new shows above a random order (MovieLens
    # 0.189 against 0.131, anime 0.062 against 0.016); masked in the ensemble, anime's cold
    # slice went 0.140 -> 0.121 (one run each, inside the intervals)
    net: MetaNet | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: Groups | None = None
        self.memory: list[Task] = []
        self.adapted_groups: list[str] = []
        self._user_table = UserTable()  # user -> adapted vector (`precompute_users`)

    def published_models(self) -> list[str]:
        """Its own published copy, to warm-start from."""
        return [self.name] if self.config.warm_start else []

    # ---- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, rt = self.config, self.runtime
        torch.manual_seed(cfg.seed)
        self._user_table = UserTable()
        self.show_ids = list(data.show_ids)
        self.groups = Groups.of(data)
        seq = Sequences.of(data.positives(), {s: i for i, s in enumerate(self.show_ids)})
        self._keep_histories(seq)
        train, val = seq.split(cfg.val_users, cfg.support, cfg.seed)
        val_tasks = val.few_shot(cfg.support, cfg.seed)
        chosen = self._build_net(train, val_tasks)
        previous = self._warm_start(data)
        if previous is None and self._net().base_left.shape[1]:
            self._calibrate_base(train)
        metrics = self._meta_train(data, train, val_tasks, warm=previous is not None)
        self.memory = self._remember(seq)
        self.adapted_groups = self._adapt_new_groups(data, seq)
        lrs = self._net().log_lr.detach().exp().tolist()
        metrics |= chosen | {
            "n_users": len(seq.users),
            "n_val_users": len(val.users),
            "warm_start": previous or "",
            "inner_lr": {name: round(x, 4) for name, x in zip(FAST, lrs, strict=True)},
            "adapted_groups": ", ".join(self.adapted_groups),
            "base_scale": round(float(self._net().base_scale.detach()), 3),
            "profile": rt.profile,
        }
        self.make_manifest(data, self._width(), metrics)
        return metrics

    def _build_net(self, train: Sequences, val_tasks: list[Task]) -> dict[str, Any]:
        """The network, its base (when there is one) fitted; what the base chose."""
        base, chosen = self._fit_base(train, val_tasks)
        self.net = MetaNet(len(self.show_ids), self._groups(), self.config, base[0].shape[1])
        self.net.base_left.copy_(torch.from_numpy(base[0]))
        self.net.base_right.copy_(torch.from_numpy(base[1]))
        self.net.to(self.runtime.device)
        return chosen | {"base": self.config.base if base[0].shape[1] else "none"}

    def _meta_train(
        self, data: TrainingData, train: Sequences, val_tasks: list[Task], warm: bool
    ) -> dict[str, Any]:
        """The outer loop on the trainer; when it never beats its starting point on the
        validation users, the starting point is kept."""
        cfg = self.config
        n_tasks = sum(len(r) > cfg.support for r in train.rows) * cfg.tasks_per_user
        epochs = cfg.warm_epochs if warm else cfg.epochs
        if not n_tasks:
            return {"n_tasks": 0, "epochs_run": 0}
        start_ndcg = self.few_shot_ndcg(val_tasks) if val_tasks else None
        start = copy.deepcopy(self._net().state_dict())
        task = _MetaTask(self, train, self.memory, val_tasks, cfg.warm_lr if warm else cfg.lr)
        metrics = self.trainer(data, epochs=epochs).fit(task).metrics()
        run = len(metrics.get("train_loss", []))  # early stopping may end it sooner
        metrics |= {"n_tasks": n_tasks, "epochs_run": run, "val_ndcg_at_start": start_ndcg}
        if start_ndcg is not None and max(metrics.get("val_ndcg", [0.0])) <= start_ndcg:
            # serve the starting point (the base, the prior, the adapters' first steps)
            self._net().load_state_dict(start)
            metrics["kept_start"] = True
        return metrics

    def _width(self) -> int:
        groups, rank = self._groups(), self._net().base_left.shape[1]
        return self.config.dim + groups.genre.shape[1] + groups.platform.shape[1] + rank + 1

    def _fit_base(
        self, train: Sequences, val: list[Task]
    ) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
        """The base's factors (L, R), each (n_shows, r), fitted on the training users'
        positives (never the validation users'), its l2 chosen from `base_grid` by the
        few-shot NDCG@10 of the validation tasks (what the base is for: a user's first
        events, not a long history); (n_shows, 0) each without a base. And what was chosen."""
        from .ease import _matrix, ease_weights, factorise, gram

        n = len(self.show_ids)
        empty = np.zeros((n, 0), np.float32)
        cfg = self.config
        if cfg.base == "none":
            return (empty, empty), {}
        if n > cfg.base_max_shows:  # EASE's dense n x n solve would not fit: the tower alone
            note = f"no base: {n:,} shows > base_max_shows ({cfg.base_max_shows:,})"
            log.warning("meta: %s", note)
            return (empty, empty), {"base_notes": note}
        G = gram(_matrix([r.tolist() for r in train.rows], n))  # (n, n)
        ndcg: dict[float, float] = {}
        best, B = None, None
        for l2 in cfg.base_grid if val else cfg.base_grid[:1]:
            candidate = ease_weights(G, l2).astype(np.float32)
            if val:
                ndcg[l2] = _ndcg_of(_matrix([t.support.tolist() for t in val], n) @ candidate, val)
            if best is None or ndcg.get(l2, 0.0) > ndcg[best]:
                best, B = l2, candidate
        assert B is not None
        left, right = factorise(B, cfg.base_rank, cfg.seed)
        chosen = {"base_l2": best, "base_val_ndcg": {str(k): round(v, 4) for k, v in ndcg.items()}}
        return (left, right), chosen

    @torch.no_grad()
    def _calibrate_base(self, train: Sequences, n_tasks: int = 512) -> None:
        """Start the base's scale where the query likelihood of a sample of training tasks is
        best (a geometric grid): the tower then learns what the base misses, not its scale."""
        net, cfg = self._net(), self.config
        tasks = train.tasks(cfg, np.random.default_rng(cfg.seed))[:n_tasks]
        if not tasks:
            return
        device = next(net.parameters()).device
        batch = TaskBatch.of(tasks, len(self.show_ids), cfg.history_len).to(device)
        shows = net.shows()
        users = net.user_head(net.user_arch(shows[batch.history], batch.mask))  # (b, dim)
        base_users = net.base_users(batch.support)  # (b, r)
        fast = net.batched_fast(len(tasks))
        nll = {}
        for scale in np.geomspace(1.0, 1000.0, 13):
            net.base_scale.fill_(float(scale))
            logits = vmap(net.logits, in_dims=(0, 0, None, 0))(
                fast, users, shows, net.base_scores(base_users)
            )  # (b, n_shows)
            logp = F.log_softmax(logits + batch.seen, -1)
            nll[float(scale)] = float(-(logp * batch.query).sum(-1).mean())
        net.base_scale.fill_(min(nll, key=nll.__getitem__))

    def _warm_start(self, data: TrainingData) -> str | None:
        """Copy the published model's weights (matched by show, genre and platform name) and
        its episodic memory; the published version's name, or None for a cold start."""
        member = data.members.get(self.name)
        old = member.published if member is not None else None
        if not isinstance(old, MetaModel) or old.config.dim != self.config.dim:
            return None
        if old.config.history_len != self.config.history_len:
            return None
        net, prev = self._net(), old._net()
        with torch.no_grad():
            _copy_rows(net.show_id.weight, prev.show_id.weight, self.show_ids, old.show_ids)
            _copy_rows(net.show_bias, prev.show_bias, self.show_ids, old.show_ids)
            for kind in ("genre", "platform"):
                names = ["?", *self._groups().names(kind)]
                old_names = ["?", *old._groups().names(kind)]
                for part in ("emb", "adapter"):
                    target, source = getattr(net, f"{kind}_{part}"), getattr(prev, f"{kind}_{part}")
                    _copy_rows(target, source, names, old_names)
            for name in ("user_arch", "user_head"):
                getattr(net, name).load_state_dict(getattr(prev, name).state_dict())
            net.preference.copy_(prev.preference)
            net.log_lr.copy_(prev.log_lr)
            net.base_scale.copy_(prev.base_scale)
        row = {s: i for i, s in enumerate(self.show_ids)}
        self.memory = [t for t in (_remap(t, old.show_ids, row) for t in old.memory) if t]
        assert old.manifest is not None
        return old.manifest.model_version

    def _remember(self, seq: Sequences) -> list[Task]:
        """The episodic memory: the tasks of the most recently active users (and what was
        remembered before, newest first), at most `memory_size`."""
        size = self.config.memory_size
        if not size:
            return []
        recent = np.argsort(-seq.last_us, kind="stable")
        by_user = {}
        rng = np.random.default_rng(self.config.seed)
        for i in recent[:size]:
            made = Sequences([seq.users[i]], [seq.rows[i]], seq.last_us[i : i + 1],
                             seq.timed).tasks(self.config, rng)  # fmt: skip
            if made:
                by_user[seq.users[i]] = made[0]
        return (list(by_user.values()) + self.memory)[:size]

    # ---- new genres and platforms ----------------------------------------------------------
    def _adapt_new_groups(self, data: TrainingData, seq: Sequences) -> list[str]:
        """Adapt each genre and platform first watched under `new_group_days` ago by at most
        `new_group_max_users` viewers, on those viewers' events."""
        cfg, pos = self.config, data.positives()
        if not seq.timed or not cfg.group_steps or pos.empty:
            return []
        since = pd.Timestamp(data.as_of - timedelta(days=cfg.new_group_days))
        times = pd.to_datetime(pos["event_timestamp"], utc=True)
        row = {s: i for i, s in enumerate(self.show_ids)}
        shows = pos["show_id"].map(row)
        adapted = []
        for kind in ("genre", "platform"):
            member = self._groups().matrix(kind).numpy() > 0  # (n_shows, n_groups)
            for gid in range(1, member.shape[1]):
                known = shows.notna().to_numpy()
                inside = member[shows.fillna(0).astype(int).to_numpy(), gid] & known
                if not inside.any() or times[inside].min() < since:
                    continue
                viewers = pos.loc[inside, "user_id"].unique().tolist()
                if len(viewers) <= cfg.new_group_max_users:
                    self.adapt_group(kind, gid, viewers)
                    adapted.append(f"{kind}:{self._groups().names(kind)[gid - 1]}")
        return adapted

    def adapt_group(self, kind: str, group: int, users: Sequence[str], steps: int | None = None
                    ) -> None:  # fmt: skip
        """Adapt group `group`'s row of the `kind` ("genre"/"platform") adapter on `users`'
        events in it: inner steps on the likelihood of their shows of the group, given the rest
        of what they watched; the other rows stay as they are."""
        net, cfg = self._net(), self.config
        member = self._groups().matrix(kind)[:, group] > 0  # (n_shows,)
        histories = [self.histories.get(u, []) for u in users]
        targets = [[r for r in h if member[r]] for h in histories]
        keep = [i for i, t in enumerate(targets) if t]
        if not keep:
            return
        history, mask = pad_histories([histories[i] for i in keep], cfg.history_len)
        weights = _weights([np.asarray(targets[i]) for i in keep], len(self.show_ids))
        slot = FAST.index(kind)
        with torch.no_grad():
            users_v = net.users(history, mask)  # (b, dim)
            shows = net.shows()
            base = net.base_scores(net.base_users(_weights(
                [np.asarray(histories[i]) for i in keep], len(self.show_ids))))  # fmt: skip
        table = net.fast()[slot].detach().clone().requires_grad_(True)
        lr = float(net.log_lr.detach().exp()[slot])
        for _ in range(cfg.group_steps if steps is None else steps):
            fast = [f.detach() for f in net.fast()]
            fast[slot] = table
            pairs = zip(users_v, base, strict=True)
            logits = torch.stack([net.logits(fast, u, shows, b) for u, b in pairs])
            nll = -(F.log_softmax(logits, -1) * weights).sum(-1).mean()
            (g,) = torch.autograd.grad(nll, table)
            table = (table - lr * g).detach().requires_grad_(True)
        with torch.no_grad():
            net.fast()[slot][group].copy_(table[group])

    def few_shot_ndcg(self, tasks: Sequence[Task], k: int = 10) -> float:
        """Mean NDCG@k of these tasks' queries, each user served from their support alone."""
        shows = self.show_embeddings()[1]
        users = self._adapted_users([t.support.tolist() for t in tasks])  # (b, width)
        return _ndcg_of(users @ shows.T, tasks, k)

    # ---- serving ----------------------------------------------------------------------------
    def fold_in(self, events: pd.DataFrame) -> bool:
        """New users are adapted at serving time on their own events, like any other."""
        limit = self.config.history_len
        folded = self.fold_rows(events)
        self._user_table.drop(folded)  # adapted again on their new events
        self.histories |= {u: r[-limit:] for u, r in folded.items()}
        return True

    def advance(self, data: TrainingData) -> bool:
        """To `data`'s as-of: every user's recent shows from `data`'s events (adapted on them
        when served); the weights, adapters and memory as trained."""
        if list(data.show_ids) != self.show_ids:
            return False
        self._keep_histories(Sequences.of(data.positives(), self.show_rows()))
        self._user_table = UserTable()
        self.restamp(data)
        return True

    def _keep_histories(self, seq: Sequences) -> None:
        """Each user's last `history_len` shows (rows), what a served user is adapted on."""
        limit = self.config.history_len
        self.histories = {u: r[-limit:].tolist() for u, r in zip(seq.users, seq.rows, strict=True)}

    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        with torch.no_grad():
            vectors = self._net().served_shows()
        return list(self.show_ids), vectors.float().cpu().numpy()

    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """Each user adapted on their own recent events; [0, ..., 1] without any (the prior).
        Users in the table (`precompute_users`) are read from it."""
        return self._user_table.read(user_ids, self._user_vectors)

    def precompute_users(self, user_ids: list[str]) -> int:
        """Each user's adapted vector, computed once in batches of 256 and kept until the next
        fit, load or fold-in of that user (a request's inner-loop steps are then a lookup)."""
        return self._user_table.fill(user_ids, self._user_vectors)

    def _user_vectors(self, user_ids: list[str]) -> np.ndarray:
        out = np.zeros((len(user_ids), self._width()), dtype=np.float32)
        out[:, -1] = 1.0
        rows = [self.histories.get(u, []) for u in user_ids]
        at = [i for i, r in enumerate(rows) if r]
        if at:
            out[at] = self._adapted_users([rows[i] for i in at])
        return out

    def _adapted_users(self, rows: list[list[int]]) -> np.ndarray:
        """Served vectors of users adapted on these histories (show rows), (b, width)."""
        net = self._net()
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        out = [self._adapted(rows[i : i + 256], device) for i in range(0, len(rows), 256)]
        net.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, self._width()), np.float32)

    def _adapted(self, rows: list[list[int]], device: torch.device) -> np.ndarray:
        net, cfg = self._net(), self.config
        history, mask = (t.to(device) for t in pad_histories(rows, cfg.history_len))
        support = _weights([np.asarray(r[-cfg.history_len :]) for r in rows],
                           len(self.show_ids)).to(device)  # fmt: skip
        with torch.no_grad():
            shows = net.shows()
            users = net.user_head(net.user_arch(shows[history], mask))
            base_users = net.base_users(support)
            base = net.base_scores(base_users)
        fast = net.adapt(net.batched_fast(len(rows)), users, support, base, cfg.inner_steps,
                         True, shows)  # fmt: skip
        with torch.no_grad():
            return net.served(fast, users, base_users).float().cpu().numpy()

    # ---- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        groups = self._groups()
        net = {k: v.cpu() for k, v in self._net().state_dict().items()}
        return {
            "net": net,
            "shows": self.show_ids,
            "histories": self.histories,
            "genre": groups.genre, "platform": groups.platform,
            "genre_names": groups.genre_names, "platform_names": groups.platform_names,
            "memory": [[t.support.tolist(), t.query.tolist()] for t in self.memory],
            "adapted_groups": self.adapted_groups,
        }  # fmt: skip

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.histories = state["shows"], state["histories"]
        self._user_table = UserTable()
        self.groups = Groups(state["genre"], state["platform"], state["genre_names"],
                             state["platform_names"])  # fmt: skip
        rank = state["net"]["base_left"].shape[1]
        self.net = MetaNet(len(self.show_ids), self.groups, self.config, rank)
        self.net.load_state_dict(state["net"])
        self.memory = [Task(np.asarray(s, np.int64), np.asarray(q, np.int64))
                       for s, q in state["memory"]]  # fmt: skip
        self.adapted_groups = list(state["adapted_groups"])

    def _net(self) -> MetaNet:
        return self.fitted(self.net)

    def _groups(self) -> Groups:
        return self.fitted(self.groups)


def _ndcg_of(scores: np.ndarray, tasks: Sequence[Task], k: int = 10) -> float:
    """Mean NDCG@k of `scores` (n_tasks, n_shows) against each task's query, its support
    excluded (EASE-TV's validation metric)."""
    from .ease import _ndcg

    return _ndcg(scores, [t.support for t in tasks], [t.query for t in tasks], k) if tasks else 0.0


def _copy_rows(target: torch.Tensor, source: torch.Tensor, names: Sequence[str],
               old_names: Sequence[str]) -> None:  # fmt: skip
    """target[i] = source[j] where names[i] == old_names[j]."""
    old = {n: j for j, n in enumerate(old_names)}
    pairs = [(i, old[n]) for i, n in enumerate(names) if n in old]
    if pairs:
        at, frm = (torch.as_tensor(x) for x in zip(*pairs, strict=True))
        target[at] = source[frm].to(target.dtype)


def _remap(task: Task, old_ids: Sequence[str], row: Mapping[str, int]) -> Task | None:
    """A remembered task on the new catalogue's rows; None when a show is gone."""
    try:
        support = np.asarray([row[old_ids[r]] for r in task.support], np.int64)
        query = np.asarray([row[old_ids[r]] for r in task.query], np.int64)
    except KeyError:
        return None
    return Task(support, query)


__all__: list[str] = ["MetaConfig", "MetaModel", "MetaNet"]
