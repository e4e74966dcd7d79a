"""The ensemble (models/ensemble.py): on the small synthetic world, trained as of mid-September
and scored on the four weeks after, the fusion ranks the held-out watches better than any of
its members alone; its confidence separates hits from misses; it trains only on a
window its members did not see; a member that fails or scores non-finite is left out and the
rest still serve; and the two-stage precompute publishes `confidence` and `because`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from real_data import SplitRun
from typer.testing import CliRunner

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.cli import app
from tvrec.models import ensemble as ens
from tvrec.models.ensemble import EnsembleModel, member_features
from tvrec.models.runtime import Runtime
from tvrec.pipelines.errors import ConfigError, DataError
from tvrec.pipelines.model_inputs import TrainingData
from tvrec.pipelines.synthetic import GENRE_FAMILIES, PlantedTruth
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()

# The fusion learns from the weeks before the cut what predicts the next weeks; scored on a
# horizon like its window. (Across the planted December rise it is not: there, recent
# popularity, strong in the window, misleads it; the temporal model's forecast is what sees it.)
CUT = datetime(2025, 9, 15, tzinfo=UTC)
END = datetime(2025, 10, 15, tzinfo=UTC)
SETTINGS = {"epochs": 10, "candidates": 100}


def _as_of(data: TrainingData, cut: datetime) -> TrainingData:
    frame = data.frame[data.frame["event_timestamp"] < pd.Timestamp(cut)]
    return dataclasses.replace(data, frame=frame.reset_index(drop=True), as_of=cut, parts=())


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData]) -> TrainingData:
    return inputs_of("ensemble")


@pytest.fixture(scope="module")
def fitted(data: TrainingData, one_torch_thread: None) -> EnsembleModel:
    model = EnsembleModel.create(Runtime.cpu(), SETTINGS)
    with Runtime.cpu().training(1):
        model.fit(_as_of(data, CUT))
    return model  # type: ignore[return-value]


@pytest.fixture(scope="module")
def after(data: TrainingData, fitted: EnsembleModel) -> dict[str, set[int]]:
    """Each trained user's first watches in the six weeks after the cut (show rows)."""
    row = {s: i for i, s in enumerate(fitted.show_ids)}
    later = data.positives()
    later = later[
        (later["event_timestamp"] >= pd.Timestamp(CUT))
        & (later["event_timestamp"] < pd.Timestamp(END))
    ]
    later = later[later["user_id"].isin(set(fitted.histories)) & later["show_id"].isin(row)]
    return {u: {row[s] for s in g} for u, g in later.groupby("user_id")["show_id"]}


def _ndcg(top: np.ndarray, users: list[str], truth: dict[str, set[int]]) -> float:
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    values = []
    for u, row in zip(users, top, strict=True):
        gains = np.array([s in truth[u] for s in row], dtype=float)
        values.append((gains * discount).sum() / discount[: min(len(truth[u]), len(row))].sum())
    return float(np.mean(values))


def test_fusion_beats_every_member_alone(fitted: EnsembleModel, after: dict[str, set[int]]) -> None:
    users = sorted(after)
    members = fitted.served
    assert members is not None
    candidates = members.retrieve(users, fitted.config.candidates)  # (u, N)
    fused = _ndcg(fitted.rerank(users, candidates, 10).rows, users, after)
    alone = {}
    for name, scores in members.scores(users, candidates).items():
        order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        alone[name] = _ndcg(np.take_along_axis(candidates, order, 1), users, after)
    best = max(alone.values())
    # measured: fused 0.373; item-kNN 0.303, EASE 0.285, recent 0.289, popularity 0.100
    assert fused > 1.1 * best, (fused, alone)


