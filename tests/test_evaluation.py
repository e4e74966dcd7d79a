"""Offline evaluation: metrics on hand-made lists, split properties, peers on a planted world."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tvrec.jobs.evaluation import (
    MetricConfig,
    Split,
    bootstrap_ci,
    evaluate_topk,
    run_peer_evaluation,
    split,
)
from tvrec.jobs.evaluation.peers import (
    ALS,
    EASE,
    ALSConfig,
    EASEConfig,
    Interactions,
    ItemKNN,
    ItemKNNConfig,
    MostPopular,
    RecentPopConfig,
    RecentPopular,
    cosine_knn,
    ease_weights,
    gram,
)
from tvrec.jobs.evaluation.pipeline import ablation_table, score_peers
from tvrec.jobs.evaluation.report import markdown, write_report
from tvrec.pipelines.contract import Dataset, empty

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


# ---- helpers -------------------------------------------------------------------------------
def pairs(rows: list[tuple[str, str]], minutes: list[int] | None = None) -> pl.DataFrame:
    """(user, show) rows as split-shaped frames (weight 1, one minute apart by default)."""
    minutes = minutes if minutes is not None else list(range(len(rows)))
    return pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "show_id": [s for _, s in rows],
            "weight": [1.0] * len(rows),
            "event_timestamp": [T0 + timedelta(minutes=m) for m in minutes],
        },
        schema={
            "user_id": pl.String,
            "show_id": pl.String,
            "weight": pl.Float64,
            "event_timestamp": pl.Datetime("us", "UTC"),
        },
    )


def dataset(events: pl.DataFrame, timed: bool = True) -> Dataset:
    shows = pl.DataFrame({"show_id": events["show_id"].unique().sort()})
    events = events.with_columns(
        event_type=pl.lit("play"), watch_seconds=pl.lit(None, dtype=pl.Float64)
    )
    return Dataset("toy", shows, events, empty("credits"), empty("users"), timed)


@pytest.fixture()
def hand_split() -> Split:
    """u1 saw a,b and will watch c,d; u2 saw a,c and will watch b; u3 saw a and will watch f."""
    train = pairs([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u3", "a")])
    test = pairs([("u1", "c"), ("u1", "d"), ("u2", "b"), ("u3", "f")])
    # catalogue = train shows {a, b, c}
    return Split(train=train, test=test, kind="random")


def planted_events(users_per_group: int = 30, items_per_group: int = 12) -> pl.DataFrame:
    """Two disjoint taste groups: group g users watch 7 random shows of group g only."""
    rng = np.random.default_rng(7)
    rows = []
    for g in ("A", "B"):
        for u in range(users_per_group):
            for i in rng.choice(items_per_group, size=7, replace=False):
                rows.append((f"{g}u{u}", f"{g}s{i}"))
    return pairs(rows, rng.permutation(len(rows)).tolist())  # groups interleaved in time


# ---- metrics on hand-made lists ------------------------------------------------------------
def test_metrics_known_values(hand_split: Split) -> None:
    topk = {
        "u1": ["a", "c", "e", "d"],  # a is seen -> dropped; hits at positions 1 and 3
        "u2": ["c", "e"],  # c is seen -> dropped; no hit
        # u3 has no list: zero, but still counted
    }
    m = evaluate_topk(topk, hand_split)
    ndcg_u1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))  # 1.5 / 1.6309 = 0.91972
    assert m.users == 3
    assert m.hr == pytest.approx(1 / 3)
    assert m.recall == pytest.approx(1 / 3)  # u1: 2 / min(10, 2) = 1
    assert m.ndcg == pytest.approx(ndcg_u1 / 3)
    assert ndcg_u1 == pytest.approx(0.919720, abs=1e-6)
    # distinct shows recommended after filtering: c, e, d (e, d are cold) over 3 train shows
    assert m.recommended_shows == 3
    assert m.coverage == pytest.approx(1.0)


def test_metrics_seen_shift_and_cutoff(hand_split: Split) -> None:
    topk = {
        "u1": ["e", "g", "c"],  # c is 3rd: outside k = 2
        "u2": ["a", "b"],  # a is seen -> b moves to position 1
        "u3": ["f"],
    }
    m = evaluate_topk(topk, hand_split, MetricConfig(k=2))
    assert m.hr == pytest.approx(2 / 3)
    assert m.recall == pytest.approx((0 + 1 + 1) / 3)
    assert m.ndcg == pytest.approx(2 / 3)  # both hits at position 1 with one relevant show


def test_metrics_partial_recall_and_frame_input(hand_split: Split) -> None:
    # u1 finds only d at position 2: recall 1/2, ndcg (1/log2 3) / (1 + 1/log2 3)
    frame = pl.DataFrame({"user_id": ["u1", "u1"], "rank": [1, 2], "show_id": ["e", "d"]})
    m = evaluate_topk(frame, hand_split)
    ndcg_u1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m.recall == pytest.approx(0.5 / 3)
    assert m.ndcg == pytest.approx(ndcg_u1 / 3)
    same = evaluate_topk({"u1": ["e", "d"]}, hand_split)
    assert same.ndcg == m.ndcg


def test_perfect_lists_score_one(hand_split: Split) -> None:
    m = evaluate_topk({"u1": ["d", "c"], "u2": ["b"], "u3": ["f"]}, hand_split)
    assert (m.hr, m.recall, m.ndcg) == pytest.approx((1.0, 1.0, 1.0))
    assert m.ndcg_ci == pytest.approx((1.0, 1.0))


def test_bootstrap_interval() -> None:
    values = np.r_[np.zeros(50), np.ones(50)]
    lo, hi = bootstrap_ci(values, resamples=1_000, seed=0)
    # the mean's standard error is 0.05: the 95% interval is about 0.5 +- 0.098
    assert lo == pytest.approx(0.40, abs=0.02) and hi == pytest.approx(0.60, abs=0.02)
    assert bootstrap_ci(values, seed=0) == (lo, hi)


# ---- split properties ----------------------------------------------------------------------
def test_temporal_split_known_cut() -> None:
    # ten events one minute apart: the 90% quantile is minute 8.1 -> test = the last event
    rows = [("u1", "a"), ("u2", "a"), ("u1", "b"), ("u2", "b"), ("u1", "c")]
    rows += [("u2", "c"), ("u1", "d"), ("u2", "d"), ("u1", "e"), ("u1", "f")]
    sp = split(dataset(pairs(rows)))
    assert sp.kind == "temporal"
    assert sp.cutoff == T0 + timedelta(minutes=8, seconds=6)
    assert sp.test.select("user_id", "show_id").rows() == [("u1", "f")]
    assert sp.train.height == 9


def test_temporal_split_properties() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    rows = [(f"u{rng.integers(60)}", f"s{rng.integers(80)}") for _ in range(n)]
    minutes = rng.permutation(n).tolist()
    sp = split(dataset(pairs(rows, minutes)))
    expected = T0 + timedelta(minutes=float(np.quantile(np.arange(n), 0.9)))
    assert sp.cutoff == expected
    assert sp.train["event_timestamp"].max() < sp.cutoff
    assert sp.test["event_timestamp"].min() >= sp.cutoff
    _check_filters(sp)


def _check_filters(sp: Split) -> None:
    seen = set(sp.train.select("user_id", "show_id").rows())
    test_pairs = sp.test.select("user_id", "show_id").rows()
    assert test_pairs and not seen.intersection(test_pairs)
    assert set(sp.test["user_id"]) <= set(sp.train["user_id"])
    assert len(test_pairs) == len(set(test_pairs))  # duplicates collapsed
    assert sp.train.select("user_id", "show_id").is_unique().all()


def test_random_split_properties_and_determinism() -> None:
    rng = np.random.default_rng(5)
    users, shows = rng.integers(400, size=20_000), rng.integers(900, size=20_000)
    events = pairs([(f"u{u}", f"s{s}") for u, s in zip(users, shows, strict=True)])
    events = events.with_columns(event_timestamp=pl.lit(T0, dtype=pl.Datetime("us", "UTC")))
    events = events.unique(subset=["user_id", "show_id"], keep="first", maintain_order=True)
    ds = dataset(events, timed=False)
    sp = split(ds)
    assert sp.kind == "random" and sp.cutoff is None
    assert sp.train.height / events.height == pytest.approx(0.8, abs=0.01)
    _check_filters(sp)
    again = split(ds)
    assert again.train.equals(sp.train) and again.test.equals(sp.test)
    other = split(ds, seed=7)
    assert not other.test.equals(sp.test)


def test_duplicates_collapse() -> None:
    # 20 events one minute apart: the cutoff is minute 17.1, so minutes 18 and 19 are test
    rows = [("u1", "c")] * 3 + [("u1", f"s{i}") for i in range(15)] + [("u1", "z")] * 2
    sp = split(dataset(pairs(rows)))
    assert sp.train.height == 16
    assert sp.train.filter(pl.col("show_id") == "c")["event_timestamp"].to_list() == [T0]
    assert sp.test.select("user_id", "show_id").rows() == [("u1", "z")]


# ---- peers on a planted world --------------------------------------------------------------
@pytest.mark.parametrize(
    "peer",
    # the planted world has rank 2: two ALS factors find it for any seed (64 overfit 20 items)
    [ItemKNN(), EASE(EASEConfig(l2=10.0)), EASE(), ALS(ALSConfig(factors=2))],
    ids=["itemknn", "ease-fixed", "ease-tuned", "als"],
)
def test_peers_recommend_within_group(peer) -> None:
    train = planted_events()
    users = [f"Au{u}" for u in range(30)] + [f"Bu{u}" for u in range(30)]
    recs = peer.fit(train).recommend(users, k=3)
    assert recs.columns == ["user_id", "rank", "show_id", "score"]
    assert recs.height == 60 * 3
    assert (recs["user_id"].str.slice(0, 1) == recs["show_id"].str.slice(0, 1)).all()
    seen = set(train.select("user_id", "show_id").rows())
    assert not seen.intersection(recs.select("user_id", "show_id").rows())
    assert recs.group_by("user_id").agg(pl.col("rank").sort()).row(0)[1] == [1, 2, 3]


def test_most_popular_known_order() -> None:
    train = pairs([("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "b"), ("u3", "c")])
    recs = MostPopular().fit(train).recommend(["u3", "u1", "nobody"], k=2)
    assert recs.filter(pl.col("user_id") == "u3")["show_id"].to_list() == ["b"]
    assert recs.filter(pl.col("user_id") == "u1")["show_id"].to_list() == ["c"]
    everything = MostPopular().fit(train).recommend(["u3"], k=2, exclude_seen=False)
    assert everything["show_id"].to_list() == ["a", "b"]
    assert everything["score"].to_list() == [3.0, 2.0]


def timed_pairs(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(user, show, day) rows as collapsed train pairs, day 0 = 2024-01-01."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "show_id": [s for _, s, _ in rows],
            "weight": [1.0] * len(rows),
            "event_timestamp": [start + timedelta(days=d) for _, _, d in rows],
        }
    )


def test_recent_popular_ranks_what_is_watched_now() -> None:
    """ "old" has the most users of all time, "new" the most in the last 7 days: RecentPop
    (7 days) ranks "new" first where MostPop ranks "old" first."""
    rows = [(f"u{i}", "old", i) for i in range(6)]  # days 0..5
    rows += [(f"u{i}", "new", 96 + i % 4) for i in range(6, 9)]  # days 96..99
    rows += [("u9", "mid", 60), ("u10", "mid", 61), ("u11", "new", 99), ("u12", "x", 99)]
    train = timed_pairs(rows)
    recent = RecentPopular(RecentPopConfig(days=7)).fit(train).recommend(["u12"], k=2)
    assert recent["show_id"].to_list() == ["new", "old"]  # ties beyond the window: all-time
    assert MostPopular().fit(train).recommend(["u12"], k=1)["show_id"].to_list() == ["old"]


def test_recent_popular_window_is_chosen_inside_train() -> None:
    """Each window is scored on the last 10% of train's time. Validation users start the
    fad of the last days ("fad9"); over 30 days an older fad leads, over 90 the evergreen
    show: only the 7-day window ranks fad9 first, and it is chosen."""
    rows = [(f"a{i}", "evergreen", 3 * i) for i in range(30)]  # days 0..87
    rows += [(f"b{i}", "fad8", 80 + i % 10) for i in range(12)]  # days 80..89
    rows += [(f"d{i}", "fad9", 90 + i % 5) for i in range(8)]  # days 90..94
    rows += [(f"c{i}", "evergreen", i) for i in range(10)]
    rows += [(f"c{i}", "fad9", 95 + i % 5) for i in range(10)]  # days 95..99
    model = RecentPopular().fit(timed_pairs(rows))
    assert model.days == 7, model.validation_ndcg
    assert model.validation_ndcg[7] > model.validation_ndcg[30] > 0, model.validation_ndcg


def test_ease_closed_form_matches_numpy() -> None:
    X = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], float)
    l2 = 2.5
    P = np.linalg.inv(X.T @ X + l2 * np.eye(4))
    expected = np.eye(4) - P / np.diag(P)
    B = ease_weights(X.T @ X, l2)
    np.testing.assert_allclose(B, expected, atol=1e-12)
    assert np.allclose(np.diag(B), 0.0)
    # and through the model: scores = X B, user 0 ranks the unseen item with the larger score
    rows = [(f"u{u}", f"s{i}") for u, i in zip(*np.nonzero(X), strict=True)]
    model = EASE(EASEConfig(l2=l2)).fit(pairs(rows))
    np.testing.assert_allclose(model.B, expected, atol=1e-6)
    best = int(np.argmax(np.where(X[0] > 0, -np.inf, X[0] @ expected)))
    assert model.recommend(["u0"], k=1)["show_id"].to_list() == [f"s{best}"]


def test_ease_tuning_uses_the_grid() -> None:
    grid = (1.0, 10.0, 100.0)
    model = EASE(EASEConfig(grid=grid)).fit(planted_events())
    assert set(model.validation_ndcg) == set(grid)
    assert model.l2 == max(grid, key=lambda g: model.validation_ndcg[g])


def test_cosine_knn_keeps_top_neighbours() -> None:
    rows = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "c")]
    data = Interactions.from_frame(pairs(rows))
    G = gram(data.X)  # a: 3 users, b: 2 (both with a), c: 1 (with a)
    np.testing.assert_allclose(G, [[3, 2, 1], [2, 2, 0], [1, 0, 1]])
    W = cosine_knn(G, neighbours=1).toarray()
    # column j holds j's single nearest neighbour: a -> b (2/sqrt 6 > 1/sqrt 3), b -> a, c -> a
    np.testing.assert_allclose(
        W,
        [[0, 2 / math.sqrt(6), 1 / math.sqrt(3)], [2 / math.sqrt(6), 0, 0], [0, 0, 0]],
        rtol=1e-6,
    )
    recs = ItemKNN(ItemKNNConfig(neighbours=1)).fit(pairs(rows)).recommend(["u3"], k=1)
    assert recs["show_id"].to_list() == ["b"]


# ---- the report ----------------------------------------------------------------------------
def test_report_files_and_extra_models(tmp_path: Path) -> None:
    ds = dataset(planted_events())
    oracle_calls: list[Split] = []

    def oracle(sp: Split) -> pl.DataFrame:  # a "model" that peeks at the test set
        oracle_calls.append(sp)
        return sp.test.select("user_id", "show_id").with_columns(
            rank=pl.int_range(1, pl.len() + 1).over("user_id")
        )

    fixed = pl.DataFrame({"user_id": ["Au0"], "rank": [1], "show_id": ["Bs0"]})
    report = run_peer_evaluation(
        ds,
        {"oracle": oracle, "fixed": fixed},
        tmp_path / "out",
        peers={"MostPop": MostPopular(), "ItemKNN": ItemKNN()},
    )
    assert [r.name for r in report.results] == ["MostPop", "ItemKNN", "oracle", "fixed"]
    assert report.result("oracle").metrics.ndcg == pytest.approx(1.0)
    assert report.result("fixed").metrics.hr == 0.0
    assert report.result("fixed").fit_seconds is None
    assert len(oracle_calls) == 1 and oracle_calls[0].kind == "temporal"
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["coverage.png", "hr.png", "ndcg.png", "recall.png", "report.json", "report.md"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| oracle | 1.000 | 1.000 | 1.000 (1.000–1.000) |" in md
    assert f"test users: {report.split['test_users']}" in md
    data = report.to_json()
    assert data["split"]["kind"] == "temporal"
    assert data["models"][2]["ndcg@10"] == pytest.approx(1.0)


def test_ablation_table_scores_each_variant_against_the_full_fusion(
    hand_split: Split, tmp_path: Path
) -> None:
    """u1 will watch c, d; u2 b; u3 f: a variant that lists them scores 1, one that lists
    nothing they watch scores 0, and the change is against "all members"."""

    def topk(rows: list[tuple[str, str]]) -> pl.DataFrame:
        return pl.DataFrame(
            {"user_id": [u for u, _ in rows], "rank": [1] * len(rows)}
            | {"show_id": [s for _, s in rows]},
            schema={"user_id": pl.String, "rank": pl.Int32, "show_id": pl.String},
        )

    half = topk([("u1", "c"), ("u2", "a"), ("u3", "a")])
    right = topk([("u1", "c"), ("u2", "b"), ("u3", "f")])
    wrong = topk([("u1", "a"), ("u2", "a"), ("u3", "a")])
    variants = {"all members": half, "without x": wrong, "x alone": right}
    table = ablation_table({"ensemble": variants}, hand_split, MetricConfig(k=1))
    assert table is not None
    by = {r["variant"]: r for r in table.iter_rows(named=True)}
    assert by["x alone"]["hr"] == 1.0 and by["without x"]["hr"] == 0.0
    assert by["all members"]["delta"] == 0.0
    assert by["without x"]["delta"] == pytest.approx(-by["all members"]["ndcg"])
    report = score_peers(dataset(planted_events()), peers={"MostPop": MostPopular()})
    report.ablation = table
    md = markdown(report)
    assert "| tvrec (ensemble) | x alone | 1.000 (1.000–1.000) | 1.000 |" in md
    assert report.to_json()["ablation"][0]["variant"] == "all members"
    written = {p.name for p in write_report(report, tmp_path / "out")}
    assert "ablation.png" in written
    assert '"ablation"' in (tmp_path / "out" / "report.json").read_text()
    assert ablation_table({}, hand_split, MetricConfig()) is None


# ---- accuracy by history length -----------------------------------------------------------
HISTORY = {"s1": 2, "s2": 3, "m1": 5, "l1": 41, "l2": 60}  # user -> training pairs; none 11-40


@pytest.fixture()
def history_split() -> Split:
    """Users with 2, 3 (band 1-3), 5 (4-10), 41 and 60 (41+) training pairs; each will watch
    one show of their own, "t_<user>"."""
    train = pairs([(u, f"c{i}") for u, n in HISTORY.items() for i in range(n)])
    test = pairs([(u, f"t_{u}") for u in HISTORY])
    return Split(train=train, test=test, kind="random")


def hits_for(users: list[str]) -> pl.DataFrame:
    """A top-k table that finds the test show of `users` (l2's at rank 2) and misses the rest."""
    rows = [(u, 1, f"t_{u}" if u in users and u != "l2" else "x") for u in HISTORY]
    rows += [("l2", 2, "t_l2")] if "l2" in users else []
    return pl.DataFrame(rows, schema=["user_id", "rank", "show_id"], orient="row")


def test_history_bands_known_values(history_split: Split) -> None:
    """Only the long histories are hit: HR 0 for 1-3 and 4-10, 1 for 41+; 11-40 is empty."""
    from tvrec.jobs.evaluation.metrics import HISTORY_BANDS, evaluate_by_history

    bands = evaluate_by_history(hits_for(["l1", "l2"]), history_split)
    assert [(b.low, b.high) for b in bands] == list(HISTORY_BANDS)
    assert [b.label for b in bands] == ["1-3", "4-10", "11-40", "41+"]
    assert [b.users for b in bands] == [2, 1, 0, 2]
    assert [b.hr for b in bands] == [0.0, 0.0, None, 1.0]
    assert bands[3].ndcg == pytest.approx((1 + 1 / math.log2(3)) / 2)  # l1 at 1, l2 at 2
    assert bands[2].to_json() == {
        "band": "11-40", "min_events": 11, "max_events": 40, "users": 0,
        "hr@10": None, "ndcg@10": None,
    }  # fmt: skip
    # the bands split the overall per-user scores: user-weighted, they average back to them
    overall = evaluate_topk(hits_for(["l1", "l2"]), history_split)
    weighted = sum(b.users * (b.ndcg or 0.0) for b in bands) / overall.users
    assert weighted == pytest.approx(overall.ndcg)


def test_history_bands_in_report(history_split: Split, tmp_path: Path) -> None:
    """Every model and peer gets the slice in report.json, and report.md one table of it: a
    model that hits only the short histories scores 1 there and 0 above, "–" where no users."""
    ds = dataset(pl.concat([history_split.train, history_split.test]), timed=False)
    extra = {"short": hits_for(["s1", "s2"])}
    report = score_peers(ds, extra, peers={"MostPop": MostPopular()}, sp=history_split)
    short = report.result("short").by_history
    assert short is not None and [b.hr for b in short] == [1.0, 0.0, None, 0.0]
    assert report.result("MostPop").by_history is not None
    data = report.to_json()["models"]
    assert [m["model"] for m in data] == ["MostPop", "short"]
    assert [b["users"] for b in data[1]["by_history"]] == [2, 1, 0, 2]
    assert data[1]["by_history"][0]["hr@10"] == 1.0
    md = markdown(report)
    header = (
        "| model | HR@10 1-3 (n=2) | NDCG@10 1-3 | HR@10 4-10 (n=1) | NDCG@10 4-10 "
        "| HR@10 11-40 (n=0) | NDCG@10 11-40 | HR@10 41+ (n=2) | NDCG@10 41+ |"
    )
    assert "By history length:" in md and header in md
    assert "| short | 1.000 | 1.000 | 0.000 | 0.000 | – | – | 0.000 | 0.000 |" in md
    assert "\n| MostPop | " in md.split("By history length:")[1]
    write_report(report, tmp_path)
    assert '"by_history"' in (tmp_path / "report.json").read_text()


# ---- the real benchmark ----------------------------------------------------------------------
@pytest.mark.slow
def test_movielens_matches_the_outside_benchmark(tmp_path: Path) -> None:
    from tvrec.pipelines.adapters import load_raw
    from tvrec.pipelines.contract import canonicalize

    path = DATASETS / "movielens-100k"
    if not path.is_dir():
        pytest.skip(f"shared dataset not available at {path}")
    ds = canonicalize(load_raw(path, "movielens-100k"))
    peers = {"MostPop": MostPopular(), "ItemKNN": ItemKNN(), "EASE": EASE()}
    report = run_peer_evaluation(ds, out_dir=tmp_path, peers=peers)
    assert report.split["kind"] == "temporal"
    assert report.result("EASE").metrics.ndcg == pytest.approx(0.211, abs=0.03)
    assert report.result("MostPop").metrics.ndcg < report.result("ItemKNN").metrics.ndcg


def test_few_shot_asking_for_more_users_than_there_are_says_so(tmp_path: Path) -> None:
    """`--few-shot 1000` on eight users, one of them with more than five pairs: the one is
    held out and the report says it was not the thousand asked (it was silent)."""
    import json

    from typer.testing import CliRunner

    from tvrec.jobs.cli import app

    data = tmp_path / "data"
    data.mkdir()
    shows = "".join(f"s{i},Show {i},Drama,A show\n" for i in range(1, 9))
    (data / "shows.csv").write_text("show_id,title,genres,description\n" + shows)
    pairs = [(1, s) for s in range(1, 9)] + [(u, s) for u in range(2, 9) for s in (u - 1, u)]
    events = "".join(
        f"u{u},s{s},2024-01-{n % 28 + 1:02d}T00:00:00Z\n" for n, (u, s) in enumerate(pairs)
    )
    (data / "events.csv").write_text("user_id,show_id,event_timestamp\n" + events)
    args = ["evaluate", "--data", str(data), "--models", "ease", "--few-shot", "1000", "--json"]
    res = CliRunner().invoke(app, [*args, "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["split"]["few_shot"]["users"] == 1
    note = "few-shot: 1 of the 1,000 users asked held out: only 1 have more than 5 watched pairs"
    assert note in report["notes"], report["notes"]
