"""Serving cost of the ensemble's two stages, in process, on the demo world (5,000 users,
1,500 shows, 300,000 events): per user, the FAISS lookup of the retrieval stage's top N
(N = 200) and the fusion's re-ranking to the top k (k = 10), timed one user at a time (what an
on-line request would cost) and in the nightly precompute's batches of 2,048 users.

The ensemble is fitted here from the world's events without Feast (the same `fit`), with the
temporal model and MLTA as members (each fitted once on everything for serving, and again by
the ensemble before its window), so the re-ranking pays for their user vectors too.

    python bench/bench_rerank.py [--users 500] [--json] [--save DIR | --model DIR]

The per-user timings run twice: as a request that reads the user's history through the
temporal member's attention and adapts MLTA on it (its inner-loop steps), then after
`precompute_users` has built the user table (each user's member vectors at the as-of,
computed once in batches, as the nightly run would), so the request reads them; the table's
build time is printed.

`--save DIR` keeps the fitted ensemble; `--model DIR` times a saved one instead of fitting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tvrec.index import IndexConfig, make_show_index
from tvrec.models.ensemble import EnsembleModel
from tvrec.models.meta import MetaModel
from tvrec.models.runtime import Runtime
from tvrec.models.temporal import TemporalModel
from tvrec.pipelines.contract import RawDataset, canonicalize
from tvrec.pipelines.features.show import show_metadata_features
from tvrec.pipelines.features.text import TextEncoder, show_text
from tvrec.pipelines.features.vocab import SOURCES, build_vocab
from tvrec.pipelines.model_inputs import CatalogueContent, MemberInputs, TrainingData
from tvrec.pipelines.synthetic import WorldConfig, generate_world

K, CANDIDATES, BATCH = 10, 200, 2048


def fitted_ensemble() -> tuple[EnsembleModel, float]:
    """The ensemble (temporal and MLTA members included) on the demo world; its fit seconds."""
    raw, _ = generate_world(WorldConfig())
    events = raw.events.select("user_id", "show_id", "event_timestamp").to_pandas()
    frame = events.assign(label=1)
    as_of = datetime.combine(WorldConfig().start, datetime.min.time(), UTC)
    as_of = as_of.replace(year=as_of.year + 2)  # the world's two years end here
    shows = raw.shows["show_id"].to_list()
    content = catalogue(raw)  # the franchise, profile and release members' input
    data = TrainingData(frame, "collaborative_v1", as_of, "bench", shows, content=content)
    temporal = TemporalModel(runtime=Runtime.cpu())
    temporal.fit(TrainingData(frame, "temporal_v1", as_of, "bench", shows))
    data.members["temporal"] = MemberInputs(data=data, params={}, published=temporal)
    meta = MetaModel(runtime=Runtime.cpu())
    meta.fit(TrainingData(frame, "meta_v1", as_of, "bench", shows, content=content))
    data.members["meta"] = MemberInputs(data=data, params={}, published=meta)
    model = EnsembleModel(runtime=Runtime.cpu())
    start = time.perf_counter()
    model.fit(data)
    return model, time.perf_counter() - start


def catalogue(raw: RawDataset) -> CatalogueContent:
    """The world's show content as `model_inputs` hands it in (metadata and MiniLM text, as
    the feature build computes them; read here without Feast), with titles and credits."""
    shows = canonicalize(raw).shows.sort("show_id")
    vocab = build_vocab(shows)
    meta = show_metadata_features(shows, vocab, datetime.now(UTC)).drop("event_timestamp")
    texts = shows.select(show_text())["text"].to_list()
    features = pd.DataFrame({f"show_metadata__{c}": meta[c].to_list() for c in meta.columns})
    features["show_text__text_embedding"] = list(TextEncoder(device="cpu").encode(texts))
    credits = raw.credits.group_by("show_id", maintain_order=True).agg("person_id")
    people = dict(zip(credits["show_id"].to_list(), credits["person_id"].to_list(), strict=True))
    ids = shows["show_id"].to_list()
    vocab_lists = {kind: vocab.values(kind) for kind in SOURCES}  # MLTA's genres, platforms
    return CatalogueContent(ids, features, people, vocab_lists, texts, shows["title"].to_list())


def per_user(model: EnsembleModel, users: list[str]) -> dict[str, float]:
    """p50 / p99 milliseconds of lookup and re-ranking, one user at a time."""
    ids, vectors = model.show_embeddings()
    manifest = model.manifest
    assert manifest is not None
    index = make_show_index(
        np.ascontiguousarray(vectors, dtype=np.float32), ids, model_name="ensemble",
        model_version=manifest.model_version, feature_service=manifest.feature_service,
        data_snapshot=manifest.data_snapshot, as_of=manifest.as_of, cfg=IndexConfig(metric="dot"),
    )  # fmt: skip
    lookup, rerank = [], []
    for user in users:
        t0 = time.perf_counter()
        query = model.user_embeddings([user])  # (1, dim)
        seen = set(model.served.ease.histories.get(user, []))  # type: ignore[union-attr]
        _, rows = index.index.search(query, CANDIDATES, [seen])
        t1 = time.perf_counter()
        model.rerank([user], rows, K)
        t2 = time.perf_counter()
        lookup.append((t1 - t0) * 1e3)
        rerank.append((t2 - t1) * 1e3)
    total = [a + b for a, b in zip(lookup, rerank, strict=True)]
    return {
        f"{name}_{q}_ms": round(float(np.percentile(v, p)), 3)
        for name, v in (("lookup", lookup), ("rerank", rerank), ("total", total))
        for q, p in (("p50", 50), ("p99", 99))
    }


def user_table(model: EnsembleModel, users: list[str], timed: list[str]) -> dict[str, float]:
    """The user table's build seconds for every user, then the per-user timings reading it."""
    start = time.perf_counter()
    model.precompute_users(users)
    built = time.perf_counter() - start
    timings = per_user(model, timed)
    return {"user_table_s": round(built, 2)} | {f"{k}_table": v for k, v in timings.items()}


def batched(model: EnsembleModel, users: list[str]) -> float:
    """Users per second re-ranked in the precompute's batches (retrieval included)."""
    members = model.served
    assert members is not None
    start = time.perf_counter()
    for i in range(0, len(users), BATCH):
        chunk = users[i : i + BATCH]
        model.rerank(chunk, members.retrieve(chunk, CANDIDATES), K)
    return len(users) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500, help="users timed one at a time")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, help="keep the fitted ensemble here")
    parser.add_argument("--model", type=Path, help="a saved ensemble to time (no fit)")
    args = parser.parse_args()
    if args.model:
        model, fit_s = EnsembleModel.load(args.model), float("nan")
    else:
        model, fit_s = fitted_ensemble()
    if args.save:
        model.save(args.save)
    users = model.known_users()
    timed = users[:: max(1, len(users) // args.users)][: args.users]
    throughput = batched(model, users)  # before the user table: the nightly run's cost
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).date().isoformat(),
        "fit_s": round(fit_s, 1),
        "members": model.names,
        **per_user(model, timed),
        **user_table(model, users, timed),
        "batched_users_per_s": round(throughput, 1),
        "users": len(users),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
