"""CL-TV: a contrastive show encoder (SimCLR over show content, SupCon-style co-watch positives).

Every show is encoded from its content alone (FeatureService `contrastive_v1`: metadata and the
frozen MiniLM text embedding, plus cast and crew from the graph edge tables):

    meta_arch:   genres, platforms (bags) + network, rating, type, language, year, seasons,
                 runtime (one id each) -> field embeddings -> concatenated -> MLP       (dim,)
    cast_arch:   people ids -> embeddings -> attention pooling (unknown/padding id 0 ignored)
    text_arch:   MLP over the frozen MiniLM embedding                                    (dim,)
    fusion:      MLP over [meta, cast, text] -> the show representation h                (dim,)
    projection_head: MLP h -> z, used only by the loss (SimCLR keeps h as the embedding)

Training is self-supervised: two augmented views of each show in a batch (genre dropout, cast
dropout, whole metadata fields masked to unknown, year bucket jittered by +-1, dropout and noise
on the text vector) and a multi-positive InfoNCE (NT-Xent) with in-batch negatives:

    loss_a = - sum_c w_ac log softmax_c(z_a . z_c / temperature) / sum_c w_ac

with w = 1 for the other view of the same show, and the anchor's co-watch partners in the batch
(strong pairs of `cowatch_pairs`; a tenth held out for the validation recall@10) sharing
`cowatch_weight`. Genre-aware hard negatives join the denominator: shows sharing a genre with
the anchor but never co-watched with it and with little audience overlap (precomputed table,
one sampled per anchor per step). Temperature 0.4 and a cosine learning-rate decay keep both the
planted clusters and near-copies apart on the synthetic worlds; the GPU profile multiplies the
batch (capped so an epoch keeps `min_steps_per_epoch` steps) and runs under bf16 autocast.

Text augmentation works on the embedding side (feature dropout + Gaussian noise on the MiniLM
vector, re-normalised): re-encoding texts with spans dropped would run MiniLM twice per show and
step, far too slow for the CPU profile.

Users: `user_arch` attention-pools the (frozen, L2-normalised) embeddings of a user's recent
shows, with a learned recency bias; it starts as mean pooling and gets a short supervised
fine-tune (predict a user's next show with a softmax over the catalogue). Serving: show vector =
h / |h|, user vector = pooled history, score = inner product (what the "dot" index computes).

Training runs on the shared trainer (models/trainer.py): checkpoints, resume after a kill, the
GPU profile's autocast. The encoders are the shared ones of models/layers.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from .base import ModelConfig, Recommender, TrainingData
from .content import ShowContent, ShowTensors, content_of, cowatch_pairs, user_histories
from .layers import (
    SINGLE_FIELDS,
    CastPool,
    HistoryRecencyPool,
    MetaFieldEncoder,
    ProjectionHead,
    TextMLP,
    pad_histories,
    seen_mask,
)
from .losses import masked_info_nce, multi_positive_info_nce
from .onnx import ShowEncoderExport, export_checked
from .prior import PriorConfig, ShowPrior, fit_show_prior
from .trainer import Rngs, StepResult, TrainTask

ONNX_FILE = "show_encoder.onnx"


class ContrastiveConfig(ModelConfig):
    dim: int = Field(128, ge=4, description="show / user embedding size")
    field_dim: int = Field(32, ge=1, description="per metadata field")
    proj_dim: int = Field(64, ge=1, description="projection head output (loss space only)")
    text_hidden: int = Field(256, ge=1)
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(128, ge=2, description="shows per step (two views each)")
    min_steps_per_epoch: int = Field(8, ge=1, description="caps the GPU profile's batch")
    lr: float = Field(2e-3, gt=0, description="cosine-decayed per epoch to lr * min_lr_ratio")
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    temperature: float = Field(0.4, gt=0)
    # augmentations (probabilities)
    genre_dropout: float = Field(0.3, ge=0, lt=1, description="per genre id")
    cast_dropout: float = Field(0.3, ge=0, lt=1, description="per person id")
    field_mask: float = Field(0.2, ge=0, le=1, description="per whole metadata field")
    year_jitter: float = Field(0.3, ge=0, le=1, description="shift the year bucket by +-1")
    text_dropout: float = Field(0.2, ge=0, lt=1, description="per dimension of the text vector")
    text_noise: float = Field(0.02, ge=0, description="std of noise added to the text vector")
    # positives and hard negatives
    cowatch_weight: float = Field(0.5, ge=0, description="co-watched show vs the other view")
    cowatch_min_count: int = Field(2, ge=1, description="users who co-watched a positive pair")
    cowatch_top_k: int = Field(10, ge=1, description="... among the show's k strongest")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="pairs held out for recall@10")
    hard_negatives: bool = True
    hard_pool: int = Field(10, ge=1, description="candidates kept per show")
    hard_quantile: float = Field(0.25, gt=0, le=1, description="audience overlap quantile")
    min_viewers: int = Field(3, ge=1, description="fewer: no audience to compare")
    duplicate_text_cos: float = Field(0.8, description="never a negative: a likely re-release")
    # users
    history_len: int = Field(50, ge=1)
    user_epochs: int = Field(8, ge=0)
    user_lr: float = Field(5e-3, gt=0)
    user_batch_size: int = Field(256, ge=1)
    user_temperature: float = Field(0.1, gt=0)
    prior_steps: int = Field(400, ge=0, description="show-prior fit (models/prior.py); 0: none")


# ---- inputs and augmentations ---------------------------------------------------------------
def drop_ids(ids: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Set each known (non-zero) id to unknown 0 with probability p; padding stays 0."""
    drop = torch.rand(ids.shape, generator=gen) < p
    return ids.masked_fill(drop & (ids != 0), 0)


