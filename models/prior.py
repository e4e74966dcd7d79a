"""The show prior shared by the content models: how likely any user is to pick a show next,
from the show's content vector and its age, plus the scale of user-show affinity.

    score(user, show, day) = exp(log_scale) * <user, show>
                             + prior_mlp(show) + age_curve(age)     # content: every show
                             + show_bias[show]                      # watched in training only

Contrastive objectives with in-batch negatives learn *which* shows go together, not how much a
show is watched: popularity cancels out of them. Users still watch popular and new shows far
more, so the content models fit this prior afterwards, by a full softmax over the catalogue on
each user's next show (show vectors and user tower frozen), each show's age taken on the day
of that watch. The content part is fitted first and alone, so a show nobody has watched yet
gets a calibrated prior from what similar shows, at the same age, drew; then a per-show bias is
fitted on top for the shows watched in training (their own popularity, which content cannot
tell apart; the affinity scale is re-tuned with it), and stays 0 for every other show.

Served vectors carry it as one extra column, ages taken at the model's as-of day: show
[vector, prior], user [scale * vector, 1], so the index's inner product is the score above and
show-to-show similarity drops the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tvrec.pipelines.model_inputs import TrainingData

from .content import user_sequences
from .layers import bucket_lookup
from .runtime import Runtime
from .trainer import Rngs, StepResult, Trainer, TrainerConfig, TrainTask

# Age buckets, in days since the premiere: 0 unknown premiere, 1 not premiered yet, then
# [0, 30), [30, 90), [90, 180), [180, 365), [1y, 2y), [2y, 5y), [5y, 10y), 10y and more.
AGE_EDGES = (0, 30, 90, 180, 365, 730, 1825, 3650)
N_AGE_BUCKETS = len(AGE_EDGES) + 2


@dataclass(frozen=True)
class PriorConfig:
    steps: int = 400  # each a batch of watches drawn uniformly from all users' sequences
    bias_steps: int = 200  # then watched shows' own bias (+ the scale), content part frozen
    bias_lr: float = 0.05
    batch_size: int = 256  # watches per step
    log_every: int = 50  # one loss value per this many steps in the curve
    lr: float = 3e-3
    weight_decay: float = 1e-3  # a smooth prior generalises to shows without viewers
    hidden: int = 64
    seed: int = 0


def day_of(moment: datetime) -> int:
    """Days since 1970-01-01 (UTC) of an aware datetime: the prior's clock."""
    return (moment.astimezone(UTC).date() - date(1970, 1, 1)).days


def age_buckets(premiered_days: torch.Tensor, day: torch.Tensor) -> torch.Tensor:
    """premiered_days (n,) (-1 unknown) and days (b,) -> (b, n) age bucket of each show."""
    return bucket_ages(day[:, None] - premiered_days[None, :], premiered_days[None, :] >= 0)


