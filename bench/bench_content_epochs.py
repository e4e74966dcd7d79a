"""The multimodal content space after each epoch: what it serves (similar shows, text
queries) beside what it is monitored on (validation recall@10).

    python bench/bench_content_epochs.py WORKDIR [--epochs 10] [--set pair_batch=4096 ...]

WORKDIR is a work directory with its features built. The model trains as its stage does
(same settings, seed and random stream: the recall column repeats the night's curve); after
each epoch it prints validation recall@10, the share of known pairs whose partner is the
show's most similar show (and within its top 3), and the genre precision@10 of text queries,
with MiniLM's own cosine over the shows' text as the reference. Nothing is written.

The known answers: a `tvrec demo` directory's synthetic world names its planted
near-duplicates (truth.json) and its taste families' description words (three three-word
queries per family). Any other directory (real data) uses franchise links instead: each show
whose title is close to another's (models/franchise.py, cosine >= 0.6: "Gintama",
"Gintama'") should find one of its linked shows first; and each genre carried by at least 100
shows is asked by its own name ("mecha", "sports").
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import torch
from bench_multimodal_step import step, task_of
from torch.nn import functional as F

from tvrec.models import multimodal as mm
from tvrec.models.franchise import title_links
from tvrec.models.trainer import Rngs
from tvrec.pipelines.synthetic import GENRE_FAMILIES, PlantedTruth


def queries(truth: PlantedTruth) -> list[tuple[str, str]]:
    """(main genre, three vocabulary words) for each family present in the world."""
    present = sorted(set(truth.user_cluster.values()))
    return [
        (GENRE_FAMILIES[c].genres[0], " ".join(GENRE_FAMILIES[c].vocabulary[k : k + 3]))
        for c in present
        for k in (0, 3, 6)
    ]


def precision(top: torch.Tensor, asked: list[tuple[str, str]], genres: list[set[str]]) -> float:
    """Mean share of each query's top rows (q, 10) carrying the query's genre."""
    hits = [[g in genres[j] for j in row] for (g, _), row in zip(asked, top.tolist(), strict=True)]
    return float(np.mean(hits))


def planted(task: mm._MultimodalTask, world: Path) -> tuple[list, list, list[set[str]]]:
    """The synthetic world's near-duplicate pairs, family queries and each row's genres."""
    model = task.model
    truth = PlantedTruth.from_json(json.loads((world / "truth.json").read_text()))
    row = {s: i for i, s in enumerate(model.show_ids)}
    pairs = [(row[a], [row[b]]) for a, b in truth.near_duplicate_pairs if a in row and b in row]
    by_show = dict(pl.read_parquet(world / "shows.parquet").select("show_id", "genres").rows())
    return pairs, queries(truth), [set(by_show.get(s) or []) for s in model.show_ids]


def catalogue(task: mm._MultimodalTask, lake: Path) -> tuple[list, list, list[set[str]]]:
    """Franchise-linked shows as pairs, genre names as queries, each row's genres."""
    model = task.model
    shows = pl.read_parquet(lake / "shows.parquet").select("show_id", "title", "genres")
    by_show = {s: (t or "", set(g or [])) for s, t, g in shows.rows()}
    titles = [by_show.get(s, ("", set()))[0] for s in model.show_ids]
    genres = [by_show.get(s, ("", set()))[1] for s in model.show_ids]
    links = title_links(titles, neighbours=20, min_similarity=0.6)
    pairs = [
        (r, links.indices[links.indptr[r] : links.indptr[r + 1]].tolist())
        for r in range(links.shape[0])
        if links.indptr[r + 1] > links.indptr[r]
    ]
    counts = Counter(name for g in genres for name in g)
    asked = [(g, g.lower()) for g, n in sorted(counts.items()) if n >= 100]
    return pairs, asked, genres


def serving_checks(
    task: mm._MultimodalTask,
    pairs: list[tuple[int, list[int]]],
    asked: list[tuple[str, str]],
    pooled: torch.Tensor,
    genres: list[set[str]],
) -> tuple[float, float, float]:
    """(near-duplicate first, near-duplicate in top 3, query precision@10) of the model now."""
    model, net = task.model, task.net
    net.eval()
    with torch.no_grad():
        shows = F.normalize(model._encode_catalogue(net), dim=1)  # (n, dim)
        sim = shows @ shows.T
        sim.fill_diagonal_(-2.0)
        top3 = sim.topk(3, dim=1).indices  # (n, 3)
        first = np.mean([top3[a, 0].item() in b for a, b in pairs])
        near = np.mean([bool(set(top3[a].tolist()) & set(b)) for a, b in pairs])
        query = F.normalize(net.embed_text(pooled), dim=1)  # (q, dim)
        found = precision((query @ shows.T).topk(10, dim=1).indices, asked, genres)
    net.train()
    return float(first), float(near), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE",
        help="[models.multimodal] settings to change (JSON values)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    task = task_of(args.workdir, {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.set)})
    model = task.model
    world = args.workdir / "sources" / "synthetic"
    if (world / "truth.json").exists():
        pairs, asked, genres = planted(task, world)
    else:
        pairs, asked, genres = catalogue(task, args.workdir / "lake")
    pooled = model._frozen_text([q for _, q in asked])  # (q, text_dim)
    text = F.normalize(model._catalogue().text.float(), dim=1)  # (n, text_dim)
    minilm = precision((F.normalize(pooled, dim=1) @ text.T).topk(10, dim=1).indices, asked, genres)
    print(f"{len(pairs)} shows with a known pair, {len(asked)} queries; MiniLM alone: {minilm:.3f}")
    print("epoch  recall@10  pair_first  pair_top3  query_p@10  seconds")
    rngs = Rngs.seeded(0)
    for epoch in range(args.epochs):
        started = time.perf_counter()
        for batch in task.plan(epoch, rngs):
            step(task, batch, rngs)
        recall = task.end_epoch(epoch)["val_recall_at_10"]
        first, near, found = serving_checks(task, pairs, asked, pooled, genres)
        took = time.perf_counter() - started
        figures = f"{recall:9.3f}  {first:10.3f}  {near:9.3f}  {found:10.3f}  {took:7.1f}"
        print(f"{epoch + 1:5d}  {figures}")


if __name__ == "__main__":
    main()