def mask_field(ids: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Hide a whole field (every id of a row) with probability p: (b,) or (b, k) ids."""
    hide = torch.rand(ids.shape[0], generator=gen) < p  # (b,)
    return ids.masked_fill(hide.view(-1, *([1] * (ids.dim() - 1))), 0)


def jitter_year(year: torch.Tensor, p: float, n_buckets: int, gen: torch.Generator) -> torch.Tensor:
    """Shift known year buckets by +-1 with probability p, staying in 1..n_buckets-1."""
    shift = torch.randint(0, 2, year.shape, generator=gen) * 2 - 1  # (b,) in {-1, +1}
    move = (torch.rand(year.shape, generator=gen) < p) & (year != 0)
    return torch.where(move, (year + shift).clamp(1, n_buckets - 1), year)


def perturb_text(text: torch.Tensor, p: float, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Dropout (inverted scaling) and Gaussian noise on the text vector, re-normalised."""
    keep = (torch.rand(text.shape, generator=gen) >= p).float() / (1 - p)  # (b, text_dim)
    noisy = text * keep + sigma * torch.randn(text.shape, generator=gen)
    return F.normalize(noisy, dim=-1)


def augment(
    x: ShowTensors, cfg: ContrastiveConfig, n_years: int, gen: torch.Generator
) -> ShowTensors:
    """One random view of a batch of shows (CPU tensors)."""
    mask = lambda t: mask_field(t, cfg.field_mask, gen)  # noqa: E731
    return ShowTensors(
        text=perturb_text(x.text, cfg.text_dropout, cfg.text_noise, gen),
        genres=drop_ids(x.genres, cfg.genre_dropout, gen),
        platforms=mask(x.platforms),
        network=mask(x.network),
        age_rating=mask(x.age_rating),
        show_type=mask(x.show_type),
        language=mask(x.language),
        year_bucket=mask(jitter_year(x.year_bucket, cfg.year_jitter, n_years, gen)),
        seasons_bucket=mask(x.seasons_bucket),
        runtime_bucket=mask(x.runtime_bucket),
        people=drop_ids(x.people, cfg.cast_dropout, gen),
    )


# ---- the network ----------------------------------------------------------------------------
class ShowEncoder(nn.Module):
    """Show content -> representation h (b, dim): what the index serves (normalised)."""

    def __init__(self, vocab: dict[str, int], text_dim: int, cfg: ContrastiveConfig) -> None:
        super().__init__()
        self.meta_arch = MetaFieldEncoder(vocab, cfg.field_dim, cfg.dim)
        self.cast_arch = CastPool(vocab["people"], cfg.dim)
        self.text_arch = TextMLP(text_dim, cfg.text_hidden, cfg.dim)
        self.fusion = nn.Sequential(
            nn.LayerNorm(3 * cfg.dim), nn.Linear(3 * cfg.dim, cfg.dim), nn.GELU(),
            nn.Linear(cfg.dim, cfg.dim),
        )  # fmt: skip

    def forward(self, x: ShowTensors) -> torch.Tensor:
        meta = self.meta_arch(x)  # (b, dim)
        cast = self.cast_arch(x.people)  # (b, dim)
        text = self.text_arch(x.text)  # (b, dim)
        return self.fusion(torch.cat([meta, cast, text], dim=-1))  # (b, dim)


class ContrastiveNet(nn.Module):
    def __init__(
        self, vocab: dict[str, int], text_dim: int, cfg: ContrastiveConfig, n_shows: int
    ) -> None:
        super().__init__()
        self.encoder = ShowEncoder(vocab, text_dim, cfg)
        self.projection_head = ProjectionHead(cfg.dim, cfg.proj_dim)
        self.user_arch = HistoryRecencyPool(cfg.dim, cfg.history_len)
        self.prior_arch = ShowPrior(cfg.dim, n_shows, temperature=cfg.user_temperature)

    def contrastive_parameters(self) -> list[nn.Parameter]:
        """What the self-supervised stage trains: the encoder and the projection head."""
        return [*self.encoder.parameters(), *self.projection_head.parameters()]

    def forward(self, x: ShowTensors) -> torch.Tensor:
        """Loss-space vectors z (b, proj_dim) of a batch of (augmented) shows."""
        return self.projection_head(self.encoder(x))

    def embed(self, x: ShowTensors) -> torch.Tensor:
        """Served show vectors h / |h| (b, dim)."""
        return F.normalize(self.encoder(x), dim=-1)


# ---- co-watch positives and genre-aware hard negatives ---------------------------------------
@dataclass
class CowatchGraph:
    counts: sp.csr_matrix  # (n, n) symmetric: users who co-watched each pair (all pairs)
    train: sp.csr_matrix  # (n, n) symmetric 0/1: co-watch positives for training
    held_out: np.ndarray  # (m, 2) show rows: pairs for the validation recall@10


def cowatch_counts(data: TrainingData, show_ids: list[str], seed: int) -> sp.csr_matrix:
    """(n, n) symmetric counts of co-watched pairs (from the training set's positives)."""
    pos = {s: i for i, s in enumerate(show_ids)}
    pairs = cowatch_pairs(data, seed=seed)
    a = pairs["show_a"].map(pos).to_numpy()
    b = pairs["show_b"].map(pos).to_numpy()
    keep = ~(pd.isna(a) | pd.isna(b)) & (a != b)
    a, b, n = a[keep].astype(int), b[keep].astype(int), len(show_ids)
    counts = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)).tocsr()
    return (counts + counts.T).tocsr()


