"""MTTV, the multimodal transformer: what a show *is*, from its text, metadata and cast.

A show is embedded from content alone, so a show nobody has watched yet gets a vector as
good as any other, and free text lands in the same space (`tvrec query --text`):

    text_arch:   pooled transformer embedding of "title. description" -> a few text tokens
    meta_arch:   a transformer encoder over metadata tokens (genres, network, platforms,
                 year, seasons, runtime, age rating, type, language; each a value embedding
                 plus a field embedding; a genre also adds the vector of its genre cluster)
    cast_arch:   attention pooling over cast and crew (people unseen in training share id 0)
    fusion_arch: the text tokens cross-attend to the metadata and cast tokens -> one unit
                 show vector
    user_arch:   attention pooling over the show vectors of a user's recent shows -> one unit
                 user vector (a learned "cold user" vector without history)

    score(u, s) = <user_vec(u), show_vec(s)>  (cosine: what the "dot" index serves)

Trained with three in-batch InfoNCE losses over the shows of each step: co-watched shows
(`cowatch_pairs`) pull together; a show and the projection of its own text (the text head,
exported as the text tower) pull together; a user's history predicts their next show.

Text encoder: on the CPU profile it is frozen and its embeddings come from Feast
(`ShowContent.text`, the bundled all-MiniLM-L6-v2), or, for another encoder named in the
config, are computed once. On the GPU profile (or `finetune_text=True`) the top
`finetune_layers` layers are fine-tuned on `ShowContent.raw_text`, with gradient checkpointing
and the runtime's mixed precision; after training the catalogue's pooled text embeddings are
recomputed with it, so serving and ONNX read precomputed text either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from . import text_tower
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
TEXT_TOWER = "text_tower"
# metadata token fields in token order: genres and platforms are padded lists, the rest one each
META_FIELDS = (
    "genre", "platform", "network", "year", "seasons", "runtime", "age_rating", "type",
    "language",
)  # fmt: skip


@dataclass
class MultimodalConfig:
    # text
    text_model: str | None = None  # HF path or name; None: the feature store's MiniLM
    text_tokens: int = 4  # tokens the pooled text embedding is projected to
    text_max_length: int = 256
    finetune_text: bool | None = None  # None: fine-tune on the GPU profile only
    finetune_layers: int = 2  # top transformer layers trained when fine-tuning
    gradient_checkpointing: bool = True
    text_lr: float = 2e-5
    # shows and users
    dim: int = 128
    meta_layers: int = 2
    ffn_mult: int = 2  # feed-forward width of the transformer blocks, in units of dim
    heads: int = 4
    dropout: float = 0.1
    token_dropout: float = 0.15  # metadata tokens and people hidden while training
    genre_clusters: int = 8  # genre clusters from co-occurrence in the catalogue
    max_people: int = 12
    history_len: int = 20  # recent shows a user is embedded from
    # training
    epochs: int = 10
    pair_batch: int = 2048  # co-watch pairs per step; the GPU profile multiplies it
    min_steps_per_epoch: int = 8  # small data: smaller batches rather than fewer steps
    steps_per_epoch: int | None = None  # None: one pass over the co-watch pairs
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    text_weight: float = 0.5
    user_weight: float = 1.0
    val_users: int = 500  # users whose last show is held out for recall@10
    prior_steps: int = 400  # the show prior (models/prior.py), fitted after the epochs
    checkpoint_dir: str | None = None  # None: <workdir>/checkpoints/multimodal
    seed: int = 0


# ---- inputs -----------------------------------------------------------------------------------
def genre_clusters(genres: torch.Tensor, n_genres: int, k: int) -> torch.Tensor:
    """Cluster id (1..k; 0 for padding) of every genre id, by average-linkage clustering of
    the genres' co-occurrence profiles in the catalogue: (n_genres,) long."""
    from scipy.cluster.hierarchy import fcluster, linkage

    co = np.eye(n_genres)  # (n_genres, n_genres): self-counts keep unseen genres apart
    for row in genres.numpy():
        ids = row[row > 0]
        co[np.ix_(ids, ids)] += 1.0
    profiles = co[1:] / np.linalg.norm(co[1:], axis=1, keepdims=True)  # (n_genres - 1, n_genres)
    out = np.zeros(n_genres, dtype=np.int64)
    if len(profiles) > 1 and k > 1:
        tree = linkage(profiles, method="average", metric="cosine")
        out[1:] = fcluster(tree, t=min(k, len(profiles)), criterion="maxclust")
    else:
        out[1:] = 1
    return torch.as_tensor(out)


# ---- the parts ----------------------------------------------------------------------------------
class FineTunedText(nn.Module):
    """A Hugging Face transformer over raw text, its top layers trainable: (b,) -> (b, hidden)."""

    def __init__(self, source: str, cfg: MultimodalConfig) -> None:
        super().__init__()
        self.tokenizer, self.transformer = text_tower.load_encoder(source)
        self.max_length = cfg.text_max_length
        self.transformer.requires_grad_(False)
        for layer in _layer_stack(self.transformer)[-cfg.finetune_layers :]:
            layer.requires_grad_(True)
        if cfg.gradient_checkpointing and self.transformer.supports_gradient_checkpointing:
            self.transformer.config.use_cache = False  # no decoder cache to keep
            self.transformer.activation_checkpointing_enable({"use_reentrant": False})

    @property
    def hidden_size(self) -> int:
        return int(self.transformer.config.hidden_size)

    def forward(self, texts: list[str]) -> torch.Tensor:
        return text_tower.embed_texts(self.tokenizer, self.transformer, texts, self.max_length)


