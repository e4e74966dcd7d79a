"""Encoders shared by the models, each defined once under a name that says what it does.

Show content (`ShowTensors`, models/content.py):
    TextTokens         pooled text embedding -> a few text tokens, and a query head
    TextMLP            pooled text embedding -> one vector
    FineTunedText      a Hugging Face encoder over raw text, its top layers trainable
    MetaTokenEncoder   metadata fields as tokens through a transformer encoder
    packed_encoder     that encoder computed on the real tokens only (padding skipped)
    MetaFieldEncoder   metadata fields embedded, concatenated, through an MLP
    CastTokenPool      cast and crew attention-pooled by a learned query (with a "nobody" slot)
    CastPool           cast and crew attention-pooled by an MLP scorer
    CrossAttentionFusion  text tokens cross-attend to content tokens -> one unit vector
    ProjectionHead     the contrastive loss space (SimCLR)
Users, from the vectors of their recent shows (one padding convention: `pad_histories`):
    HistoryAttention   multi-head attention pooling with a recency embedding, learned cold user
    HistoryRecencyPool softmax pooling by content score + recency bias (starts as the mean)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import text_tower
from .content import ShowTensors

# ShowTensors fields with one id per show -> their vocabulary in ShowContent.vocab_sizes
SINGLE_FIELDS = {
    "network": "networks",
    "age_rating": "age_ratings",
    "show_type": "types",
    "language": "languages",
    "year_bucket": "year",
    "seasons_bucket": "seasons",
    "runtime_bucket": "runtime",
}


class _BucketLookup(torch.autograd.Function):
    """table[ids] for a small (buckets, k) table and many ids, its gradient summed per
    bucket by `bincount`: on the CPU an embedding's backward (a scatter per id) or a one-hot
    matmul costs ten times more (the temporal model's gap biases; the show prior's age
    curve, where an embedding's backward took 35 of a 46 ms step on the demo catalogue)."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.buckets = table.shape[0]
        return table[ids]  # (..., k)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        flat, grad = ids.reshape(-1), grad.reshape(-1, grad.shape[-1]).float()
        sums = [torch.bincount(flat, grad[:, h], ctx.buckets) for h in range(grad.shape[1])]
        return torch.stack(sums, 1), None


def bucket_lookup(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows (..., k) of a small (buckets, k) table at bucket ids (...), with a cheap backward
    on the CPU. On CUDA plain indexing: its backward is one deterministic kernel, where k
    bincounts would each wait for the device (and warn under deterministic algorithms)."""
    if table.is_cuda:
        return table[ids]
    return _BucketLookup.apply(table, ids)


# ---- dropout with a cheap mask on the CPU ----------------------------------------------------
FAST_DROPOUT_MIN = 1 << 15  # elements; below this the generator's set-up costs more than it saves


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, its mask drawn from 16-bit words of numpy's PCG64 on the
    CPU: torch's CPU generator (MT19937) draws one 32-bit word per element, which made
    dropout 15 % of an anime multimodal step (29 ms for 2.6 M elements; this: about 6). The
    generator is seeded from torch's, so `torch.manual_seed` still fixes every mask; p is
    kept to 1 / 65,536. CUDA tensors and small ones go to `F.dropout`."""
    if not training or p <= 0.0:
        return x
    if x.is_cuda or x.numel() < FAST_DROPOUT_MIN or p >= 1.0:
        return F.dropout(x, p, training)
    seed = int(torch.randint(0, 2**62, (1,)))  # from torch's global generator
    n = x.numel()  # four 16-bit words from each raw 64-bit draw
    words = np.random.PCG64(seed).random_raw((n + 3) // 4).view(np.uint16)[:n]
    keep = torch.from_numpy(words >= round(p * 65536)).view(x.shape)
    # where() saves only the boolean mask for backward (x * mask would save a float one)
    return torch.where(keep, x, x.new_zeros(())) * (1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` through `fast_dropout` (the same state dict: it has none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


# ---- user histories: one padding convention --------------------------------------------------
def pad_histories(
    histories: Sequence[Sequence[int] | np.ndarray], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Show rows per user, oldest first -> (index (b, L) long, mask (b, L) bool, True = a real
    show): the last `length` shows, right-aligned, so the most recent is always in slot L-1."""
    tails = [np.asarray(h, dtype=np.int64)[-length:] for h in histories]
    sizes = np.array([len(t) for t in tails], dtype=np.int64)  # (b,) real shows a row
    index = np.zeros((len(tails), length), dtype=np.int64)
    mask = np.zeros((len(tails), length), dtype=bool)
    if sizes.any():  # one scatter instead of a copy per row (a row a few microseconds)
        rows = np.repeat(np.arange(len(tails)), sizes)  # (n_real,)
        first = np.repeat(np.cumsum(sizes) - sizes, sizes)  # (n_real,) offset of its row
        cols = length - np.repeat(sizes, sizes) + np.arange(len(rows)) - first
        index[rows, cols] = np.concatenate(tails)
        mask[rows, cols] = True
    return torch.from_numpy(index), torch.from_numpy(mask)


def seen_mask(index: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """(b, n) True where column j is one of the row's real history entries."""
    counts = torch.zeros(index.shape[0], n, device=index.device)
    counts.scatter_add_(1, index, mask.float())
    return counts > 0


def token_dropout(pad: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Hide each token with probability p while training; the last token is always kept."""
    if not training or p <= 0:
        return pad
    hide = torch.rand(pad.shape, device=pad.device) < p  # (b, n)
    hide[:, -1] = False
    return pad | hide


def bag_mean(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean embedding of the non-zero ids of each row: (b, k) -> (b, e); empty rows -> 0."""
    known = (ids != 0).unsqueeze(-1).float()  # (b, k, 1)
    return (table(ids) * known).sum(1) / known.sum(1).clamp(min=1.0)


# ---- text -------------------------------------------------------------------------------------
class FineTunedText(nn.Module):
    """A Hugging Face transformer over raw text, its top layers trainable: (b,) -> (b, hidden)."""

    def __init__(
        self,
        source: str,
        max_length: int,
        layers: int,
        checkpointing: bool = True,
        chunk: int = 64,
    ) -> None:
        super().__init__()
        self.tokenizer, self.transformer = text_tower.load_encoder(source)
        self.max_length, self.chunk = max_length, chunk  # chunk: texts a forward pass
        self._catalogue: tuple[list[str], dict[str, torch.Tensor], np.ndarray] | None = None
        self.transformer.requires_grad_(False)
        for layer in _layer_stack(self.transformer)[-layers:]:
            layer.requires_grad_(True)
        if checkpointing and self.transformer.supports_gradient_checkpointing:
            self.transformer.config.use_cache = False  # no decoder cache to keep
            enable = getattr(self.transformer, "activation_checkpointing_enable", None)
            (enable or self.transformer.gradient_checkpointing_enable)({"use_reentrant": False})

    @property
    def hidden_size(self) -> int:
        return int(self.transformer.config.hidden_size)

    def forward(self, texts: list[str]) -> torch.Tensor:
        return text_tower.embed_texts(
            self.tokenizer, self.transformer, texts, self.max_length, self.chunk
        )

    def rows(self, texts: list[str], rows: torch.Tensor) -> torch.Tensor:
        """`forward(texts[rows])` (b, hidden) for the catalogue's `texts`, tokenized once per
        list: the text encoder took 551 of a 989 ms fine-tuning step on an H200, most of it
        on the CPU (tokenizing the step's texts again, 24 chunks of launches). Each chunk is
        cut to its longest text (right padding), as the tokenizer would pad it."""
        tokens, lengths = self._tokenized(texts)
        picked = {k: v[rows.to(v.device)] for k, v in tokens.items()}  # (b, L) each
        right = self.tokenizer.padding_side == "right"  # left padding: no cut
        cut = lengths[rows.cpu().numpy()] if right else None  # (b,) real tokens a text
        return text_tower.embed_tokens(self.transformer, picked, cut, self.chunk)

    def _tokenized(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """The catalogue's token tensors (n, L) on the encoder's device and lengths (n,)."""
        device = next(self.transformer.parameters()).device
        cached = self._catalogue
        if cached is None or cached[0] is not texts or cached[1]["input_ids"].device != device:
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            )  # fmt: skip
            lengths = batch["attention_mask"].sum(1).numpy()
            self._catalogue = texts, {k: v.to(device) for k, v in batch.items()}, lengths
        return self._catalogue[1], self._catalogue[2]


def _layer_stack(model: nn.Module) -> nn.ModuleList:
    """The transformer's block stack: its longest ModuleList (encoder.layer in BERT/RoBERTa)."""
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no layer stack to fine-tune")
    return max(stacks, key=len)


class TextTokens(nn.Module):
    """Pooled text embedding -> `n_tokens` text tokens for fusion, and -> a query vector in the
    show space (the text head, exported as the text tower)."""

    def __init__(self, text_dim: int, n_tokens: int, dim: int) -> None:
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        self.to_tokens = nn.Linear(text_dim, n_tokens * dim)
        self.position = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)
        self.head = text_tower.text_head(text_dim, dim)
        self.encoder: FineTunedText | None = None  # set when fine-tuning

    def pooled(self, texts: list[str], rows: torch.Tensor) -> torch.Tensor:
        """The catalogue's raw `texts` at `rows` (b,) through the fine-tuned encoder:
        (b, text_dim)."""
        assert self.encoder is not None, "pooled() needs a text encoder to fine-tune"
        return self.encoder.rows(texts, rows)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        tokens = self.to_tokens(pooled).view(-1, self.n_tokens, self.dim)  # (b, n_text, dim)
        return tokens + self.position

    def query(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(pooled).float(), dim=-1)  # (b, dim)


class TextMLP(nn.Module):
    """Pooled text embedding (b, text_dim) -> MLP -> (b, dim)."""

    def __init__(self, text_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.mlp(text)


# ---- metadata ---------------------------------------------------------------------------------
# token fields in token order: genres and platforms are padded lists, the rest one each
META_FIELDS = (
    "genre", "platform", "network", "year", "seasons", "runtime", "age_rating", "type",
    "language",
)  # fmt: skip


class MetaTokenEncoder(nn.Module):
    """Metadata tokens (each a value embedding plus a field embedding; a genre also adds its
    genre cluster's vector) through a transformer encoder: (b, n_meta, dim) and the padding."""

    def __init__(
        self,
        sizes: dict[str, int],
        clusters: torch.Tensor,
        dim: int,
        heads: int,
        layers: int,
        ffn_mult: int,
        dropout: float,
        token_dropout: float,
    ) -> None:
        super().__init__()
        self.genre = nn.Embedding(sizes["genres"], dim)
        self.genre_cluster = nn.Embedding(int(clusters.max()) + 1, dim)
        self.register_buffer("cluster_of", clusters)  # (n_genres,) genre id -> cluster id
        self.network = nn.Embedding(sizes["networks"], dim)
        self.platform = nn.Embedding(sizes["platforms"], dim)
        self.year = nn.Embedding(sizes["year"], dim)
        self.seasons = nn.Embedding(sizes["seasons"], dim)
        self.runtime = nn.Embedding(sizes["runtime"], dim)
        self.age_rating = nn.Embedding(sizes["age_ratings"], dim)
        self.show_type = nn.Embedding(sizes["types"], dim)
        self.language = nn.Embedding(sizes["languages"], dim)
        self.field = nn.Embedding(len(META_FIELDS), dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, ffn_mult * dim, dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.token_dropout = token_dropout

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
        pad = token_dropout(pad, self.token_dropout, self.training)
        return packed_encoder(self.encoder, tokens, pad), pad

    def _field_ids(self, shows: ShowTensors) -> torch.Tensor:
        """The META_FIELDS index of every token position: (n_meta,)."""
        widths = [shows.genres.shape[1], shows.platforms.shape[1]] + [1] * (len(META_FIELDS) - 2)
        fields = torch.arange(len(META_FIELDS), device=shows.genres.device)
        return fields.repeat_interleave(torch.tensor(widths, device=fields.device))


TOKEN_BUCKET = 1024  # packed rows are padded to a multiple (see `_bucketed`)


def packed_encoder(
    encoder: nn.TransformerEncoder, tokens: torch.Tensor, pad: torch.Tensor, group: int = 256
) -> torch.Tensor:
    """`encoder(tokens, src_key_padding_mask=pad)` on the real tokens: (b, n, dim), zeros
    where `pad` is True. Every row of a pre-norm layer but the attention (norms, projections,
    feed-forward) runs on the real tokens alone, packed. The attention runs on rows sorted by
    their number of real tokens, `group` rows at a time, each group at the width of its
    longest row (the tokens left-aligned: attention has no positions). The real tokens'
    outputs and gradients are the stock encoder's; a catalogue whose shows have few of the
    widest row's genres saves most (anime: 21 positions a show, about 10 real). Every show
    needs a real token (`token_dropout` keeps the last). An encoder of another shape (post-norm
    layers, another activation, a final norm) runs as it is, its padding zeroed."""
    if not _packable(encoder):
        return encoder(tokens, src_key_padding_mask=pad).masked_fill(pad.unsqueeze(-1), 0.0)
    b, n, d = tokens.shape
    groups = _AttentionGroups.of(pad, group)
    x = tokens.reshape(b * n, d).index_select(0, groups.gather)  # (r', dim), groups in turn
    for layer in encoder.layers:
        p, on = layer.dropout.p, layer.training  # dropout1, dropout and dropout2 share p
        x = x + fast_dropout(_grouped_attention(layer.self_attn, layer.norm1(x), groups), p, on)
        hidden = fast_dropout(F.gelu(layer.linear1(layer.norm2(x))), p, on)  # (r', ffn)
        x = x + fast_dropout(layer.linear2(hidden), p, on)  # (r', dim)
    return _unpacked(x, groups.scatter, b * n).view(b, n, d)


def _packable(encoder: nn.TransformerEncoder) -> bool:
    """Whether `packed_encoder`'s layer (pre-norm, exact GELU, no final norm) is `encoder`'s."""

    def gelu(f: object) -> bool:
        return f is F.gelu or (isinstance(f, nn.GELU) and f.approximate == "none")

    layers = list(encoder.layers)
    return encoder.norm is None and all(x.norm_first and gelu(x.activation) for x in layers)


def _bucketed(flat: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions (r,) of real rows in a (size, ...) tensor, topped up with `ghosts` to
    a multiple of TOKEN_BUCKET: (gather, scatter), each (r',). A ghost reads row 0 and writes
    to row `size`, which `_unpacked` drops. A step's packed tensors then come in a few sizes
    and reuse freed memory: at a new size every step the heap fragmented (anime's multimodal
    stage peaked at 9.0 GiB instead of 3.3)."""
    if torch.jit.is_tracing():  # an export: no ghosts (their count depends on the data)
        return flat, flat
    ghosts = -len(flat) % TOKEN_BUCKET
    gather = torch.cat([flat, flat.new_zeros(ghosts)])
    return gather, torch.cat([flat, flat.new_full((ghosts,), size)])


def _unpacked(x: torch.Tensor, scatter: torch.Tensor, size: int) -> torch.Tensor:
    """Packed rows x (r', k) written to their positions of a (size, k) zero tensor."""
    return x.new_zeros(size + 1, x.shape[1]).index_copy(0, scatter, x)[:size]


@dataclasses.dataclass(frozen=True)
class _AttentionGroups:
    """The real tokens of (b, n) rows ordered row by row, the rows sorted by their real
    count and cut into groups, each attended in its own (rows, width) layout; then the
    ghosts of `_bucketed`."""

    gather: torch.Tensor  # (r',) each token's flat position in (b, n) (ghosts: 0)
    scatter: torch.Tensor  # (r',) the same, ghosts b * n
    sizes: list[int]  # tokens per group, then the ghosts (empty: one group, no ghosts)
    shapes: list[tuple[int, int]]  # (rows, width) per group
    slots: list[torch.Tensor]  # per group: each token's flat position in its layout
    keys: list[torch.Tensor]  # per group (rows, 1, 1, width): True = a real token

    @classmethod
    def of(cls, pad: torch.Tensor, group: int) -> _AttentionGroups:
        b, n = pad.shape
        real = ~pad  # (b, n)
        if torch.jit.is_tracing():  # an export: one group, the input's own layout
            flat = real.reshape(-1).nonzero().squeeze(1)  # (r,)
            return cls(flat, flat, [], [(b, n)], [flat], [real[:, None, None, :]])
        counts = real.sum(1)  # (b,)
        order = counts.argsort(stable=True)  # (b,) rows by their real count
        mask = real[order]  # (b, n) rows in sorted order
        column = torch.arange(n, device=pad.device).expand(b, n)
        flat = (order[:, None] * n + column).masked_select(mask)  # (r,)
        rank = (real.cumsum(1) - 1)[order].masked_select(mask)  # (r,) place in its row
        local = (torch.arange(b, device=pad.device) % group)[:, None].expand(b, n)
        local = local.masked_select(mask)  # (r,) the token's row within its group
        counts = counts[order]  # (b,) sorted
        sizes, shapes, slots, keys, start = [], [], [], [], 0
        for first in range(0, b, group):
            rows = counts[first : first + group]  # (rows,)
            size, width = int(rows.sum()), int(rows[-1])  # sorted: the last is the longest
            slots.append(local[start : start + size] * width + rank[start : start + size])
            wide = torch.arange(width, device=pad.device)
            keys.append((wide < rows[:, None])[:, None, None])  # (rows, 1, 1, width)
            sizes.append(size)
            shapes.append((len(rows), width))
            start += size
        gather, scatter = _bucketed(flat, b * n)
        return cls(gather, scatter, [*sizes, len(gather) - start], shapes, slots, keys)


def _grouped_attention(
    attention: nn.MultiheadAttention, x: torch.Tensor, groups: _AttentionGroups
) -> torch.Tensor:
    """Self-attention of the packed tokens x (r', dim) within their rows: (r', dim), zeros
    for the ghosts."""
    d, heads = x.shape[1], attention.num_heads
    qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)  # (r', 3 * dim)
    parts = qkv.split(groups.sizes) if groups.sizes else (qkv,)
    out, n_groups = [], len(groups.shapes)  # parts: the groups', then the ghosts' if any
    for part, (rows, width), slot, keys in zip(
        parts[:n_groups], groups.shapes, groups.slots, groups.keys, strict=True
    ):
        laid = part.new_zeros(rows * width, 3 * d).index_copy(0, slot, part)
        split = laid.view(rows, width, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = split.unbind(0)  # each (rows, h, width, d_h)
        attended = _heads_attention(attention, q, k, v, keys)  # (rows, width, dim)
        out.append(attended.reshape(rows * width, d).index_select(0, slot))
    if len(parts) > n_groups:  # the ghosts
        out.append(x.new_zeros(len(parts[-1]), d))
    return attention.out_proj(torch.cat(out))  # (r', dim)


def _heads_attention(
    attention: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keys: torch.Tensor,
) -> torch.Tensor:
    """`attention`'s heads (with its dropout) over projected q (b, h, n_q, d_h), k and v
    (b, h, n, d_h); keys (b, 1, 1, n) True = attend: (b, n_q, dim), before `out_proj`."""
    drop = attention.dropout if attention.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=drop)
    b, heads, n_q, d_h = out.shape
    return out.transpose(1, 2).reshape(b, n_q, heads * d_h)


class MetaFieldEncoder(nn.Module):
    """Metadata ids -> one embedding per field (unknown 0 -> zeros; genres and platforms
    bag-averaged) -> concatenated -> MLP -> (b, dim)."""

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


# ---- cast and crew ----------------------------------------------------------------------------
class CastTokenPool(nn.Module):
    """Cast and crew pooled by a learned query: (b, max_people) ids -> (b, 1, dim). A learned
    "no known people" slot always takes part, so an all-unknown cast still has a vector."""

    def __init__(self, n_people: int, dim: int, token_dropout: float) -> None:
        super().__init__()
        self.person = nn.Embedding(n_people, dim)
        self.nobody = nn.Parameter(torch.zeros(1, 1, dim))
        self.query = nn.Parameter(torch.randn(dim) * 0.02)
        self.out = nn.Linear(dim, dim)
        self.token_dropout = token_dropout

    def forward(self, people: torch.Tensor) -> torch.Tensor:
        b = people.shape[0]
        vectors = torch.cat([self.nobody.expand(b, -1, -1), self.person(people)], 1)  # (b, 1+P, d)
        known = torch.cat([people, torch.ones_like(people[:, :1])], 1) > 0  # (b, P + 1)
        known = ~token_dropout(~known, self.token_dropout, self.training)
        known = torch.cat([known[:, -1:], known[:, :-1]], 1)  # (b, 1 + P), nobody first
        logits = (vectors @ self.query) / math.sqrt(vectors.shape[-1])  # (b, 1 + P)
        weights = logits.masked_fill(~known, float("-inf")).softmax(-1)  # (b, 1 + P)
        return self.out((weights.unsqueeze(-1) * vectors).sum(1, keepdim=True))  # (b, 1, d)


class CastPool(nn.Module):
    """People ids (b, k) -> attention-pooled embedding (b, dim) by an MLP scorer; id 0
    (unknown) is ignored, so a show without known people gets zeros."""

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


# ---- fusion and heads -------------------------------------------------------------------------
class CrossAttentionFusion(nn.Module):
    """Text tokens cross-attend to the content tokens; both pooled into one unit show vector."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm_text, self.norm_content = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        wide = ffn_mult * dim
        self.ffn = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, wide), nn.GELU(), nn.Linear(wide, dim)
        )
        self.out = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim))

    def forward(self, text: torch.Tensor, content: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = text + self._attend(self.norm_text(text), content, pad)  # (b, n_text, d)
        x = x + self.ffn(x)  # (b, n_text, d)
        keep = (~pad).unsqueeze(-1).to(content.dtype)  # (b, n_content, 1)
        content_mean = (content * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (b, d)
        show = self.out(torch.cat([x.mean(1), content_mean], -1))  # (b, d)
        return F.normalize(show.float(), dim=-1)

    def _attend(
        self, query: torch.Tensor, content: torch.Tensor, pad: torch.Tensor
    ) -> torch.Tensor:
        """`self.cross(query, kv, kv, key_padding_mask=pad)` with kv = norm_content(content),
        its keys and values projected from the real content tokens only: (b, n_text, d)."""
        b, n, d = content.shape
        weight, bias = self.cross.in_proj_weight, self.cross.in_proj_bias
        real = (~pad).reshape(-1).nonzero().squeeze(1)  # (r,) flat positions of real tokens
        gather, scatter = _bucketed(real, b * n)  # (r',) each, ghosts topping r up
        kv = self.norm_content(content.reshape(b * n, d).index_select(0, gather))  # (r', d)
        kv = _unpacked(F.linear(kv, weight[d:], bias[d:]), scatter, b * n)  # (b * n, 2d)
        heads = self.cross.num_heads
        split = kv.view(b, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4)  # (2, b, h, n, d_h)
        k, v = split.unbind(0)
        q = F.linear(query, weight[:d], bias[:d])  # (b, n_text, d)
        q = q.view(b, -1, heads, d // heads).transpose(1, 2)  # (b, h, n_text, d_h)
        return self.cross.out_proj(_heads_attention(self.cross, q, k, v, ~pad[:, None, None, :]))


class ProjectionHead(nn.Module):
    """h (b, dim) -> z (b, proj_dim), L2-normalised: the space the contrastive loss sees."""

    def __init__(self, dim: int, proj_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, proj_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(h), dim=-1)


# ---- users ------------------------------------------------------------------------------------
class HistoryAttention(nn.Module):
    """A user's recent show vectors pooled by multi-head attention (keys carry a recency
    embedding) plus their mean, into a unit vector; a learned vector for users without
    history."""

    def __init__(self, dim: int, heads: int, history_len: int) -> None:
        super().__init__()
        self.recency = nn.Embedding(history_len, dim)  # 0 = the most recent show
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Linear(dim, dim)
        self.cold = nn.Parameter(torch.randn(dim) * 0.02)  # users without history

    def forward(self, shows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """shows (b, L, d) from `pad_histories`, mask (b, L) True = a real show -> (b, d)."""
        if shows.shape[0] == 0:  # no users in this batch
            return shows.new_zeros((0, shows.shape[-1])).float()
        length = shows.shape[1]
        recency = torch.arange(length - 1, -1, -1, device=shows.device)  # (L,) 0 = newest
        keys = shows + self.recency(recency)  # (b, L, d)
        has = mask.any(1)  # (b,)
        safe_pad = ~mask & has.unsqueeze(1)  # users without history attend to padding, unused
        query = self.query.expand(shows.shape[0], -1, -1)  # (b, 1, d)
        pooled, _ = self.attend(query, keys, shows, key_padding_mask=safe_pad, need_weights=False)
        keep = mask.unsqueeze(-1).to(shows.dtype)  # (b, L, 1)
        mean = (shows * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # (b, d)
        user = self.out(pooled.squeeze(1)) + mean  # (b, d)
        user = torch.where(has.unsqueeze(1), user, self.cold.to(user.dtype))
        return F.normalize(user.float(), dim=-1)


class HistoryRecencyPool(nn.Module):
    """Softmax pooling of a user's recent show vectors (b, L, dim) -> (b, dim) by a content
    score and a recency bias; starts as mean pooling (zero-initialised scores)."""

    def __init__(self, dim: int, history_len: int) -> None:
        super().__init__()
        self.content_score = nn.Linear(dim, 1)
        self.recency = nn.Embedding(history_len, 1)
        for p in (self.content_score.weight, self.content_score.bias, self.recency.weight):
            nn.init.zeros_(p)

    def forward(self, shows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """shows (b, L, dim) from `pad_histories`, mask (b, L) True = a real show."""
        age = torch.arange(shows.shape[1] - 1, -1, -1, device=shows.device)  # (L,) 0 = newest
        logits = self.content_score(shows).squeeze(-1) + self.recency(age).squeeze(-1)  # (b, L)
        weights = torch.softmax(logits.masked_fill(~mask, -1e4), dim=-1) * mask  # (b, L)
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-9)
        return torch.einsum("bl,bld->bd", weights, shows)  # (b, dim)