def strong_pairs(counts: sp.csr_matrix, min_count: int, top_k: int) -> np.ndarray:
    """(m, 2) pairs i < j with count >= min_count among either show's top_k partners
    by cosine-normalised count (count / sqrt(deg_i deg_j))."""
    deg = np.asarray(counts.sum(1)).ravel()
    coo = counts.tocoo()
    strength = coo.data / np.sqrt(deg[coo.row] * deg[coo.col])
    frame = pd.DataFrame({"i": coo.row, "j": coo.col, "count": coo.data, "s": strength})
    frame = frame[frame["count"] >= min_count].sort_values(["i", "s"], ascending=[True, False])
    top = frame.groupby("i").head(top_k)
    pairs = np.sort(top[["i", "j"]].to_numpy(), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), dtype=int)


def cowatch_graph(data: TrainingData, show_ids: list[str], cfg: ContrastiveConfig) -> CowatchGraph:
    counts = cowatch_counts(data, show_ids, cfg.seed)
    pairs = strong_pairs(counts, cfg.cowatch_min_count, cfg.cowatch_top_k)
    rng = np.random.default_rng(cfg.seed)
    held = rng.random(len(pairs)) < cfg.val_fraction
    train = pairs[~held]
    n = len(show_ids)
    ones = np.ones(2 * len(train))
    rows = np.concatenate([train[:, 0], train[:, 1]])
    cols = np.concatenate([train[:, 1], train[:, 0]])
    matrix = sp.coo_matrix((ones, (rows, cols)), shape=(n, n)).tocsr()
    return CowatchGraph(counts=counts, train=matrix, held_out=pairs[held])


