"""MTTV, the multimodal transformer: what a show *is*, from its text, metadata and cast.

A show is embedded from content alone, so a show nobody has watched yet gets a vector as
good as any other, and free text lands in the same space (`tvrec query --text`):

    text_arch:   pooled transformer embedding of "title. description. Genres" -> a few text tokens
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
exported as the text tower) pull together; a user's history predicts their next show. A
step's shows are padded with masked copies to a multiple of `step_bucket`, so steps come in a
few sizes and the heap reuses what the last one freed (docs/benchmarks.md); the copies leave
every softmax and every mean, so the losses are those of the unpadded step.

Text encoder: on the CPU profile it is frozen and its embeddings come from Feast
(`ShowContent.text`, the bundled all-MiniLM-L6-v2), or, for another encoder named in the
config, are computed once. On the GPU profile (or `finetune_text=True`) the top
`finetune_layers` layers are fine-tuned on `ShowContent.raw_text`, with gradient checkpointing
and the runtime's mixed precision; after training the catalogue's pooled text embeddings are
recomputed with it, so serving and ONNX read precomputed text either way.

The parts are the shared encoders of models/layers.py; training runs on the shared trainer
(models/trainer.py: checkpoints and resume, autocast, early stopping on recall@10).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn

from tvrec.pipelines.errors import DataError

from . import text_tower
from .base import ModelConfig, ModelFormatError, Recommender, TrainingData
from .content import ShowContent, ShowTensors, content_of, cowatch_pairs, user_histories
from .layers import (
    CastTokenPool,
    CrossAttentionFusion,
    FineTunedText,
    HistoryAttention,
    MetaTokenEncoder,
    TextTokens,
    pad_histories,
    seen_mask,
)
from .losses import IGNORED, info_nce, masked_info_nce
from .onnx import ShowEncoderExport, export_checked
from .prior import PriorConfig, ShowPrior, fit_show_prior
from .trainer import Rngs, StepResult, TrainTask

TEXT_TOWER = "text_tower"
TEXT_ENCODER = "text_arch.encoder."  # state-dict prefix of a fine-tuned encoder


class MultimodalConfig(ModelConfig):
    # text
    text_model: str | None = Field(
        None, description="local path or name of a Hugging Face encoder (None: bundled MiniLM)"
    )
    text_tokens: int = Field(4, ge=1, description="tokens the pooled text is projected to")
    text_max_length: int = Field(256, ge=8)
    finetune_text: bool | None = Field(None, description="None: fine-tune on the GPU profile")
    finetune_layers: int = Field(2, ge=0, description="top encoder layers trained")
    gradient_checkpointing: bool = True
    text_lr: float = Field(2e-5, gt=0)
    # shows and users
    dim: int = Field(128, ge=4)
    meta_layers: int = Field(2, ge=1)
    ffn_mult: int = Field(2, ge=1, description="feed-forward width, in units of dim")
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    token_dropout: float = Field(0.15, ge=0, lt=1, description="tokens hidden while training")
    genre_clusters: int = Field(8, ge=1, description="from co-occurrence in the catalogue")
    max_people: int = Field(12, ge=1)
    history_len: int = Field(20, ge=1, description="recent shows a user is embedded from")
    # training
    epochs: int = Field(10, ge=1)
    pair_batch: int = Field(2048, ge=2, description="co-watch pairs per step")
    step_bucket: int = Field(
        128, ge=1, description="a step's shows are padded with masked copies to a multiple "
        "of this: steps of a few sizes reuse freed memory instead of fragmenting the heap "
        "(the losses are unchanged); 1: no padding",
    )  # fmt: skip
    min_steps_per_epoch: int = Field(8, ge=1, description="small data: smaller batches")
    steps_per_epoch: int | None = Field(None, ge=1, description="None: one pass over pairs")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    temperature: float = Field(0.1, gt=0)
    text_weight: float = Field(0.5, ge=0)
    user_weight: float = Field(1.0, ge=0)
    val_users: int = Field(500, ge=0, description="users whose last show is held out")
    prior_steps: int = Field(400, ge=0, description="show-prior fit (models/prior.py); 0: none")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> MultimodalConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self


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


# ---- the network ------------------------------------------------------------------------------
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
        d = cfg.dim
        self.text_arch = TextTokens(text_dim, cfg.text_tokens, d)
        self.meta_arch = MetaTokenEncoder(
            sizes, clusters, d, cfg.heads, cfg.meta_layers, cfg.ffn_mult, cfg.dropout,
            cfg.token_dropout,
        )  # fmt: skip
        self.cast_arch = CastTokenPool(sizes["people"], d, cfg.token_dropout)
        self.fusion_arch = CrossAttentionFusion(d, cfg.heads, cfg.ffn_mult, cfg.dropout)
        self.user_arch = HistoryAttention(d, cfg.heads, cfg.history_len)
        self.prior_arch = ShowPrior(d, n_shows, temperature=cfg.temperature)

    def forward(self, shows: ShowTensors) -> torch.Tensor:
        """Unit show vectors: (b, dim)."""
        text = self.text_arch(shows.text)  # (b, n_text, dim)
        meta, pad = self.meta_arch(shows)  # (b, n_meta, dim), (b, n_meta)
        cast = self.cast_arch(shows.people)  # (b, 1, dim)
        content = torch.cat([meta, cast], 1)  # (b, n_meta + 1, dim)
        pad = torch.cat([pad, torch.zeros_like(pad[:, :1])], 1)  # (b, n_meta + 1)
        return self.fusion_arch(text, content, pad)  # (b, dim)

    def embed_users(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, L, dim) show vectors of each user's recent shows (`pad_histories` layout, mask
        True = a real show) -> (b, dim) user vectors."""
        return self.user_arch(history, mask)

    def embed_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """(b, text_dim) pooled text -> (b, dim) query vectors in the show space."""
        return self.text_arch.query(pooled)

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The state dict without the fine-tuned encoder (saved in the text tower instead)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(TEXT_ENCODER)}


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