def bucket_ages(age: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Ages in days -> bucket ids (same shape); 0 where the premiere is unknown."""
    edges = torch.as_tensor(AGE_EDGES, device=age.device)
    bucket = torch.bucketize(age, edges, right=True) + 1  # 1: age < 0, 2: [0, 30), ...
    return bucket.masked_fill(~known, 0)


class ShowPrior(nn.Module):
    def __init__(self, dim: int, n_shows: int, hidden: int = 64, temperature: float = 0.1) -> None:
        super().__init__()
        self.prior_mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.age_curve = nn.Embedding(N_AGE_BUCKETS, 1)
        self.show_bias = nn.Embedding(n_shows, 1)  # catalogue rows; only watched ones move
        self.register_buffer("watched", torch.zeros(n_shows, dtype=torch.bool))
        # what serving takes ages from: each show's premiere (-1 unknown) and the as-of day
        self.register_buffer("premiered_days", torch.full((n_shows,), -1, dtype=torch.long))
        self.register_buffer("as_of_day", torch.zeros((), dtype=torch.long))
        for p in (*self.prior_mlp[-1].parameters(), self.age_curve.weight, self.show_bias.weight):
            nn.init.zeros_(p)  # starts neutral: score = affinity / temperature
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def content(self, shows: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """The content part: (n, dim) show vectors, (b, n) age buckets -> (b, n) logits."""
        age = bucket_lookup(self.age_curve.weight, ages).squeeze(-1)  # (b, n)
        return self.prior_mlp(shows).squeeze(-1)[None, :] + age

    def forward(self, shows: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """(n, dim) vectors of the whole catalogue, (b, n) age buckets -> (b, n) prior logits."""
        bias = self.show_bias.weight.squeeze(-1) * self.watched  # (n,): 0 for unwatched shows
        return self.content(shows, ages) + bias[None, :]

    def logits(self, users: torch.Tensor, shows: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        """(b, dim) users x (n, dim) shows, (b, n) ages -> (b, n) scores."""
        return users @ shows.T * self.log_scale.exp() + self(shows, ages)

    @torch.no_grad()
    def served_shows(self, shows: torch.Tensor) -> np.ndarray:
        """(n, dim) -> (n, dim + 1) float32: [vector, prior], ages as of `as_of_day`.

        A show that premieres after that day gets the prior of its premiere day (age 0): what
        it will draw once it airs. (The precompute holds it back until then anyway.)"""
        premiered = self.premiered_days.to(shows.device)  # (n,)
        age = (self.as_of_day - premiered).clamp(min=0)  # (n,): not aired yet = airing today
        ages = bucket_ages(age, premiered >= 0)[None, :]  # (1, n)
        return torch.cat([shows, self(shows, ages)[0][:, None]], 1).float().cpu().numpy()

    @torch.no_grad()
    def served_users(self, users: torch.Tensor) -> np.ndarray:
        """(b, dim) -> (b, dim + 1) float32: [scale * vector, 1]."""
        ones = torch.ones(len(users), 1, device=users.device, dtype=users.dtype)
        return torch.cat([users * self.log_scale.exp(), ones], 1).float().cpu().numpy()


def fit_show_prior(
    prior: ShowPrior,
    shows: torch.Tensor,
    premiered_days: torch.Tensor,
    data: TrainingData,
    rows: dict[str, int],
    embed_users: Callable[[list[np.ndarray]], torch.Tensor],
    cfg: PriorConfig,
) -> list[float]:
    """`fit_prior` on a training set's watch sequences (catalogue `rows` of show ids); the
    served prior then takes ages as of the training set's as-of day."""
    sequences, days = user_sequences(data, rows)
    prior.as_of_day.fill_(day_of(data.as_of))
    return fit_prior(prior, shows, premiered_days, sequences, days, embed_users, cfg)


def fit_prior(
    prior: ShowPrior,
    shows: torch.Tensor,
    premiered_days: torch.Tensor,
    sequences: list[np.ndarray],
    days: list[np.ndarray],
    embed_users: Callable[[list[np.ndarray]], torch.Tensor],
    cfg: PriorConfig,
) -> list[float]:
    """Fit `prior` to predict each user's next show from the ones before it.

    shows (n, dim): frozen vectors of the whole catalogue; premiered_days (n,); sequences: per
    user, show rows oldest first and `days` the day each was watched; embed_users: prefixes ->
    (b, dim) frozen user vectors. Every show the user already saw is left out of the softmax,
    as the precompute leaves it out of the top-k. First the content part, then the per-show
    bias of the watched shows. Returns the mean loss of every `log_every` steps."""
    prior.premiered_days.copy_(premiered_days)
    watches = _Watches(sequences, days, embed_users, premiered_days, shows)
    if not watches.n or cfg.steps <= 0:
        return []
    rngs = Rngs.seeded(cfg.seed)
    content = [p for name, p in prior.named_parameters() if not name.startswith("show_bias")]
    with torch.no_grad():
        prior.show_bias.weight.zero_()
        prior.watched.zero_()
    opt = torch.optim.AdamW(content, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    losses = _fit(_PriorTask(prior, opt, cfg, watches, cfg.steps), "content", rngs)
    # the content part is fitted and calibrated on its own: now each watched show's own bias
    prior.watched[torch.as_tensor(np.unique(np.concatenate(sequences)))] = True
    opt = torch.optim.Adam(
        [*prior.show_bias.parameters(), prior.log_scale], lr=cfg.bias_lr, fused=True
    )
    return losses + _fit(_PriorTask(prior, opt, cfg, watches, cfg.bias_steps), "bias", rngs)


@dataclass
class _Watches:
    """Every (user, position >= 1) of the sequences: one watch to predict from the ones
    before it, drawn uniformly."""

    sequences: list[np.ndarray]
    days: list[np.ndarray]
    embed_users: Callable[[list[np.ndarray]], torch.Tensor]
    premiered_days: torch.Tensor
    shows: torch.Tensor

    def __post_init__(self) -> None:
        lengths = [max(len(s) - 1, 0) for s in self.sequences]
        self.user_of = np.repeat(np.arange(len(self.sequences)), lengths)  # (n_watches,)
        self.cut_of = np.concatenate([np.arange(1, n + 1) for n in lengths] or [[]]).astype(int)
        self.shows = self.shows.detach().float()
        self.premiered_days = self.premiered_days.to(self.shows.device)

    @property
    def n(self) -> int:
        return len(self.user_of)

    def batch(self, draw: np.ndarray) -> tuple[torch.Tensor, ...]:
        """(users (b, dim), ages (b, n), seen (b, n), targets (b,)) of the drawn watches."""
        pairs = list(zip(self.user_of[draw], self.cut_of[draw], strict=True))
        prefixes = [self.sequences[u][:c] for u, c in pairs]
        device = self.shows.device
        targets = torch.as_tensor([int(self.sequences[u][c]) for u, c in pairs], device=device)
        when = torch.as_tensor([int(self.days[u][c]) for u, c in pairs], device=device)
        with torch.no_grad():
            users = self.embed_users(prefixes).float().to(device)  # (b, dim)
        # the user's earlier shows leave the softmax: (b, n), one scatter for the batch
        seen = torch.zeros(len(pairs), len(self.shows), dtype=torch.bool, device=device)
        lengths = [len(p) for p in prefixes]
        rows = torch.as_tensor(np.repeat(np.arange(len(prefixes)), lengths), device=device)
        seen[rows, torch.as_tensor(np.concatenate(prefixes), device=device)] = True
        seen[torch.arange(len(pairs), device=device), targets] = False
        return users, age_buckets(self.premiered_days, when), seen, targets


class _PriorTask(TrainTask):
    """Softmax cross-entropy over the catalogue on batches of watches; one "epoch" is
    `log_every` steps, so the curve has one point per that many steps."""

    def __init__(
        self,
        prior: ShowPrior,
        optimizer: torch.optim.Optimizer,
        cfg: PriorConfig,
        watches: _Watches,
        steps: int,
    ) -> None:
        self.net, self.optimizer, self.cfg, self.watches = prior, optimizer, cfg, watches
        self.steps = steps

    @property
    def epochs(self) -> int:
        return math.ceil(self.steps / self.cfg.log_every)

    def plan(self, epoch: int, rngs: Rngs) -> list[np.ndarray]:
        n = min(self.cfg.log_every, self.steps - epoch * self.cfg.log_every)
        size = min(self.cfg.batch_size, self.watches.n)
        return [rngs.numpy.integers(0, self.watches.n, size) for _ in range(n)]

    def loss(self, batch: np.ndarray, rngs: Rngs) -> StepResult:
        users, ages, seen, targets = self.watches.batch(batch)
        logits = self.net.logits(users, self.watches.shows, ages).masked_fill(seen, float("-inf"))
        loss = F.cross_entropy(logits, targets)  # (b, n) over the catalogue
        return StepResult(loss, {"loss": float(loss.detach())})


def _fit(task: _PriorTask, phase: str, rngs: Rngs) -> list[float]:
    """Run `task`'s steps; returns the mean loss of every `log_every` steps."""
    if task.steps <= 0:
        return []
    config = TrainerConfig(label=f"fit show prior ({phase})", epochs=task.epochs)
    return Trainer(config, Runtime.cpu()).fit(task, rngs).curves["loss"]