def audience_matrix(data: TrainingData, show_ids: list[str]) -> sp.csr_matrix:
    """(n_shows, n_users) 0/1: who watched each show in the training set."""
    pos = data.positives()
    rows = pos["show_id"].map({s: i for i, s in enumerate(show_ids)})
    keep = rows.notna().to_numpy()
    users = pd.factorize(pos["user_id"])[0][keep]
    shape = (len(show_ids), int(users.max()) + 1 if len(users) else 1)
    ones = np.ones(int(keep.sum()))
    return sp.coo_matrix((ones, (rows[keep].astype(int), users)), shape=shape).tocsr()


def hard_negative_table(
    audience: sp.csr_matrix,
    genres: torch.Tensor,
    text: torch.Tensor,
    cowatched: sp.csr_matrix,
    cfg: ContrastiveConfig,
) -> np.ndarray:
    """(n, hard_pool) show rows, -1 = none: per show, shows sharing a genre whose audience
    overlap (Jaccard) is in the anchor's lowest `hard_quantile` among same-genre shows, never
    co-watched with it (`cowatched`: (n, n) counts) nor a near-copy (text cosine >=
    duplicate_text_cos); closest text first.
    Shows with fewer than `min_viewers` viewers neither get nor serve as hard negatives."""
    n = len(genres)
    viewers = np.asarray(audience.sum(1)).ravel()  # (n,)
    active = viewers >= cfg.min_viewers
    genre_bin = np.zeros((n, int(genres.max()) + 1), dtype=np.float32)
    np.put_along_axis(genre_bin, genres.numpy(), 1.0, axis=1)
    genre_bin[:, 0] = 0.0  # padding
    table = np.full((n, cfg.hard_pool), -1, dtype=np.int64)
    text_np = text.numpy()
    for start in range(0, n, 1024):
        rows = np.arange(start, min(n, start + 1024))
        found = _hard_rows(rows, audience, viewers, active, genre_bin, text_np, cowatched, cfg)
        table[rows, : found.shape[1]] = found  # a catalogue under hard_pool shows: -1 after
    return table


def _hard_rows(
    rows: np.ndarray,
    audience: sp.csr_matrix,
    viewers: np.ndarray,
    active: np.ndarray,
    genre_bin: np.ndarray,
    text: np.ndarray,
    cowatched: sp.csr_matrix,
    cfg: ContrastiveConfig,
) -> np.ndarray:
    """Hard-negative candidates of a chunk of anchor rows (chunk, min(hard_pool, n))."""
    inter = (audience[rows] @ audience.T).toarray()  # (chunk, n)
    jaccard = inter / np.maximum(viewers[rows, None] + viewers[None, :] - inter, 1.0)
    cosine = text[rows] @ text.T  # (chunk, n)
    eligible = (genre_bin[rows] @ genre_bin.T > 0) & active[None, :] & active[rows, None]
    eligible &= (cowatched[rows].toarray() == 0) & (cosine < cfg.duplicate_text_cos)
    eligible[np.arange(len(rows)), rows] = False
    masked = np.where(eligible, jaccard, np.nan)  # rows with no candidate: all 0, cut 0
    masked = np.where(eligible.any(1, keepdims=True), masked, 0.0)
    cut = np.nanquantile(masked, cfg.hard_quantile, axis=1)  # (chunk,)
    eligible &= jaccard <= cut[:, None]
    order = np.argsort(-np.where(eligible, cosine, -np.inf), axis=1)[:, : cfg.hard_pool]
    found = np.take_along_axis(eligible, order, axis=1)
    return np.where(found, order, -1)