# ---- the training task ------------------------------------------------------------------------
class _MultimodalTask(TrainTask):
    """Each step: a slice of the co-watch pairs and of the users; three InfoNCE losses over
    the shows they touch. Validation: recall@10 of held-out next shows."""

    monitor = "val_recall_at_10"

    def __init__(self, model: MultimodalModel, split: _Split, raw_text: list[str]) -> None:
        self.model, self.split, self.raw_text, self.cfg = model, split, raw_text, model.config
        self.net = model._net()
        self.optimizer = model._optimizer(self.net)

    def plan(self, epoch: int, rngs: Rngs) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """One pass over the co-watch pairs, each step with a slice of the users."""
        split, gen = self.split, rngs.numpy
        batch = self.cfg.pair_batch * self.model.runtime.batch_multiplier
        n_steps = max(self.cfg.min_steps_per_epoch, math.ceil(len(split.pairs) / batch))
        batch = max(1, math.ceil(len(split.pairs) / n_steps))  # small data: smaller batches
        n_steps = min(n_steps, self.cfg.steps_per_epoch or n_steps)
        pairs = split.pairs[gen.permutation(len(split.pairs))]
        users = gen.permutation(len(split.sequences))
        per_step = math.ceil(len(users) / n_steps)
        steps = [
            (
                pairs[step * batch : (step + 1) * batch],
                [split.sequences[i] for i in users[step * per_step : (step + 1) * per_step]],
            )
            for step in range(n_steps)
        ]
        return [(p, s) for p, s in steps if len(p) or s]  # tiny data: no empty steps

    def loss(self, batch: tuple[np.ndarray, list[np.ndarray]], rngs: Rngs) -> StepResult:
        pairs, sequences = batch
        cfg, device, net = self.cfg, self.model.runtime.device, self.net
        cuts = [int(rngs.numpy.integers(1, len(s))) for s in sequences]  # s[cut] from s[:cut]
        index, mask = pad_histories(
            [s[:c] for s, c in zip(sequences, cuts, strict=True)], cfg.history_len
        )
        targets = np.array([s[c] for s, c in zip(sequences, cuts, strict=True)], dtype=np.int64)
        touched = np.unique(np.concatenate([pairs.ravel(), index[mask].numpy(), targets]))
        rows = torch.as_tensor(padded(touched, cfg.step_bucket))  # (n_step,) shows encoded
        pad = (torch.arange(len(rows)) >= len(touched)).to(device)  # (n_step,) masked copies

        def at(r: np.ndarray | torch.Tensor) -> torch.Tensor:  # catalogue rows -> step positions
            return torch.searchsorted(rows, torch.as_tensor(r)).clamp(max=len(rows) - 1).to(device)

        text = self.model._step_text(rows)
        step_shows = self.model._catalogue().take(rows.to(device), text)
        shows = net(step_shows)  # (n_step, dim)
        texts = net.embed_text(step_shows.text)  # (n_step, dim)
        users = net.embed_users(shows[at(index)], mask.to(device))  # (n_users, dim)
        seen = seen_mask(at(index), mask.to(device), len(rows)) | pad  # (n_users, n_step)
        losses = {
            "loss_cowatch": _cowatch_loss(shows, at(pairs), pad, cfg.temperature),
            "loss_text": _text_loss(shows, texts, pad, cfg.temperature),
            "loss_user": masked_info_nce(users @ shows.T, at(targets), seen, cfg.temperature)
            if len(sequences)
            else shows.sum() * 0.0,  # a step without users (tiny data): no user term
        }
        total = (
            losses["loss_cowatch"]
            + cfg.text_weight * losses["loss_text"]
            + cfg.user_weight * losses["loss_user"]
        )
        logged = {"train_loss": float(total.detach())}
        return StepResult(total, logged | {k: float(v.detach()) for k, v in losses.items()})

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        self.model._refresh_text(self.raw_text)
        return {"val_recall_at_10": self.model._recall_at_10(self.split)}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything but a fine-tuned encoder's frozen layers."""
        trainable = {n for n, p in self.net.named_parameters() if p.requires_grad}
        return {
            k: v
            for k, v in self.net.state_dict().items()
            if not k.startswith(TEXT_ENCODER) or k in trainable
        }

    def restored(self) -> None:
        self.model._refresh_text(self.raw_text)


