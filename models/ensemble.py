"""The ensemble: members' scores fused per user and candidate by attention over the members,
with an uncertainty published as `confidence`, served in two stages.

    members:       closed-form scorers refitted from the positives at every run
                   ease        EASE-TV's closed form, scored exactly with B (`exact_ease`;
                               the retrieval stage's vectors are its factorisation)
                   itemknn     cosine item-kNN, each candidate scored by its own neighbours
                   popularity  distinct viewers (log)
                   recent      viewers in the last `recent_days` before the as-of (timed logs)
                   franchise   the candidate's closest title link to the user's history
                               (models/franchise.py: sequels, spin-offs, specials), a cosine
                               in [0, 1] fed unstandardised
                   profile     the candidate's content against the mean content of the
                               user's history (models/profile.py: genres, cast, network,
                               text), which new shows have before anyone watches them
                   release     how recently the show premiered (-log days before the
                               as-of; catalogue metadata, known ahead; absent where the
                               date is unknown): a new release draws viewers before
                               co-watching counts any (MovieLens's new films)
                   and registered models (`models`, default the temporal one and MLTA): each trained
                   again here on the positives before the fusion's window (so its window
                   scores are honest) and served from the copy its own stage published
    context_arch:  the user's context (history length, days since their last event) and the
                   candidate's (popularity, 7/30/90-day views, trend, age) -> query (b, N, d)
    member_arch:   each member's standardised score and log-rank among the candidates, plus
                   its own embedding -> keys and values (b, N, M, d)
    fusion_arch:   the query attends over the members present (a missing or non-finite member
                   is masked out and the weights renormalise over the rest) -> weights (b, N, M);
                   score = sum_m w_m z_m + heads(query, attended values)
    heads:         `heads` residual heads, each trained on its own bootstrap of users
                   (epistemic: their disagreement) and a log-variance head (aleatoric: logits
                   are drawn from N(mean, var) in training, as Kendall & Gal do for classes)
    calibration:   the chance a recommendation is watched, from both uncertainties, the
                   fused score, its place and the context (models/calibration.py; fitted on
                   the window) -> `confidence`

Point in time: the fusion is trained on a window no member trained on. The positives are cut
(the last `window_share` by time on a timed log, else a seeded random share); members are fitted
on the part before the cut, each window user's top-`candidates` by the retrieval stage are
scored and labelled by the window, the fusion trains on them with members dropped at random
(`member_dropout`) so it stays calibrated when one is missing; then the members are refitted
on all positives for serving.

New shows (`cold_shows`): a seeded share of the window's shows is held back from every member
at the cut, as if they had no events yet; the window users who watched one also get a row
ranking the held-back shows alone, as `tvrec evaluate`'s cold slice ranks the shows without
events. Among them every co-watching member scores 0 (their ranks tie), and the fusion learns
what speaks for a new show: its title links to the user's history, the temporal model. Trained
only where co-watching speaks for every candidate, it ranked anime's new shows at chance.

New users (`new_users`): a seeded share of the users is held out of every member at the cut;
each is folded into the members from their first `support` events and labelled by all their
other positives, as `tvrec evaluate --few-shot` scores new users. Such a row is served at the
cut: its features see nothing of the user but those events and nothing of anyone at or after
the cut; its labels are the user's other events, some before the cut, as the protocol's are.
The fusion, trained on the warm window, ranks them; so does each member alone; the new-user
ranker is `new_user_default` (MLTA; the fusion where it is not a member) unless the best of
the others beats it on them by more than two standard errors (paired over the users). A
served user with at most `new_user_events` events is ranked by it (unless it scores all their
candidates alike: new shows for a co-watching member). Training the fusion on them too
(`train_new_users`) lifted anime's few-shot slice and sank MovieLens's warm users
(docs/benchmarks.md). `val_share` holds users out to choose the epoch.

`ablation` ranks the same candidates with each member hidden in turn and by each member
alone: the table `tvrec evaluate` reports.

Serving: the retrieval stage is EASE-TV's factorised vectors (the FAISS index); its top
`candidates`, with up to `franchise_candidates` shows linked by title to the user's history
that it missed (a new season nobody has watched yet: co-watching cannot retrieve it), are
re-ranked by `rerank`, which also returns each recommendation's confidence (`calibration`;
with `calibrate = false`, the share of the heads' noisy draws in which it stays in the top
`confidence_k`) and the member that contributed most to its score (`because`).

Show-to-show similarity and text queries come from a content model (`content`, default the
multimodal one, as published by its own stage): what a show is like is a matter of its
description, genres and cast, which co-watching alone misses (a planted near-duplicate is
nearest in content space, not in EASE's). Its text tower is saved beside the ensemble.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from tvrec.pipelines.errors import DataError

from .base import ModelConfig, Recommender, TrainingData
from .calibration import Calibration, confidence_features
from .ease import EASEModel, _matrix, cosine_knn, gram, held_out, is_timed
from .franchise import closest_link, link_strength, title_links
from .profile import ShowProfiles, premiere_days, sparse_matrix, sparse_state
from .registry import MODELS
from .runtime import Runtime
from .trainer import Rngs, StepResult, TrainTask

log = logging.getLogger(__name__)
MEMBERS = ("ease", "itemknn", "popularity", "recent", "franchise", "profile", "release")
# members whose score is on a fixed scale (a cosine in [0, 1]) and is fed as it is: standardised
# among the candidates, one linked show among 200 would look as strong as forty
UNSCALED = frozenset({"franchise"})
N_MEMBER_FEATURES = 2  # standardised score, log rank among the candidates
N_CONTEXT = 8  # see `Members.context`
DAY_S = 86_400.0
RECENT_DAYS = (7, 30, 90)  # the windows of `Members.views`, in its column order
ONLINE_BATCH = 32  # users per request re-ranked on one thread
_NONE = np.zeros(0, np.int64)  # no rows
PADDING_LOGIT = -1e9  # a padded candidate's logit in training: out of every softmax
CALIBRATION_USERS = 5_000  # window users the confidence's calibration is fitted on, at most
INITIAL_LOG_VAR = -4.0  # the logits' noise starts at sd 0.14 (scores are standardised)


class EnsembleConfig(ModelConfig):
    dim: int = Field(32, ge=4, description="width of the fusion's query, keys and values")
    epochs: int = Field(20, ge=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(128, ge=1, description="window users per step")
    members: list[str] = Field(list(MEMBERS), min_length=1)
    models: list[str] = Field(
        ["temporal", "meta"], description="registered models fused too: trained before the "
        "window for the fusion (the graph model on the graph of the events before it), then "
        "served as `advance` says. The graph model too (advanced): anime 0.529 against 0.527, "
        "cold shows 0.255 against 0.247; MovieLens 0.255 against 0.261, cold shows 0.350 "
        "against 0.215; three seeds' medians on MovieLens's likes 0.228 against 0.235, on "
        "its first 500 users 0.248 against 0.244 (docs/benchmarks.md)",
    )  # fmt: skip
    advance: list[str] = Field(
        ["temporal"], description="model members served as trained before the window, "
        "moved to the as-of without training again (`Recommender.advance`: its users' "
        "histories and show state from every event; the temporal model fine-tuned on the "
        "events its weights never saw, the graph model's graph of every event encoded by its "
        "weights): one training a member a night, published as the member where its own "
        "stage did not run; true: every member, false or []: none (each served from its own "
        "stage's copy, trained on every event: a second training). Measured (MovieLens): "
        "every member 0.266 against 0.269, few-shot 0.423 against 0.498 (MLTA's copy before "
        "the window); [\"temporal\"] (the default) 0.262 and keeps MLTA's own few-shot slice "
        "(docs/benchmarks.md)",
    )  # fmt: skip
    content: str | None = Field(
        "multimodal", description="registered model whose published show vectors answer "
        "similar shows and text queries (none: EASE-TV's item-item space)",
    )  # fmt: skip
    candidates: int = Field(200, ge=10, description="retrieved per user, then re-ranked")
    window_share: float = Field(0.1, gt=0, lt=1, description="positives the fusion trains on")
    max_window_users: int = Field(20_000, ge=10, description="window users kept (seeded draw)")
    member_dropout: float = Field(0.2, ge=0, lt=1, description="chance a member is hidden")
    heads: int = Field(4, ge=1, description="residual heads (their spread: epistemic)")
    draws: int = Field(8, ge=1, description="noisy draws per head for the confidence")
    calibrate: bool = Field(
        True, description="publish `confidence` as the chance a recommendation is watched, "
        "a logistic regression fitted on the fusion's window (models/calibration.py); false: "
        "the share of noisy draws keeping it in the top `confidence_k`",
    )  # fmt: skip
    confidence_k: int = Field(
        10, ge=1, description="the share of the heads' noisy draws keeping a recommendation "
        "in the user's top `confidence_k` (the calibration's input, and the `confidence` "
        "itself with `calibrate = false`): how sure the fusion is that it belongs among the "
        "first ten, the same whatever k is published or asked for (the share keeping it in a "
        "top 50 put nearly all of its first 30 at 1.0); the calibration is fitted on each "
        "window user's top `confidence_k`",
    )  # fmt: skip
    neighbours: int = Field(100, ge=1, description="item-kNN neighbours kept per show")
    exact_ease: bool = Field(
        True, description="score the ease member with B itself (n_shows^2 float32, kept and "
        "saved), not the rank-`rank` factorisation the retrieval index serves; measured on "
        "anime: see docs/benchmarks.md",
    )  # fmt: skip
    franchise_similarity: float = Field(
        0.5, gt=0, le=1, description="title cosine (character n-grams) linking two shows of "
        "one franchise, for the franchise member",
    )  # fmt: skip
    franchise_candidates: int = Field(
        20, ge=0, description="shows linked by title to the user's history added to the "
        "retrieved candidates when serving (a new season, a spin-off: shows co-watching "
        "cannot retrieve yet)",
    )  # fmt: skip
    recent_days: Literal[7, 30, 90] = Field(
        30, description="the recent-popularity member's window (the views the context keeps)"
    )
    weight_decay: float = Field(1e-4, ge=0)
    new_users: int = Field(
        500, ge=0, description="simulated new users (at most `new_share` of the users, drawn "
        "seeded and held out of every member at the cut), served from their first `support` "
        "events and labelled by the rest, as the few-shot protocol scores them: the new-user "
        "ranker is chosen on them (see `new_user_events`); 0: none, the fusion ranks everyone",
    )  # fmt: skip
    new_share: float = Field(0.1, gt=0, lt=1, description="see `new_users`")
    new_user_events: int = Field(
        10, ge=0, description="a served user with at most this many events is ranked by the "
        "new-user ranker (see `new_user_default`; a five-event user is not what the fusion's "
        "warm window teaches); 0: the fusion ranks everyone",
    )  # fmt: skip
    new_user_default: str = Field(
        "meta", description="the new-user ranker unless another member or the fusion beats "
        "it on the simulated new users by more than two paired standard errors: MLTA, built "
        "for users with few events (MovieLens's 72 simulated users once chose popularity, "
        "0.521 against MLTA's 0.466, and the test's new users then scored 0.462 against "
        "MLTA's 0.498); not a member (or \"fusion\"): the fusion",
    )  # fmt: skip
    ranker_candidates: int = Field(
        50, ge=0, description="a model member's own top shows added to the candidates of a "
        "user it ranks as the new-user ranker (retrieval is EASE-TV's, which knows little of "
        "a five-event user): the user is ranked over what the member alone would pick too",
    )  # fmt: skip
    train_new_users: bool = Field(
        False, description="the fusion trains on the simulated new users too (the ranker is "
        "then chosen on the validation share's new users only); measured: anime few-shot "
        "0.592 against 0.565, MovieLens warm users 0.155 against 0.275 (docs/benchmarks.md)",
    )  # fmt: skip
    cold_shows: float = Field(
        0.02, ge=0, lt=1, description="share of the window's shows held back from every "
        "member at the cut, as if new: the fusion also trains on ranking them alone for the "
        "window users who watched one (as the cold-start slice ranks shows without events); "
        "0: none",
    )  # fmt: skip
    support: int = Field(5, ge=1, description="events a new user is served from")
    steps: int = Field(
        1, ge=1, description="optimiser steps an epoch takes at least: a small window is "
        "passed over several times an epoch",
    )  # fmt: skip
    val_share: float = Field(
        0.0, ge=0, lt=1, description="window and new users held out to choose the epoch "
        "(their NDCG@10; the best epoch is kept); 0: train on all, keep the last",
    )  # fmt: skip
    patience: int | None = Field(
        None, ge=1, description="epochs without a better validation NDCG (needs `val_share`)"
    )

    @model_validator(mode="before")
    @classmethod
    def _advance_names(cls, data: Any) -> Any:
        """`advance = true` / `false`: every model member / none; not set: the default's
        names that are members (`models = ["meta"]` alone advances nothing)."""
        if not isinstance(data, dict):
            return data
        models = data.get("models", cls.model_fields["models"].default)
        advance = data.get("advance", cls.model_fields["advance"].default)
        if not isinstance(models, list | tuple):
            return data  # refused by the field's own validation
        if isinstance(advance, bool):
            advance = list(models) if advance else []
        elif "advance" not in data:
            advance = [m for m in advance if m in models]
        return dict(data) | {"advance": advance}

    @model_validator(mode="after")
    def _advance_members(self) -> EnsembleConfig:
        unknown = sorted(set(self.advance) - set(self.models))
        if unknown:
            raise ValueError(f"advance names {unknown}, not among models {self.models}")
        return self

    @model_validator(mode="after")
    def _known_names(self) -> EnsembleConfig:
        """A misspelt name is refused here, not silently left out of the fusion."""
        models = [m for m in MODELS if m != "ensemble"]  # registered models it can fuse
        rankers = list(dict.fromkeys(["fusion", *MEMBERS, *models]))  # not a member: the fusion
        for setting, names, allowed in (
            ("members", self.members, MEMBERS),
            ("models", self.models, models),
            ("content", [self.content] if self.content else [], models),
            ("new_user_default", [self.new_user_default], rankers),
        ):
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise ValueError(f"{setting}: unknown {unknown}; choose from {', '.join(allowed)}")
        return self


# ---- the members ------------------------------------------------------------------------------
@dataclass
class Members:
    """The members fitted on one set of positives; `scores` answers (users, candidate rows)."""

    ease: EASEModel
    knn: sp.csr_matrix | None  # (n, n) column j: show j's neighbours (None: left out)
    popularity: np.ndarray  # (n,) distinct viewers
    views: np.ndarray  # (n, 3) first views in the last 7/30/90 days before the as-of
    first_seen_s: np.ndarray  # (n,) seconds before the as-of of the show's first view (NaN: none)
    last_event_s: dict[str, float]  # user -> seconds before the as-of of their last event
    timed: bool
    recent_days: int
    links: sp.csr_matrix | None = None  # (n, n) franchise links by title (None: left out)
    failed: dict[str, str] = field(default_factory=dict)  # member -> why it is left out
    profiles: ShowProfiles | None = None  # the shows' content (None: left out)
    released: np.ndarray | None = None  # (n,) days from premiere to the as-of (NaN: unknown)
    models: dict[str, Recommender] = field(default_factory=dict)  # model members, fitted
    # model member -> (n,) the shows it has no trained vector of (advanced after the cut: its
    # shows without an event before it); absent: the shows without an event here
    untrained: dict[str, np.ndarray] = field(default_factory=dict)
    cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # show vectors

    def fold_in(self, events: pd.DataFrame, as_of_s: float) -> None:
        """New users from these events (user_id, show_id, event_timestamp): every member folds
        them in (a model member that cannot scores them by its prior) and their context
        counts them, seen at `as_of_s`."""
        self.ease.fold_in(events)
        for model in self.models.values():
            model.fold_in(events)
        users = events["user_id"].astype(str).to_numpy()
        last = pd.Series(_seconds(events["event_timestamp"])).groupby(users).max()
        self.last_event_s |= {u: max(as_of_s - t, 0.0) for u, t in last.items()}

    def with_events(self, rows: np.ndarray) -> np.ndarray:
        """Whether each candidate row is a show with an event in these members' positives
        (a padding row, -1: no)."""
        return (rows >= 0) & (self.popularity[np.maximum(rows, 0)] > 0)

    def history_lengths(self, users: list[str]) -> np.ndarray:
        """(b,) each user's number of distinct shows here (0: unknown)."""
        return np.array([len(self.ease.histories.get(u, ())) for u in users], np.int64)

    def history_matrix(self, users: list[str]) -> sp.csr_matrix:
        n = len(self.ease.show_ids)
        return _matrix([self.ease.histories.get(u, []) for u in users], n)

    def scores(self, users: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each member's score of each user's candidate rows, (b, N) each; a member that
        cannot score here (recent on an untimed log) is absent."""
        out = {"ease": self.ease.scores(users, rows)}
        history = self.history_matrix(users)  # (b, n)
        if self.knn is not None:
            knn = np.asarray((history @ self.knn).todense())  # (b, n)
            out["itemknn"] = np.take_along_axis(knn, rows, 1)
        out["popularity"] = np.log1p(self.popularity[rows])
        if self.links is not None:
            histories = [self.ease.histories.get(u, []) for u in users]
            out["franchise"] = closest_link(self.links, histories, rows)
        if self.profiles is not None:
            out["profile"] = self.profiles.scores(history, rows)
        if self.released is not None:  # a premiere after the as-of counts as brand new
            out["release"] = -np.log1p(np.maximum(self.released[rows], 0.0))  # NaN: unknown
        unseen = ~self.with_events(rows)  # (b, N) shows without an event here
        for name, model in self.models.items():
            shows = self.show_vectors(name, model)[rows]  # (b, N, d)
            out[name] = np.einsum("bd,bnd->bn", model.user_embeddings(users), shows)
            if not model.ranks_new_shows:  # absent there: the content members rank them
                untrained = self.untrained.get(name)
                out[name][unseen if untrained is None else untrained[rows]] = np.nan
        if self.timed:
            recent = self.views[:, RECENT_DAYS.index(self.recent_days)]
            out["recent"] = np.log1p(recent[rows])
        return out

    def context(self, users: list[str], rows: np.ndarray) -> np.ndarray:
        """(b, N, N_CONTEXT): log history length, log days since the user's last event, log
        popularity, log 7/30/90-day views, the 7-day trend against 30, log age in days."""
        b, n = rows.shape
        length = self.history_lengths(users).astype(np.float32)
        idle = np.array([self.last_event_s.get(u, 0.0) for u in users], np.float32) / DAY_S
        views = np.log1p(self.views[rows])  # (b, N, 3)
        trend = np.log1p(self.views[rows, 0] * 30 / 7) - np.log1p(self.views[rows, 1])
        age = np.nan_to_num(self.first_seen_s[rows] / DAY_S, nan=0.0)
        columns = [
            np.broadcast_to(np.log1p(length)[:, None], (b, n)),
            np.broadcast_to(np.log1p(idle)[:, None], (b, n)),
            np.log1p(self.popularity[rows]),
            views[..., 0], views[..., 1], views[..., 2], trend, np.log1p(age),
        ]  # fmt: skip
        return np.stack(columns, -1).astype(np.float32)

    def ease_scores(self, users: list[str]) -> np.ndarray:
        """EASE-TV's score of every show, (b, n): x_u B itself with `exact_ease`, else through
        the retrieval index's rank-`rank` factorisation."""
        return self.ease.scores(users)

    def show_vectors(self, name: str, model: Recommender) -> np.ndarray:
        """A member's served show vectors in this catalogue's row order, (n, d), computed once
        (a show the member does not know: NaN)."""
        if name not in self.cache:
            ids, vectors = model.show_embeddings()  # (m, d)
            self.cache[name] = on_rows(ids, vectors, self.ease.show_ids, np.nan)
        return self.cache[name]

    def linked(self, users: list[str], k: int) -> np.ndarray:
        """Each user's k unseen rows most closely linked by title to their history (ties: the
        lower row first), (b, k), -1 where there are fewer."""
        out = np.full((len(users), k), -1, np.int64)
        if self.links is None or k == 0:
            return out
        histories = [self.ease.histories.get(u, []) for u in users]
        strength = link_strength(self.links, histories)  # (b, n)
        seen = np.repeat(np.arange(len(users)), [len(h) for h in histories])
        strength[seen, np.concatenate([np.asarray(h, np.int64) for h in histories] + [_NONE])] = 0
        user, row = np.nonzero(strength)  # every linked unseen show, by user then row
        order = np.lexsort((row, -strength[user, row], user))  # strongest first per user
        user, row = user[order], row[order]
        rank = np.arange(len(user)) - np.searchsorted(user, user)  # place within its user
        out[user[rank < k], rank[rank < k]] = row[rank < k]
        return out

    def with_linked(
        self, users: list[str], rows: np.ndarray, k: int, exclude: list[set[int]] | None = None
    ) -> np.ndarray:
        """`rows` (b, N) and each user's k closest linked shows not among them nor in
        `exclude[i]` (rows the user must not get), (b, N + k), -1 padded."""
        extra = self.linked(users, k)  # (b, k)
        extra[(extra[:, :, None] == rows[:, None, :]).any(-1)] = -1
        for i, drop in enumerate(exclude or []):
            extra[i, [j for j, r in enumerate(extra[i].tolist()) if r in drop]] = -1
        return np.concatenate([rows, extra], 1)

    def retrieve(self, users: list[str], k: int) -> np.ndarray:
        """Each user's top-k unseen rows by EASE-TV's served score, (b, k)."""
        scores = self.ease_scores(users)  # (b, n)
        for i, u in enumerate(users):
            scores[i, self.ease.histories.get(u, [])] = -np.inf
        k = min(k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        return np.take_along_axis(top, order, 1)


@dataclass
class NewUsers:
    """Users no member saw: served from their first `support` events, labelled by the rest
    (`query`); both frames user_id, show_id, event_timestamp."""

    users: list[str]
    support: pd.DataFrame
    query: pd.DataFrame
    as_of_s: float = math.nan  # when they are served: the cut

    @classmethod
    def draw(cls, pool: pd.DataFrame, cfg: EnsembleConfig, cap: int | None = None) -> NewUsers:
        """Up to `new_users` (and `cap`) seeded users of `pool` with more than `support`
        positives: their first `support` in time (a seeded order on an untimed log)."""
        counts = pool.groupby("user_id").size()
        eligible = sorted(counts.index[counts > cfg.support])
        wanted = min(cfg.new_users, len(eligible), cap if cap is not None else len(eligible))
        rng = np.random.default_rng(cfg.seed + 1)
        users = sorted(rng.choice(np.asarray(eligible, dtype=object), wanted, replace=False))
        mine = pool[pool["user_id"].isin(set(users))]
        draw = rng.random(len(mine)) if not is_timed(pool) else np.zeros(len(mine))
        mine = mine.assign(_draw=draw).sort_values(["user_id", "event_timestamp", "_draw"])
        first = (mine.groupby("user_id").cumcount() < cfg.support).to_numpy()
        mine = mine.drop(columns="_draw")
        return cls([str(u) for u in users], mine[first], mine[~first])


def fit_members(
    positives: pd.DataFrame,
    data: TrainingData,
    cfg: EnsembleConfig,
    as_of_s: float,
    ease_params: dict[str, Any],
    links: sp.csr_matrix | None = None,
) -> Members:
    """Every member from these positives (user_id, show_id, event_timestamp), seen at
    `as_of_s` (seconds since 1970); `links` are the franchise member's (titles do not change
    with the cut, so they are computed once)."""
    shows = list(data.show_ids)
    frame = positives.assign(label=1)
    ease = EASEModel(EASEModel.parse_config(ease_params))
    ease.fit(dataclasses.replace(data, frame=frame, checkpoint_dir=None, content=None))
    knn, failed = None, {}
    if "itemknn" in cfg.members:
        try:
            X = _matrix(list(ease.histories.values()), len(shows))  # (users, n)
            knn = cosine_knn(gram(X), cfg.neighbours)
        except Exception as exc:  # a member that fails is left out, not fatal
            log.warning("ensemble: member itemknn left out: %s", exc)
            failed["itemknn"] = f"failed to fit: {exc}"
    row = {s: i for i, s in enumerate(shows)}
    show_rows = positives["show_id"].map(row).to_numpy(np.int64)
    seconds = _seconds(positives["event_timestamp"])
    ago = as_of_s - seconds  # (m,) seconds before the as-of
    views = np.stack(
        [np.bincount(show_rows[ago <= d * DAY_S], minlength=len(shows)) for d in RECENT_DAYS], 1
    ).astype(np.float32)
    first = np.full(len(shows), np.nan)
    np.fmax.at(first, show_rows, ago)
    last = pd.Series(ago).groupby(positives["user_id"].to_numpy()).min()
    return Members(
        ease, knn.tocsr() if knn is not None else None,
        np.bincount(show_rows, minlength=len(shows)).astype(np.float32), views, first,
        last.to_dict(), is_timed(positives), cfg.recent_days, links, failed,
    )  # fmt: skip


def on_rows(ids: list[str], vectors: np.ndarray, show_ids: list[str], fill: float) -> np.ndarray:
    """A model's show `vectors` (rows of its `ids`, (m, d)) on the rows of `show_ids`,
    (n, d) float32; a show the model does not know gets `fill`."""
    where = {s: i for i, s in enumerate(ids)}
    rows = np.array([where.get(s, -1) for s in show_ids], dtype=np.int64)  # (n,) or -1
    out = np.full((len(show_ids), vectors.shape[1]), fill, np.float32)
    out[rows >= 0] = vectors[rows[rows >= 0]]
    return out


def _thin_window(events: int, users: int) -> DataError:
    """Nothing for the fusion to learn from: no window user with a watched candidate."""
    return DataError(
        "training set collaborative_v1",
        f"the ensemble's validation window ({events:,} positives, {users:,} users with an "
        "earlier one) has no user whose held-out show is among the members' candidates, so "
        "the fusion has nothing to learn from: give it more events, raise "
        "[models.ensemble] window_share or candidates, or serve a single model "
        "([models] serve)",
    )


def _no_window_user(positives: pd.DataFrame, cfg: EnsembleConfig, timed: bool) -> DataError:
    """`preflight`'s refusal: no user the fusion's window could hold."""
    users = positives["user_id"].nunique()
    where = (
        f"the last {cfg.window_share:.0%} of the {len(positives):,} watched pairs by time"
        if timed
        else f"a seeded {cfg.window_share:.0%} of the {len(positives):,} watched pairs"
    )
    return DataError(
        "the events before the as-of",
        f"the ensemble's validation window ({where}) would hold no user with an earlier "
        f"show to rank from ({users:,} user{'s' * (users != 1)} in all, the new users held "
        "out among them), so the fusion would have nothing to learn from: give it more users "
        "and events, raise "
        "[models.ensemble] window_share, or serve a single model ([models] serve, and "
        "leave the ensemble out of [models] train)",
    )


def _seconds(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values, utc=True)
    return ts.dt.as_unit("us").astype("int64").to_numpy() / 1e6


# ---- the fusion network -----------------------------------------------------------------------
class FusionNet(nn.Module):
    """Attention over the members, queried by the context; `heads` residual heads and a
    log-variance head."""

    def __init__(self, n_members: int, cfg: EnsembleConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.context_arch = nn.Sequential(nn.Linear(N_CONTEXT, d), nn.GELU(), nn.Linear(d, d))
        self.member_embedding = nn.Embedding(n_members, d)
        self.member_arch = nn.Linear(N_MEMBER_FEATURES, d)
        self.keys, self.values = nn.Linear(d, d), nn.Linear(d, d)
        self.heads = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, cfg.heads + 1))
        self.n_heads = cfg.heads
        # start as the attention-weighted members alone, with little noise: the heads and the
        # variance move off it only as far as the window's evidence takes them
        last = self.heads[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.zero_()
            last.bias[cfg.heads] = INITIAL_LOG_VAR

    def forward(
        self, context: torch.Tensor, members: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """context (b, N, C), members (b, N, M, F), present (b, N, M) bool ->
        head logits (b, N, H), log-variance (b, N), member weights (b, N, M)."""
        query = self.context_arch(context)  # (b, N, d)
        ids = torch.arange(members.shape[2], device=members.device)
        hidden = torch.tanh(self.member_arch(members) + self.member_embedding(ids))  # (b,N,M,d)
        # keys and values are linear, so they act on the query and on the pooled members
        # (b·N rows) instead of on every member (b·N·M rows): q·(W_k h + b_k) = (q W_k)·h +
        # q·b_k, whose last term is the same for every member and leaves the softmax as it is
        att = torch.einsum("bnd,bnmd->bnm", query @ self.keys.weight, hidden)
        att = att / math.sqrt(query.shape[-1])
        weights = att.masked_fill(~present, float("-inf")).softmax(-1)  # (b, N, M)
        weights = torch.nan_to_num(weights)  # no member present: all zero
        # Σ_m w_m (W_v h_m + b_v) = W_v (Σ_m w_m h_m) + (Σ_m w_m) b_v
        pooled = torch.einsum("bnm,bnmd->bnd", weights, hidden)  # (b, N, d)
        attended = F.linear(pooled, self.values.weight)
        attended = attended + weights.sum(-1, keepdim=True) * self.values.bias  # (b, N, d)
        fused = (weights * members[..., 0]).sum(-1, keepdim=True)  # (b, N, 1)
        out = self.heads(torch.cat([query, attended], -1))  # (b, N, H + 1)
        return fused + out[..., : self.n_heads], out[..., self.n_heads], weights


@dataclass
class Batchable:
    """The fusion's training rows: window users' candidates, standardised."""

    context: torch.Tensor  # (u, N, C)
    members: torch.Tensor  # (u, N, M, F)
    present: torch.Tensor  # (u, N, M) bool
    labels: torch.Tensor  # (u, N) 1 where the candidate was watched in the window
    boot: torch.Tensor  # (u, H) each head's bootstrap weight of the user
    new: torch.Tensor  # (u,) bool: a new user (served from their first events)
    cold: torch.Tensor  # (u,) bool: a window user ranking the cold shows alone

    def take(self, users: np.ndarray) -> Batchable:
        """These users' rows."""
        idx = torch.as_tensor(users)
        return Batchable(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))

    def held_out(self, share: float, seed: int) -> tuple[Batchable, Batchable | None]:
        """(train, validation): a seeded `share` of the users held out (None: fewer than 10)."""
        n = len(self.labels)
        val = np.random.default_rng(seed).permutation(n)[: int(share * n)]
        if len(val) < 10:
            return self, None
        return self.take(np.setdiff1d(np.arange(n), val)), self.take(np.sort(val))


def member_features(
    scores: dict[str, np.ndarray], names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(b, N, M, F) each member's score among the candidates, standardised (as it is for
    UNSCALED members), and its log rank; and (b, N, M) whether the member scored the pair (a
    finite score of a present member)."""
    b, n = next(iter(scores.values())).shape
    s = np.full((len(names), b, n), np.nan)  # (M, b, N) a member absent here: all NaN
    for m, name in enumerate(names):
        if name in scores:
            s[m] = scores[name]
    ok = np.isfinite(s)
    s = np.where(ok, s, 0.0)
    count = np.maximum(ok.sum(2, keepdims=True), 1)
    mean = s.sum(2, keepdims=True) / count  # over the finite scores
    std = np.sqrt((np.where(ok, s - mean, 0.0) ** 2).sum(2, keepdims=True) / count)
    unscaled = np.array([name in UNSCALED for name in names])[:, None, None]
    z = np.where(ok, np.where(unscaled, s, (s - mean) / (std + 1e-6)), 0.0)
    rank = _tied_rank(np.where(ok, s, -np.inf).reshape(-1, n)).reshape(s.shape)
    feats = np.stack([z, np.log1p(rank)], -1).transpose(1, 2, 0, 3)  # (b, N, M, F)
    return np.ascontiguousarray(feats, dtype=np.float32), ok.transpose(1, 2, 0).copy()


def _tied_rank(s: np.ndarray) -> np.ndarray:
    """(b, N) each score's place among its row's, best first from 0, tied scores sharing the
    lowest: among new shows every co-watching score is 0, and a rank by position would be
    noise the fusion could learn from."""
    order = np.argsort(-s, 1, kind="stable")  # (b, N)
    ranked = np.take_along_axis(s, order, 1)
    place = np.arange(s.shape[1])
    new_run = np.ones(s.shape, bool)
    new_run[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    starts = np.where(new_run, place, 0)  # where each run of equal scores starts
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.maximum.accumulate(starts, 1), 1)
    return rank


class _FusionTask(TrainTask):
    """Listwise softmax over each window user's candidates, its watched ones as targets;
    members hidden at random, logits drawn with their predicted variance; the validation
    users' NDCG@10 of the heads' mean chooses the epoch."""

    def __init__(
        self, net: FusionNet, rows: Batchable, val: Batchable | None, cfg: EnsembleConfig
    ) -> None:
        self.net, self.rows, self.val, self.cfg = net, rows, val, cfg
        self.optimizer = torch.optim.AdamW(
            net.parameters(), cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )
        self.monitor = "val_ndcg" if val is not None else None

    def plan(self, epoch: int, rngs: Rngs) -> list[np.ndarray]:
        """Shuffled passes over the users until the epoch has `steps` batches or more."""
        n, size = len(self.rows.labels), self.cfg.batch_size
        passes = math.ceil(self.cfg.steps / math.ceil(n / size))  # batches: ceil(n/size) a pass
        order = np.concatenate(
            [torch.randperm(n, generator=rngs.torch).numpy() for _ in range(passes)]
        )
        return [order[i : i + size] for i in range(0, len(order), size)]

    def loss(self, users: np.ndarray, rngs: Rngs) -> StepResult:
        r, idx = self.rows, torch.as_tensor(users)
        present = r.present[idx]  # (b, N, M)
        hidden = torch.rand(present.shape[0], 1, present.shape[2], generator=rngs.torch)
        keep = present & (hidden >= self.cfg.member_dropout)  # a member hidden for the user
        logits, log_var, _ = self.net(r.context[idx], r.members[idx], keep)  # (b, N, H), (b, N)
        noise = torch.randn(logits.shape, generator=rngs.torch)
        drawn = logits + noise * (0.5 * log_var).exp()[..., None]  # (b, N, H)
        padding = ~present.any(-1)  # (b, N) no candidate there
        drawn = drawn.masked_fill(padding[..., None], PADDING_LOGIT)
        labels = r.labels[idx]  # (b, N)
        nll = -(drawn.log_softmax(1) * labels[..., None]).sum(1) / labels.sum(1, keepdim=True)
        boot = r.boot[idx]  # (b, H)
        loss = (nll * boot).sum() / boot.sum().clamp(min=1.0)
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(users))

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> dict[str, Any]:
        if self.val is None:
            return {}
        self.net.eval()
        v = self.val
        logits = self.net(v.context, v.members, v.present)[0].mean(-1)  # (u, N)
        logits = logits.masked_fill(~v.present.any(-1), PADDING_LOGIT)
        ndcg = listwise_ndcg(logits, v.labels, 10)  # (u,)
        out = {"val_ndcg": float(ndcg.mean())}
        for kind, rows in (("new", v.new), ("cold", v.cold), ("warm", ~(v.new | v.cold))):
            if rows.any() and not rows.all():  # each kind's own figure beside the overall
                out[f"val_ndcg_{kind}"] = float(ndcg[rows].mean())
        return out


def member_alone(members: torch.Tensor, present: torch.Tensor, m: int) -> torch.Tensor:
    """(b, N) member `m`'s own standardised score of each candidate, from `members` (b, N, M,
    F) and `present` (b, N, M); a candidate it did not score: last (the padding logit)."""
    return members[..., m, 0].masked_fill(~present[..., m], PADDING_LOGIT)


def listwise_ndcg(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k of each row's candidates ranked by `scores` (u, N) against 0/1 `labels`, (u,)."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))
    dcg = (labels.gather(1, top) * discount).sum(1)
    ideal = torch.cumsum(discount, 0)[labels.sum(1).clamp(1, k).long() - 1]
    return dcg / ideal


# ---- the model --------------------------------------------------------------------------------
class EnsembleModel(Recommender, name="ensemble", config=EnsembleConfig):
    """Attention fusion of the members, re-ranking the retrieval stage's candidates."""

    feature_service = "collaborative_v1"  # the events (show content: `content_service`)
    needs_content = True  # the shows' titles (franchise) and content (profile)
    content_service = "multimodal_v1"  # the show metadata and text the profile member reads
    prior_column = True  # the retrieval vectors are EASE-TV's, prior column included
    net: FusionNet | None = None
    served: Members | None = None
    content_vectors: np.ndarray | None = None  # (n_shows, d) the content model's space
    content_model: Recommender | None = None  # its published copy (after fit only)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.names: list[str] = []  # members that fitted, in the net's member order
        self.left_out: dict[str, str] = {}  # member -> why it was left out
        self.scale: dict[str, np.ndarray] = {}  # context mean / std of the training rows
        self.timings: dict[str, Any] = {}  # the model members' fits before the window
        self.new_user_ranker = "fusion"  # or the member ranking new users alone
        self.calibration: Calibration | None = None  # confidence as a chance (`calibrate`)
        self._companions: dict[str, Recommender] = {}  # see `companions`

    # ---- training ---------------------------------------------------------------------------
    @classmethod
    def preflight(cls, positives: pd.DataFrame, params: Mapping[str, Any]) -> None:
        """Refuse a log whose validation window certainly holds no user to learn from, the
        refusal `fit` would make only after every other stage trained. On a timed log the
        window is the last `window_share` of the positives by time: this is `fit`'s own cut.
        On an untimed one it is a seeded draw over the training set's rows, so only what
        holds for every draw counts: no user outside the new users has two shows."""
        model = cls(cls.parse_config(params))
        if is_timed(positives):
            _, window, _, _ = model._cut(positives)
            if window.empty:
                raise _no_window_user(positives, model.config, timed=True)
            return
        new = set(model._new_users(positives).users)
        shows = positives.loc[~positives["user_id"].isin(new), "user_id"].value_counts()
        if not (shows > 1).any():
            raise _no_window_user(positives, model.config, timed=False)

    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, started = self.config, time.perf_counter()
        torch.manual_seed(cfg.seed)
        self.show_ids = list(data.show_ids)
        positives = data.positives()
        positives = positives[positives["show_id"].isin(set(self.show_ids))]
        as_of_s = data.as_of.timestamp()
        before, window, new, cold = self._cut(positives)
        if window.empty:
            raise _thin_window(0, 0)
        timed = is_timed(positives)
        cut_s = _seconds(window["event_timestamp"]).min() if timed else as_of_s
        new.as_of_s = cut_s
        links, no_links = self._franchise_links(data)
        profiles, no_profiles = self._profiles(data)
        premiered, no_premieres = self._premieres(data)
        ease_params = {"seed": cfg.seed, "exact": cfg.exact_ease}
        members = fit_members(before, data, cfg, cut_s, ease_params, links)
        members.profiles = profiles
        members.released = _released(premiered, cut_s)
        self.timings = {}  # this fit's, filled by _model_members
        self.left_out = (
            members.failed
            | no_links
            | no_profiles
            | no_premieres
            | ({} if members.timed or "recent" not in cfg.members else {"recent": "untimed log"})
        )
        served_models = self._model_members(data, members, window, cut_s, new.users, cold)
        self.names = [m for m in cfg.members if m not in self.left_out] + list(members.models)
        rows = self._rows(members, window, new, cold)
        self.net = FusionNet(len(self.names), cfg)
        warm = np.flatnonzero(~rows.new.numpy())  # window users (cold-show rows included)
        fused = rows if cfg.train_new_users or not len(warm) else rows.take(warm)
        train, val = fused.held_out(cfg.val_share, cfg.seed)
        history = self.trainer(data).fit(_FusionTask(self.net, train, val, cfg))
        self.net.eval()
        self.calibration = self._calibrate(fused) if cfg.calibrate else None
        # chosen on new users the fusion did not train on
        self.new_user_ranker, new_user_ndcg = self._new_user_ranker(
            val if cfg.train_new_users else rows
        )
        l2 = members.ease.manifest.metrics["l2"] if members.ease.manifest else None
        at_cut, trained = members.models, members.popularity > 0
        del members  # its B before the served one's: one n_shows^2 matrix at a time
        # l2 tuned again on all positives: more data wants less of it (anime: 250 at the cut,
        # 100 on all, as the EASE peer finds)
        self.served = fit_members(positives, data, cfg, as_of_s, ease_params, links)
        self.served.profiles = profiles
        self._serve_models(data, served_models, at_cut, ~trained)
        self.served.released = _released(premiered, as_of_s)
        self.histories = self.served.ease.histories
        self._content_space(data)
        metrics = history.metrics() | {
            "members": self.names,
            "members_left_out": self.left_out,
            # shown by `tvrec train` (the run record's *_notes)
            "member_notes": "; ".join(f"{k} left out: {v}" for k, v in self.left_out.items()),
            "window_users": len(rows.labels),
            "new_users": len(new.users),
            "new_user_ranker": self.new_user_ranker,
            "new_user_ndcg": new_user_ndcg,
            "new_user_notes": _new_user_note(self.new_user_ranker, new_user_ndcg, len(new.users)),
            "confidence": "calibrated" if self.calibration is not None else "stability",
            "confidence_means": self._confidence_means(timed, as_of_s - cut_s),
            "cold_shows": len(cold),
            "cold_rows": int(rows.cold.sum()),
            "window_recall": float(rows.labels.sum() / max(len(window), 1)),
            "ease_l2": self.fitted(self.served.ease.manifest).metrics["l2"],
            "ease_l2_at_cut": l2,
            "similarity_space": cfg.content if self.content_vectors is not None else "ease",
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        metrics |= self.timings
        self.make_manifest(data, int(self.served.ease.show_embeddings()[1].shape[1]), metrics)
        return metrics

    def _confidence_means(self, timed: bool, window_s: float) -> str:
        """What a published `confidence` is the chance of, for people reading it (`tvrec query
        --user` prints it): the calibration's labels are the window's watches, so its horizon
        is the window's span on a timed log, else the window's share of each user's watches."""
        cfg = self.config
        if self.calibration is None:
            k = cfg.confidence_k
            return f"the share of the fusion's noisy draws keeping the show in the top {k}"
        if timed:
            days = max(1, round(window_s / DAY_S))
            return f"the chance the show is watched within {days} day{'s' if days > 1 else ''}"
        return (
            "the chance the show is among the user's next watches, were "
            f"{cfg.window_share:.0%} of their watches still to come (an untimed log)"
        )

    def _calibrate(self, rows: Batchable) -> Calibration | None:
        """The confidence's logistic regression, fitted on warm window users' top
        `confidence_k` (at most CALIBRATION_USERS of them, seeded), labelled by the window."""
        warm = np.flatnonzero(~(rows.cold | rows.new).numpy())
        if len(warm) > CALIBRATION_USERS:
            pick = np.random.default_rng(self.config.seed).choice(warm, CALIBRATION_USERS, False)
            warm = np.sort(pick)
        if not len(warm):
            return None
        batches = [warm[i : i + 256] for i in range(0, len(warm), 256)]
        parts = [self._confidence_rows(rows.take(users)) for users in batches]
        width = parts[0][0].shape[-1]
        feats = np.concatenate([f.reshape(-1, width) for f, _ in parts])
        return Calibration.fit(feats, np.concatenate([w.reshape(-1) for _, w in parts]))

    @torch.inference_mode()
    def _confidence_rows(self, r: Batchable) -> tuple[np.ndarray, np.ndarray]:
        """(b, k, F) the confidence's features of these window users' top `confidence_k` as
        the fusion ranks them, and (b, k) whether each was watched in the window."""
        cfg = self.config
        valid = r.present.any(-1)  # (b, N)
        logits, log_var, _ = self.fitted(self.net)(r.context, r.members, r.present)
        score = logits.mean(-1).masked_fill(~valid, float("-inf"))  # (b, N)
        top = torch.topk(score, min(cfg.confidence_k, score.shape[1]), dim=1).indices
        stay = _stay_in_top(logits, log_var, top, valid.numpy(), cfg)
        feats = confidence_features(logits, log_var, score, top, r.context, stay)
        return feats, r.labels.gather(1, top).numpy() > 0

    def member_models(self) -> list[str]:
        return list(self.config.models)

    def companions(self) -> dict[str, Recommender]:
        """The model members advanced to the as-of whose own stage did not publish them for
        this as-of: published beside the ensemble under their own names."""
        return dict(self._companions)

    def _serve_models(
        self,
        data: TrainingData,
        published: dict[str, Recommender | None],
        at_cut: dict[str, Recommender],
        untrained: np.ndarray,
    ) -> None:
        """The served model members: each one's published copy, or (None there) the copy
        trained before the window, advanced to the as-of on the member's own inputs."""
        served = self.fitted(self.served)
        self._companions = {}
        for name, copy in published.items():
            if copy is not None:
                served.models[name] = copy
                continue
            member, given = at_cut[name], data.members[name]
            if given.data is None or not member.advance(given.data):
                raise RuntimeError(f"model member {name} could not be advanced to the as-of")
            served.models[name], served.untrained[name] = member, untrained
            if _unusable(name, given.published, data.as_of) is not None:
                self._companions[name] = member

    @torch.inference_mode()
    def _new_user_ranker(self, rows: Batchable | None) -> tuple[str, dict[str, float]]:
        """("fusion" or a member, each one's NDCG@10) on the simulated new users in `rows`:
        the default (`new_user_default` where it is a member, else the fusion) unless the best
        of the others beats it there by more than two standard errors of the users' paired
        differences (a few dozen new users decide nothing)."""
        if rows is None or not rows.new.any() or not self.config.new_user_events:
            return "fusion", {}
        new = rows.take(np.flatnonzero(rows.new.numpy()))
        padding = ~new.present.any(-1)  # (u, N)
        fused = self.fitted(self.net)(new.context, new.members, new.present)[0].mean(-1)
        scores = {"fusion": fused.masked_fill(padding, PADDING_LOGIT)}
        for m, name in enumerate(self.names):
            scores[name] = member_alone(new.members, new.present, m)
        per_user = {k: listwise_ndcg(v, new.labels, 10).numpy() for k, v in scores.items()}
        ndcg = {k: round(float(v.mean()), 4) for k, v in per_user.items()}
        default = self.config.new_user_default
        default = default if default in self.names else "fusion"
        best = max((k for k in scores if k != default), key=lambda k: ndcg[k])
        chosen = best if _clearly_better(per_user[best], per_user[default]) else default
        log.info("ensemble: new users (%d) ranked by %s: %s", len(new.labels), chosen, ndcg)
        return chosen, ndcg

    def _franchise_links(self, data: TrainingData) -> tuple[sp.csr_matrix | None, dict[str, str]]:
        """The franchise member's title links on the catalogue's rows, or why it is left out."""
        cfg = self.config
        if "franchise" not in cfg.members:
            return None, {}
        titles = data.content.titles if data.content is not None else []
        if not any(titles):
            return None, {"franchise": "no show titles in the catalogue"}
        links = title_links(titles, cfg.neighbours, cfg.franchise_similarity)
        if links.nnz == 0:
            return None, {"franchise": "no two titles share a franchise name"}
        return links, {}

    def _profiles(self, data: TrainingData) -> tuple[ShowProfiles | None, dict[str, str]]:
        """The profile member's show content on the catalogue's rows, or why it is left out."""
        if "profile" not in self.config.members:
            return None, {}
        try:
            profiles = ShowProfiles.of(data.content, self.show_ids)
        except Exception as exc:  # a member that fails is left out, not fatal
            log.warning("ensemble: member profile left out: %s", exc)
            return None, {"profile": f"failed to fit: {exc}"}
        if profiles is None:
            return None, {"profile": "no show metadata in the catalogue"}
        return profiles, {}

    def _premieres(self, data: TrainingData) -> tuple[np.ndarray | None, dict[str, str]]:
        """(n,) premiere days since 1970 for the release member, or why it is left out."""
        if "release" not in self.config.members:
            return None, {}
        premiered = premiere_days(data.content, self.show_ids)
        if premiered is None:
            return None, {"release": "no premiere dates in the catalogue"}
        return premiered, {}

    def published_models(self) -> list[str]:
        return [self.config.content] if self.config.content else []

    def _content_space(self, data: TrainingData) -> None:
        """The content model's similarity vectors on the ensemble's rows (a show it lacks:
        zeros, similar to nothing) and its published copy, for its text tower; when it is
        not published for this as-of, EASE-TV's space, with the reason in the run record."""
        name = self.config.content
        if name is None:
            return
        given = data.members.get(name)
        published = given.published if given else None
        why = _unusable(name, published, data.as_of)
        if why is not None or published is None:
            log.warning("ensemble: content space %s left out: %s", name, why)
            self.left_out[f"content ({name})"] = str(why)
            return
        ids, vectors = published.show_embeddings()[0], published.similarity_vectors()
        self.content_vectors = on_rows(ids, vectors, self.show_ids, 0.0)
        self.content_model = published

    def _model_members(
        self,
        data: TrainingData,
        members: Members,
        window: pd.DataFrame,
        cut_s: float,
        new_users: list[str],
        cold: list[str],
    ) -> dict[str, Recommender | None]:
        """Each model member trained on its inputs before the cut (into `members`, for the
        fusion's window) and what serves it (returned): None where it is advanced to the
        as-of after the fusion (`advance`), else its published copy; a member without inputs
        (or, not advanced, not published for this run's as-of) or failing to train is left
        out with the reason."""
        from .registry import model_class

        cut = datetime.fromtimestamp(cut_s, UTC)
        served: dict[str, Recommender | None] = {}
        for name in self.config.models:
            given, cls = data.members.get(name), model_class(name)
            advance = name in self.config.advance and cls.advance is not Recommender.advance
            if advance:
                why = None if given and given.data else "no training data for it"
            else:
                why = _unusable(name, given.published if given else None, data.as_of)
            if why is None and given is not None:
                before = _before(given.data.frame, window, cut, set(new_users), set(cold))
                checkpoints = data.checkpoint_dir / name if data.checkpoint_dir else None
                try:
                    at_cut = cls.at_cut(given.data, before, cut)
                    at_cut = dataclasses.replace(at_cut, checkpoint_dir=checkpoints)
                    member = cls.create(self.runtime, given.params)
                    fitted = member.fit(at_cut)
                except Exception as exc:  # a member that fails is left out, not fatal
                    why = f"failed to train before the window: {exc}"
                else:
                    members.models[name] = member
                    served[name] = None if advance else given.published
                    # its timings in the run record, as `<name>_epoch_seconds`, ...
                    self.timings |= {f"{name}_{k}": v for k, v in fitted.items() if "seconds" in k}
            if why is not None:
                log.warning("ensemble: member %s left out: %s", name, why)
                self.left_out[name] = why
        return served

    def _cut(
        self, positives: pd.DataFrame
    ) -> tuple[pd.DataFrame, pd.DataFrame, NewUsers, list[str]]:
        """(before, window, new users, cold shows): the last `window_share` of the positives
        by time on a timed log, else a seeded random share; the new users (a seeded
        `new_share` of the users, at most `new_users`) are in neither: no member sees any of
        their events; nor does any see an event of the cold shows (a seeded `cold_shows` share
        of the window's). Window users without an earlier positive are dropped."""
        cfg = self.config
        held = held_out(positives, cfg.window_share, cfg.seed)
        before, window = positives[~held], positives[held]
        new = self._new_users(positives)
        shows = sorted(set(window["show_id"]))
        wanted = min(round(cfg.cold_shows * len(shows)), cfg.candidates)
        cold = [] if wanted < 2 else sorted(
            np.random.default_rng(cfg.seed + 2).choice(np.asarray(shows, object), wanted, False)
        )  # fmt: skip
        before = before[~before["user_id"].isin(set(new.users)) & ~before["show_id"].isin(cold)]
        return before, window[window["user_id"].isin(set(before["user_id"]))], new, cold

    def _new_users(self, positives: pd.DataFrame) -> NewUsers:
        """The new users, as the few-shot protocol holds them out: a seeded `new_share` of
        everyone (at most `new_users`; only users with more than `support` positives)."""
        cap = math.ceil(self.config.new_share * positives["user_id"].nunique())
        return NewUsers.draw(positives, self.config, cap)

    def _rows(
        self, members: Members, window: pd.DataFrame, new: NewUsers, cold: list[str]
    ) -> Batchable:
        """The window users' served candidates with their features and labels; the window
        users who watched a cold show, ranking the cold shows alone; then the new users',
        folded into the members from their support events (users with no watched candidate
        teach nothing and are dropped)."""
        cfg = self.config
        users = sorted(set(window["user_id"]))
        if len(users) > cfg.max_window_users:
            pick = np.random.default_rng(cfg.seed).choice(len(users), cfg.max_window_users, False)
            users = [users[i] for i in sorted(pick)]
        warm = self._labelled(members, users, window)
        parts, kinds = [warm], [np.full(len(warm[0]), "warm")]
        watched = window[window["show_id"].isin(set(cold))]
        cold_users = sorted(set(watched["user_id"]) & set(users))  # may be none of those kept
        if cold_users:
            rows = np.full((len(cold_users), warm[3].shape[1]), -1, np.int64)  # (c, N) padded
            rows[:, : len(cold)] = [self.show_rows()[s] for s in cold]
            parts.append(self._labelled(members, cold_users, watched, rows))
            kinds.append(np.full(len(cold_users), "cold"))
        if new.users:
            members.fold_in(new.support, new.as_of_s)
            parts.append(self._labelled(members, new.users, new.query))
            kinds.append(np.full(len(new.users), "new"))
        context, feats, present, labels = (
            np.concatenate(p) for p in zip(*((*p[:3], p[4]) for p in parts), strict=True)
        )
        keep = labels.any(1)
        if not keep.any():
            raise _thin_window(len(window), len(users))
        flat = context.reshape(-1, N_CONTEXT)
        self.scale = {"mean": flat.mean(0), "std": flat.std(0) + 1e-6}
        kind = np.concatenate(kinds)[keep]  # (u,)
        boot = np.random.default_rng(cfg.seed).poisson(1.0, (int(keep.sum()), cfg.heads))
        return Batchable(
            torch.as_tensor(self._scaled(context[keep])), torch.as_tensor(feats[keep]),
            torch.as_tensor(present[keep]), torch.as_tensor(labels[keep], dtype=torch.float32),
            torch.as_tensor(boot, dtype=torch.float32), torch.as_tensor(kind == "new"),
            torch.as_tensor(kind == "cold"),
        )  # fmt: skip

    def _labelled(
        self,
        members: Members,
        users: list[str],
        truth: pd.DataFrame,
        rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(context, member features, present, candidate rows, labels) of these users'
        candidates (their served ones unless `rows` (u, N) are given), labelled 1 where
        `truth` (user_id, show_id) has the pair."""
        row = self.show_rows()
        rows_of = truth.groupby("user_id")["show_id"].agg(lambda s: [row[x] for x in s]).to_dict()
        parts = [
            self._features(members, users[i : i + 512], None if rows is None else rows[i : i + 512])
            for i in range(0, len(users), 512)
        ]
        context, feats, present, cands = (np.concatenate(p) for p in zip(*parts, strict=True))
        watched = [rows_of.get(u, []) for u in users]
        labels = np.stack([np.isin(c, w) for c, w in zip(cands, watched, strict=True)])
        return context, feats, present, cands, labels

    def _features(
        self, members: Members, users: list[str], rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(context, member features, present, candidate rows) of these users; the rows are
        the served candidates unless given (-1: padding, no member present)."""
        if rows is None:
            retrieved = members.retrieve(users, self.config.candidates)  # (b, N)
            rows = self._with_linked(members, users, retrieved)
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        scores = {m: np.where(valid, s, np.nan) for m, s in members.scores(users, safe).items()}
        feats, present = member_features(scores, self.names)
        return members.context(users, safe), feats, present, rows

    def _scaled(self, context: np.ndarray) -> np.ndarray:
        return ((context - self.scale["mean"]) / self.scale["std"]).astype(np.float32)

    # ---- serving ----------------------------------------------------------------------------
    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        """The retrieval stage's vectors: EASE-TV's [R, prior]."""
        return self.fitted(self.served).ease.show_embeddings()

    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        return self.fitted(self.served).ease.user_embeddings(user_ids)

    def precompute_users(self, user_ids: list[str]) -> int:
        """The served model members' user tables (see `Recommender.precompute_users`): a
        re-rank then reads these users' member vectors instead of computing them."""
        models = self.fitted(self.served).models.values()
        return max((model.precompute_users(user_ids) for model in models), default=0)

    def fold_in(self, events: pd.DataFrame) -> bool:
        """New users served from these events, folded into every member."""
        assert self.manifest is not None
        as_of_s = datetime.fromisoformat(self.manifest.as_of).timestamp()
        self.fitted(self.served).fold_in(events, as_of_s)
        return True

    def similarity_vectors(self) -> np.ndarray:
        """The content model's show vectors (see `content`), else EASE-TV's."""
        if self.content_vectors is not None:
            return self.content_vectors
        return self.fitted(self.served).ease.similarity_vectors()

    def save_artifacts(self, directory: Path) -> None:
        """The content model's artifacts (its text tower): `tvrec query --text` searches the
        similar-shows index, which is in its space."""
        if self.content_model is not None:
            self.content_model.save_artifacts(directory)

    def rerank(
        self,
        user_ids: list[str],
        rows: np.ndarray,
        k: int,
        exclude: list[set[int]] | None = None,
    ) -> Reranked:
        """Each user's candidate rows (b, N) (-1: padding), with up to `franchise_candidates`
        shows linked by title to their history (not among them, not in `exclude[i]`: rows
        the user must not get), re-ranked to the top k; a request for a few users runs on one
        thread (see `Runtime.one_thread`)."""
        rows = self._with_linked(self.fitted(self.served), user_ids, rows, exclude)
        if len(user_ids) <= ONLINE_BATCH:
            with Runtime.one_thread():
                return self._rerank(user_ids, rows, k)
        return self._rerank(user_ids, rows, k)

    def served_candidates(self, user_ids: list[str]) -> np.ndarray:
        """What `rerank` ranks for these users when served: the retrieval stage's top
        `candidates` and the shows linked by title, (b, N + E), -1 padded."""
        members = self.fitted(self.served)
        retrieved = members.retrieve(user_ids, self.config.candidates)  # (b, N)
        return self._with_linked(members, user_ids, retrieved)

    def _with_linked(
        self,
        members: Members,
        user_ids: list[str],
        rows: np.ndarray,
        exclude: list[set[int]] | None = None,
    ) -> np.ndarray:
        """`rows` (b, N), the `franchise_candidates` linked shows and, for a user the new-user
        ranker ranks, its own top `ranker_candidates` (b, N + E + R), -1 padded: the fusion
        trains on the candidates it serves (the ranker's picks: chosen after it)."""
        rows = members.with_linked(user_ids, rows, self.config.franchise_candidates, exclude)
        return self._with_ranker_picks(members, user_ids, rows, exclude)

    def _with_ranker_picks(
        self,
        members: Members,
        user_ids: list[str],
        rows: np.ndarray,
        exclude: list[set[int]] | None = None,
    ) -> np.ndarray:
        """`rows` (b, C) and, for each user with at most `new_user_events` events, the
        new-user ranker's own top `ranker_candidates` unseen shows not among them nor in
        `exclude[i]`, (b, C + R), -1 padded; unchanged where the ranker is the fusion or a
        closed-form member."""
        cfg, name = self.config, self.new_user_ranker
        model, r = members.models.get(name), cfg.ranker_candidates
        if model is None or not cfg.new_user_events or not r:
            return rows
        few = np.flatnonzero(members.history_lengths(user_ids) <= cfg.new_user_events)  # (f,)
        out = np.full((len(user_ids), r), -1, np.int64)
        if len(few):
            users = [user_ids[i] for i in few]
            scores = model.user_embeddings(users) @ members.show_vectors(name, model).T  # (f, n)
            scores = np.nan_to_num(scores, nan=-np.inf)  # a show it does not know
            for j, i in enumerate(few):
                drop = [*members.ease.histories.get(user_ids[i], []), *rows[i][rows[i] >= 0]]
                scores[j, drop + (list(exclude[i]) if exclude else [])] = -np.inf
            top = np.argsort(-scores, 1, kind="stable")[:, :r]  # (f, min(r, n))
            picks = np.where(np.isfinite(np.take_along_axis(scores, top, 1)), top, -1)
            out[few, : top.shape[1]] = picks  # a catalogue under r shows: the rest -1
        return np.concatenate([rows, out], 1)

    @torch.inference_mode()
    def _rerank(self, user_ids: list[str], rows: np.ndarray, k: int) -> Reranked:
        net, members = self.fitted(self.net), self.fitted(self.served)
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        raw, feats, present, _ = self._features(members, user_ids, rows)
        context = torch.as_tensor(self._scaled(raw))  # (b, N, C)
        logits, log_var, weights = net(context, torch.as_tensor(feats), torch.as_tensor(present))
        score, routed = self._routed(members, user_ids, rows, logits.mean(-1), feats, present)
        score = score.masked_fill(torch.as_tensor(~valid), float("-inf"))  # (b, N)
        top = torch.topk(score, min(k, rows.shape[1]), dim=1).indices  # (b, k)
        # a routed user's picks judged by the fusion's draws: low where it disagrees with the
        # ranker (draws ordered as served put every pick at 1.0: docs/benchmarks.md)
        confidence = _stay_in_top(logits, log_var, top, valid, self.config)
        if self.calibration is not None:  # as the chance each is watched
            cues = confidence_features(logits, log_var, score, top, context, confidence)
            confidence = self.calibration.probability(cues)
        contribution = weights * torch.as_tensor(feats[..., 0])  # (b, N, M)
        because = contribution.argmax(-1).gather(1, top).numpy()  # (b, k)
        chosen, best = np.take_along_axis(safe, top.numpy(), 1), score.gather(1, top).numpy()
        if routed.any():  # a new user's picks of shows with events are the new-user ranker's
            seen = members.with_events(chosen)  # (b, k)
            because[routed[:, None] & seen] = self.names.index(self.new_user_ranker)
        chosen[~np.isfinite(best)] = -1  # past the user's candidates
        return Reranked(
            chosen,
            best,
            confidence,
            np.asarray(self.names, dtype=object)[because],
        )

    def _routed(
        self,
        members: Members,
        user_ids: list[str],
        rows: np.ndarray,
        fused: torch.Tensor,
        feats: np.ndarray,
        present: np.ndarray,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """(the served scores (b, N), which users (b,) the new-user ranker ranks): users with
        at most `new_user_events` events whose candidates that member tells apart (a
        co-watching member scores every new show alike: the fusion ranks those). The ranker
        was chosen on shows with events: for a routed user it orders those, and the fusion
        keeps the new shows (no event yet) and where they stand (`new_user_order`)."""
        ranker, most = self.new_user_ranker, self.config.new_user_events
        if ranker == "fusion" or ranker not in self.names or not most:
            return fused, np.zeros(len(user_ids), bool)
        m = self.names.index(ranker)
        events = members.history_lengths(user_ids)  # (b,)
        own = np.where(present[..., m], feats[..., m, 0], np.nan)  # (b, N)
        with warnings.catch_warnings():  # "All-NaN slice": a user it scores nothing for
            warnings.simplefilter("ignore", RuntimeWarning)
            apart = np.nanmax(own, 1) > np.nanmin(own, 1)  # (b,) NaN compares False
        routed = (events <= most) & apart  # (b,)
        if not routed.any():
            return fused, routed
        alone = member_alone(torch.as_tensor(feats), torch.as_tensor(present), m)  # (b, N)
        merged = new_user_order(fused, alone, torch.as_tensor(members.with_events(rows)))
        return torch.where(torch.as_tensor(routed)[:, None], merged, fused), routed

    @torch.no_grad()
    def ablation(self, user_ids: list[str], k: int) -> dict[str, np.ndarray]:
        """Each user's top-k show rows, (b, k), among their retrieved candidates, ranked by:
        the fusion of all members; the fusion with each member hidden in turn (as when one
        fails to load: the weights renormalise over the rest, and the fusion trained with
        members hidden at random); each member's own score alone. A new user is ranked by the
        new-user ranker as when served, unless it is the member hidden."""
        parts = [self._ablation(user_ids[i : i + 1024], k) for i in range(0, len(user_ids), 1024)]
        if not parts:
            return {}
        return {label: np.concatenate([p[label] for p in parts]) for label in parts[0]}

    def _ablation(self, user_ids: list[str], k: int) -> dict[str, np.ndarray]:
        net, members = self.fitted(self.net), self.fitted(self.served)
        # the served candidates: retrieved, then the shows linked by title (-1: padding)
        rows = self.served_candidates(user_ids)  # (b, N + E)
        valid = rows >= 0
        context, feats, present, _ = self._features(members, user_ids, rows)
        ctx, z = torch.as_tensor(self._scaled(context)), torch.as_tensor(feats)

        def fused(keep: np.ndarray) -> np.ndarray:  # (b, N) as served: new users routed
            logit = net(ctx, z, torch.as_tensor(keep))[0].mean(-1)
            served = self._routed(members, user_ids, rows, logit, feats, keep)[0].numpy()
            return np.where(valid, served, -np.inf)

        scores = {"all members": fused(present)}
        for m, name in enumerate(self.names):
            scores[f"without {name}"] = fused(present & (np.arange(len(self.names)) != m))
        for m, name in enumerate(self.names):
            scores[f"{name} alone"] = member_alone(z, torch.as_tensor(present), m).numpy()
        top = min(k, rows.shape[1])
        return {
            label: np.take_along_axis(rows, np.argsort(-s, 1, kind="stable")[:, :top], 1)
            for label, s in scores.items()
        }

    # ---- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        members = self.fitted(self.served)
        knn = (members.knn if members.knn is not None else sp.csr_matrix((0, 0))).tocoo()
        return {
            "shows": self.show_ids,
            "names": self.names,
            "left_out": self.left_out,
            "new_user_ranker": self.new_user_ranker,
            "calibration": self.calibration.state() if self.calibration is not None else None,
            "ease": members.ease.get_state(),
            "ease_config": members.ease.config.model_dump(),
            "knn": torch.as_tensor(np.stack([knn.row, knn.col])),
            "knn_values": torch.as_tensor(knn.data),
            "links": sparse_state(members.links) if members.links is not None else None,
            "profiles": members.profiles.state() if members.profiles is not None else None,
            "released": None if members.released is None else torch.as_tensor(members.released),
            "popularity": torch.as_tensor(members.popularity),
            "views": torch.as_tensor(members.views),
            "first_seen_s": torch.as_tensor(members.first_seen_s),
            "last_event_s": members.last_event_s,
            "timed": members.timed,
            "scale": {k: torch.as_tensor(v) for k, v in self.scale.items()},
            "net": self.fitted(self.net).state_dict(),
            "content_vectors": (
                torch.as_tensor(self.content_vectors) if self.content_vectors is not None else None
            ),
            "models": {
                name: {
                    "state": m.get_state(),
                    "config": m.config.model_dump(),
                    "manifest": m.manifest.to_json() if m.manifest else {},
                }
                for name, m in members.models.items()
            },
            "untrained": {k: torch.as_tensor(v) for k, v in members.untrained.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.names = state["shows"], state["names"]
        self.left_out, n = state["left_out"], len(state["shows"])
        self.new_user_ranker = state.get("new_user_ranker", "fusion")  # saved before: fusion
        self.calibration = Calibration.from_state(state.get("calibration"))  # before: none
        ease = EASEModel(EASEModel.parse_config(state["ease_config"]))
        ease.set_state(state["ease"])
        ij, values = state["knn"].numpy(), state["knn_values"].numpy()
        knn = sp.csr_matrix((values, (ij[0], ij[1])), shape=(n, n))
        self.served = Members(
            ease, knn if "itemknn" in self.names else None, state["popularity"].numpy(),
            state["views"].numpy(),
            state["first_seen_s"].numpy(), state["last_event_s"], state["timed"],
            self.config.recent_days,
        )  # fmt: skip
        links = state.get("links")
        self.served.links = sparse_matrix(links, (n, n)) if links is not None else None
        self.served.profiles = ShowProfiles.from_state(state.get("profiles"))
        released = state.get("released")
        self.served.released = released.numpy() if released is not None else None
        self.served.models = {n: _member(n, m) for n, m in state["models"].items()}
        self.served.untrained = {k: v.numpy() for k, v in state.get("untrained", {}).items()}
        self.histories = ease.histories
        content = state.get("content_vectors")
        self.content_vectors = content.numpy() if content is not None else None
        self.scale = {k: v.numpy() for k, v in state["scale"].items()}
        self.net = FusionNet(len(self.names), self.config)
        self.net.load_state_dict(state["net"])
        self.net.eval()


def _clearly_better(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether per-user scores `a` beat `b` (paired, (u,)) by more than two standard errors."""
    gain = a - b
    if len(gain) < 2:
        return False
    return bool(gain.mean() > 2 * gain.std(ddof=1) / math.sqrt(len(gain)))


def _new_user_note(ranker: str, ndcg: dict[str, float], n: int) -> str:
    """What the run record says of the new-user ranker: chosen on how many, by what figures."""
    if not ndcg:
        return ""
    figures = ", ".join(f"{k} {v:.3f}" for k, v in sorted(ndcg.items(), key=lambda kv: -kv[1]))
    return f"users with few events ranked by {ranker} ({n} simulated new users, NDCG@10: {figures})"


def _released(premiered: np.ndarray | None, as_of_s: float) -> np.ndarray | None:
    """(n,) days from each show's premiere to `as_of_s` (negative: premieres later)."""
    return None if premiered is None else as_of_s / DAY_S - premiered


def _before(
    frame: pd.DataFrame, window: pd.DataFrame, cut: datetime, new_users: set[str], cold: set[str]
) -> pd.DataFrame:
    """A member's training rows the fusion's window does not know: before the cut, no
    (user, show) pair of the window (a random window on an untimed log), no new user's and
    no cold show's."""
    held = pd.MultiIndex.from_frame(window[["user_id", "show_id"]])
    pairs = pd.MultiIndex.from_frame(frame[["user_id", "show_id"]])
    keep = (
        (frame["event_timestamp"] < pd.Timestamp(cut)).to_numpy()
        & ~pairs.isin(held)
        & ~frame["user_id"].isin(new_users).to_numpy()
        & ~frame["show_id"].isin(cold).to_numpy()
    )
    return frame[keep].reset_index(drop=True)


def _member(name: str, saved: dict[str, Any]) -> Recommender:
    """A model member rebuilt from the ensemble's state."""
    from .base import ModelManifest
    from .registry import model_class

    cls = model_class(name)
    model = cls(cls.parse_config(saved["config"]), Runtime.cpu())
    model.set_state(saved["state"])
    model.manifest = ModelManifest(**saved["manifest"])
    return model


def _unusable(name: str, published: Recommender | None, as_of: datetime) -> str | None:
    """Why a model member's published copy cannot serve this run (None: it can)."""
    if published is None or published.manifest is None:
        return f"not trained: run `tvrec train --stage {name}` before the ensemble"
    if published.manifest.as_of != as_of.isoformat():
        return f"published as of {published.manifest.as_of}, not this run's {as_of.isoformat()}"
    return None


@dataclass
class Reranked:
    """A re-ranked batch: (b, k) each."""

    rows: np.ndarray  # show rows, best first
    scores: np.ndarray
    confidence: np.ndarray  # the chance it is watched (calibrated), else the draws keeping it
    because: np.ndarray  # the member that contributed most to the score


def new_user_order(fused: torch.Tensor, alone: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Scores (b, N) for users the new-user ranker ranks: the fusion decides which places of
    the list go to shows with events (`seen`) and which to new shows; the shows with events
    fill theirs in the ranker's order (`alone`; ties in the fusion's), new shows in the
    fusion's. The scores are the fusion's, sorted, handed out by place: an order, on the
    fusion's scale."""
    by_fused = fused.argsort(dim=1, descending=True, stable=True)  # (b, N) candidate at each place
    placed_seen = seen.gather(1, by_fused)  # (b, N) place j goes to a show with events
    ranker_key = torch.where(seen, alone, float("-inf")).gather(1, by_fused)  # fusion order
    seen_order = by_fused.gather(1, ranker_key.argsort(dim=1, descending=True, stable=True))
    new_key = torch.where(seen, float("-inf"), fused).gather(1, by_fused)
    new_order = by_fused.gather(1, new_key.argsort(dim=1, descending=True, stable=True))
    nth_seen = (placed_seen.cumsum(1) - 1).clamp(min=0)  # (b, N) the place's rank in its kind
    nth_new = ((~placed_seen).cumsum(1) - 1).clamp(min=0)
    shown = torch.where(placed_seen, seen_order.gather(1, nth_seen), new_order.gather(1, nth_new))
    return torch.empty_like(fused).scatter_(1, shown, fused.gather(1, by_fused))


def _stay_in_top(
    logits: torch.Tensor,
    log_var: torch.Tensor,
    top: torch.Tensor,
    valid: np.ndarray,
    cfg: EnsembleConfig,
) -> np.ndarray:
    """For each chosen candidate (b, k), the share of draws (every head, `draws` noisy logits
    each) in which it ranks in the top `confidence_k`: epistemic (heads) and aleatoric
    (noise) together."""
    gen, draws = torch.Generator().manual_seed(cfg.seed), cfg.draws
    b, n, h = logits.shape
    k = top.shape[1]
    noise = torch.randn((draws, b, n, h), generator=gen) * (0.5 * log_var).exp()[None, ..., None]
    drawn = (logits[None] + noise).masked_fill(torch.as_tensor(~valid)[None, ..., None], -1e9)
    kth = drawn.topk(min(cfg.confidence_k, n), dim=2).values[:, :, -1:, :]  # (draws, b, 1, h)
    chosen = drawn.gather(2, top[None, :, :, None].expand(draws, b, k, h))  # (draws, b, k, h)
    return (chosen >= kth).float().mean((0, 3)).numpy()