def test_the_ablation_hides_each_member_and_ranks_by_each_alone(
    fitted: EnsembleModel, after: dict[str, set[int]]
) -> None:
    users = sorted(after)
    members = fitted.served
    assert members is not None
    variants = fitted.ablation(users, 10)
    names = fitted.names
    assert set(variants) == {"all members", *(f"without {m}" for m in names)} | {
        f"{m} alone" for m in names
    }
    retrieved = members.retrieve(users, fitted.config.candidates)  # (u, N)
    assert (variants["all members"] == fitted.rerank(users, retrieved, 10).rows).all()
    candidates = fitted.served_candidates(users)  # (u, N + E): the linked shows too, -1 padded
    for name, scores in members.scores(users, np.where(candidates >= 0, candidates, 0)).items():
        scores = np.where(candidates >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        assert _ndcg(variants[f"{name} alone"], users, after) == pytest.approx(
            _ndcg(np.take_along_axis(candidates, order, 1), users, after)
        )
    # hiding a member changes what is served, and the fusion of all of them is the best
    # (measured: all 0.373; without one 0.31-0.37)
    full = _ndcg(variants["all members"], users, after)
    for m in names:
        assert (variants[f"without {m}"] != variants["all members"]).any(), m
        assert _ndcg(variants[f"{m} alone"], users, after) < full


def test_confidence_separates_hits_from_misses(
    fitted: EnsembleModel, after: dict[str, set[int]]
) -> None:
    users = sorted(after)
    members = fitted.served
    assert members is not None
    out = fitted.rerank(users, members.retrieve(users, 100), 10)
    assert ((out.confidence >= 0) & (out.confidence <= 1)).all()
    assert set(out.because.ravel()) <= set(fitted.names)
    hits = np.array([[s in after[u] for s in row] for u, row in zip(users, out.rows, strict=True)])
    sure = out.confidence >= np.median(out.confidence)
    assert hits[sure].mean() > hits[~sure].mean()


def test_calibrated_confidence_is_the_chance_of_a_hit(
    fitted: EnsembleModel, after: dict[str, set[int]]
) -> None:
    """The published confidence, calibrated on the window, is the chance a recommendation is
    watched: near the hit rate of the six weeks after the cut on average and place by place,
    and it orders hits better than the share of draws keeping a show in the top ten."""
    from tvrec.jobs.evaluation.confidence import auc

    users = sorted(after)
    members = fitted.served
    assert members is not None and fitted.calibration is not None
    candidates = members.retrieve(users, 100)
    out = fitted.rerank(users, candidates, 10)
    hits = np.array([[s in after[u] for s in row] for u, row in zip(users, out.rows, strict=True)])
    fitted.calibration, calibration = None, fitted.calibration
    try:
        stay = fitted.rerank(users, candidates, 10).confidence
    finally:
        fitted.calibration = calibration
    assert ((out.confidence > 0) & (out.confidence < 1)).all()
    # measured (89 users, 58 hits in 890): mean confidence 0.081 against a hit rate of 0.065;
    # places 1-3 0.125 against 0.138, places 8-10 0.037 against 0.034; AUC 0.637 against the
    # draws' 0.572 (among recommendations at the same place 0.525 against 0.516: too few hits
    # here; anime's held-out part: docs/benchmarks.md)
    assert abs(out.confidence.mean() - hits.mean()) < 0.03
    top, bottom = out.confidence[:, :3].mean(), out.confidence[:, 7:].mean()
    assert abs(top - hits[:, :3].mean()) < 0.05 and abs(bottom - hits[:, 7:].mean()) < 0.03
    assert top > 2 * bottom
    calibrated, stability = (
        auc(out.confidence.ravel(), hits.ravel()),
        auc(stay.ravel(), hits.ravel()),
    )
    assert calibrated is not None and stability is not None
    assert calibrated > 0.62 and calibrated > stability + 0.04, (calibrated, stability)


def test_the_confidence_says_its_horizon(fitted: EnsembleModel, data: TrainingData) -> None:
    """Labelled by the window's watches, the confidence is the chance of a watch within the
    window's span (the last tenth of the watches before the cut: about a fortnight here); the
    manifest says so for `tvrec query` to print."""
    from tvrec.models.ease import held_out

    assert fitted.manifest is not None
    means = fitted.manifest.metrics["confidence_means"]
    found = re.fullmatch(r"the chance the show is watched within (\d+) days", means)
    assert found, means
    pos = _as_of(data, CUT).positives()
    held = held_out(pos, fitted.config.window_share, fitted.config.seed)
    span = (pd.Timestamp(CUT) - pos.loc[held, "event_timestamp"].min()).total_seconds() / 86_400
    assert abs(int(found[1]) - span) <= 1, (means, span)
    untimed = fitted._confidence_means(timed=False, window_s=0.0)
    assert "were 10% of their watches still to come" in untimed, untimed
    fitted.calibration, calibration = None, fitted.calibration
    try:
        assert "noisy draws keeping the show in the top 10" in fitted._confidence_means(True, 0.0)
    finally:
        fitted.calibration = calibration


def test_confidence_is_a_place_in_the_top_ten_whatever_k_is_served(
    fitted: EnsembleModel, after: dict[str, set[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncalibrated (`calibrate = false`): a published top 50 once gave nearly all of its first
    30 a confidence of 1.0 (the share of draws keeping each in the top 50): it is the share
    keeping it in the top `confidence_k` (10), the same for a top 10 and a top 30, and it
    falls with the rank."""
    monkeypatch.setattr(fitted, "calibration", None)
    users = sorted(after)
    members = fitted.served
    assert members is not None
    candidates = members.retrieve(users, 100)
    ten, thirty = fitted.rerank(users, candidates, 10), fitted.rerank(users, candidates, 30)
    assert (thirty.rows[:, :10] == ten.rows).all()
    assert np.allclose(thirty.confidence[:, :10], ten.confidence)
    by_rank = thirty.confidence.mean(0)  # (30,)
    first, tenth, past = by_rank[:3].mean(), by_rank[7:10].mean(), by_rank[20:].mean()
    # measured: first three 1.0, eighth to tenth 0.75, 21st to 30th 0.0001
    assert first > 0.95 and tenth < 0.9 and past < 0.05, by_rank.round(3)


def test_members_never_see_the_window(data: TrainingData) -> None:
    """The fusion's labels come from the window; the members it learns from were fitted on the
    positives before it (a timed log: every one of them earlier than every window event). The
    new users it also learns from are in neither: held out of every member, each is served
    from their first five events and labelled by the rest; the cold shows (held back as if
    new) are in no member's events either, only in the window's."""
    model = EnsembleModel.create(Runtime.cpu(), SETTINGS | {"new_users": 500})
    positives = _as_of(data, CUT).positives()
    before, window, new, cold = model._cut(positives)  # type: ignore[attr-defined]
    assert len(cold) >= 2 and set(cold) <= set(positives["show_id"])  # 2 % of the window's
    assert not set(cold) & set(before["show_id"])
    assert before["event_timestamp"].max() < window["event_timestamp"].min()
    assert len(window) >= 0.05 * len(positives)
    pairs = set(zip(before["user_id"], before["show_id"], strict=True))
    assert not pairs & set(zip(window["user_id"], window["show_id"], strict=True))
    assert 20 <= len(new.users) <= 0.1 * positives["user_id"].nunique() + 1  # window_share
    assert not set(new.users) & (set(before["user_id"]) | set(window["user_id"]))
    assert (new.support.groupby("user_id").size() == 5).all()
    first = new.support.groupby("user_id")["event_timestamp"].max()
    rest = new.query.groupby("user_id")["event_timestamp"].min()
    assert (first <= rest[first.index]).all()


def test_a_failing_member_is_left_out_and_the_rest_serve(
    data: TrainingData, monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("item-kNN broken on purpose")

    def unreadable(*args: object, **kwargs: object) -> None:
        raise KeyError("show_text__text_embedding")

    monkeypatch.setattr(ens, "cosine_knn", broken)
    monkeypatch.setattr(ens.ShowProfiles, "of", unreadable)
    model = EnsembleModel.create(Runtime.cpu(), {"epochs": 2, "candidates": 50})
    metrics = model.fit(_as_of(data, CUT))
    assert "itemknn" not in metrics["members"] and "profile" not in metrics["members"]
    assert "broken on purpose" in metrics["members_left_out"]["itemknn"]
    assert "show_text__text_embedding" in metrics["members_left_out"]["profile"]
    assert "release" in metrics["members"]  # the rest, content-read ones included, serve
    assert "itemknn left out" in metrics["member_notes"]  # what `tvrec train` prints
    users = model.known_users()[:20]
    out = model.rerank(users, model.served.retrieve(users, 50), 10)  # type: ignore[union-attr]
    assert np.isfinite(out.scores).all() and "itemknn" not in set(out.because.ravel())


def test_a_model_member_trains_once_and_serves_advanced_to_the_as_of(
    built_workdir: Workdir, tmp_path: Path, one_torch_thread: None
) -> None:
    """With `advance` a model member is trained once, before the window, and
    served moved to the as-of; its own stage did not run, so the ensemble hands it on to be
    published under its name. The shows held back at the cut have no trained vector: the
    member (the temporal model: `ranks_new_shows` False) has no score there, though they
    have events by the as-of; a save and load keeps that. Without `advance` and without a
    published copy, the member is left out with what to run."""
    from tvrec.jobs.train import training_data

    small = {"epochs": 1, "dim": 16, "layers": 1, "seasonal_epochs": 1}
    settings = {"epochs": 2, "candidates": 50, "models": ["temporal"], "advance": True}
    model = EnsembleModel.create(Runtime.cpu(), settings)
    data = dataclasses.replace(training_data(built_workdir, model), checkpoint_dir=None)
    given = data.members["temporal"]
    assert given.published is None and given.data is not None
    member_data = dataclasses.replace(given.data, checkpoint_dir=None)
    data.members["temporal"] = dataclasses.replace(given, params=small, data=member_data)
    with Runtime.cpu().training(1):
        metrics = model.fit(data)
    assert "temporal" in metrics["members"] and "temporal_epoch_seconds" in metrics
    served = model.fitted(model.served)
    assert model.companions() == {"temporal": served.models["temporal"]}
    manifest = served.models["temporal"].fitted(served.models["temporal"].manifest)
    assert manifest.as_of == data.as_of.isoformat() > manifest.metrics["trained_as_of"]
    cold = model._cut(data.positives())[3]  # type: ignore[attr-defined]
    rows = np.array([model.show_ids.index(s) for s in cold])
    assert len(rows) >= 2 and served.popularity[rows].all()  # events by the as-of
    untrained = served.untrained["temporal"]
    assert untrained[rows].all() and untrained.mean() < 0.2
    known = np.flatnonzero(~untrained & (served.popularity > 0))[:10]
    users = model.known_users()[:5]
    scores = served.scores(users, np.tile(np.r_[rows, known], (5, 1)))["temporal"]
    assert np.isnan(scores[:, : len(rows)]).all() and np.isfinite(scores[:, len(rows) :]).all()
    model.save(tmp_path / "ensemble")
    loaded = EnsembleModel.load(tmp_path / "ensemble")
    np.testing.assert_array_equal(loaded.served.untrained["temporal"], untrained)  # type: ignore[union-attr]

    kept = EnsembleModel.create(Runtime.cpu(), settings | {"epochs": 1, "advance": False})
    metrics = kept.fit(data)
    assert "temporal" not in metrics["members"]
    assert "tvrec train --stage temporal" in metrics["members_left_out"]["temporal"]


@pytest.fixture(scope="module")
def graph_member(built_workdir: Workdir) -> TrainingData:
    """The graph model's inputs as a member's (its graph keeps the events it was built from)."""
    from tvrec.jobs.train import training_data
    from tvrec.models.graph import GraphModel

    data = training_data(built_workdir, GraphModel, as_member=True)
    return dataclasses.replace(data, checkpoint_dir=None)


def test_the_graph_member_reads_the_graph_before_the_window(
    graph_member: TrainingData, inputs_of: Callable[[str], TrainingData]
) -> None:
    """The graph model as a member, at the fusion's cut: its graph holds only the pairs it
    trains on (no window pair, new user or cold show), their events before the cut, and the
    co-watch pairs those events alone form (min_users users watching both); the catalogue's
    relations as at the as-of. The graph model's own stage keeps no events (a long log's are
    large), and a graph without them is refused at a cut, not built from nothing."""
    from tvrec.models.graph import GraphModel
    from tvrec.pipelines.graph_inputs import COWATCH, WATCHED

    data = _as_of(graph_member, CUT)  # the graph stays the as-of's
    model = EnsembleModel.create(Runtime.cpu(), SETTINGS | {"new_users": 50})
    _, window, new, cold = model._cut(data.positives())  # type: ignore[attr-defined]
    cut = datetime.fromtimestamp(ens._seconds(window["event_timestamp"]).min(), UTC)
    frame = ens._before(data.frame, window, cut, set(new.users), set(cold))
    graph = GraphModel.at_cut(data, frame, cut).graph
    users, shows = graph["user"].ids, graph["show"].ids
    src, dst = graph[WATCHED].edge_index.numpy()
    edges = set(zip(np.asarray(users)[src], np.asarray(shows)[dst], strict=True))
    assert edges == set(zip(frame["user_id"], frame["show_id"], strict=True))
    assert not {u for u, _ in edges} & set(new.users) and not {s for _, s in edges} & set(cold)
    assert not edges & set(zip(window["user_id"], window["show_id"], strict=True))
    # co-watch: exactly the pairs two users of `frame` watched both of
    watched = frame.groupby("user_id")["show_id"].apply(lambda s: sorted(set(s)))
    counts: dict[tuple[str, str], int] = {}
    for seen in watched:
        for i, a in enumerate(seen):
            for b in seen[i + 1 :]:
                counts[(a, b)] = counts.get((a, b), 0) + 1
    a, b = graph[COWATCH].edge_index.numpy()
    pairs = {tuple(sorted((shows[i], shows[j]))) for i, j in zip(a, b, strict=True)}
    assert pairs == {p for p, n in counts.items() if n >= 2}
    assert len(pairs) < data.graph[COWATCH].edge_index.shape[1] // 2  # the window's are gone
    genre = ("show", "has_genre", "genre")
    assert torch.equal(graph[genre].edge_index, data.graph[genre].edge_index)
    own = inputs_of("graph")
    assert getattr(own.graph, "events", None) is None
    with pytest.raises(ValueError, match="without its events"):
        GraphModel.at_cut(own, frame, cut)


def test_the_graph_model_is_a_member_trained_before_the_window_and_advanced(
    graph_member: TrainingData,
    inputs_of: Callable[[str], TrainingData],
    tmp_path: Path,
    one_torch_thread: None,
) -> None:
    """With `models = ["graph"]` advanced, the graph model is trained on the graph before
    the window, fused, and served on the as-of's graph with its trained weights: every
    user of the as-of scored (those it never saw from their watched shows), its vectors
    those of the as-of's edges."""
    from tvrec.pipelines.model_inputs import MemberInputs

    data = _as_of(inputs_of("ensemble"), CUT)
    graph_data = _as_of(graph_member, CUT)  # the graph stays the as-of's
    small = {"dim": 16, "epochs": 1, "min_steps": 20, "batch_size": 256}
    data = dataclasses.replace(
        data, members={"graph": MemberInputs(graph_data, small)}, checkpoint_dir=None
    )
    settings = {"epochs": 2, "candidates": 50, "models": ["graph"], "advance": True}
    model = EnsembleModel.create(Runtime.cpu(), settings)
    with Runtime.cpu().training(1):
        metrics = model.fit(data)
    assert "graph" in metrics["members"], metrics["members_left_out"]
    served = model.fitted(model.served).models["graph"]
    assert served.user_ids == list(graph_data.graph["user"].ids)
    manifest = served.fitted(served.manifest)
    assert manifest.as_of == data.as_of.isoformat() > manifest.metrics["trained_as_of"]
    new_users = model._cut(data.positives())[2].users[:20]  # type: ignore[attr-defined]
    vectors = served.user_embeddings(new_users)  # never in the member's graph at the cut
    assert np.isfinite(vectors).all() and (np.abs(vectors[:, :-1]).sum(1) > 0.5).all()
    assert np.unique(vectors.round(4), axis=0).shape[0] == len(new_users)
    assert model.companions() == {"graph": served}
    model.save(tmp_path / "ensemble")
    loaded = EnsembleModel.load(tmp_path / "ensemble").served.models["graph"]  # type: ignore[union-attr]
    np.testing.assert_allclose(loaded.user_embeddings(new_users), vectors, rtol=1e-6)


def test_advance_names_members_or_all_or_none() -> None:
    """`advance`: a list of model members (by default the temporal model alone, MLTA served
    from its own stage), `true` for every member, `false` for none; a name that is no member
    is refused, naming it."""
    config = ens.EnsembleConfig
    assert config(advance=True).advance == config().models
    assert config(models=["temporal"], advance=True).advance == ["temporal"]
    assert config(advance=False).advance == []
    assert config(advance=["temporal"]).advance == ["temporal"] == config().advance
    assert config(models=["meta"]).advance == []  # the default's temporal is no member there
    assert config(models=["meta", "graph"], advance=["graph"]).advance == ["graph"]
    with pytest.raises(ValueError, match=r"advance names \['graph'\]"):
        config(advance=["graph"])


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("members", ["eas", "itemknn"]),
        ("models", ["temporl"]),
        ("content", "multimodl"),
        ("new_user_default", "mta"),
        ("models", ["ensemble"]),  # the ensemble cannot fuse itself
    ],
)
def test_a_misspelt_name_is_refused_not_left_out(setting: str, value: object) -> None:
    """A member, model, content space or new-user ranker that does not exist is refused where
    the setting enters, naming it and the choices, rather than silently dropped from the
    fusion (a typo in tvrec.toml would otherwise change what is served without a word)."""
    with pytest.raises(ValueError, match=rf"{setting}: unknown .*; choose from .*ease"):
        ens.EnsembleConfig(**{setting: value})
    ens.EnsembleConfig(new_user_default="graph")  # registered, no member: the fusion ranks
    ens.EnsembleConfig(content=None)  # EASE-TV's item-item space


def test_a_window_with_nothing_to_learn_is_a_clear_error(data: TrainingData) -> None:
    """A log so thin that no window user's held-out show is among the candidates: a DataError
    that says what to change, not numpy's error from stacking nothing."""
    first = data.frame.sort_values("event_timestamp").groupby("user_id").head(1)
    thin = dataclasses.replace(data, frame=first.reset_index(drop=True), parts=())
    model = EnsembleModel.create(Runtime.cpu(), {"epochs": 1, "models": []})
    with pytest.raises(DataError, match=r"nothing to learn from.*window_share"):
        model.fit(thin)


def test_preflight_refuses_before_training_what_fit_would_refuse(data: TrainingData) -> None:
    """`preflight` (asked by the nightly job before any model trains) is fit's own cut on a
    timed log: the world passes, each user's first show alone (the log fit refuses above)
    is refused. On an untimed log the window is a draw over rows, so it refuses only when no
    draw could hold a user: nobody but the drawn new users has two shows."""
    positives = data.positives()
    EnsembleModel.preflight(positives, {})
    thin = positives.groupby("user_id").head(1)
    with pytest.raises(DataError, match=r"last 10% of the [\d,]+ watched pairs by time"):
        EnsembleModel.preflight(thin, {})
    untimed = positives.assign(event_timestamp=positives["event_timestamp"].min())
    EnsembleModel.preflight(untimed, {})
    with pytest.raises(DataError, match=r"a seeded 10% of the [\d,]+ watched pairs"):
        EnsembleModel.preflight(untimed.groupby("user_id").head(1), {})
    counts = untimed["user_id"].value_counts()
    one = untimed[untimed["user_id"] == counts.index[0]]  # over `support` shows: drawn as new
    with pytest.raises(DataError, match=r"\(1 user in all"):
        EnsembleModel.preflight(one, {})
    light = counts.index[counts.between(2, 5)][0]  # never drawn as new: it can be in it
    EnsembleModel.preflight(pd.concat([one, untimed[untimed["user_id"] == light]]), {})


def test_recent_days_is_one_of_the_windows_it_counts() -> None:
    with pytest.raises(ConfigError, match="recent_days"):
        EnsembleModel.create(Runtime.cpu(), {"recent_days": 14})


def test_non_finite_scores_are_masked_and_weights_renormalise() -> None:
    scores = {"a": np.array([[1.0, 2.0, np.nan]]), "b": np.array([[0.5, np.inf, 0.1]])}
    feats, present = member_features(scores, ["a", "b", "c"])
    assert present.tolist() == [[[True, True, False], [True, False, False], [False, True, False]]]
    assert np.isfinite(feats).all()


def test_tied_scores_share_a_rank() -> None:
    """Among new shows every co-watching score is 0: their rank feature must not tell them
    apart by position."""
    feats, _ = member_features({"a": np.array([[0.0, 0.0, 0.0, 1.0]])}, ["a"])
    np.testing.assert_allclose(feats[0, :, 0, 1], np.log1p([1, 1, 1, 0]), rtol=1e-6)


def test_fusion_attention_equals_keys_and_values_on_every_member() -> None:
    """FusionNet applies its keys to the query and its values to the pooled members (b·N rows,
    not b·N·M): the same as keys and values on every member's hidden vector, a row with no
    member present included."""
    torch.manual_seed(0)
    net = ens.FusionNet(4, ens.EnsembleConfig(dim=8, heads=2))
    for p in net.parameters():  # off the zero initialisation of the heads' last layer
        torch.nn.init.normal_(p, std=0.5)
    context, members = torch.randn(3, 5, ens.N_CONTEXT), torch.randn(3, 5, 4, ens.N_MEMBER_FEATURES)
    present = torch.rand(3, 5, 4) > 0.3
    present[0, 0] = False
    logits, log_var, weights = net(context, members, present)

    query = net.context_arch(context)
    hidden = torch.tanh(net.member_arch(members) + net.member_embedding(torch.arange(4)))
    att = torch.einsum("bnd,bnmd->bnm", query, net.keys(hidden)) / np.sqrt(8)
    expected = torch.nan_to_num(att.masked_fill(~present, float("-inf")).softmax(-1))
    attended = torch.einsum("bnm,bnmd->bnd", expected, net.values(hidden))
    out = net.heads(torch.cat([query, attended], -1))
    fused = (expected * members[..., 0]).sum(-1, keepdim=True)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(logits, fused + out[..., :2])
    torch.testing.assert_close(log_var, out[..., 2])
    assert weights[0, 0].sum() == 0


@pytest.fixture(scope="module")
def fitted_without_copies(
    data: TrainingData, truth: PlantedTruth, one_torch_thread: None
) -> tuple[EnsembleModel, list[int]]:
    """The ensemble fitted as if the planted copies and a seeded dozen other shows were new
    (no events at all): the new shows' rows."""
    copies = {b for _, b in truth.near_duplicate_pairs}
    others = sorted(
        set(data.frame["show_id"]) - copies - {a for a, _ in truth.near_duplicate_pairs}
    )
    new = copies | set(np.random.default_rng(0).choice(others, 12, replace=False))
    cut = _as_of(data, CUT)
    frame = cut.frame[~cut.frame["show_id"].isin(new)].reset_index(drop=True)
    model = EnsembleModel.create(Runtime.cpu(), SETTINGS)
    with Runtime.cpu().training(1):
        model.fit(dataclasses.replace(cut, frame=frame))
    return model, sorted(model.show_ids.index(s) for s in new)  # type: ignore[return-value]


def test_new_shows_of_the_users_taste_and_franchise_rank_first_among_new_shows(
    fitted_without_copies: tuple[EnsembleModel, list[int]], truth: PlantedTruth
) -> None:
    """The cold-start path (`tvrec evaluate`'s cold slice: new shows alone are the candidates),
    where every co-watching member scores 0: a user's own taste cluster's new show comes
    first (the profile member reads their content), and a planted copy ("... II", a new
    season) of a show they watched is among their top 3 (the franchise member)."""
    model, new = fitted_without_copies
    row = {s: i for i, s in enumerate(model.show_ids)}
    old = set(range(len(row))) - set(new)  # only the new shows are candidates
    users = model.known_users()[:300]
    top = model.rerank(users, np.tile(new, (len(users), 1)), 1, [old] * len(users)).rows
    cluster = [truth.show_cluster.get(model.show_ids[r]) for r in top[:, 0]]
    own = np.mean([c == truth.user_cluster[u] for u, c in zip(users, cluster, strict=True)])
    assert own > 0.6, own  # measured 0.67 of 286 users; chance 0.11 (the new shows' clusters)
    in_top3 = []
    for original, copy in truth.near_duplicate_pairs:
        fans = [u for u in model.known_users() if row[original] in model.histories[u]][:20]
        top = model.rerank(fans, np.tile(new, (len(fans), 1)), 3, [old] * len(fans)).rows
        in_top3 += (top == row[copy]).any(1).tolist()
    # measured 0.81 of 53 fans, chance 3 / 18. The copy came first for 0.94 of them before
    # the profile and release members, 0.55 with them (0.47 for same-cluster users who did not
    # watch the original): this world does not plant that fans watch the copy more, and the
    # fusion learns to weigh taste and recency among new shows; on anime's cold slice it went
    # 0.221 -> 0.232, MovieLens's 0.139 -> 0.346
    assert np.mean(in_top3) > 0.75, np.mean(in_top3)
    metrics = model.manifest.metrics  # type: ignore[union-attr]
    assert metrics["cold_shows"] >= 2 and metrics["cold_rows"] > 0


def test_a_model_member_without_new_show_signal_is_absent_on_new_shows(
    fitted_without_copies: tuple[EnsembleModel, list[int]],
) -> None:
    """A model member whose new-show vectors are untrained ID rows (the temporal model:
    `ranks_new_shows` False) has no score for a show without events, so the fusion weighs
    the other members there; a model with content (MLTA's genres and platforms) keeps its."""
    import copy

    model, new = fitted_without_copies
    members = copy.copy(model.served)
    assert members is not None
    users = model.known_users()[:5]
    old = [r for r in range(len(model.show_ids)) if members.popularity[r] > 0][:10]
    assert not members.popularity[new].any()  # the new shows: no event at all
    rows = np.tile(np.array(new[:5] + old), (len(users), 1))  # (5, 15) new shows first
    from tvrec.models.meta import MetaModel
    from tvrec.models.temporal import TemporalModel

    assert MetaModel.ranks_new_shows and not TemporalModel.ranks_new_shows
    for says, absent in ((True, 0), (False, 5)):
        member = copy.deepcopy(members.ease)  # a real member, told what it can rank
        member.ranks_new_shows = says  # type: ignore[misc]
        members.models, members.cache = {"member": member}, {}
        got = members.scores(users, rows)["member"]
        assert (~np.isfinite(got)).sum(1).tolist() == [absent] * len(users)
        assert np.isfinite(got[:, 5:]).all()


def test_rerank_pads_short_candidate_lists(fitted: EnsembleModel) -> None:
    user = fitted.known_users()[:1]
    rows = np.full((1, 20), -1)
    rows[0, :3] = [5, 6, 7]
    linked = fitted.served.linked(user, fitted.config.franchise_candidates)  # type: ignore[union-attr]
    extra = set(linked[linked >= 0].tolist()) - {5, 6, 7}
    out = fitted.rerank(user, rows, 10 + len(extra))
    shown = out.rows[0][out.rows[0] >= 0]
    assert set(shown.tolist()) == {5, 6, 7} | extra and (out.rows[0, len(shown) :] == -1).all()


def test_shows_linked_by_title_join_the_candidates_unless_excluded(fitted: EnsembleModel) -> None:
    """A show in the franchise of one the user watched reaches them even when retrieval (EASE's
    co-watching) does not return it: a new season has no co-watching yet."""
    members = fitted.served
    assert members is not None and members.links is not None
    users = fitted.known_users()
    linked = members.linked(users, 5)  # (u, 5)
    i = int(np.flatnonzero(linked[:, 0] >= 0)[0])
    user, show = users[i : i + 1], int(linked[i, 0])
    assert show not in fitted.histories[user[0]]  # history rows
    history = set(fitted.histories[user[0]])
    others = [r for r in range(len(fitted.show_ids)) if r not in history and r not in linked[i]]
    rows = np.array([others[:10]])  # retrieval that missed every linked show
    out = fitted.rerank(user, rows, 20)
    assert show in out.rows[0]
    assert show not in fitted.rerank(user, rows, 20, [{show}]).rows[0]  # e.g. not on air yet


def test_new_users_fold_in_and_are_re_ranked(fitted: EnsembleModel, truth: PlantedTruth) -> None:
    """The few-shot protocol's path through the ensemble: users it never trained on, folded
    in from five shows of one taste cluster, re-ranked in two stages, get that cluster."""
    import copy

    from tvrec.jobs.evaluation.pipeline import few_shot_topk
    from tvrec.jobs.evaluation.splitting import PAIR_COLUMNS, FewShot

    model = copy.deepcopy(fitted)
    rng, rows = np.random.default_rng(0), []
    for cluster in sorted(set(truth.show_cluster.values())):
        ours = [s for s, c in truth.show_cluster.items() if c == cluster and s in model.show_ids]
        for j in range(3):
            for s in rng.choice(ours, 5, replace=False):
                rows.append((f"new-{cluster}-{j}", s, 1.0, CUT - pd.Timedelta(days=3)))
    support = pl.DataFrame(rows, schema=list(PAIR_COLUMNS), orient="row")
    users = sorted(set(support["user_id"]))
    topk = few_shot_topk(model, FewShot(users, support, support.clear(), 5), 10)
    assert topk is not None and topk.group_by("user_id").len()["len"].to_list() == [10] * len(users)
    assert topk.join(support, on=["user_id", "show_id"]).is_empty()  # their five are not offered
    cluster = {u: int(u.split("-")[1]) for u in users}
    pairs = topk.select("user_id", "show_id").iter_rows()
    share = np.mean([truth.show_cluster[s] == cluster[u] for u, s in pairs])
    assert share > 0.6  # measured 0.69 (a random list: 1/8)


def test_a_routed_user_is_also_offered_the_rankers_own_top_shows(fitted: EnsembleModel) -> None:
    """Retrieval is EASE-TV's: for a user with few events whose ranker is a model member,
    that member's own top `ranker_candidates` unseen shows join the candidates (else it
    could only reorder EASE-TV's picks, and ranks worse than alone); a user with more events
    gets none, nor does anyone when the fusion ranks new users."""
    import copy

    model = copy.deepcopy(fitted)
    members = model.fitted(model.served)
    member = copy.deepcopy(members.ease)  # a real scorer as the model member
    members.models, members.cache = {"member": member}, {}
    model.new_user_ranker = "member"
    by_length = sorted(model.known_users(), key=lambda u: len(model.histories[u]))
    few, many = by_length[:3], by_length[-3:]
    most = len(model.histories[few[-1]])  # "few events" up to here
    assert len(model.histories[many[0]]) > most
    model.config = model.config.model_copy(update={"new_user_events": most})
    users = few + many
    retrieved = members.retrieve(users, 5)  # (6, 5): a short retrieval, so the picks differ
    got = model._with_linked(members, users, retrieved)  # type: ignore[attr-defined]
    picks = got[:, -model.config.ranker_candidates :]  # (6, R)
    assert (picks[len(few) :] == -1).all()
    scores = member.user_embeddings(few) @ members.show_vectors("member", member).T
    before = got[:, : -model.config.ranker_candidates]  # retrieved, then linked by title
    for i, u in enumerate(few):
        scores[i, [*model.histories[u], *before[i][before[i] >= 0]]] = -np.inf
        expected = np.argsort(-scores[i], kind="stable")[: model.config.ranker_candidates]
        assert picks[i].tolist() == expected.tolist()
        assert not set(picks[i]) & (set(model.histories[u]) | set(before[i]))
    # more picks asked for than the catalogue has shows (a 30-show catalogue against the
    # default 50; it was a numpy shape error): the same picks first, then -1
    r, n = model.config.ranker_candidates, len(model.show_ids)
    model.config = model.config.model_copy(update={"ranker_candidates": n + 7})
    wide = model._with_linked(members, users, retrieved)[:, -(n + 7) :]  # type: ignore[attr-defined]
    assert (wide[:, n:] == -1).all() and (wide[len(few) :] == -1).all()
    assert wide[: len(few), :r].tolist() == picks[: len(few)].tolist()
    for i, u in enumerate(few):
        shown = wide[i][wide[i] >= 0]
        assert len(set(shown)) == len(shown) and not set(shown) & set(model.histories[u])
    model.new_user_ranker = "fusion"
    plain = model._with_linked(members, users, retrieved)  # type: ignore[attr-defined]
    assert plain.shape[1] == got.shape[1] - r


def _new_user_rows(n: int, gap: float, seed: int = 0) -> ens.Batchable:
    """n new users' rows, 50 candidates each, 3 watched: member 0 scores the watched ones
    `gap` higher (plus noise), members 1 and 2 are loud noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 50), np.float32)
    for row in labels:
        row[rng.choice(50, 3, replace=False)] = 1.0
    feats = np.zeros((n, 50, 3, ens.N_MEMBER_FEATURES), np.float32)
    feats[..., 0, 0] = gap * labels + rng.normal(size=(n, 50))
    feats[..., 1:, 0] = 5 * rng.normal(size=(n, 50, 2))
    t = torch.as_tensor
    return ens.Batchable(
        t(rng.normal(size=(n, 50, ens.N_CONTEXT)).astype(np.float32)), t(feats),
        torch.ones(n, 50, 3, dtype=torch.bool), t(labels), torch.ones(n, 4),
        torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool),
    )  # fmt: skip


def test_new_users_are_ranked_by_a_member_only_where_it_clearly_beats_the_fusion() -> None:
    """The new-user ranker: a member alone replaces the fusion for new users only when it
    beats it on the simulated new users by more than two standard errors."""
    model = EnsembleModel.create(Runtime.cpu(), {"dim": 8})
    model.names = ["ease", "itemknn", "popularity"]
    torch.manual_seed(0)
    model.net = ens.FusionNet(3, model.config).eval()  # untrained: about the members' mean
    chosen, ndcg = model._new_user_ranker(_new_user_rows(300, gap=3.0))  # type: ignore[attr-defined]
    assert chosen == "ease" and ndcg["ease"] > ndcg["fusion"] + 0.2, ndcg
    chosen, ndcg = model._new_user_ranker(_new_user_rows(300, gap=0.0))  # type: ignore[attr-defined]
    assert chosen == "fusion", ndcg  # no member knows anything: nothing to switch to
    assert model._new_user_ranker(None) == ("fusion", {})  # type: ignore[attr-defined]


def test_the_default_new_user_ranker_stays_unless_clearly_beaten() -> None:
    """`new_user_default` (a member) ranks new users unless another beats it by two standard
    errors: a member a shade better on a few users does not take over; one far better does,
    and so does the fusion."""
    model = EnsembleModel.create(Runtime.cpu(), {"dim": 8, "new_user_default": "itemknn"})
    model.names = ["ease", "itemknn", "popularity"]
    torch.manual_seed(0)
    model.net = ens.FusionNet(3, model.config).eval()
    rows = _new_user_rows(40, gap=1.0)
    rows.members[..., 1, 0] = rows.members[..., 0, 0] + 0.5 * torch.randn(40, 50)  # a shade worse
    chosen, ndcg = model._new_user_ranker(rows)  # type: ignore[attr-defined]
    assert chosen == "itemknn" and ndcg["ease"] > ndcg["itemknn"], ndcg
    rows = _new_user_rows(300, gap=3.0)  # itemknn is noise: ease (and the fusion) beat it
    chosen, ndcg = model._new_user_ranker(rows)  # type: ignore[attr-defined]
    assert chosen == "ease" and ndcg["itemknn"] < 0.3 < ndcg["ease"], ndcg
    model.config = model.config.model_copy(update={"new_user_default": "graph"})  # not a member
    assert model._new_user_ranker(_new_user_rows(300, gap=0.0))[0] == "fusion"  # type: ignore[attr-defined]


def test_a_new_users_list_keeps_the_fusions_places_for_new_shows() -> None:
    """The new-user ranker orders the shows with events; the fusion says which places go to
    new shows and orders those (the ranker was chosen on shows with events, and a member
    like MLTA or the temporal model has no score for a new show)."""
    fused = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])  # A..E in the fusion's order
    seen = torch.tensor([[True, False, True, True, False]])  # B and E have no events
    alone = torch.tensor([[1.0, 9.0, 3.0, 2.0, 9.0]])  # the ranker: C, D, A (B, E ignored)
    got = ens.new_user_order(fused, alone, seen)
    assert got.argsort(1, descending=True).tolist() == [[2, 1, 3, 0, 4]]  # C B D A E
    assert sorted(got[0].tolist(), reverse=True) == fused[0].tolist()  # the fusion's scale
    nothing_seen = ens.new_user_order(fused, alone, torch.zeros_like(seen))
    assert torch.equal(nothing_seen, fused)  # all new: the fusion's list
    tie = ens.new_user_order(fused, torch.zeros_like(alone), torch.ones_like(seen))
    assert torch.equal(tie, fused)  # a ranker that ties everything: the fusion's order


def test_a_routed_new_user_gets_the_member_ranking_unless_it_cannot_tell_shows_apart(
    fitted: EnsembleModel, fitted_without_copies: tuple[EnsembleModel, list[int]]
) -> None:
    """Served: a user with at most `new_user_events` events has the shows with events ranked
    by the new-user ranker alone (and `because` names it); a new show among them keeps the
    fusion's place; a longer history is ranked by the fusion; and new shows alone, which a
    co-watching member scores alike, by the fusion too."""
    import copy

    model = copy.deepcopy(fitted)
    model.new_user_ranker = "ease"
    histories = model.served.ease.histories  # type: ignore[union-attr]
    short = [u for u in model.known_users() if 2 <= len(histories[u]) <= 10][:20]
    long = [u for u in model.known_users() if len(histories[u]) > 10][:20]
    assert len(short) == len(long) == 20
    candidates = model.served_candidates(short + long)
    served = model.rerank(short + long, candidates, 10)
    ease = model.served.scores(short, candidates[:20])["ease"]  # type: ignore[union-attr]
    seen = model.served.popularity[served.rows[:20]] > 0  # type: ignore[union-attr]
    assert seen.mean() > 0.8  # mostly shows with events
    for i, user_rows in enumerate(served.rows[:20]):
        ranked = ease[i][[list(candidates[i]).index(r) for r in user_rows[seen[i]]]]
        assert (np.diff(ranked) <= 1e-9).all()  # EASE's own order among them
    assert (served.because[:20][seen] == "ease").all()
    assert "ease" not in set(served.because[:20][~seen])
    assert (served.rows[20:] == fitted.rerank(long, candidates[20:], 10).rows).all()
    # new shows alone (no events: every co-watching score 0), as the cold slice ranks them
    cold_model, new = fitted_without_copies
    routed = copy.deepcopy(cold_model)
    routed.new_user_ranker = "ease"
    few = [u for u in cold_model.known_users() if len(cold_model.histories[u]) <= 10][:20]
    rows, old = np.tile(new, (len(few), 1)), [set(range(len(routed.show_ids))) - set(new)]
    got = routed.rerank(few, rows, 5, old * len(few))
    assert (got.rows == cold_model.rerank(few, rows, 5, old * len(few)).rows).all()
    assert "ease" not in set(got.because.ravel())


# ---- served by the nightly precompute ---------------------------------------------------------
def test_the_demo_serves_the_ensemble_by_default(tmp_path: Path, default_models: None) -> None:
    """`tvrec demo` (a small world) with the default models (all six; short fits here): the
    temporal model and MLTA are members (the temporal model trained once, before the window,
    advanced and published by the ensemble; MLTA trained again there, its own stage's copy
    serving), graph and contrastive published beside them; the
    published user_topk has a confidence in [0, 1] and a leading member on every row, ranks
    dense, and `tvrec query --user` shows both. Similar shows and text queries come from the
    multimodal model's space: planted near-duplicates come first (the demo's own
    similar-shows list starts with its pair), and a genre family's words find that family's
    shows (the demo ends with such a text query)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "tvrec.toml").write_text(
        "[models]\nk = 10\n[models.ensemble]\nepochs = 2\ncandidates = 50\n"
        "[models.temporal]\nepochs = 2\ndim = 16\nlayers = 1\nseasonal_epochs = 1\n"
        "[models.multimodal]\nepochs = 4\n[models.meta]\nepochs = 2\n"
        "[models.graph]\nepochs = 1\nmin_steps = 10\n"
        "[models.contrastive]\nepochs = 2\nuser_epochs = 1\nprior_steps = 20\n"
    )
    world = ["--users", "400", "--shows", "250", "--events", "20000"]
    res = runner.invoke(app, ["demo", *world, "--workdir", str(work)], terminal_width=200)
    assert res.exit_code == 0, res.output
    truth = PlantedTruth.from_json(
        json.loads((work / "sources" / "synthetic" / "truth.json").read_text())
    )
    manifest = json.loads((work / "release" / "model" / "manifest.json").read_text())
    assert manifest["model_name"] == "ensemble"
    assert {"temporal", "meta"} <= set(manifest["metrics"]["members"]), manifest["metrics"]
    assert manifest["metrics"]["similarity_space"] == "multimodal", manifest["metrics"]
    for name in ("temporal", "graph", "contrastive"):  # all six published
        assert (work / "models" / name / "manifest.json").exists(), name
    assert not (work / "checkpoints" / "ensemble").exists()  # removed once published
    copy = truth.near_duplicate_pairs[0][1]
    similar = res.output[res.output.index("shows similar to") :]
    assert similar.index(copy) < similar.index("│ 2 "), similar  # the demo's pair comes first
    assert "shows for the text 'detective murder london'" in res.output

    topk = Catalog(work).read_current("user_topk")
    assert {"confidence", "because"} <= set(topk.columns)
    assert topk["confidence"].is_between(0, 1).all() and topk["because"].null_count() == 0
    assert set(topk["because"]) <= {*ens.MEMBERS, "temporal", "meta"}
    assert (topk.group_by("user_id").agg(pl.col("rank").max())["rank"] == 10).all()
    user = topk["user_id"][0]
    results = _query(work, "--user", user)
    mine = topk.filter(pl.col("user_id") == user).sort("rank")
    assert [r["because"] for r in results] == mine["because"].to_list()
    assert [r["confidence"] for r in results] == pytest.approx(
        mine["confidence"].to_list(), abs=1e-3
    )
    res = runner.invoke(app, ["query", "--user", user, "--workdir", str(work)])
    assert res.exit_code == 0 and "confidence" in res.output and "because" in res.output
    means = manifest["metrics"]["confidence_means"]
    assert "confidence: the chance the show is watched within" in res.output, res.output
    answer = runner.invoke(app, ["query", "--user", user, "--json", "--workdir", str(work)])
    assert json.loads(answer.stdout)["confidence_means"] == means

    pairs = truth.near_duplicate_pairs
    first = [_ids(_query(work, "--show", a, "-k", "1")) == [b] for a, b in pairs]
    assert np.mean(first) >= 0.8, first  # measured: 18 of 20 first
    precision = []
    for cluster in sorted(truth.cluster_genres):
        words = " ".join(GENRE_FAMILIES[cluster].vocabulary[:8])
        top = _ids(_query(work, "--text", words, "-k", "10"))
        precision.append(np.mean([truth.show_cluster.get(s) == cluster for s in top]))
    assert np.mean(precision) > 0.9, precision  # measured: 1.0 (8 families)