def _layer_stack(model: nn.Module) -> nn.ModuleList:
    """The transformer's block stack: its longest ModuleList (encoder.layer in BERT/RoBERTa)."""
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no layer stack to fine-tune")
    return max(stacks, key=len)


class TextArch(nn.Module):
    """Pooled text embedding -> text tokens for fusion, and -> a query vector (the text head)."""

    def __init__(self, text_dim: int, cfg: MultimodalConfig) -> None:
        super().__init__()
        self.n_tokens, self.dim = cfg.text_tokens, cfg.dim
        self.to_tokens = nn.Linear(text_dim, cfg.text_tokens * cfg.dim)
        self.position = nn.Parameter(torch.randn(cfg.text_tokens, cfg.dim) * 0.02)
        self.head = text_tower.text_head(text_dim, cfg.dim)
        self.encoder: FineTunedText | None = None  # set when fine-tuning

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """Raw texts through the fine-tuned encoder: (b, text_dim)."""
        assert self.encoder is not None, "pooled() needs a text encoder to fine-tune"
        return self.encoder(texts)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        tokens = self.to_tokens(pooled).view(-1, self.n_tokens, self.dim)  # (b, n_text, dim)
        return tokens + self.position

    def query(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(pooled).float(), dim=-1)  # (b, dim)


class MetaArch(nn.Module):
    """Metadata tokens through a small transformer encoder: (b, n_meta, dim) and its padding."""

    def __init__(self, sizes: dict[str, int], clusters: torch.Tensor, cfg: MultimodalConfig):
        super().__init__()
        d = cfg.dim
        self.genre = nn.Embedding(sizes["genres"], d)
        self.genre_cluster = nn.Embedding(int(clusters.max()) + 1, d)
        self.register_buffer("cluster_of", clusters)  # (n_genres,) genre id -> cluster id
        self.network = nn.Embedding(sizes["networks"], d)
        self.platform = nn.Embedding(sizes["platforms"], d)
        self.year = nn.Embedding(sizes["year"], d)
        self.seasons = nn.Embedding(sizes["seasons"], d)
        self.runtime = nn.Embedding(sizes["runtime"], d)
        self.age_rating = nn.Embedding(sizes["age_ratings"], d)
        self.show_type = nn.Embedding(sizes["types"], d)
        self.language = nn.Embedding(sizes["languages"], d)
        self.field = nn.Embedding(len(META_FIELDS), d)
        layer = nn.TransformerEncoderLayer(
            d,
            cfg.heads,
            cfg.ffn_mult * d,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.meta_layers, enable_nested_tensor=False)
        self.token_dropout = cfg.token_dropout

    def forward(self, shows: ShowTensors) -> tuple[torch.Tensor, torch.Tensor]:
        genres = self.genre(shows.genres) + self.genre_cluster(self.cluster_of[shows.genres])
        singles = [  # one token each, (b, dim)
            self.network(shows.network),
            self.year(shows.year_bucket),
            self.seasons(shows.seasons_bucket),
            self.runtime(shows.runtime_bucket),
            self.age_rating(shows.age_rating),
            self.show_type(shows.show_type),
            self.language(shows.language),
        ]
        tokens = torch.cat(
            [genres, self.platform(shows.platforms), torch.stack(singles, 1)], 1
        )  # (b, n_meta, dim)
        tokens = tokens + self.field(self._field_ids(shows))  # (b, n_meta, dim)
        always = torch.zeros_like(tokens[:, -len(singles) :, 0], dtype=torch.bool)  # (b, 7)
        pad = torch.cat([shows.genres == 0, shows.platforms == 0, always], 1)  # (b, n_meta)
        pad = _token_dropout(pad, self.token_dropout, self.training)
        return self.encoder(tokens, src_key_padding_mask=pad), pad

    def _field_ids(self, shows: ShowTensors) -> torch.Tensor:
        """The META_FIELDS index of every token position: (n_meta,)."""
        widths = [shows.genres.shape[1], shows.platforms.shape[1]] + [1] * (len(META_FIELDS) - 2)
        fields = torch.arange(len(META_FIELDS), device=shows.genres.device)
        return fields.repeat_interleave(torch.tensor(widths, device=fields.device))


