"""How far the served ensemble's HR@10 can move on one evaluation split, and what moves it.

`tvrec evaluate` scores HR@10 (the share of test users with at least one held-out show in
their top 10). This script trains what `tvrec evaluate --models temporal,meta,ensemble
--few-shot N` trains, on the same split (same seed, the few-shot users held out), keeps the
work directory, and re-ranks the test users' served candidates offline to measure:

- HR@k of the fused order at k = 10, 20, 50: the ceiling a different choice of the ten from
  the fused order can reach at most is between the first two;
- HR@10 and NDCG@10 of each member alone, and HR@10 by the user's number of training events;
- the ten diversified (maximal marginal relevance over co-watch cosine similarity, a grid of
  trade-offs), or the fused top 7 or 8 filled from one member's own order;
- EASE alone at a grid of l2 (its HR@10 against its NDCG@10).

    python bench/bench_hit_rate.py --data ../shared/datasets/anime-caserec-5k-users -f anime \
        --workdir /tmp/hr [--few-shot 500] [--seed 42] [--json]

The first run trains (about 8 minutes on anime, 2 cores); later runs with the same
`--workdir` reuse the trained ensemble.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from tvrec.jobs.evaluation.metrics import MetricConfig, evaluate_topk, per_user_scores
from tvrec.jobs.evaluation.peers import EASE, EASEConfig
from tvrec.jobs.evaluation.pipeline import SplitPipeline, ranked_frame
from tvrec.jobs.evaluation.splitting import Split, few_shot, split
from tvrec.jobs.train import load_current_model
from tvrec.models.ease import gram
from tvrec.pipelines.adapters import load_raw
from tvrec.pipelines.config import Settings
from tvrec.pipelines.contract import canonicalize
from tvrec.pipelines.workdir import Workdir

K = 10
HISTORY_BINS = (0, 3, 5, 10, 20, 40, 80, 160, 10**9)


def scored(topk: pl.DataFrame, sp_: Split, k: int = K) -> dict[str, float]:
    """HR@k and NDCG@k of a top-k frame, by `tvrec evaluate`'s own metrics."""
    m = evaluate_topk(topk, sp_, MetricConfig(k=k))
    return {"hr": m.hr, "ndcg": m.ndcg}


def trained(data: Path, fmt: str, root: Path, few: int, seed: int) -> Split:
    """The split (few-shot users held out); temporal, meta and the ensemble trained on it in
    `root/run` unless a model is already published there."""
    ds = canonicalize(load_raw(data, fmt))
    sp_ = split(ds, seed=seed)
    held = few_shot(sp_, few, seed=seed) if few else None
    sp_ = held.held_out(sp_) if held else sp_
    if (root / "run" / "work" / "models" / "ensemble").exists():
        return sp_
    pipeline = SplitPipeline(ds, Settings.load(root), root / "run")
    for model in ("temporal", "meta", "ensemble"):
        start = time.perf_counter()
        pipeline.model_topk(model)(sp_)
        print(f"trained {model} in {time.perf_counter() - start:.0f} s", flush=True)
    return sp_


