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

Each epoch is checkpointed (model, optimiser, sampling RNG) to `checkpoint.pt`; a fit on the
same data and hyper-parameters resumes from it and reproduces the uninterrupted run (a finished
checkpoint is reused as is; `epochs` may be raised to train on).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from .base import MANIFEST, ModelManifest, Recommender, TrainingData
from .content import (
    ShowContent,
    ShowTensors,
    cowatch_pairs,
    load_show_content,
    user_histories,
)
from .prior import PriorConfig, ShowPrior, fit_show_prior
from .runtime import Runtime, progress_bar

CHECKPOINT = "checkpoint.pt"
ONNX_FILE = "show_encoder.onnx"
ONNX_TOLERANCE = 1e-4


@dataclass
class ContrastiveConfig:
    dim: int = 128  # show / user embedding size
    field_dim: int = 32  # per metadata field
    proj_dim: int = 64  # projection head output (loss space only)
    text_hidden: int = 256
    epochs: int = 60
    batch_size: int = 128  # shows per step (two views each); the GPU profile multiplies it
    min_steps_per_epoch: int = 8  # ... up to a cap that keeps this many steps per epoch
    lr: float = 2e-3  # cosine-decayed per epoch down to lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 1e-4
    temperature: float = 0.4
    # augmentations (probabilities)
    genre_dropout: float = 0.3  # per genre id
    cast_dropout: float = 0.3  # per person id
    field_mask: float = 0.2  # per whole metadata field (platforms and single-id fields)
    year_jitter: float = 0.3  # shift the year bucket by +-1
    text_dropout: float = 0.2  # per dimension of the MiniLM vector
    text_noise: float = 0.02  # std of Gaussian noise added to the MiniLM vector
    # positives and hard negatives
    cowatch_weight: float = 0.5  # weight of a co-watched show relative to the other view
    cowatch_min_count: int = 2  # a pair counts when this many users co-watched it ...
    cowatch_top_k: int = 10  # ... and it is among the show's k strongest partners
    val_fraction: float = 0.1  # co-watch pairs held out for the validation recall@10
    hard_negatives: bool = True
    hard_pool: int = 10  # candidates kept per show (hardest = closest text first)
    hard_quantile: float = 0.25  # "different audience": overlap in the lowest quantile
    min_viewers: int = 3  # shows with fewer viewers have no audience to compare
    duplicate_text_cos: float = 0.8  # never a negative: likely the same show re-released
    # users
    history_len: int = 50
    user_epochs: int = 8
    user_lr: float = 5e-3
    user_batch_size: int = 256
    user_temperature: float = 0.1
    prior_steps: int = 400  # the show prior (models/prior.py), fitted after the user tower
    seed: int = 0
    checkpoint_dir: str | None = None  # None: <workdir>/checkpoints/contrastive


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
def bag_mean(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean embedding of the non-zero ids of each row: (b, k) -> (b, e); empty rows -> 0."""
    known = (ids != 0).unsqueeze(-1).float()  # (b, k, 1)
    return (table(ids) * known).sum(1) / known.sum(1).clamp(min=1.0)


SINGLE_FIELDS = {  # ShowTensors field -> vocabulary in ShowContent.vocab_sizes
    "network": "networks",
    "age_rating": "age_ratings",
    "show_type": "types",
    "language": "languages",
    "year_bucket": "year",
    "seasons_bucket": "seasons",
    "runtime_bucket": "runtime",
}


class MetaArch(nn.Module):
    """Metadata ids -> one embedding per field (unknown 0 -> zeros) -> MLP -> (b, dim)."""

    def __init__(self, vocab: dict[str, int], field_dim: int, dim: int) -> None:
        super().__init__()
        table = lambda n: nn.Embedding(n, field_dim, padding_idx=0)  # noqa: E731
        self.genres = table(vocab["genres"])
        self.platforms = table(vocab["platforms"])
        self.fields = nn.ModuleDict({f: table(vocab[v]) for f, v in SINGLE_FIELDS.items()})
        n_fields = 2 + len(SINGLE_FIELDS)
        self.mlp = nn.Sequential(nn.Linear(n_fields * field_dim, dim), nn.GELU())

    def forward(self, x: ShowTensors) -> torch.Tensor:
        bags = [bag_mean(self.genres, x.genres), bag_mean(self.platforms, x.platforms)]
        singles = [table(getattr(x, f)) for f, table in self.fields.items()]  # (b, field_dim)
        return self.mlp(torch.cat(bags + singles, dim=-1))  # (b, dim)


class CastArch(nn.Module):
    """People ids (b, k) -> attention-pooled embedding (b, dim); id 0 (unknown) is ignored."""

    def __init__(self, n_people: int, dim: int) -> None:
        super().__init__()
        self.people = nn.Embedding(n_people, dim, padding_idx=0)
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, people: torch.Tensor) -> torch.Tensor:
        emb = self.people(people)  # (b, k, dim)
        known = (people != 0).float()  # (b, k)
        logits = self.score(emb).squeeze(-1) - 1e4 * (1 - known)  # (b, k)
        weights = torch.softmax(logits, dim=-1) * known  # rows without known people -> 0
        return torch.einsum("bk,bkd->bd", weights, emb)  # (b, dim)


class TextArch(nn.Module):
    """Frozen MiniLM embedding (b, text_dim) -> MLP -> (b, dim)."""

    def __init__(self, text_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.mlp(text)


class ShowEncoder(nn.Module):
    """Show content -> representation h (b, dim): what the index serves (normalised)."""

    def __init__(self, vocab: dict[str, int], text_dim: int, cfg: ContrastiveConfig) -> None:
        super().__init__()
        self.meta_arch = MetaArch(vocab, cfg.field_dim, cfg.dim)
        self.cast_arch = CastArch(vocab["people"], cfg.dim)
        self.text_arch = TextArch(text_dim, cfg.text_hidden, cfg.dim)
        self.fusion = nn.Sequential(
            nn.LayerNorm(3 * cfg.dim), nn.Linear(3 * cfg.dim, cfg.dim), nn.GELU(),
            nn.Linear(cfg.dim, cfg.dim),
        )  # fmt: skip

    def forward(self, x: ShowTensors) -> torch.Tensor:
        meta = self.meta_arch(x)  # (b, dim)
        cast = self.cast_arch(x.people)  # (b, dim)
        text = self.text_arch(x.text)  # (b, dim)
        return self.fusion(torch.cat([meta, cast, text], dim=-1))  # (b, dim)


class ProjectionHead(nn.Module):
    """h (b, dim) -> z (b, proj_dim), L2-normalised: the space the contrastive loss sees."""

    def __init__(self, dim: int, proj_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, proj_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(h), dim=-1)


class UserArch(nn.Module):
    """Attention pooling of a user's recent show vectors (b, L, dim) -> (b, dim).

    Starts as mean pooling (zero-initialised scores); a content score and a recency bias (by
    position from the most recent show) are learned in the fine-tune.
    """

    def __init__(self, dim: int, history_len: int) -> None:
        super().__init__()
        self.content_score = nn.Linear(dim, 1)
        self.recency = nn.Embedding(history_len, 1)
        for p in (self.content_score.weight, self.content_score.bias, self.recency.weight):
            nn.init.zeros_(p)

    def forward(self, shows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """shows (b, L, dim), oldest first and right-aligned; mask (b, L) true = a real show."""
        age = torch.arange(shows.shape[1] - 1, -1, -1, device=shows.device)  # (L,) 0 = newest
        logits = self.content_score(shows).squeeze(-1) + self.recency(age).squeeze(-1)  # (b, L)
        weights = torch.softmax(logits.masked_fill(~mask, -1e4), dim=-1) * mask  # (b, L)
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-9)
        return torch.einsum("bl,bld->bd", weights, shows)  # (b, dim)


class ContrastiveNet(nn.Module):
    def __init__(
        self, vocab: dict[str, int], text_dim: int, cfg: ContrastiveConfig, n_shows: int
    ) -> None:
        super().__init__()
        self.encoder = ShowEncoder(vocab, text_dim, cfg)
        self.projection_head = ProjectionHead(cfg.dim, cfg.proj_dim)
        self.user_arch = UserArch(cfg.dim, cfg.history_len)
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


class OnnxShowEncoder(nn.Module):
    """The encoder with positional tensor inputs (ShowTensors order), for torch.onnx.export."""

    def __init__(self, net: ContrastiveNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.net.embed(ShowTensors(*tensors))  # (b, dim): the encoder, prior left out


# ---- the loss -------------------------------------------------------------------------------
def multi_positive_nt_xent(
    z: torch.Tensor, n_anchors: int, weights: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Weighted multi-positive InfoNCE.

    z (m, p): L2-normalised vectors; the first n_anchors are anchors, all m are candidates
    (the rest: extra negatives). weights (n_anchors, m): positive weight of each candidate per
    anchor (0 = negative). The anchor itself is excluded from its own softmax.
    """
    logits = z[:n_anchors] @ z.T / temperature  # (n_anchors, m)
    self_mask = torch.eye(n_anchors, z.shape[0], dtype=torch.bool, device=z.device)
    log_p = torch.log_softmax(logits.masked_fill(self_mask, float("-inf")), dim=-1)
    w = weights.masked_fill(self_mask, 0.0)
    per_anchor = -(w * log_p.masked_fill(self_mask, 0.0)).sum(-1) / w.sum(-1).clamp(min=1e-9)
    return per_anchor.mean()


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
        table[rows] = _hard_rows(
            rows, audience, viewers, active, genre_bin, text_np, cowatched, cfg
        )
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
    """Hard-negative candidates of a chunk of anchor rows (chunk, hard_pool)."""
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


# ---- the model ------------------------------------------------------------------------------
class ContrastiveModel(Recommender):
    name: ClassVar[str] = "contrastive"
    feature_service: ClassVar[str] = "contrastive_v1"
    config_class: ClassVar[type] = ContrastiveConfig
    prior_column: ClassVar[bool] = True

    def __init__(
        self, config: ContrastiveConfig | None = None, runtime: Runtime | None = None
    ) -> None:
        self.config = config or ContrastiveConfig()
        self.runtime = runtime or Runtime.detect()
        self.show_ids: list[str] = []
        self.shows: ShowTensors | None = None  # the catalogue's content as of training
        self.vocab: dict[str, int] = {}
        self.person_vocab: dict[str, int] = {}
        self.histories: dict[str, list[str]] = {}
        self.net: ContrastiveNet | None = None
        self._embeddings: np.ndarray | None = None

    # ---- training ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg, started = self.config, time.perf_counter()
        torch.manual_seed(cfg.seed)
        content = load_show_content(data, self.feature_service)
        self._set_content(content)
        self.histories = user_histories(data, cfg.history_len)
        net = ContrastiveNet(self.vocab, content.text.shape[1], cfg, len(self.show_ids))
        self.net = net.to(self.runtime.device)
        graph = cowatch_graph(data, self.show_ids, cfg)
        hard = self._hard_negatives(data, graph)
        history, resumed = self._train_encoder(data, graph, hard)
        user_loss = self._fine_tune_users()
        prior_loss = self._fit_prior(data, content)
        self._embeddings = None
        metrics = history | {
            "user_loss": user_loss,
            "prior_loss": prior_loss,
            "resumed_from_epoch": resumed,
            "n_shows": len(self.show_ids),
            "n_users": len(self.histories),
            "n_cowatch_pairs": int(graph.train.nnz // 2),
            "n_val_pairs": len(graph.held_out),
            "val_chance_at_10": 10 / max(1, len(self.show_ids) - 1),
            "n_hard_negative_anchors": int((hard[:, 0] >= 0).sum()),
            "train_seconds": round(time.perf_counter() - started, 2),
            "profile": self.runtime.profile,
        }
        self.manifest = self._manifest(data, metrics)
        return metrics

    def _set_content(self, content: ShowContent) -> None:
        self.show_ids = list(content.show_ids)
        self.shows = ShowTensors.from_content(content)
        self.person_vocab = dict(content.person_vocab)
        self.vocab = _vocab_sizes(content.vocab_sizes, self.shows)

    def _hard_negatives(self, data: TrainingData, graph: CowatchGraph) -> np.ndarray:
        shows = self._shows()
        if not self.config.hard_negatives:
            return np.full((len(shows), 1), -1, dtype=np.int64)
        audience = audience_matrix(data, self.show_ids)
        return hard_negative_table(audience, shows.genres, shows.text, graph.counts, self.config)

    def _train_encoder(
        self, data: TrainingData, graph: CowatchGraph, hard: np.ndarray
    ) -> tuple[dict[str, list[Any]], int]:
        """The self-supervised epochs, checkpointed; returns per-epoch metrics and the epoch
        it resumed from (0 = fresh)."""
        cfg, net = self.config, self._net()
        opt = torch.optim.AdamW(
            net.contrastive_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )  # fused: ~10x faster per step than the default on CPU, and fine on CUDA
        gen = torch.Generator().manual_seed(cfg.seed)
        history: dict[str, list[Any]] = {"train_loss": [], "val_recall_at_10": []}
        path = self._checkpoint_path(data)
        fingerprint = self._fingerprint(data)
        start = self._resume(path, fingerprint, opt, gen, history)
        with progress_bar("train contrastive", cfg.epochs - start) as advance:
            for epoch in range(start, cfg.epochs):
                _set_lr(opt, cosine_lr(cfg, epoch))
                history["train_loss"].append(self._epoch(opt, graph, hard, gen))
                history["val_recall_at_10"].append(self._val_recall(graph.held_out))
                _save_checkpoint(path, fingerprint, epoch + 1, net, opt, gen, history)
                advance(
                    loss=history["train_loss"][-1], recall10=history["val_recall_at_10"][-1] or 0.0
                )
        return history, start

    def _epoch(
        self,
        opt: torch.optim.Optimizer,
        graph: CowatchGraph,
        hard: np.ndarray,
        gen: torch.Generator,
    ) -> float:
        """One pass over the catalogue; returns the mean loss per show."""
        n, batch = len(self.show_ids), self._batch_size()
        self._net().train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, batch):
            rows = order[s : s + batch]
            total += self._step(opt, rows, graph, hard, gen) * len(rows)
        return total / max(1, n)

    def _batch_size(self) -> int:
        """Shows per step: the config's, times the runtime's multiplier, but never so large
        that an epoch has fewer than `min_steps_per_epoch` steps (a large GPU batch over a small
        catalogue would leave too few updates to separate near-identical shows)."""
        cfg, n = self.config, max(1, len(self.show_ids))
        cap = max(cfg.batch_size, math.ceil(n / cfg.min_steps_per_epoch))
        return min(cfg.batch_size * self.runtime.batch_multiplier, cap)

    def _step(
        self,
        opt: torch.optim.Optimizer,
        rows: torch.Tensor,
        graph: CowatchGraph,
        hard: np.ndarray,
        gen: torch.Generator,
    ) -> float:
        """Two views of `rows` plus their hard negatives -> one optimiser step."""
        cfg, rt, net = self.config, self.runtime, self._net()
        negatives = sample_hard(hard, rows, gen)  # (h,)
        pool = torch.cat([rows, rows, negatives])  # (2b + h,) show row of each candidate
        views = [self._view(r, gen) for r in (rows, rows, negatives)]
        batch = ShowTensors.concat(views).to(rt.device)  # (2b + h, ...)
        with rt.autocast():
            z = net(batch)  # (2b + h, proj_dim)
        weights = self._positive_weights(pool, 2 * len(rows), graph.train).to(rt.device)
        loss = multi_positive_nt_xent(z.float(), 2 * len(rows), weights, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

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
    def _fine_tune_users(self) -> list[float]:
        """Fit user_arch to predict each user's next show from the ones before (show vectors
        frozen); returns the mean loss per epoch."""
        cfg, net = self.config, self._net()
        shows = torch.as_tensor(self._encode_all()).to(self.runtime.device)  # (n, dim)
        sequences = [r for r in self._history_rows(sorted(self.histories)) if len(r) >= 2]
        if not sequences or cfg.user_epochs <= 0:
            return []
        opt = torch.optim.Adam(net.user_arch.parameters(), lr=cfg.user_lr, fused=True)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        losses: list[float] = []
        batch = cfg.user_batch_size * self.runtime.batch_multiplier
        for _ in range(cfg.user_epochs):
            order = torch.randperm(len(sequences), generator=gen).tolist()
            chunks = [order[s : s + batch] for s in range(0, len(order), batch)]
            total = sum(self._user_step(opt, [sequences[i] for i in c], shows, gen) for c in chunks)
            losses.append(total / len(sequences))
        return losses

    def _user_step(
        self,
        opt: torch.optim.Optimizer,
        sequences: list[list[int]],
        shows: torch.Tensor,
        gen: torch.Generator,
    ) -> float:
        """Cut each history at a random point; predict the next show; returns the summed loss."""
        cuts = [int(torch.randint(1, len(s), (1,), generator=gen)) for s in sequences]
        prefixes = [s[:c] for s, c in zip(sequences, cuts, strict=True)]
        targets = torch.tensor([s[c] for s, c in zip(sequences, cuts, strict=True)])  # (b,)
        index, mask = _pad_right_aligned(prefixes, self.config.history_len)  # (b, L) each
        index, mask, targets = (t.to(shows.device) for t in (index, mask, targets))
        with self.runtime.autocast():
            users = self._net().user_arch(shows[index], mask)  # (b, dim)
        logits = users.float() @ shows.T / self.config.user_temperature  # (b, n)
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index, mask)
        loss = F.cross_entropy(logits.masked_fill(seen, float("-inf")), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()) * len(sequences)

    def _fit_prior(self, data: TrainingData, content: ShowContent) -> list[float]:
        """Fit the show prior on each user's next show (encoder and user tower frozen)."""
        cfg, net = self.config, self._net()
        shows = torch.as_tensor(self._encode_all()).to(self.runtime.device)  # (n, dim)
        rows = {s: i for i, s in enumerate(self.show_ids)}
        premiered = torch.as_tensor(content.premiered_days, dtype=torch.long)

        def embed_users(prefixes: list[np.ndarray]) -> torch.Tensor:
            rows = [p.tolist() for p in prefixes]
            index, mask = (t.to(shows.device) for t in _pad_right_aligned(rows, cfg.history_len))
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
            index, mask = (t.to(device) for t in _pad_right_aligned(rows, self.config.history_len))
            vec = net.user_arch(shows[index], mask) * mask.any(1, keepdim=True)  # (chunk, dim)
            out[start : start + len(rows)] = net.prior_arch.served_users(vec.float())
        return out

    def known_users(self) -> list[str]:
        return sorted(self.histories)

    # ---- ONNX -------------------------------------------------------------------------------
    def export_onnx(self, directory: Path) -> dict[str, Path]:
        """Export the show encoder (content tensors -> served vector, dynamic batch, opset 17)
        and check it with onnxruntime against torch on catalogue rows (max abs diff < 1e-4)."""
        import onnxruntime as ort

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / ONNX_FILE
        wrapper = OnnxShowEncoder(self._net()).cpu().eval()
        sample = self._shows().rows(torch.arange(min(8, len(self.show_ids))))
        names = ShowTensors.names()
        torch.onnx.export(
            wrapper, sample.tensors(), str(path), dynamo=False, opset_version=17,
            input_names=names, output_names=["embedding"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "embedding"]},
        )  # fmt: skip
        check = self._shows().rows(torch.arange(min(64, len(self.show_ids))))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {n: t.numpy() for n, t in zip(names, check.tensors(), strict=True)}
        (got,) = session.run(["embedding"], feeds)
        with torch.no_grad():
            want = wrapper(*check.tensors()).numpy()
        self._net().to(self.runtime.device)
        diff = float(np.abs(got - want).max())
        if diff >= ONNX_TOLERANCE:
            raise RuntimeError(f"ONNX show encoder differs from torch by {diff:.2e}")
        return {"show_encoder": path}

    # ---- checkpoints ------------------------------------------------------------------------
    def _checkpoint_path(self, data: TrainingData) -> Path:
        if self.config.checkpoint_dir is not None:
            return Path(self.config.checkpoint_dir) / CHECKPOINT
        root = Path(data.workdir) if data.workdir is not None else Path.cwd()
        return root / "checkpoints" / self.name / CHECKPOINT

    def _fingerprint(self, data: TrainingData) -> str:
        """What a checkpoint must match to be resumed: data and every setting but the epochs."""
        settings = asdict(self.config) | {"epochs": None, "checkpoint_dir": None}
        key = {
            "data": data.data_snapshot,
            "as_of": data.as_of.isoformat(),
            "shows": len(self.show_ids),
            "rows": len(data.frame),
            "config": settings,
            "batch": self._batch_size(),
            "runtime": [self.runtime.profile, self.runtime.mixed_precision],
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _resume(
        self,
        path: Path,
        fingerprint: str,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        history: dict[str, list[Any]],
    ) -> int:
        """Load a matching checkpoint into net/opt/gen/history; returns its epoch (0 if none)."""
        if not path.exists():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=True)  # the RNG state: CPU
        if state["fingerprint"] != fingerprint or state["epoch"] > self.config.epochs:
            return 0
        self._net().load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["generator"])
        for key, values in state["history"].items():
            history[key] = list(values)
        return int(state["epoch"])

    # ---- persistence ------------------------------------------------------------------------
    def _manifest(self, data: TrainingData, metrics: dict[str, Any]) -> ModelManifest:
        return ModelManifest(
            model_name=self.name,
            model_version=f"{self.name}-{data.as_of:%Y%m%dT%H%M%S}-{data.data_snapshot[:8]}",
            feature_service=self.feature_service,
            data_snapshot=data.data_snapshot,
            as_of=data.as_of.isoformat(),
            dim=self.config.dim,
            config=asdict(self.config),
            metrics=metrics,
        )

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {k: v.cpu() for k, v in self._net().state_dict().items()}, directory / "weights.pt"
        )
        shows = self._shows()
        torch.save(
            dict(zip(ShowTensors.names(), shows.tensors(), strict=True)), directory / "shows.pt"
        )
        state = {
            "shows": self.show_ids,
            "vocab": self.vocab,
            "person_vocab": self.person_vocab,
            "histories": self.histories,
        }
        (directory / "state.json").write_text(json.dumps(state))
        assert self.manifest is not None
        (directory / MANIFEST).write_text(json.dumps(self.manifest.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ContrastiveModel:
        directory = Path(directory)
        manifest = ModelManifest.read(directory)
        model = cls(ContrastiveConfig(**manifest.config), Runtime.cpu())
        state = json.loads((directory / "state.json").read_text())
        model.show_ids, model.vocab = state["shows"], state["vocab"]
        model.person_vocab, model.histories = state["person_vocab"], state["histories"]
        model.shows = ShowTensors(**torch.load(directory / "shows.pt", map_location="cpu"))
        text_dim, n_shows = model.shows.text.shape[1], len(model.show_ids)
        model.net = ContrastiveNet(model.vocab, text_dim, model.config, n_shows)
        model.net.load_state_dict(torch.load(directory / "weights.pt", map_location="cpu"))
        model.manifest = manifest
        return model

    def _net(self) -> ContrastiveNet:
        if self.net is None:
            raise RuntimeError("model is not fitted")
        return self.net

    def _shows(self) -> ShowTensors:
        if self.shows is None:
            raise RuntimeError("model is not fitted")
        return self.shows


# ---- helpers --------------------------------------------------------------------------------
def cosine_lr(cfg: ContrastiveConfig, epoch: int) -> float:
    """Learning rate of an epoch: cosine decay from lr to lr * min_lr_ratio."""
    progress = epoch / max(1, cfg.epochs - 1)
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


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


def _pad_right_aligned(rows: list[list[int]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories -> (index (b, L) long, mask (b, L) bool), most recent show in the last slot."""
    index = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        r = r[-length:]
        if r:
            index[i, length - len(r) :] = torch.tensor(r)
            mask[i, length - len(r) :] = True
    return index, mask


def _save_checkpoint(
    path: Path,
    fingerprint: str,
    epoch: int,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    history: dict[str, list[Any]],
) -> None:
    """Write atomically (temp file + os.replace), so an interruption never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "net": net.state_dict(),
        "opt": opt.state_dict(),
        "generator": gen.get_state(),
        "history": history,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