def sample_hard(table: np.ndarray, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One hard negative per anchor that has any (a 1-d tensor of show rows)."""
    candidates = torch.as_tensor(table[rows.numpy()])  # (b, hard_pool)
    n_valid = (candidates >= 0).sum(1)  # (b,)
    pick = (torch.rand(len(rows), generator=gen) * n_valid.clamp(min=1)).long()  # (b,)
    chosen = candidates.gather(1, pick[:, None]).squeeze(1)
    return chosen[n_valid > 0]


# ---- training tasks ---------------------------------------------------------------------------
class _ContrastiveTask(TrainTask):
    """Two augmented views of a batch of shows plus their hard negatives -> one step of the
    multi-positive InfoNCE; validation: recall@10 of held-out co-watch pairs."""

    monitor = "val_recall_at_10"

    def __init__(self, model: ContrastiveModel, graph: CowatchGraph, hard: np.ndarray) -> None:
        self.model, self.graph, self.hard, self.cfg = model, graph, hard, model.config
        self.net = model._net()
        self.optimizer = torch.optim.AdamW(
            self.net.contrastive_parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
            fused=True,
        )  # fmt: skip  # fused: ~10x faster per step than the default on CPU, and fine on CUDA

    def start_epoch(self, epoch: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(self.cfg, epoch)

    def plan(self, epoch: int, rngs: Rngs) -> Sequence[torch.Tensor]:
        n, batch = len(self.model.show_ids), self.model._batch_size()
        order = torch.randperm(n, generator=rngs.torch)
        return [order[s : s + batch] for s in range(0, n, batch)]

    def loss(self, rows: torch.Tensor, rngs: Rngs) -> StepResult:
        negatives = sample_hard(self.hard, rows, rngs.torch)  # (h,)
        pool = torch.cat([rows, rows, negatives])  # (2b + h,) show row of each candidate
        views = [self.model._view(r, rngs.torch) for r in (rows, rows, negatives)]
        batch = ShowTensors.concat(views).to(self.model.runtime.device)  # (2b + h, ...)
        z = self.net(batch)  # (2b + h, proj_dim)
        weights = self.model._positive_weights(pool, 2 * len(rows), self.graph.train)
        loss = multi_positive_info_nce(z, 2 * len(rows), weights.to(z.device), self.cfg.temperature)
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(rows))

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"val_recall_at_10": self.model._val_recall(self.graph.held_out)}


class _NextShowTask(TrainTask):
    """The user tower predicts each user's next show from the ones before (shows frozen)."""

    def __init__(self, model: ContrastiveModel, shows: torch.Tensor, sequences: list[list[int]]):
        self.model, self.shows, self.sequences, cfg = model, shows, sequences, model.config
        self.net = model._net().user_arch
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.user_lr, fused=True)
        self.batch = cfg.user_batch_size * model.runtime.batch_multiplier

    def plan(self, epoch: int, rngs: Rngs) -> list[list[int]]:
        order = torch.randperm(len(self.sequences), generator=rngs.torch).tolist()
        return [order[s : s + self.batch] for s in range(0, len(order), self.batch)]

    def loss(self, chunk: list[int], rngs: Rngs) -> StepResult:
        """Cut each history at a random point; predict the show that comes next."""
        sequences = [self.sequences[i] for i in chunk]
        cuts = [int(torch.randint(1, len(s), (1,), generator=rngs.torch)) for s in sequences]
        prefixes = [s[:c] for s, c in zip(sequences, cuts, strict=True)]
        targets = torch.tensor([s[c] for s, c in zip(sequences, cuts, strict=True)])  # (b,)
        index, mask = pad_histories(prefixes, self.model.config.history_len)  # (b, L) each
        index, mask, targets = (t.to(self.shows.device) for t in (index, mask, targets))
        users = self.net(self.shows[index], mask)  # (b, dim)
        loss = masked_info_nce(
            users @ self.shows.T, targets, seen_mask(index, mask, len(self.shows)),
            self.model.config.user_temperature,
        )  # fmt: skip
        return StepResult(loss, {"loss": float(loss.detach())}, weight=len(sequences))