@torch.inference_mode()
def served(model: Any, users: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The users' served candidates (n, C) -1 padded, their fused scores as served (n, C),
    -inf past the candidates, and each member's own score (n, C, M), -inf where absent."""
    net, members = model.fitted(model.net), model.fitted(model.served)
    parts = []
    for start in range(0, len(users), 512):
        chunk = users[start : start + 512]
        rows = model.served_candidates(chunk)
        context, feats, present, _ = model._features(members, chunk, rows)
        logits = net(
            torch.as_tensor(model._scaled(context)),
            torch.as_tensor(feats),
            torch.as_tensor(present),
        )[0].mean(-1)
        fused = model._routed(members, chunk, rows, logits, feats, present)[0].numpy()
        own = np.where(present, feats[..., 0], -np.inf)
        parts.append((rows, np.where(rows >= 0, fused, -np.inf), own))
    width = max(p[0].shape[1] for p in parts)

    def padded(i: int, fill: float) -> Iterator[np.ndarray]:
        for p in parts:
            extra = [(0, 0), (0, width - p[i].shape[1])] + [(0, 0)] * (p[i].ndim - 2)
            yield np.pad(p[i], extra, constant_values=fill)

    return (
        np.concatenate(list(padded(0, -1))),
        np.concatenate(list(padded(1, -np.inf))),
        np.concatenate(list(padded(2, -np.inf))),
    )


def ordered(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each user's candidate rows by descending score, (n, C); -1 where the score is -inf."""
    order = np.argsort(-scores, 1, kind="stable")
    out = np.take_along_axis(rows, order, 1)
    out[~np.isfinite(np.take_along_axis(scores, order, 1))] = -1
    return out


def cowatch_cosine(train: pl.DataFrame, shows: list[str]) -> np.ndarray:
    """(n_shows, n_shows) cosine of the shows' training audiences, zero diagonal."""
    user = train["user_id"].cast(pl.Categorical).to_physical().to_numpy()
    row = {s: i for i, s in enumerate(shows)}
    cols = np.array([row.get(s, -1) for s in train["show_id"]])
    keep = cols >= 0
    x = sp.csr_matrix(
        (np.ones(keep.sum(), np.float32), (user[keep], cols[keep])),
        shape=(int(user.max()) + 1, len(shows)),
    )
    x.data[:] = 1.0
    G = gram(x)
    norm = np.sqrt(np.diag(G)) + 1e-9
    cos = G / norm[:, None] / norm[None, :]
    np.fill_diagonal(cos, 0.0)
    return cos


def mmr(
    ranked: np.ndarray, scores: np.ndarray, cos: np.ndarray, lam: float, temp: float
) -> np.ndarray:
    """Each user's ten picked greedily from their first 40 fused: exp(score / temp) relative
    to the best, times (1 - lam * the highest cosine to a show already picked)."""
    out = ranked[:, :K].copy()
    for i in range(len(ranked)):
        cand, s = ranked[i, :40], scores[i, :40]
        ok = cand >= 0
        cand, s = cand[ok], s[ok]
        if len(cand) <= K:
            continue
        gain, sim = np.exp((s - s.max()) / temp), cos[np.ix_(cand, cand)]
        picked, closest = [0], sim[0].copy()
        for _ in range(K - 1):
            value = gain * (1 - lam * closest)
            value[picked] = -np.inf
            j = int(value.argmax())
            picked.append(j)
            closest = np.maximum(closest, sim[j])
        out[i] = cand[picked]
    return out


def filled(first: np.ndarray, other: np.ndarray, keep: int) -> np.ndarray:
    """The first `keep` of `first`, then `other`'s order without repeats, ten in all."""
    out = np.full((len(first), K), -1)
    for i in range(len(first)):
        picked = list(first[i, :keep])
        for row in other[i]:
            if len(picked) == K:
                break
            if row >= 0 and row not in picked:
                picked.append(row)
        out[i, : len(picked)] = picked
    return out


def ease_grid(sp_: Split) -> dict[str, dict[str, float]]:
    """The EASE peer of `tvrec evaluate` at each l2: its HR@10 and NDCG@10."""
    return {
        f"ease l2={l2:g}": scored(
            EASE(EASEConfig(l2=l2)).fit(sp_.train).recommend(sp_.test_users, K), sp_
        )
        for l2 in (50.0, 100.0, 400.0, 1600.0)
    }


def by_history(topk: pl.DataFrame, sp_: Split) -> dict[str, dict[str, float]]:
    """HR@10 of the users in each band of training events."""
    recs = topk.rename({"rank": "pos"}).filter(pl.col("pos") <= K)
    events = sp_.train.group_by("user_id").agg(events=pl.len())
    users = per_user_scores(recs, sp_, K).join(events, on="user_id", how="left").fill_null(0)
    out = {}
    for lo, hi in pairwise(HISTORY_BINS):
        band = users.filter((pl.col("events") > lo) & (pl.col("events") <= hi))
        if band.height:
            label = f"{lo + 1}-{hi}" if hi < HISTORY_BINS[-1] else f">{lo}"
            out[label] = {"users": band.height, "hr": float((band["hits"] > 0).mean())}
    return out


def measure(sp_: Split, root: Path) -> dict[str, Any]:
    model = load_current_model(Workdir(root / "run" / "work"))
    users, shows = list(sp_.test_users), list(model.show_ids)
    rows, fused, own = served(model, users)
    order = np.argsort(-fused, 1, kind="stable")
    ranked, best = ordered(rows, fused), np.take_along_axis(fused, order, 1)

    def of(top: np.ndarray, k: int = K) -> dict[str, float]:  # (n_users, k) show rows
        return scored(ranked_frame(users, shows, top[:, :k]), sp_, k)

    out: dict[str, Any] = {"users": len(users), "candidates": rows.shape[1]}
    out["fused"] = {f"hr@{k}": of(ranked, k)["hr"] for k in (10, 20, 50)}
    out["fused"]["ndcg@10"] = of(ranked)["ndcg"]
    mine = {name: ordered(rows, own[..., m]) for m, name in enumerate(model.names)}
    out["members"] = {name: of(r) for name, r in mine.items()}
    out["by_history"] = by_history(ranked_frame(users, shows, ranked[:, :K]), sp_)
    cos = cowatch_cosine(sp_.train, shows)
    out["diversified"] = {
        f"mmr lam={lam} temp={temp}": of(mmr(ranked, best, cos, lam, temp))
        for temp in (1.0, 3.0)
        for lam in (0.3, 0.6, 1.0)
    }
    out["filled"] = {
        f"fused {keep} + {name}": of(filled(ranked, r, keep))
        for name, r in mine.items()
        for keep in (7, 8)
    }
    out["ease"] = ease_grid(sp_)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("-f", "--format", default="anime")
    parser.add_argument("--workdir", type=Path, required=True, help="kept between runs")
    parser.add_argument("--few-shot", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sp_ = trained(args.data, args.format, args.workdir.resolve(), args.few_shot, args.seed)
    result = measure(sp_, args.workdir.resolve())
    if args.json:
        print(json.dumps(result, indent=1))
        return
    fused = result["fused"]
    print(f"{result['users']:,} test users, {result['candidates']} candidates each")
    print("fused order: " + ", ".join(f"{k} {v:.4f}" for k, v in fused.items()))
    for section in ("members", "diversified", "filled", "ease"):
        print(f"\n{section}: HR@10 / NDCG@10")
        for label, m in result[section].items():
            print(f"  {label:32s} {m['hr']:.4f} {m['ndcg']:.4f}")
    print("\nfused HR@10 by the user's training events")
    for label, m in result["by_history"].items():
        print(f"  {label:>9s} {m['users']:5d} users  {m['hr']:.3f}")


if __name__ == "__main__":
    main()