def _query(work: Path, *args: str) -> list[dict]:
    res = runner.invoke(app, ["query", *args, "--json", "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["results"]


def _ids(results: list[dict]) -> list[str]:
    return [r["show_id"] for r in results]


# ---- MovieLens-100k, as `tvrec evaluate` runs it (slow) ----------------------------------------
@pytest.mark.slow
def test_movielens_temporal_split(movielens_split: SplitRun) -> None:
    """The temporal model's stage, then the ensemble's, on the benchmark's temporal split (the
    published top-k scored): above popularity over the last 30 days (0.229, the best peer) by
    the issue's 5 %, and above the temporal model alone (0.260)."""
    from tvrec.jobs.evaluation.metrics import evaluate_topk

    sp, pipeline = movielens_split.split, movielens_split.pipeline
    pipeline.model_topk("temporal")(sp)
    topk = pipeline.model_topk("ensemble")(sp)[0]  # (top-k, cold top-k, few-shot top-k)
    metrics = evaluate_topk(topk, sp)
    # measured 0.269 (0.216-0.326) with the franchise member (0.266 before); temporal alone
    # 0.258, RecentPop 0.229 (x 1.05: 0.240)
    assert metrics.ndcg > 0.26, metrics
    # the report's confidence check reads what the model says its confidence means (the
    # chance of a watch within the days the last tenth of the training part's watches span)
    _, means = pipeline.confidences["ensemble"]  # (published top-k, what it means)
    assert means is not None and re.fullmatch(r"the chance .* within \d+ days", means), means


def test_planted_copies_are_linked_to_their_originals_by_title(
    fitted: EnsembleModel, truth: PlantedTruth
) -> None:
    """A planted copy's title is its original's plus " II" or " Revisited": the franchise
    member links the two; two shows drawn at random are rarely linked."""
    members = fitted.served
    assert members is not None and members.links is not None
    row = {s: i for i, s in enumerate(fitted.show_ids)}
    pairs = [(row[a], row[b]) for a, b in truth.near_duplicate_pairs if a in row and b in row]
    copies = np.mean([members.links[a, b] > 0 for a, b in pairs])
    rng = np.random.default_rng(0)
    drawn = rng.integers(0, len(row), size=(2000, 2))
    chance = np.mean([members.links[a, b] > 0 for a, b in drawn if a != b])
    assert copies > 0.9 and chance < 0.02, (copies, chance)  # measured: 6 of 6; 0.009