# ---- the model ------------------------------------------------------------------------------
class ContrastiveModel(Recommender, name="contrastive", config=ContrastiveConfig):
    needs_content = prior_column = True
    reads_catalogue_only = True  # show metadata, text, cast and crew: no event-time features
    shows: ShowTensors | None = None  # the catalogue's content as of training
    vocab: dict[str, int]
    person_vocab: dict[str, int]
    net: ContrastiveNet | None = None
    _embeddings: np.ndarray | None = None

    # ---- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, started = self.config, time.perf_counter()
        torch.manual_seed(cfg.seed)
        content = content_of(data)
        self._set_content(content)
        self.histories = user_histories(data, cfg.history_len)
        net = ContrastiveNet(self.vocab, self._shows().text.shape[1], cfg, len(self.show_ids))
        self.net = net.to(self.runtime.device)
        graph = cowatch_graph(data, self.show_ids, cfg)
        hard = self._hard_negatives(data, graph)
        history = self.trainer(data).fit(_ContrastiveTask(self, graph, hard))
        user_loss = self._fine_tune_users(data)
        prior_loss = self._fit_prior(data, content)
        self._embeddings = None
        metrics = history.metrics() | {
            "user_loss": user_loss,
            "prior_loss": prior_loss,
            "n_shows": len(self.show_ids),
            "n_users": len(self.histories),
            "n_cowatch_pairs": int(graph.train.nnz // 2),
            "n_val_pairs": len(graph.held_out),
            "val_chance_at_10": 10 / max(1, len(self.show_ids) - 1),
            "n_hard_negative_anchors": int((hard[:, 0] >= 0).sum()),
            "train_seconds": round(time.perf_counter() - started, 2),
            "profile": self.runtime.profile,
        }
        self.make_manifest(data, cfg.dim + 1, metrics)  # served: [vector, prior]
        return metrics

    def advance(self, data: TrainingData) -> bool:
        """To `data`'s as-of: every user's recent shows from `data`'s events (the user tower
        pools them when served); encoder, user tower and show prior as trained."""
        self.histories = user_histories(data, self.config.history_len)
        self.restamp(data)
        return True

    def _set_content(self, content: ShowContent) -> None:
        self.show_ids = list(content.show_ids)
        self.shows = content.tensors
        self.person_vocab = dict(content.person_vocab)
        self.vocab = _vocab_sizes(content.vocab_sizes, self.shows)

    def _hard_negatives(self, data: TrainingData, graph: CowatchGraph) -> np.ndarray:
        shows = self._shows()
        if not self.config.hard_negatives:
            return np.full((len(shows), 1), -1, dtype=np.int64)
        audience = audience_matrix(data, self.show_ids)
        return hard_negative_table(audience, shows.genres, shows.text, graph.counts, self.config)

    def _batch_size(self) -> int:
        """Shows per step: the config's, times the runtime's multiplier, but never so large
        that an epoch has fewer than `min_steps_per_epoch` steps (a large GPU batch over a small
        catalogue would leave too few updates to separate near-identical shows)."""
        cfg, n = self.config, max(1, len(self.show_ids))
        cap = max(cfg.batch_size, math.ceil(n / cfg.min_steps_per_epoch))
        return min(cfg.batch_size * self.runtime.batch_multiplier, cap)

    def _view(self, rows: torch.Tensor, gen: torch.Generator) -> ShowTensors:
        return augment(self._shows().rows(rows), self.config, self.vocab["year"], gen)

    def _positive_weights(
        self, pool: torch.Tensor, n_anchors: int, cowatch: sp.csr_matrix
    ) -> torch.Tensor:
        """(n_anchors, len(pool)): 1 for the other view of the same show; the anchor's co-watch
        partners in the pool share `cowatch_weight`, so instance discrimination stays the core
        however many partners a popular show has."""
        anchors = pool[:n_anchors]
        same = (anchors[:, None] == pool[None, :]).float()  # (n_anchors, m)
        partners = torch.as_tensor(
            cowatch[anchors.numpy()][:, pool.numpy()].toarray(), dtype=torch.float32
        )  # (n_anchors, m)
        share = partners / partners.sum(1, keepdim=True).clamp(min=1.0)
        return same + self.config.cowatch_weight * share

    @torch.no_grad()
    def _val_recall(self, held_out: np.ndarray, k: int = 10) -> float | None:
        """Recall@k of held-out co-watch partners (both directions) by served-vector cosine."""
        if not len(held_out):
            return None
        emb = torch.as_tensor(self._encode_all())  # (n, dim)
        queries = np.concatenate([held_out, held_out[:, ::-1]])  # (2m, 2)
        scores = emb[queries[:, 0]] @ emb.T  # (2m, n)
        scores[torch.arange(len(queries)), torch.as_tensor(queries[:, 0].copy())] = float("-inf")
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # (2m, k)
        hits = (top == torch.as_tensor(queries[:, 1].copy())[:, None]).any(1)
        return float(hits.float().mean())

    # ---- users ------------------------------------------------------------------------------
    def _fine_tune_users(self, data: TrainingData) -> list[float]:
        """Fit user_arch to predict each user's next show from the ones before (show vectors
        frozen); returns the mean loss per epoch."""
        cfg = self.config
        shows = torch.as_tensor(self._encode_all()).to(self.runtime.device)  # (n, dim)
        sequences = [r for r in self._history_rows(sorted(self.histories)) if len(r) >= 2]
        if not sequences or cfg.user_epochs <= 0:
            return []
        trainer = self.trainer(data, "users", epochs=cfg.user_epochs, seed=cfg.seed + 1)
        return trainer.fit(_NextShowTask(self, shows, sequences)).curves["loss"]

    def _fit_prior(self, data: TrainingData, content: ShowContent) -> list[float]:
        """Fit the show prior on each user's next show (encoder and user tower frozen)."""
        cfg, net = self.config, self._net()
        shows = torch.as_tensor(self._encode_all()).to(self.runtime.device)  # (n, dim)
        rows = {s: i for i, s in enumerate(self.show_ids)}
        premiered = torch.as_tensor(content.premiered_days, dtype=torch.long)

        def embed_users(prefixes: list[np.ndarray]) -> torch.Tensor:
            index, mask = (t.to(shows.device) for t in pad_histories(prefixes, cfg.history_len))
            return net.user_arch(shows[index], mask)  # (b, dim)

        prior_cfg = PriorConfig(steps=cfg.prior_steps, seed=cfg.seed)
        return fit_show_prior(net.prior_arch, shows, premiered, data, rows, embed_users, prior_cfg)

    def _history_rows(self, user_ids: list[str]) -> list[list[int]]:
        pos = {s: i for i, s in enumerate(self.show_ids)}
        return [[pos[s] for s in self.histories.get(u, []) if s in pos] for u in user_ids]

    # ---- embeddings -------------------------------------------------------------------------
    @torch.no_grad()
    def _encode_all(self) -> np.ndarray:
        """Served vectors of every catalogue show, (n_shows, dim) float32 (no augmentation)."""
        net, shows = self._net(), self._shows()
        net.eval()
        out = []
        for start in range(0, len(shows), 2048):
            chunk = shows.rows(torch.arange(start, min(len(shows), start + 2048)))
            out.append(net.embed(chunk.to(self.runtime.device)).float().cpu())
        net.train()
        return torch.cat(out).numpy()

    def _vectors(self) -> np.ndarray:
        """Encoder vectors of the catalogue, (n_shows, dim), computed once."""
        if self._embeddings is None:
            self._embeddings = self._encode_all()
        return self._embeddings

    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Served show vectors (n_shows, dim + 1): the encoder's, then the show prior."""
        shows = torch.as_tensor(self._vectors()).to(self.runtime.device)
        return list(self.show_ids), self._net().prior_arch.served_shows(shows)

    @torch.no_grad()
    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """Served user vectors (n_users, dim + 1): [scale * user tower, 1]; a user without
        history gets [0, 1], so the show prior alone ranks for them."""
        net, device = self._net(), self.runtime.device
        shows = torch.as_tensor(self._vectors()).to(device)  # (n, dim)
        out = np.zeros((len(user_ids), self.config.dim + 1), dtype=np.float32)
        for start in range(0, len(user_ids), 1024):
            rows = self._history_rows(user_ids[start : start + 1024])
            index, mask = (t.to(device) for t in pad_histories(rows, self.config.history_len))
            vec = net.user_arch(shows[index], mask) * mask.any(1, keepdim=True)  # (chunk, dim)
            out[start : start + len(rows)] = net.prior_arch.served_users(vec.float())
        return out

    # ---- ONNX -------------------------------------------------------------------------------
    def export_onnx(self, directory: Path) -> dict[str, Path]:
        """The show encoder (content tensors -> served vector, dynamic batch), checked with
        onnxruntime against torch on the catalogue."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        wrapper = ShowEncoderExport(self._net(), "embed")
        shows = self._shows().tensors()
        path = export_checked(wrapper, shows, ShowTensors.names(), directory / ONNX_FILE)
        self._net().to(self.runtime.device)
        return {"show_encoder": path}

    # ---- persistence ------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "net": {k: v.cpu() for k, v in self._net().state_dict().items()},
            "content": dict(zip(ShowTensors.names(), self._shows().tensors(), strict=True)),
            "shows": self.show_ids,
            "vocab": self.vocab,
            "person_vocab": self.person_vocab,
            "histories": self.histories,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.vocab = state["shows"], state["vocab"]
        self.person_vocab, self.histories = state["person_vocab"], state["histories"]
        self.shows = ShowTensors(**state["content"])
        text_dim, n_shows = self.shows.text.shape[1], len(self.show_ids)
        self.net = ContrastiveNet(self.vocab, text_dim, self.config, n_shows)
        self.net.load_state_dict(state["net"])

    def _net(self) -> ContrastiveNet:
        return self.fitted(self.net)

    def _shows(self) -> ShowTensors:
        return self.fitted(self.shows)


# ---- helpers --------------------------------------------------------------------------------
def cosine_lr(cfg: ContrastiveConfig, epoch: int) -> float:
    """Learning rate of an epoch: cosine decay from lr to lr * min_lr_ratio."""
    progress = epoch / max(1, cfg.epochs - 1)
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def _vocab_sizes(sizes: dict[str, int], shows: ShowTensors) -> dict[str, int]:
    """Embedding table sizes: the content's vocabularies, grown to cover every id present."""
    present = {
        "genres": shows.genres, "platforms": shows.platforms, "people": shows.people,
        **{v: getattr(shows, f) for f, v in SINGLE_FIELDS.items()},
    }  # fmt: skip
    return {
        k: max(int(sizes.get(k, 1)), int(t.max()) + 1 if t.numel() else 1)
        for k, t in present.items()
    }