def _token_dropout(pad: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Hide each token with probability p while training; the last token is always kept."""
    if not training or p <= 0:
        return pad
    hide = torch.rand(pad.shape, device=pad.device) < p  # (b, n)
    hide[:, -1] = False
    return pad | hide


class CastArch(nn.Module):
    """Cast and crew pooled by attention: (b, max_people) ids -> (b, 1, dim). A learned
    "no known people" slot always takes part, so an all-unknown cast still has a vector."""

    def __init__(self, n_people: int, cfg: MultimodalConfig) -> None:
        super().__init__()
        self.person = nn.Embedding(n_people, cfg.dim)
        self.nobody = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.query = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.token_dropout = cfg.token_dropout

    def forward(self, people: torch.Tensor) -> torch.Tensor:
        b = people.shape[0]
        vectors = torch.cat([self.nobody.expand(b, -1, -1), self.person(people)], 1)  # (b, 1+P, d)
        known = torch.cat([people, torch.ones_like(people[:, :1])], 1) > 0  # (b, P + 1)
        known = ~_token_dropout(~known, self.token_dropout, self.training)
        known = torch.cat([known[:, -1:], known[:, :-1]], 1)  # (b, 1 + P), nobody first
        logits = (vectors @ self.query) / math.sqrt(vectors.shape[-1])  # (b, 1 + P)
        weights = logits.masked_fill(~known, float("-inf")).softmax(-1)  # (b, 1 + P)
        return self.out((weights.unsqueeze(-1) * vectors).sum(1, keepdim=True))  # (b, 1, d)


class FusionArch(nn.Module):
    """Text tokens cross-attend to the content tokens; both pooled into one unit show vector."""

    def __init__(self, cfg: MultimodalConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm_text, self.norm_content = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cross = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        wide = cfg.ffn_mult * d
        self.ffn = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, wide), nn.GELU(), nn.Linear(wide, d))
        self.out = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, d))

    def forward(self, text: torch.Tensor, content: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        kv = self.norm_content(content)  # (b, n_content, d)
        attended, _ = self.cross(
            self.norm_text(text), kv, kv, key_padding_mask=pad, need_weights=False
        )
        x = text + attended  # (b, n_text, d)
        x = x + self.ffn(x)  # (b, n_text, d)
        keep = (~pad).unsqueeze(-1).to(content.dtype)  # (b, n_content, 1)
        content_mean = (content * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (b, d)
        show = self.out(torch.cat([x.mean(1), content_mean], -1))  # (b, d)
        return F.normalize(show.float(), dim=-1)


class UserArch(nn.Module):
    """A user's recent show vectors pooled by attention (with recency) into a unit vector."""

    def __init__(self, cfg: MultimodalConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.recency = nn.Embedding(cfg.history_len, d)  # 0 = the most recent show
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.attend = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.out = nn.Linear(d, d)
        self.cold = nn.Parameter(torch.randn(d) * 0.02)  # users without history

    def forward(self, shows: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """shows (b, L, d) oldest first, right-padded; pad (b, L) True = padding -> (b, d)."""
        length = (~pad).sum(1, keepdim=True)  # (b, 1)
        recency = (length - 1 - torch.arange(pad.shape[1], device=pad.device)).clamp(min=0)
        keys = shows + self.recency(recency)  # (b, L, d)
        has = length.squeeze(1) > 0  # (b,)
        safe_pad = pad & has.unsqueeze(1)  # users without history attend to padding, unused
        query = self.query.expand(shows.shape[0], -1, -1)  # (b, 1, d)
        pooled, _ = self.attend(query, keys, shows, key_padding_mask=safe_pad, need_weights=False)
        keep = (~pad).unsqueeze(-1).to(shows.dtype)  # (b, L, 1)
        mean = (shows * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (b, d)
        user = self.out(pooled.squeeze(1)) + mean  # (b, d)
        user = torch.where(has.unsqueeze(1), user, self.cold.to(user.dtype))
        return F.normalize(user.float(), dim=-1)


class MultimodalNet(nn.Module):
    def __init__(
        self,
        cfg: MultimodalConfig,
        sizes: dict[str, int],
        text_dim: int,
        clusters: torch.Tensor,
        n_shows: int,
    ) -> None:
        super().__init__()
        self.text_arch = TextArch(text_dim, cfg)
        self.meta_arch = MetaArch(sizes, clusters, cfg)
        self.cast_arch = CastArch(sizes["people"], cfg)
        self.fusion_arch = FusionArch(cfg)
        self.user_arch = UserArch(cfg)
        self.prior_arch = ShowPrior(cfg.dim, n_shows, temperature=cfg.temperature)

    def forward(self, shows: ShowTensors) -> torch.Tensor:
        """Unit show vectors: (b, dim)."""
        text = self.text_arch(shows.text)  # (b, n_text, dim)
        meta, pad = self.meta_arch(shows)  # (b, n_meta, dim), (b, n_meta)
        cast = self.cast_arch(shows.people)  # (b, 1, dim)
        content = torch.cat([meta, cast], 1)  # (b, n_meta + 1, dim)
        pad = torch.cat([pad, torch.zeros_like(pad[:, :1])], 1)  # (b, n_meta + 1)
        return self.fusion_arch(text, content, pad)  # (b, dim)

    def embed_users(self, history: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """(b, L, dim) show vectors of each user's recent shows -> (b, dim) user vectors."""
        return self.user_arch(history, pad)

    def embed_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """(b, text_dim) pooled text -> (b, dim) query vectors in the show space."""
        return self.text_arch.query(pooled)

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The state dict without the fine-tuned encoder (saved in the text tower instead)."""
        return {
            k: v for k, v in self.state_dict().items() if not k.startswith("text_arch.encoder.")
        }


class _ShowEncoderExport(nn.Module):
    """Precomputed content tensors (ShowTensors order) -> show vectors, for ONNX."""

    def __init__(self, net: MultimodalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.net(ShowTensors(*tensors))  # (b, dim): the encoder, prior left out


class _TextProjectionExport(nn.Module):
    """Pooled text embedding -> query vector, for ONNX."""

    def __init__(self, net: MultimodalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.embed_text(pooled)


# ---- training data ----------------------------------------------------------------------------
@dataclass
class _Split:
    """Training sequences and pairs (catalogue rows) plus held-out next shows."""

    sequences: list[np.ndarray]  # per training user, distinct show rows oldest first (>= 2)
    pairs: np.ndarray  # (n_pairs, 2) co-watched show rows
    val_history: list[np.ndarray]  # per validation user, show rows before the held-out one
    val_target: np.ndarray  # (n_val,) held-out show rows


def _split(data: TrainingData, rows: dict[str, int], cfg: MultimodalConfig) -> _Split:
    """Hold out the last new show of up to `val_users` users (with 3+ shows) for recall@10;
    pairs and sequences come from the rest."""
    full = user_histories(data, max_len=10_000)
    rng = np.random.default_rng(cfg.seed)
    eligible = sorted(u for u, h in full.items() if len(h) >= 3)
    val = sorted(rng.choice(eligible, min(cfg.val_users, len(eligible)), replace=False).tolist())
    held = pd.DataFrame({"user_id": val, "show_id": [full[u][-1] for u in val]})
    frame = data.frame.merge(held.assign(_held=True), on=["user_id", "show_id"], how="left")
    train = dataclasses.replace(data, frame=frame[frame["_held"].isna()].drop(columns="_held"))
    pairs = cowatch_pairs(train, seed=cfg.seed)
    pairs = np.stack([pairs["show_a"].map(rows), pairs["show_b"].map(rows)], 1).astype(np.int64)
    sequences = [
        np.array([rows[s] for s in h]) for h in user_histories(train, 10_000).values() if len(h) > 1
    ]
    return _Split(
        sequences,
        pairs[pairs[:, 0] != pairs[:, 1]],
        [np.array([rows[s] for s in full[u][:-1]][-cfg.history_len :]) for u in val],
        np.array([rows[full[u][-1]] for u in val], dtype=np.int64),
    )


def _pad_rows(histories: list[np.ndarray], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (b, length) rows (oldest first, the last `length`) and padding mask."""
    rows = torch.zeros(len(histories), length, dtype=torch.long)
    pad = torch.ones(len(histories), length, dtype=torch.bool)
    for i, h in enumerate(histories):
        h = h[-length:]
        rows[i, : len(h)] = torch.as_tensor(h, dtype=torch.long)
        pad[i, : len(h)] = False
    return rows, pad


def _seen(history: torch.Tensor, pad: torch.Tensor, n: int) -> torch.Tensor:
    """(b, n) True where column j is one of the row's (unpadded) history entries."""
    counts = torch.zeros(history.shape[0], n, device=history.device)
    counts.scatter_add_(1, history, (~pad).float())
    return counts > 0


def _info_nce(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.cross_entropy(logits.float() / temperature, target)


# ---- the model --------------------------------------------------------------------------------
class MultimodalModel(Recommender):
    name: ClassVar[str] = "multimodal"
    feature_service: ClassVar[str] = "multimodal_v1"
    config_class: ClassVar[type] = MultimodalConfig
    prior_column: ClassVar[bool] = True

    def __init__(self, config: MultimodalConfig | None = None, runtime: Runtime | None = None):
        self.config = config or MultimodalConfig()
        self.runtime = runtime or Runtime.detect()
        self.show_ids: list[str] = []
        self.histories: dict[str, list[int]] = {}  # user -> recent show rows, oldest first
        self.net: MultimodalNet | None = None
        self.catalogue: ShowTensors | None = None  # every show's content, pooled text included
        self.show_vectors: torch.Tensor | None = None  # (n_shows, dim)
        self.finetuned = False
        self.person_vocab: dict[str, int] = {}
        self.sizes: dict[str, int] = {}

    @property
    def finetune(self) -> bool:
        """Whether fit fine-tunes the text encoder (auto: on the GPU profile)."""
        if self.config.finetune_text is None:
            return self.runtime.profile == "gpu"
        return self.config.finetune_text

    # ---- training -------------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> dict[str, Any]:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        content = load_show_content(data, self.feature_service, max_people=cfg.max_people)
        self.show_ids, self.person_vocab = list(content.show_ids), content.person_vocab
        rows = {s: i for i, s in enumerate(self.show_ids)}
        self.histories = {
            u: [rows[s] for s in h] for u, h in user_histories(data, cfg.history_len).items()
        }
        split = _split(data, rows, cfg)
        net = self._build(content)
        metrics, start = self._train(net, split, content.raw_text, data)
        self.show_vectors = self._encode_catalogue(net).cpu()
        metrics["prior_loss"] = self._fit_prior(data, rows, content)
        self.manifest = self._manifest(data, metrics, start, split)
        return self.manifest.metrics

    def _train(
        self, net: MultimodalNet, split: _Split, raw_text: list[str], data: TrainingData
    ) -> tuple[dict[str, list[float]], int]:
        """The epochs, resumed from a matching checkpoint; returns metrics and the resume epoch."""
        cfg, opt = self.config, self._optimizer(net)
        path, fingerprint = self._checkpoint_dir(data) / CHECKPOINT, self._fingerprint(data)
        gen = np.random.default_rng(cfg.seed)
        metrics: dict[str, list[float]] = {}
        start = self._resume(path, fingerprint, net, opt, gen, metrics)
        if start:
            self._refresh_text(raw_text)
        label = "train multimodal" + (f" (resumed after epoch {start})" if start else "")
        with progress_bar(label, cfg.epochs - start) as advance:
            for epoch in range(start, cfg.epochs):
                began = time.perf_counter()
                row = self._epoch(net, opt, split, raw_text, gen)
                self._refresh_text(raw_text)
                row["val_recall_at_10"] = self._recall_at_10(split)
                row["epoch_seconds"] = time.perf_counter() - began
                for key, value in row.items():
                    metrics.setdefault(key, []).append(value)
                self._save_checkpoint(path, epoch + 1, fingerprint, net, opt, gen, metrics)
                advance(loss=row["train_loss"], recall10=row["val_recall_at_10"])
        path.unlink(missing_ok=True)
        return metrics, start

    def _build(self, content: ShowContent) -> MultimodalNet:
        """The net, and the catalogue's content tensors (pooled text ready when frozen)."""
        cfg, device = self.config, self.runtime.device
        self.sizes = dict(content.vocab_sizes)
        clusters = genre_clusters(content.genres, self.sizes["genres"], cfg.genre_clusters)
        encoder: FineTunedText | None = None
        if self.finetune:
            encoder = FineTunedText(text_tower.resolve_encoder(cfg.text_model), cfg)
        elif not text_tower.is_feature_store_encoder(cfg.text_model):
            content.text = self._frozen_text(content.raw_text)  # (n_shows, text_dim)
        text_dim = encoder.hidden_size if encoder else int(content.text.shape[1])
        net = MultimodalNet(cfg, self.sizes, text_dim, clusters, len(self.show_ids))
        net.text_arch.encoder = encoder
        self.catalogue = ShowTensors.from_content(content).to(device)
        self.finetuned = encoder is not None
        self.net = net.to(device)
        self._refresh_text(content.raw_text)
        return self.net

    def _refresh_text(self, raw_text: list[str]) -> None:
        """When fine-tuning: the catalogue's pooled text from the encoder as it is now."""
        if not self.finetuned:
            return
        net = self._net().eval()
        with torch.no_grad(), self.runtime.autocast():
            pooled = net.text_arch.pooled(raw_text).float()  # (n_shows, text_dim)
        self.catalogue = dataclasses.replace(self._catalogue(), text=pooled)

    def _frozen_text(self, texts: list[str]) -> torch.Tensor:
        """Pooled embeddings of `texts` by the configured (non-Feast) encoder, frozen."""
        source = text_tower.resolve_encoder(self.config.text_model)
        tokenizer, encoder = text_tower.load_encoder(source)
        encoder = encoder.to(self.runtime.device).eval()
        with torch.no_grad(), self.runtime.autocast():
            pooled = text_tower.embed_texts(tokenizer, encoder, texts, self.config.text_max_length)
        return pooled.float().cpu()  # (n_shows, text_dim)

    def _optimizer(self, net: MultimodalNet) -> torch.optim.Optimizer:
        cfg = self.config
        text = [p for n, p in net.named_parameters() if n.startswith("text_arch.encoder.")]
        rest = [p for n, p in net.named_parameters() if not n.startswith("text_arch.encoder.")]
        groups = [{"params": rest, "lr": cfg.lr}]
        if any(p.requires_grad for p in text):
            groups.append({"params": [p for p in text if p.requires_grad], "lr": cfg.text_lr})
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)

    def _epoch(
        self,
        net: MultimodalNet,
        opt: torch.optim.Optimizer,
        split: _Split,
        raw_text: list[str],
        gen: np.random.Generator,
    ) -> dict[str, float]:
        """One pass over the co-watch pairs, each step with a slice of the users."""
        cfg = self.config
        batch = cfg.pair_batch * self.runtime.batch_multiplier
        n_steps = max(cfg.min_steps_per_epoch, math.ceil(len(split.pairs) / batch))
        batch = max(1, math.ceil(len(split.pairs) / n_steps))  # small data: smaller batches
        n_steps = min(n_steps, cfg.steps_per_epoch or n_steps)
        pairs = split.pairs[gen.permutation(len(split.pairs))]
        users = gen.permutation(len(split.sequences))
        per_step = math.ceil(len(users) / n_steps)
        net.train()
        totals: dict[str, float] = {}
        for step in range(n_steps):
            step_users = [
                split.sequences[i] for i in users[step * per_step : (step + 1) * per_step]
            ]
            parts = self._step(
                net, opt, pairs[step * batch : (step + 1) * batch], step_users, raw_text, gen
            )
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value / n_steps
        return totals

    def _step(
        self,
        net: MultimodalNet,
        opt: torch.optim.Optimizer,
        pairs: np.ndarray,
        sequences: list[np.ndarray],
        raw_text: list[str],
        gen: np.random.Generator,
    ) -> dict[str, float]:
        """The three InfoNCE losses over the shows of one step; returns their values."""
        cfg, device = self.config, self.runtime.device
        cuts = [int(gen.integers(1, len(s))) for s in sequences]  # predict s[cut] from s[:cut]
        history, pad = _pad_rows(
            [s[:c] for s, c in zip(sequences, cuts, strict=True)], cfg.history_len
        )
        targets = np.array([s[c] for s, c in zip(sequences, cuts, strict=True)], dtype=np.int64)
        shown = [pairs.ravel(), history[~pad].numpy(), targets]
        rows = torch.as_tensor(np.unique(np.concatenate(shown)))  # (n_step,) catalogue rows

        def at(r: np.ndarray | torch.Tensor) -> torch.Tensor:  # catalogue rows -> step positions
            return torch.searchsorted(rows, torch.as_tensor(r)).clamp(max=len(rows) - 1).to(device)

        with self.runtime.autocast():
            text = (
                net.text_arch.pooled([raw_text[r] for r in rows.tolist()])
                if self.finetuned
                else None
            )
            batch = self._catalogue().take(rows.to(device), text)
            shows = net(batch)  # (n_step, dim)
            texts = net.embed_text(batch.text)  # (n_step, dim)
            users = net.embed_users(shows[at(history)], pad.to(device))  # (n_users, dim)
        losses = {
            "loss_cowatch": self._cowatch_loss(shows, at(pairs)),
            "loss_text": self._text_loss(shows, texts),
            "loss_user": self._user_loss(users, shows, at(history), pad.to(device), at(targets)),
        }
        total = (
            losses["loss_cowatch"]
            + cfg.text_weight * losses["loss_text"]
            + cfg.user_weight * losses["loss_user"]
        )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"train_loss": float(total.detach())} | {
            k: float(v.detach()) for k, v in losses.items()
        }

    def _cowatch_loss(self, shows: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Each show of a pair picks its partner among the step's shows (itself excluded)."""
        anchors = torch.cat([pairs[:, 0], pairs[:, 1]])  # (2 * n_pairs,)
        partners = torch.cat([pairs[:, 1], pairs[:, 0]])  # (2 * n_pairs,)
        logits = shows[anchors] @ shows.T  # (2 * n_pairs, n_step)
        self_mask = F.one_hot(anchors, shows.shape[0]).bool()
        return _info_nce(logits.masked_fill(self_mask, -1e4), partners, self.config.temperature)

    def _text_loss(self, shows: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """A show and its own text's projection find each other (both directions)."""
        logits = shows @ texts.T  # (n_step, n_step)
        target = torch.arange(len(shows), device=shows.device)
        t = self.config.temperature
        return (_info_nce(logits, target, t) + _info_nce(logits.T, target, t)) / 2

    def _user_loss(
        self,
        users: torch.Tensor,
        shows: torch.Tensor,
        history: torch.Tensor,
        pad: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        """A user's history picks their next show among the step's shows (history excluded)."""
        logits = users @ shows.T  # (n_users, n_step)
        seen = _seen(history, pad, logits.shape[1])  # (n_users, n_step)
        seen[torch.arange(len(targets)), targets] = False
        return _info_nce(logits.masked_fill(seen, -1e4), targets, self.config.temperature)

    def _recall_at_10(self, split: _Split) -> float:
        """Share of validation users whose held-out next show is in their top 10."""
        if not len(split.val_target):
            return float("nan")
        shows = self._encode_catalogue(self._net())  # (n_shows, dim)
        history, pad = (
            t.to(shows.device) for t in _pad_rows(split.val_history, self.config.history_len)
        )
        with torch.no_grad():
            users = self._net().embed_users(shows[history], pad)  # (n_val, dim)
            scores = users @ shows.T  # (n_val, n_shows)
        scores = scores.masked_fill(_seen(history, pad, scores.shape[1]), -torch.inf)
        top = scores.topk(10, dim=1).indices.cpu()  # (n_val, 10)
        return float((top == torch.as_tensor(split.val_target)[:, None]).any(1).float().mean())

    def _encode_catalogue(self, net: MultimodalNet, chunk: int = 512) -> torch.Tensor:
        """Every show's vector in eval mode: (n_shows, dim) float32."""
        net.eval()
        catalogue = self._catalogue()
        out = []
        with torch.no_grad(), self.runtime.autocast():
            for start in range(0, len(self.show_ids), chunk):
                rows = torch.arange(start, min(start + chunk, len(self.show_ids)))
                out.append(net(catalogue.take(rows.to(catalogue.text.device))).float())
        return torch.cat(out)

    # ---- checkpoints -----------------------------------------------------------------------------
    def _checkpoint_dir(self, data: TrainingData) -> Path:
        if self.config.checkpoint_dir:
            return Path(self.config.checkpoint_dir)
        root = Path(data.workdir) if data.workdir else Path(tempfile.gettempdir()) / "tvrec"
        return root / "checkpoints" / self.name

    def _fingerprint(self, data: TrainingData) -> str:
        """What a checkpoint must match to be resumed: data, as-of and config."""
        config = asdict(self.config) | {"checkpoint_dir": None}
        key = [
            data.data_snapshot,
            data.as_of.isoformat(),
            config,
            len(data.show_ids),
            self.finetune,
        ]
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()

    def _save_checkpoint(
        self,
        path: Path,
        epoch: int,
        fingerprint: str,
        net: MultimodalNet,
        opt: torch.optim.Optimizer,
        gen: np.random.Generator,
        metrics: dict[str, list[float]],
    ) -> None:
        """Write the state after `epoch` epochs atomically (a kill leaves the previous one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        trainable = {n for n, p in net.named_parameters() if p.requires_grad}
        state = {
            k: v
            for k, v in net.state_dict().items()
            if not k.startswith("text_arch.encoder.") or k in trainable
        }
        payload = {
            "epoch": epoch,
            "fingerprint": fingerprint,
            "net": state,
            "opt": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "gen": gen.bit_generator.state,
            "metrics": metrics,
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def _resume(
        self,
        path: Path,
        fingerprint: str,
        net: MultimodalNet,
        opt: torch.optim.Optimizer,
        gen: np.random.Generator,
        metrics: dict[str, list[float]],
    ) -> int:
        """Load a matching checkpoint into the training state; returns the epochs done."""
        if not path.exists():
            return 0
        payload = torch.load(path, map_location=self.runtime.device, weights_only=True)
        if payload.get("fingerprint") != fingerprint:
            return 0  # another run's (other data, as-of or config): start afresh
        missing, unexpected = net.load_state_dict(payload["net"], strict=False)
        if unexpected or any(not k.startswith("text_arch.encoder.") for k in missing):
            raise RuntimeError(f"checkpoint {path} does not fit this model: {missing + unexpected}")
        opt.load_state_dict(payload["opt"])
        torch.set_rng_state(payload["torch_rng"].cpu())
        gen.bit_generator.state = payload["gen"]
        metrics.update(payload["metrics"])
        return int(payload["epoch"])

    def _manifest(
        self, data: TrainingData, metrics: dict[str, list[float]], start: int, split: _Split
    ) -> ModelManifest:
        cfg = self.config
        return ModelManifest(
            model_name=self.name,
            model_version=f"{self.name}-{data.as_of:%Y%m%dT%H%M%S}-{data.data_snapshot[:8]}",
            feature_service=self.feature_service,
            data_snapshot=data.data_snapshot,
            as_of=data.as_of.isoformat(),
            dim=cfg.dim,
            config=asdict(cfg),
            metrics={
                **metrics,
                "resumed_from_epoch": start,
                "profile": self.runtime.profile,
                "text_finetuned": self.finetuned,
                "n_users": len(self.histories),
                "n_train_sequences": len(split.sequences),
                "n_pairs": len(split.pairs),
                "n_val_users": len(split.val_target),
                "genre_clusters": int(self._net().meta_arch.cluster_of.max()),
            },
        )

    def _fit_prior(
        self, data: TrainingData, rows: dict[str, int], content: ShowContent
    ) -> list[float]:
        """Fit the show prior on each user's next show (show vectors and user tower frozen)."""
        net = self._net()
        device = next(net.parameters()).device
        shows = self._vectors().to(device)  # (n_shows, dim)
        premiered = torch.as_tensor(content.premiered_days, dtype=torch.long)

        def embed_users(prefixes: list[np.ndarray]) -> torch.Tensor:
            history, pad = _pad_rows(prefixes, self.config.history_len)
            return net.embed_users(shows[history.to(device)], pad.to(device))  # (b, dim)

        net.eval()
        prior_cfg = PriorConfig(steps=self.config.prior_steps, seed=self.config.seed)
        return fit_show_prior(net.prior_arch, shows, premiered, data, rows, embed_users, prior_cfg)

    # ---- embeddings ------------------------------------------------------------------------------
    def _vectors(self) -> torch.Tensor:
        """The encoder's show vectors, (n_shows, dim) float32."""
        if self.show_vectors is None:
            raise RuntimeError("model is not fitted")
        return self.show_vectors

    def show_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Served show vectors (n_shows, dim + 1): the encoder's, then the show prior."""
        net = self._net()
        shows = self._vectors().to(next(net.parameters()).device)
        return list(self.show_ids), net.prior_arch.served_shows(shows)

    def user_embeddings(self, user_ids: list[str]) -> np.ndarray:
        """Served user vectors (n_users, dim + 1): [scale * user tower, 1]."""
        net = self._net()
        device = next(net.parameters()).device
        vectors = self._vectors().to(device)  # (n_shows, dim)
        net.eval()
        out = []
        for start in range(0, len(user_ids), 1024):
            chunk = [
                np.array(self.histories.get(u, []), dtype=np.int64)
                for u in user_ids[start : start + 1024]
            ]
            history, pad = _pad_rows(chunk, self.config.history_len)
            with torch.no_grad():
                users = net.embed_users(vectors[history.to(device)], pad.to(device))
            out.append(net.prior_arch.served_users(users))  # (chunk, dim + 1)
        if not out:
            return np.zeros((0, self.config.dim + 1), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def known_users(self) -> list[str]:
        return sorted(self.histories)

    def _net(self) -> MultimodalNet:
        if self.net is None:
            raise RuntimeError("model is not fitted")
        return self.net

    def _catalogue(self) -> ShowTensors:
        if self.catalogue is None:
            raise RuntimeError("model is not fitted")
        return self.catalogue

    # ---- ONNX ------------------------------------------------------------------------------------
    def export_onnx(self, directory: Path) -> dict[str, Path]:
        """The show encoder (content tensors -> show vector) and the text projection (pooled
        text embedding -> query vector) as ONNX (opset 17, dynamic batch), each checked with
        onnxruntime against torch on the catalogue (max abs diff < 1e-4)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        net = self._net().cpu().eval()
        shows = self._catalogue().to(torch.device("cpu"))
        names = ShowTensors.names()
        paths = {
            "show_encoder": directory / "show_encoder.onnx",
            "text_projection": directory / "text_projection.onnx",
        }
        # (eval wrappers: the exporter restores the wrapper's mode, recursively, afterwards)
        encoder, projection = _ShowEncoderExport(net).eval(), _TextProjectionExport(net).eval()
        self._export(encoder, shows.tensors(), names, paths["show_encoder"])
        self._export(projection, (shows.text,), ["text"], paths["text_projection"])
        net.to(self.runtime.device)
        return paths

    @staticmethod
    def _export(
        module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path
    ) -> None:
        import onnxruntime as ort

        sample = tuple(t[:8] for t in inputs)
        axes = {n: {0: "batch"} for n in [*names, "embedding"]}
        # traced with autograd on, so that nn.TransformerEncoder takes its exportable path
        torch.onnx.export(
            module, sample, str(path), input_names=names, output_names=["embedding"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
        with torch.no_grad():
            expected = module(*inputs).numpy()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
        diff = float(np.abs(got - expected).max())
        if diff >= 1e-4:
            raise RuntimeError(f"ONNX export {path.name} differs from torch by {diff:.2e}")

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        net = self._net()
        torch.save(net.saved_state(), directory / "weights.pt")
        shows = self._catalogue().to(torch.device("cpu"))
        torch.save(
            dict(zip(ShowTensors.names(), shows.tensors(), strict=True)), directory / "content.pt"
        )
        torch.save(self.show_vectors, directory / "show_vectors.pt")
        state = {
            "shows": self.show_ids,
            "histories": self.histories,
            "sizes": self.sizes,
            "text_dim": int(shows.text.shape[1]),
            "finetuned": self.finetuned,
            "person_vocab": self.person_vocab,
        }
        (directory / "state.json").write_text(json.dumps(state))
        self._save_text_tower(directory / TEXT_TOWER, int(shows.text.shape[1]))
        assert self.manifest is not None
        (directory / MANIFEST).write_text(json.dumps(self.manifest.to_json(), indent=2))

    def _save_text_tower(self, directory: Path, text_dim: int) -> None:
        cfg, arch = self.config, self._net().text_arch
        if self.finetuned:
            source = text_tower.ENCODER_DIR
        elif text_tower.is_feature_store_encoder(cfg.text_model):
            source = text_tower.BUNDLED
        else:  # a frozen encoder of its own: referenced where it lies
            local = Path(str(cfg.text_model))
            source = str(local.resolve()) if local.exists() else str(cfg.text_model)
        # queries get a 0 in the served prior column: a text query matches content only
        spec = text_tower.TowerSpec(source, cfg.text_max_length, text_dim, cfg.dim, prior_column=1)
        head = {k: v.cpu() for k, v in arch.head.state_dict().items()}
        encoder = arch.encoder
        text_tower.write_tower(
            directory,
            spec,
            head,
            encoder.tokenizer if encoder else None,
            encoder.transformer if encoder else None,
        )

    @classmethod
    def load(cls, directory: Path) -> MultimodalModel:
        directory = Path(directory)
        manifest = ModelManifest.read(directory)
        model = cls(MultimodalConfig(**manifest.config), Runtime.cpu())
        state = json.loads((directory / "state.json").read_text())
        model.show_ids, model.histories = state["shows"], state["histories"]
        model.sizes, model.finetuned = state["sizes"], state["finetuned"]
        model.person_vocab = state["person_vocab"]
        weights = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        clusters = weights["meta_arch.cluster_of"]
        n_shows = len(model.show_ids)
        model.net = MultimodalNet(model.config, model.sizes, state["text_dim"], clusters, n_shows)
        model.net.load_state_dict(weights)
        content = torch.load(directory / "content.pt", map_location="cpu", weights_only=True)
        model.catalogue = ShowTensors(**content)
        model.show_vectors = torch.load(directory / "show_vectors.pt", weights_only=True)
        model.manifest = manifest
        return model
