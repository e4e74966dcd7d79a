"""Reference points for the cold-start slice of `tvrec evaluate`: simple content heuristics on
the same split and the same candidates (catalogue shows with no training event, on air by the
end of the test period), so the content models' cold figures can be read against them.

- random: a random order of the candidates (mean of 20 orders), the bar `tvrec evaluate` prints;
- genre affinity: the user's genre mix over their training shows, cosine to each candidate's
  genres;
- newest first: candidates by premiere date, latest first (the same list for every user);
- oracle popularity: candidates by their number of test-period viewers. It reads the test
  period, so it is an upper reference, not a method.

    python bench/bench_cold_baselines.py [--datasets movielens-100k,anime]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from tvrec.jobs.evaluation import (
    Metrics,
    Split,
    chance_cold_metrics,
    cold_candidates,
    evaluate_topk,
    rank_among,
    split,
)
from tvrec.pipelines.adapters import load_raw
from tvrec.pipelines.contract import Dataset, canonicalize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = {
    "movielens-100k": ("movielens-100k", "movielens-100k"),
    "anime": ("anime-caserec-5k-users", "anime"),
}


def genre_affinity(ds: Dataset, sp: Split, users: list[str], candidates: list[str]) -> np.ndarray:
    """(n_users, n_candidates) cosine of the user's training genre mix and each candidate's."""
    pairs = ds.shows.select("show_id", "genres").explode("genres").drop_nulls()
    genres = {g: i for i, g in enumerate(sorted(pairs["genres"].unique().to_list()))}
    row = {s: i for i, s in enumerate(ds.shows["show_id"].to_list())}
    onehot = np.zeros((len(row), len(genres)), np.float32)
    for show, genre in pairs.iter_rows():
        onehot[row[show], genres[genre]] = 1.0
    user_row = {u: i for i, u in enumerate(users)}
    mix = np.zeros((len(users), len(genres)), np.float32)
    train = sp.train.filter(pl.col("user_id").is_in(users)).select("user_id", "show_id")
    for user, show in train.iter_rows():
        mix[user_row[user]] += onehot[row[show]]
    mix /= np.maximum(np.linalg.norm(mix, axis=1, keepdims=True), 1e-9)
    cand = onehot[[row[s] for s in candidates]]
    return mix @ (cand / np.maximum(np.linalg.norm(cand, axis=1, keepdims=True), 1e-9)).T


def references(ds: Dataset) -> dict[str, Metrics | int]:
    sp = split(ds)
    candidates = cold_candidates(ds.shows, sp)
    cold = sp.cold_slice()
    users = cold.test_users
    premiered = dict(zip(ds.shows["show_id"], ds.shows["premiered"], strict=True))
    newest = np.array([premiered[s].toordinal() if premiered[s] else 0 for s in candidates])
    viewers = dict(cold.test.group_by("show_id").len().iter_rows())
    oracle = np.array([viewers.get(s, 0) for s in candidates], np.float32)
    same_for_all = lambda v: np.tile(v.astype(np.float32), (len(users), 1))  # noqa: E731
    scored = {
        "genre affinity": genre_affinity(ds, sp, users, candidates),
        "newest first": same_for_all(newest),
        "oracle popularity (reads the test period)": same_for_all(oracle),
    }
    out: dict[str, Metrics | int] = {"candidates": len(candidates), "users": len(users)}
    out["random (mean of 20 orders)"] = chance_cold_metrics(sp, candidates)
    for name, scores in scored.items():
        out[name] = evaluate_topk(rank_among(users, candidates, scores, 10), cold)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="movielens-100k,anime")
    args = parser.parse_args()
    for name in args.datasets.split(","):
        folder, fmt = DATASETS[name]
        result = references(canonicalize(load_raw(SHARED / folder, fmt)))
        print(f"\n{name}: {result['candidates']} candidates, {result['users']} cold-slice users")
        print("| reference | HR@10 | Recall@10 | NDCG@10 |\n|---|---:|---:|---:|")
        for key, m in result.items():
            if isinstance(m, Metrics):
                print(f"| {key} | {m.hr:.3f} | {m.recall:.3f} | {m.ndcg:.3f} |")


if __name__ == "__main__":
    main()