def _nothing_to_learn(data: TrainingData) -> DataError:
    """No co-watched pair and no user with two shows left to train on."""
    users, events = data.frame["user_id"].nunique(), len(data.frame)
    return DataError(
        f"training set {data.feature_service}",
        f"{events:,} positives from {users:,} users leave the multimodal model no user with "
        "two shows to learn from (one show of each user is held out for validation): give it "
        "more events, or leave multimodal out of [models] train",
    )


def padded(rows: np.ndarray, bucket: int) -> np.ndarray:
    """`rows` (sorted, distinct) followed by copies of its last row up to the next multiple
    of `bucket`: (n_step,), still sorted, so a row's first position is its real one."""
    size = -(-len(rows) // bucket) * bucket
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows))])


def _cowatch_loss(
    shows: torch.Tensor, pairs: torch.Tensor, pad: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Each show of a pair picks its partner among the step's real shows (itself excluded)."""
    anchors = torch.cat([pairs[:, 0], pairs[:, 1]])  # (2 * n_pairs,)
    partners = torch.cat([pairs[:, 1], pairs[:, 0]])  # (2 * n_pairs,)
    excluded = nn.functional.one_hot(anchors, shows.shape[0]).bool() | pad  # (2 * n_pairs, n_step)
    return masked_info_nce(shows[anchors] @ shows.T, partners, excluded, temperature)


def _text_loss(
    shows: torch.Tensor, texts: torch.Tensor, pad: torch.Tensor, temperature: float
) -> torch.Tensor:
    """A show and its own text's projection find each other (both directions); padding
    copies are neither candidates (masked columns) nor anchors (ignored rows)."""
    logits = shows @ texts.T  # (n_step, n_step)
    target = torch.arange(len(shows), device=shows.device).masked_fill(pad, IGNORED)
    forward, backward = (
        logits.masked_fill(pad, float("-inf")),
        logits.T.masked_fill(pad, float("-inf")),
    )
    return (info_nce(forward, target, temperature) + info_nce(backward, target, temperature)) / 2


# ---- the model --------------------------------------------------------------------------------
class MultimodalModel(Recommender, name="multimodal", config=MultimodalConfig):
    needs_content = prior_column = True
    net: MultimodalNet | None = None
    catalogue: ShowTensors | None = None  # every show's content, pooled text included
    show_vectors: torch.Tensor | None = None  # (n_shows, dim)
    finetuned: bool = False  # whether fit fine-tuned the text encoder
    person_vocab: dict[str, int]
    sizes: dict[str, int]
    _raw_text: list[str]  # the catalogue's raw text, while fine-tuning
    _loaded_tower: Path | None = None  # a loaded model's text tower (its fine-tuned encoder)

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
        content = content_of(data, max_people=cfg.max_people)
        self.show_ids, self.person_vocab = list(content.show_ids), content.person_vocab
        rows = {s: i for i, s in enumerate(self.show_ids)}
        self.histories = {
            u: [rows[s] for s in h] for u, h in user_histories(data, cfg.history_len).items()
        }
        split = _split(data, rows, cfg)
        if not len(split.pairs) and not split.sequences:
            raise _nothing_to_learn(data)
        net = self._build(content)
        history = self.trainer(data).fit(_MultimodalTask(self, split, content.raw_text))
        self.show_vectors = self._encode_catalogue(net).cpu()
        metrics = history.metrics() | {"prior_loss": self._fit_prior(data, rows, content)}
        metrics |= {
            "profile": self.runtime.profile,
            "text_finetuned": self.finetuned,
            "n_users": len(self.histories),
            "n_train_sequences": len(split.sequences),
            "n_pairs": len(split.pairs),
            "n_val_users": len(split.val_target),
            "genre_clusters": int(self._net().meta_arch.cluster_of.max()),
        }
        self.make_manifest(data, cfg.dim + 1, metrics)  # served: [vector, prior]
        return metrics

    def _build(self, content: ShowContent) -> MultimodalNet:
        """The net, and the catalogue's content tensors (pooled text ready when frozen)."""
        cfg, device = self.config, self.runtime.device
        self.sizes = dict(content.vocab_sizes)
        clusters = genre_clusters(content.tensors.genres, self.sizes["genres"], cfg.genre_clusters)
        encoder: FineTunedText | None = None
        if self.finetune:
            source = text_tower.resolve_encoder(cfg.text_model)
            encoder = FineTunedText(
                source,
                cfg.text_max_length,
                cfg.finetune_layers,
                cfg.gradient_checkpointing,
                chunk=64 * self.runtime.batch_multiplier,  # fewer, larger launches on a GPU
            )
        elif not text_tower.is_feature_store_encoder(cfg.text_model):
            text = self._frozen_text(content.raw_text)  # (n_shows, text_dim)
            content.tensors = dataclasses.replace(content.tensors, text=text)
        text_dim = encoder.hidden_size if encoder else int(content.tensors.text.shape[1])
        net = MultimodalNet(cfg, self.sizes, text_dim, clusters, len(self.show_ids))
        net.text_arch.encoder = encoder
        self.catalogue = content.tensors.to(device)
        self.finetuned = encoder is not None
        self.net = net.to(device)
        self._refresh_text(content.raw_text)
        return self.net

    def _step_text(self, rows: torch.Tensor) -> torch.Tensor | None:
        """When fine-tuning: the step's shows' pooled text, through the encoder (with grad)."""
        if not self.finetuned:
            return None
        return self._net().text_arch.pooled(self._raw_text, rows)

    def _refresh_text(self, raw_text: list[str]) -> None:
        """When fine-tuning: the catalogue's pooled text from the encoder as it is now."""
        self._raw_text = raw_text
        if not self.finetuned:
            return
        net = self._net().eval()
        every = torch.arange(len(raw_text))
        with torch.no_grad(), self.runtime.autocast():
            pooled = net.text_arch.pooled(raw_text, every).float()  # (n_shows, text_dim)
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
        text = [p for n, p in net.named_parameters() if n.startswith(TEXT_ENCODER)]
        rest = [p for n, p in net.named_parameters() if not n.startswith(TEXT_ENCODER)]
        groups = [{"params": rest, "lr": cfg.lr}]
        if any(p.requires_grad for p in text):
            groups.append({"params": [p for p in text if p.requires_grad], "lr": cfg.text_lr})
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, fused=True)

    def _recall_at_10(self, split: _Split) -> float:
        """Share of validation users whose held-out next show is in their top 10."""
        if not len(split.val_target):
            return float("nan")
        shows = self._encode_catalogue(self._net())  # (n_shows, dim)
        index, mask = (
            t.to(shows.device) for t in pad_histories(split.val_history, self.config.history_len)
        )
        with torch.no_grad():
            users = self._net().embed_users(shows[index], mask)  # (n_val, dim)
            scores = users @ shows.T  # (n_val, n_shows)
        scores = scores.masked_fill(seen_mask(index, mask, scores.shape[1]), -torch.inf)
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

    def _fit_prior(
        self, data: TrainingData, rows: dict[str, int], content: ShowContent
    ) -> list[float]:
        """Fit the show prior on each user's next show (show vectors and user tower frozen)."""
        net = self._net()
        device = next(net.parameters()).device
        shows = self._vectors().to(device)  # (n_shows, dim)
        premiered = torch.as_tensor(content.premiered_days, dtype=torch.long)

        def embed_users(prefixes: list[np.ndarray]) -> torch.Tensor:
            index, mask = pad_histories(prefixes, self.config.history_len)
            return net.embed_users(shows[index.to(device)], mask.to(device))  # (b, dim)

        net.eval()
        prior_cfg = PriorConfig(steps=self.config.prior_steps, seed=self.config.seed)
        return fit_show_prior(net.prior_arch, shows, premiered, data, rows, embed_users, prior_cfg)

    # ---- embeddings ------------------------------------------------------------------------------
    def _vectors(self) -> torch.Tensor:
        """The encoder's show vectors, (n_shows, dim) float32."""
        return self.fitted(self.show_vectors)

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
            index, mask = pad_histories(chunk, self.config.history_len)
            with torch.no_grad():
                users = net.embed_users(vectors[index.to(device)], mask.to(device))
            out.append(net.prior_arch.served_users(users))  # (chunk, dim + 1)
        if not out:
            return np.zeros((0, self.config.dim + 1), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    # ---- ONNX ------------------------------------------------------------------------------------
    def export_onnx(self, directory: Path) -> dict[str, Path]:
        """The show encoder (content tensors -> show vector) and the text projection (pooled
        text embedding -> query vector), each checked with onnxruntime against torch on the
        catalogue."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        net, shows = self._net(), self._catalogue().to(torch.device("cpu"))
        paths = {
            "show_encoder": export_checked(
                ShowEncoderExport(net), shows.tensors(), ShowTensors.names(),
                directory / "show_encoder.onnx",
            ),
            "text_projection": export_checked(
                ShowEncoderExport(net, "embed_text", show_tensors=False), (shows.text,),
                ["text"], directory / "text_projection.onnx",
            ),
        }  # fmt: skip
        net.to(self.runtime.device)
        return paths

    # ---- persistence -----------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        shows = self._catalogue().to(torch.device("cpu"))
        return {
            "net": {k: v.cpu() for k, v in self._net().saved_state().items()},
            "content": dict(zip(ShowTensors.names(), shows.tensors(), strict=True)),
            "show_vectors": self._vectors().cpu(),
            "shows": self.show_ids,
            "histories": self.histories,
            "sizes": self.sizes,
            "text_dim": int(shows.text.shape[1]),
            "finetuned": self.finetuned,
            "person_vocab": self.person_vocab,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.show_ids, self.histories = state["shows"], state["histories"]
        self.sizes, self.finetuned = state["sizes"], state["finetuned"]
        self.person_vocab = state["person_vocab"]
        weights = state["net"]
        clusters = weights["meta_arch.cluster_of"]
        self.net = MultimodalNet(
            self.config, self.sizes, state["text_dim"], clusters, len(self.show_ids)
        )
        self.net.load_state_dict(weights)
        self.catalogue = ShowTensors(**state["content"])
        self.show_vectors = state["show_vectors"]

    @classmethod
    def load(cls, directory: Path) -> MultimodalModel:
        """`Recommender.load`, remembering the text tower: a fine-tuned encoder stays there
        (not in the state), and a copy of this model (the ensemble's) must save it too."""
        model = super().load(directory)
        assert isinstance(model, MultimodalModel)
        model._loaded_tower = Path(directory) / TEXT_TOWER
        return model

    def save_artifacts(self, directory: Path) -> None:
        """The text tower `tvrec query --text` reads: encoder reference, head, prior column."""
        self._save_text_tower(directory / TEXT_TOWER, int(self._catalogue().text.shape[1]))
        if self.finetuned and self._net().text_arch.encoder is None:  # loaded: copy its encoder
            self._copy_loaded_encoder(directory / TEXT_TOWER / text_tower.ENCODER_DIR)

    def _copy_loaded_encoder(self, target: Path) -> None:
        tower = self._loaded_tower  # None: not loaded from a directory, nowhere to copy from
        source = tower / text_tower.ENCODER_DIR if tower else None
        if source is None or not source.is_dir():
            raise ModelFormatError(
                f"the multimodal model's fine-tuned text encoder is missing ({source}); "
                "retrain it (`tvrec train --stage multimodal`)"
            )
        shutil.copytree(source, target, dirs_exist_ok=True)

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

    def _net(self) -> MultimodalNet:
        return self.fitted(self.net)

    def _catalogue(self) -> ShowTensors:
        return self.fitted(self.catalogue)
