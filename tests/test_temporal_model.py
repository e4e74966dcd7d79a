"""TAT-TV, the temporal/seasonal attention model, and forecast quality (MASE).

Known answers on the planted synthetic world (`PlantedTruth`): fitted as of 2025-11-15, the
December shows are forecast to rise in December and fall after; the weekly rhythm the world
plants (WEEKDAY_FACTOR: weekends up) is the learned weekday component; the forecast beats the
seasonal-naive one in MASE on the held-out weeks; a genre of the December shows premieres best
in December. On a planted-chain world (shows watched in a fixed order) next-show accuracy beats
an order-shuffled control. Point in time: no query, popularity or profile sees an event at or
after its own time. Awkward inputs (one-event users, shows without seasonality rows, an
untimed log) train and serve. (Persistence, resume and shapes: test_model_contract.py.)

Thresholds sit just under the measured figure, given in a comment beside each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from real_data import SplitRun

from tvrec.jobs.evaluation.forecast import (
    RECENT_MEAN,
    SEASONAL_NAIVE,
    ForecastWindow,
    daily_views,
    forecast_quality,
    mase_scale,
    recent_mean,
    seasonal_naive,
)
from tvrec.jobs.evaluation.splitting import cut_events
from tvrec.models.base import TrainingData
from tvrec.models.runtime import Runtime
from tvrec.models.temporal import (
    DAY_US,
    N_CELLS,
    WEEKDAYS,
    EventBatch,
    ShowCalendar,
    TemporalConfig,
    TemporalModel,
    TemporalNet,
    feast_state,
    release_timing,
    rows_at,
    seasonal_exposure,
    to_us,
)
from tvrec.pipelines.synthetic import WEEKDAY_FACTOR, PlantedTruth

CUT = datetime(2025, 11, 15, tzinfo=UTC)  # six weeks before the small world's as-of


def _as_of(data: TrainingData, cut: datetime) -> TrainingData:
    """The training data a build as of `cut` would hand in: events before it, no Feast rows."""
    frame = data.frame[data.frame["event_timestamp"] < pd.Timestamp(cut)]
    return dataclasses.replace(
        data, frame=frame.reset_index(drop=True), as_of=cut, content=None, parts=()
    )


def _events(data: TrainingData) -> pl.DataFrame:
    return pl.from_pandas(data.frame[["user_id", "show_id", "event_timestamp"]])


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData]) -> TrainingData:
    return inputs_of(TemporalModel.name)


@pytest.fixture(scope="module")
def november(data: TrainingData, one_torch_thread: None) -> TemporalModel:
    """Fitted as of 2025-11-15 (a year and a half of the world's two years)."""
    model = TemporalModel(TemporalConfig(epochs=10), Runtime.cpu())
    model.fit(_as_of(data, CUT))
    return model


# ---- known answers on the synthetic world -----------------------------------------------------
def test_december_shows_rise_in_december_and_fall_after(
    november: TemporalModel, truth: PlantedTruth
) -> None:
    daily = november.forecast_daily(75)  # 15 Nov 2025 .. 28 Jan 2026
    month = pl.col("day").dt.month()
    per_day = (
        daily.with_columns(
            pl.when(month == 11).then(pl.lit("november")).when(month == 12).then(pl.lit("december"))
            .otherwise(pl.lit("january")).alias("period"),
            pl.col("show_id").is_in(truth.december_shows).alias("december_show"),
        )
        .group_by("december_show", "period")
        .agg(pl.col("views").mean())
    )  # fmt: skip
    views = {(r["december_show"], r["period"]): r["views"] for r in per_day.iter_rows(named=True)}
    rise = views[True, "december"] / views[True, "november"]
    fall = views[True, "december"] / views[True, "january"]
    assert rise > 30.0, rise  # measured 39.4 (planted: interest 0.01 off season, 1 in December)
    assert fall > 35.0, fall  # measured 48.2
    others = views[False, "december"] / views[False, "november"]
    assert 0.7 < others < 1.2, others  # measured 0.88: the others level (December shows
    # draw their sessions from the same evenings)


def test_weekly_rhythm_is_the_weekday_component(november: TemporalModel) -> None:
    factors = november.seasonal_components()["weekday"]
    assert factors["name"].to_list() == list(WEEKDAYS)
    learned = np.log(factors["factor"].to_numpy())
    planted = np.log(WEEKDAY_FACTOR) - np.log(WEEKDAY_FACTOR).mean()
    assert np.corrcoef(learned, planted)[0, 1] > 0.9  # measured 0.98
    weekend, weekdays = learned[5:].mean(), learned[:4].mean()  # Sat/Sun vs Mon..Thu
    assert weekend - weekdays > 0.3, learned  # measured 0.38 (planted 0.42)


def test_forecast_beats_seasonal_naive(november: TemporalModel, data: TrainingData) -> None:
    window = ForecastWindow.of_events(_events(data), CUT, end=data.as_of)
    quality = forecast_quality(window, {"temporal": november.forecast_daily(30)})
    mase = {(r["method"], r["horizon"]): r["mase"] for r in quality.iter_rows(named=True)}
    assert set(quality["season"]) == {365}  # two years of log: the yearly seasonal naive
    # measured MASE, 7 days: 1.10, seasonal naive 1.33, last-30-days mean 1.04 (on a world of
    # 0.1 views per show and day, a 30-day mean is hard to beat a week out); 30 days (half of
    # them in December): 1.02, naive 1.51, last-30-days 1.73
    assert mase["temporal", 7] < 0.9 * mase[SEASONAL_NAIVE, 7], quality
    assert mase["temporal", 30] < 0.75 * mase[SEASONAL_NAIVE, 30], quality
    assert mase["temporal", 30] < 0.65 * mase[RECENT_MEAN, 30], quality  # December ahead


def test_release_timing_of_a_december_genre(november: TemporalModel, truth: PlantedTruth) -> None:
    genres = {s: ["Holiday"] for s in truth.december_shows}
    genres |= {s: ["Regular"] for s in november.show_ids if s not in truth.december_shows}
    table = release_timing(november, genres).sort("genre")
    holiday, regular = table.row(0, named=True), table.row(1, named=True)
    assert holiday["genre"] == "Holiday" and holiday["best_month"] == 12
    assert holiday["month_lift"] > 8.0, holiday  # measured 9.7
    assert regular["month_lift"] < holiday["month_lift"]
    assert regular["best_weekday_name"] in ("Friday", "Saturday", "Sunday"), regular
    assert table["first_week_views"].is_finite().all()


def test_forecast_frames(november: TemporalModel) -> None:
    frame = november.forecast()
    assert frame.columns == [
        "show_id", "as_of", "views_7d", "recent_7d", "growth_7d", "views_30d", "recent_30d",
        "growth_30d",
    ]  # fmt: skip
    assert frame["show_id"].to_list() == november.show_ids
    assert frame["as_of"][0] == CUT
    assert (frame["views_30d"] >= frame["views_7d"]).all() and (frame["views_7d"] >= 0).all()
    expected = (frame["views_7d"] + 1) / (frame["recent_7d"] + 1) - 1
    np.testing.assert_allclose(frame["growth_7d"], expected)
    daily = november.forecast_daily(30)
    assert daily.height == 30 * len(november.show_ids)
    assert daily["day_start"].min() == CUT
    totals = daily.group_by("show_id").agg(pl.col("views").sum()).sort("show_id")
    by_show = frame.sort("show_id")
    np.testing.assert_allclose(totals["views"], by_show["views_30d"], rtol=1e-9)


def test_forecast_of_the_loaded_model(november: TemporalModel, tmp_path: Path) -> None:
    november.save(tmp_path / "model")
    loaded = TemporalModel.load(tmp_path / "model")
    assert loaded.forecast().equals(november.forecast())


def test_user_table_serves_the_same_vectors_until_a_user_folds_in(
    november: TemporalModel, tmp_path: Path
) -> None:
    """`precompute_users` keeps what the attention reads (a request then looks it up); a
    user folded in from new events is read again from them, and a load starts with none."""
    import copy

    model = copy.deepcopy(november)
    users = model.known_users()[:40]
    direct = model.user_embeddings(users)  # (40, dim + 1)
    assert model.precompute_users(users[:30]) == 30
    # 30 read, 10 computed (a batch of other lengths pads differently: float rounding)
    np.testing.assert_allclose(model.user_embeddings(users), direct, atol=1e-5)
    np.testing.assert_allclose(model.user_embeddings(users[5:6] * 3), direct[[5, 5, 5]], atol=1e-5)
    # user 0 re-watches user 1's history: the table must not keep user 0's old vector
    moved = pd.DataFrame(
        {
            "user_id": users[0],
            "show_id": model.histories[users[1]],
            "event_timestamp": pd.to_datetime(model.history_times[users[1]], unit="us", utc=True),
        }
    )
    model.fold_in(moved)
    np.testing.assert_allclose(model.user_embeddings(users[:1]), direct[1:2], atol=1e-5)
    np.testing.assert_allclose(model.user_embeddings(users[2:30]), direct[2:30], atol=1e-5)
    model.save(tmp_path / "model")
    assert TemporalModel.load(tmp_path / "model")._user_table.rows == {}


def test_advance_serves_the_later_as_of_with_the_weights_as_trained(
    november: TemporalModel, data: TrainingData, truth: PlantedTruth
) -> None:
    """`advance` (how the ensemble serves a member trained before its window): advanced to
    the as-of it was trained at, the model serves exactly what the fit left; advanced six
    weeks on (no fine-tuning: `advance_epochs = 0`), the weights stay, users who first
    watched since are served from their history, the show prior follows December's rise,
    and the manifest says both instants."""
    import copy

    same = copy.deepcopy(november)
    same.config = same.config.model_copy(update={"advance_epochs": 0})
    assert same.advance(_as_of(data, CUT))
    np.testing.assert_allclose(same.show_embeddings()[1], november.show_embeddings()[1], atol=1e-5)
    users = november.known_users()[:50]
    np.testing.assert_allclose(
        same.user_embeddings(users), november.user_embeddings(users), atol=1e-5
    )
    later = copy.deepcopy(same)
    full = dataclasses.replace(data, content=None)
    assert later.advance(full)
    for key, value in november.net.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(later.net.state_dict()[key], value)  # type: ignore[union-attr]
    new = sorted(set(later.known_users()) - set(november.known_users()))
    assert new and (np.abs(later.user_embeddings(new)[:, :-1]).sum(1) > 0).all()
    manifest = later.fitted(later.manifest)
    assert manifest.as_of == data.as_of.isoformat()
    assert manifest.metrics["trained_as_of"] == CUT.isoformat()
    # the prior (last column) of the December shows, mid-December against mid-November:
    # the shows' state and the calendar moved with the as-of
    rows = [i for i, s in enumerate(later.show_ids) if s in set(truth.december_shows)]
    before, after = november.show_embeddings()[1][rows, -1], later.show_embeddings()[1][rows, -1]
    assert np.median(after - before) > 1.0, np.median(after - before)


def _new_window_loss(model: TemporalModel, data: TrainingData) -> float:
    """The model's next-show loss on the windows whose newest target is after CUT (fixed
    draws of negatives, eval mode): what fine-tuning on them should lower."""
    from tvrec.models.temporal import _NextShowTask
    from tvrec.models.trainer import Rngs

    seq, _ = model._read_events(data)  # the calendar as of data's as-of
    task = _NextShowTask(model, seq, model._signals())
    assert task.keep_after(to_us(CUT)) > 0
    rngs, ids = Rngs.seeded(0), np.arange(len(task.starts))
    with torch.no_grad():
        losses = [float(task.loss(ids[i : i + 256], rngs).loss) for i in range(0, len(ids), 256)]
    return float(np.mean(losses))


def test_advance_epochs_fine_tune_on_the_events_the_weights_never_saw(
    november: TemporalModel, data: TrainingData
) -> None:
    """`advance_epochs`: advanced six weeks on, the model trains a few epochs on the windows
    ending after its own as-of only; their loss falls; advanced to its own as-of there is
    nothing new and the weights stay."""
    import copy

    tuned = copy.deepcopy(november)
    tuned.config = tuned.config.model_copy(update={"advance_epochs": 2})
    same = copy.deepcopy(tuned)
    assert same.advance(_as_of(data, CUT))
    for key, value in november.net.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(same.net.state_dict()[key], value)  # type: ignore[union-attr]
    assert same.fitted(same.manifest).metrics["advance_windows"] == 0
    full = dataclasses.replace(data, content=None)
    plain = copy.deepcopy(november)
    plain.config = plain.config.model_copy(update={"advance_epochs": 0})
    assert plain.advance(full) and tuned.advance(full)
    metrics = tuned.fitted(tuned.manifest).metrics
    assert metrics["advance_windows"] > 0 and metrics["trained_as_of"] == CUT.isoformat()
    before, after = _new_window_loss(plain, full), _new_window_loss(tuned, full)
    assert after < before - 0.3, (before, after)  # measured: 3.98 -> 3.57


# ---- the features, point in time --------------------------------------------------------------
def test_as_of_state_equals_feasts(data: TrainingData) -> None:
    """What the calendar counts at the as-of is what Feast serves there (temporal_v1)."""
    assert data.content is not None
    rows = {s: i for i, s in enumerate(data.show_ids)}
    shows = data.frame["show_id"].map(rows).to_numpy(np.int64)
    times = data.frame["event_timestamp"].dt.as_unit("us").astype("int64").to_numpy()
    calendar = ShowCalendar.build(shows, times, len(rows), to_us(data.as_of), 1095)
    counted = calendar.state(np.array([calendar.days]), 20.0)
    feast = feast_state(data.content.features, data.show_ids, calendar, 20.0)
    np.testing.assert_array_equal(feast.views, counted.views)
    np.testing.assert_allclose(feast.week_ratio, counted.week_ratio, atol=1e-5)
    np.testing.assert_allclose(feast.month_ratio, counted.month_ratio, atol=1e-5)


def test_calendar_counts_only_earlier_views() -> None:
    """Views at or after an origin change nothing seen from it or before it."""
    rng = np.random.default_rng(0)
    as_of = to_us(datetime(2025, 6, 1, tzinfo=UTC))
    shows = rng.integers(0, 5, 400)
    times = as_of - rng.integers(1, 200 * DAY_US, 400)
    base = ShowCalendar.build(shows, times, 5, as_of, 100)
    origin = 60
    at = base.origin_us(np.array([origin]))[0]
    extra = np.array([at, at, at + 1, at + 5 * DAY_US, as_of - 1])  # at the origin and later
    more = ShowCalendar.build(
        np.concatenate([shows, [0, 1, 2, 3, 4]]), np.concatenate([times, extra]), 5, as_of, 100
    )
    origins = np.arange(origin + 1)
    for field in ("views", "age", "x", "week_ratio", "month_ratio"):
        before, after = (
            getattr(base.state(origins, 20.0), field),
            getattr(more.state(origins, 20.0), field),
        )
        assert torch.equal(before, after), field
    later = np.array([origin + 1, origin + 10])
    assert not torch.equal(base.state(later, 20.0).views, more.state(later, 20.0).views)


def test_seasonal_exposure_and_prior_rows_equal_their_direct_forms() -> None:
    """The level's seasonal exposure (one row per origin for shows on air all window, their
    own row for the rest) and the negatives' prior rows (one flat index_select) equal the
    direct forms they replace, values and gradients: shows that premiered inside the window,
    on the origin day (0 days) and long before."""
    gen = torch.Generator().manual_seed(0)
    o, n = 4, 60
    exposure = torch.rand(o, 366, N_CELLS, generator=gen).cumsum(1).requires_grad_()
    year = torch.rand(o, n, 12, generator=gen).requires_grad_()
    week = torch.rand(o, n, 7, generator=gen).requires_grad_()
    age = torch.randint(0, 900, (o, n), generator=gen)
    age[:, :10] = torch.randint(0, 40, (10,), generator=gen)  # young shows
    age[0, 0] = 0
    weights = torch.rand(o, n, generator=gen)
    for window in (7, 30, 365):
        on_air = age.clamp(max=window)
        cells = (year[..., :, None] * week[..., None, :]).reshape(o, n, N_CELLS)
        direct = (exposure.gather(1, on_air[..., None].expand(o, n, N_CELLS)) * cells).sum(-1)
        fast = seasonal_exposure(exposure, on_air, year, week)
        torch.testing.assert_close(fast, direct)
        inputs = (exposure, year, week)
        for a, b in zip(
            torch.autograd.grad((fast * weights).sum(), inputs),
            torch.autograd.grad((direct * weights).sum(), inputs),
            strict=True,
        ):
            torch.testing.assert_close(a, b)
    table = torch.rand(30, 50, 9, generator=gen)
    days, shows = torch.tensor([0, 7, 29]), torch.randint(0, 50, (20,), generator=gen)
    assert torch.equal(rows_at(table, days, shows), table[days[:, None], shows])


def test_a_query_reads_only_earlier_events() -> None:
    """The user at time T is the same whatever happens at or after T (ties included)."""
    torch.manual_seed(0)
    net = TemporalNet(30, TemporalConfig(dim=16, heads=2, layers=2)).eval()
    times = torch.tensor([[0, 10, 10, 50, 50, 90, 120]]) * 60_000_000  # minutes, with ties
    shows = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    events = EventBatch(shows, times, torch.ones_like(shows, dtype=torch.bool))
    with torch.no_grad():
        users, has = net.users_at(events, times)  # (1, 7, d): each read at its event's time
    assert has.tolist() == [[False, True, True, True, True, True, True]]
    assert not users[0, 0].any()  # nothing before the first event
    for i in range(1, 7):
        later = times[0] >= times[0, i]  # at or after the query's own time
        changed = torch.where(later, (shows + 11) % 30 + 1, shows)
        moved = torch.where(later, times + 7_000_000, times)  # later still, the order kept
        other = EventBatch(changed, moved, events.valid)
        with torch.no_grad():
            again, _ = net.users_at(other, times)
        torch.testing.assert_close(again[0, i], users[0, i], rtol=0, atol=1e-6)


# ---- order matters: a planted-chain world ------------------------------------------------------
def _chain_world(seed: int, users: int = 300) -> pd.DataFrame:
    """8 chains of 8 shows, always watched in chain order: each user has 3 sessions (days
    apart), each 4 consecutive shows of a random chain from a random start."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    rows = []
    for u in range(users):
        for session in range(3):
            chain, first = rng.integers(0, 8), rng.integers(0, 5)
            day = start + pd.Timedelta(days=int(rng.integers(0, 60)) + 70 * session)
            for k in range(4):
                show = f"c{chain}s{first + k}"
                rows.append((f"u{u}", show, day + pd.Timedelta(minutes=30 * k)))
    frame = pd.DataFrame(rows, columns=["user_id", "show_id", "event_timestamp"])
    return frame.drop_duplicates(["user_id", "show_id"]).assign(label=1)


def _next_show_accuracy(model: TemporalModel, frame: pd.DataFrame) -> float:
    """Top-1 accuracy of each event (with an earlier one) of these users, read at its time."""
    rows = {s: i for i, s in enumerate(model.show_ids)}
    net, (_, shows) = model._net(), model.show_embeddings()
    hits, total = 0, 0
    for _, g in frame.sort_values("event_timestamp").groupby("user_id"):
        idx = torch.as_tensor(g["show_id"].map(rows).to_numpy() + 1)[None]
        times = torch.as_tensor(g["event_timestamp"].astype("int64").to_numpy() // 1_000)[None]
        with torch.no_grad():
            users, has = net.users_at(EventBatch(idx, times, torch.ones_like(idx).bool()), times)
        scores = users[0].numpy() @ shows[:, :-1].T + shows[:, -1]  # (L, n)
        for i in range(1, idx.shape[1]):
            scores[i, idx[0, :i].numpy() - 1] = -np.inf  # watched already
        best = scores.argmax(1)
        hits += int(((best == idx[0].numpy() - 1) & has[0].numpy()).sum())
        total += int(has[0].sum())
    return hits / total


def test_order_matters_next_show_beats_shuffled_control(one_torch_thread: None) -> None:
    train, held_out = _chain_world(seed=1), _chain_world(seed=2, users=100)
    as_of = datetime(2025, 9, 1, tzinfo=UTC)
    shows = sorted(set(train["show_id"]) | set(held_out["show_id"]))
    cfg = TemporalConfig(dim=32, epochs=15, seasonal_epochs=0)

    def fitted(frame: pd.DataFrame) -> TemporalModel:
        model = TemporalModel(cfg, Runtime.cpu())
        model.fit(TrainingData(frame, "temporal_v1", as_of, "chains", shows))
        return model

    shuffled = train.copy()  # each user's timestamps dealt to their shows at random
    rng = np.random.default_rng(3)
    shuffled["event_timestamp"] = shuffled.groupby("user_id")["event_timestamp"].transform(
        lambda t: t.to_numpy()[rng.permutation(len(t))]
    )
    ordered, control = fitted(train), fitted(shuffled)
    accuracy, chance = (
        _next_show_accuracy(ordered, held_out),
        _next_show_accuracy(control, held_out),
    )
    assert accuracy > 0.6, accuracy  # measured 0.71 (within a session the next show is certain)
    assert accuracy > chance + 0.5, (accuracy, chance)  # control measured 0.07 (chance 1/64)


def test_same_data_and_seed_give_the_same_model_on_two_threads() -> None:
    """Under the training context (deterministic kernels) two fits on two threads are equal to
    the bit; without it the scatter-adds of the embedding gradients sum in thread order (a
    2e-7 difference here after 3 epochs, 0.26 on MovieLens after 3, measured)."""
    train = _chain_world(seed=1)
    as_of, shows = datetime(2025, 9, 1, tzinfo=UTC), sorted(set(train["show_id"]))
    vectors = []
    for _ in range(2):
        model = TemporalModel(TemporalConfig(dim=32, epochs=3, seasonal_epochs=0), Runtime.cpu())
        with Runtime.cpu().training(2):
            model.fit(TrainingData(train, "temporal_v1", as_of, "chains", shows))
        vectors.append(model.show_embeddings()[1])
    np.testing.assert_array_equal(vectors[0], vectors[1])


# ---- awkward inputs ---------------------------------------------------------------------------
def test_one_event_users_and_shows_without_seasonality_rows(
    data: TrainingData, one_torch_thread: None
) -> None:
    assert data.content is not None
    missing = data.show_ids[:5]
    features = data.content.features.copy()
    gone = features["show_id"].isin(missing)
    for column in ("show_seasonality__weekday_profile", "show_seasonality__month_profile"):
        features[column] = features[column].astype(object).where(~gone, None)
    features.loc[gone, "show_seasonality__december_share"] = np.nan
    features = features[~features["show_id"].isin(data.show_ids[3:5])]  # no rows at all
    lonely = pd.DataFrame(
        {"user_id": ["lonely"], "show_id": [data.show_ids[5]], "label": [1],
         "event_timestamp": [pd.Timestamp(data.as_of) - pd.Timedelta(days=3)]}
    )  # fmt: skip
    frame = pd.concat([data.frame, lonely], ignore_index=True)
    content = dataclasses.replace(data.content, features=features)
    odd = dataclasses.replace(data, frame=frame, content=content)
    model = TemporalModel(TemporalConfig(epochs=2, dim=16, seasonal_epochs=1), Runtime.cpu())
    model.fit(odd)
    _, shows = model.show_embeddings()
    users = model.user_embeddings(["lonely", "nobody"])
    assert np.isfinite(shows).all() and np.isfinite(users).all()
    assert "lonely" in model.known_users() and users[0, :-1].any()  # read from its one event
    assert not users[1, :-1].any() and users[1, -1] == 1.0
    forecast = model.forecast()
    assert forecast.filter(pl.col("show_id").is_in(missing))["views_30d"].is_finite().all()


def test_untimed_log_trains_the_prior_and_serves_it(data: TrainingData) -> None:
    """Every event at one instant (the anime export): no event precedes another, so no query
    has context; the model trains its show prior and serves every user by it."""
    frame = data.frame.assign(event_timestamp=pd.Timestamp("2017-01-01", tz="UTC"))
    untimed = dataclasses.replace(
        data, frame=frame, as_of=datetime(2017, 1, 1, 0, 0, 1, tzinfo=UTC), content=None
    )
    model = TemporalModel(TemporalConfig(epochs=2, dim=16), Runtime.cpu())
    metrics = model.fit(untimed)
    assert metrics["context_trained"] is False and metrics["seasonal_loss"] == []
    assert np.isfinite(metrics["train_loss"]).all()
    users = model.user_embeddings(model.known_users()[:5])
    assert not users[:, :-1].any() and (users[:, -1] == 1).all()
    prior = model.show_embeddings()[1][:, -1]
    popular = data.frame["show_id"].value_counts().index[0]
    assert prior[model.show_ids.index(popular)] > np.median(prior)  # the prior learned taste
    assert model.forecast()["views_7d"].is_finite().all()


def test_gpu_profile_path_runs_with_autocast_on_cpu(data: TrainingData) -> None:
    """The GPU profile's code path (8x batches, bf16 autocast), exercised on CPU."""
    runtime = Runtime("gpu", torch.device("cpu"), batch_multiplier=8, mixed_precision=True)
    model = TemporalModel(TemporalConfig(epochs=2, dim=16, seasonal_steps=4), runtime)
    metrics = model.fit(_as_of(data, CUT))
    assert metrics["profile"] == "gpu" and np.isfinite(metrics["train_loss"]).all()
    assert np.isfinite(metrics["seasonal_loss"]).all()
    _, shows = model.show_embeddings()
    users = model.user_embeddings(model.known_users()[:20])
    assert shows.dtype == users.dtype == np.float32
    assert np.isfinite(shows).all() and np.isfinite(users).all()
    assert model.forecast()["views_30d"].is_finite().all()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        TemporalConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="targets_per_window"):
        TemporalConfig(history_len=10, targets_per_window=20)


# ---- forecast quality (jobs/evaluation/forecast.py) ---------------------------------------------
def _log(days: dict[str, list[int]], cutoff: datetime, before: int) -> pl.DataFrame:
    """Events from daily counts per show, day 0 = `before` days before the cutoff, at noon."""
    rows = [
        (show, cutoff + timedelta(days=d - before, hours=12))
        for show, counts in days.items()
        for d, n in enumerate(counts)
        for _ in range(n)
    ]
    frame = pl.DataFrame(
        rows, schema={"show_id": pl.String, "t": pl.Datetime("us", "UTC")}, orient="row"
    )
    return frame.rename({"t": "event_timestamp"}).with_columns(user_id=pl.lit("u"))


CUTOFF = datetime(2024, 3, 1, tzinfo=UTC)


def test_daily_views_and_baselines() -> None:
    week = [0, 1, 2, 3, 0, 5, 6]
    log = _log({"a": week * 8 + [9, 9], "b": [1] * 58}, CUTOFF, before=56)  # 8 weeks + 2 days
    window = ForecastWindow.of_events(log, CUTOFF)
    assert window.test_days == 1  # two days after the cutoff, the last one partly
    ids = ["a", "b", "unseen"]
    last = daily_views(window.train, ids, CUTOFF - timedelta(days=7), 7)
    np.testing.assert_array_equal(last[0], week)
    naive = seasonal_naive(window, ids, 10, season=7)
    np.testing.assert_array_equal(naive[0], (week * 2)[:10])  # the last week repeated
    np.testing.assert_array_equal(naive[2], 0)
    expected = [sum((week * 8)[-30:]) / 30, 1.0, 0.0]
    np.testing.assert_allclose(recent_mean(window, ids, 3)[:, 0], expected)


def test_mase_scale_is_the_in_sample_naive_error() -> None:
    rng = np.random.default_rng(0)
    counts = {s: rng.poisson(2.0, 80).tolist() for s in ("a", "b", "c")}
    window = ForecastWindow.of_events(_log(counts, CUTOFF, before=80), CUTOFF)
    ids, horizon, season = ["a", "b", "c"], 10, 7
    daily = np.array([counts[s] for s in ids], dtype=float)  # (3, 80): the whole training part
    errors = []
    for o in range(season, 80 - horizon + 1):
        actual = daily[:, o : o + horizon].sum(1)
        naive = daily[:, o - season + np.arange(horizon) % season].sum(1)
        errors.append(np.abs(actual - naive))
    assert mase_scale(window, ids, horizon, season) == pytest.approx(np.mean(errors))


def test_forecast_quality_scores_a_perfect_forecast_zero() -> None:
    rng = np.random.default_rng(1)
    counts = {s: rng.poisson(3.0, 100).tolist() for s in ("a", "b")}
    log = _log(counts, CUTOFF, before=80)  # 80 days before the cutoff, 20 after
    window = ForecastWindow.of_events(log, CUTOFF)
    assert window.test_days == 19  # the last day is partial (events at noon)
    perfect = np.array([counts[s][80:99] for s in ("a", "b")], dtype=float)
    quality = forecast_quality(window, {"perfect": perfect}, horizons=(7, 30), show_ids=["a", "b"])
    rows = {(r["method"], r["horizon"]): r for r in quality.iter_rows(named=True)}
    assert rows["perfect", 7]["mase"] == 0.0 and rows["perfect", 30]["days"] == 19
    assert rows[SEASONAL_NAIVE, 7]["mase"] > 0 and rows[RECENT_MEAN, 30]["mase"] > 0
    assert {r["season"] for r in rows.values()} == {7}  # 80 days: no yearly season


def test_window_of_a_split_counts_new_users_first_views() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u1", "u1", "u3", "u3"],
            "show_id": ["a", "b", "a", "a", "c", "a", "a"],
            "event_timestamp": [t0 + timedelta(days=d) for d in (0, 1, 2, 20, 21, 22, 23)],
            "weight": [1.0] * 7,
        }
    )
    sp = cut_events(events, "temporal", 0.45)
    assert sp.cutoff is not None and sp.test.height == 1  # known users only: u1's show c
    window = ForecastWindow.of_split(sp, events)
    assert sorted(window.test["show_id"].to_list()) == ["a", "c"]  # u3's first view of a counts
    assert ForecastWindow.of_split(sp).test.height == 1


# ---- MovieLens-100k, as `tvrec evaluate` runs it (slow) ----------------------------------------
@pytest.mark.slow
def test_movielens_temporal_split(movielens_split: SplitRun) -> None:
    """tvrec's pipeline on the benchmark's temporal split (features as of the cutoff, the
    model trained from its Feast training set, the published top-k scored): NDCG@10 above
    popularity over the last 30 days before the cut (0.229, the best peer there), and the
    forecast beats the seasonal-naive one on the held-out weeks."""
    from tvrec.jobs.evaluation.metrics import evaluate_topk
    from tvrec.jobs.train import load_current_model

    ds, sp, pipeline = movielens_split.ds, movielens_split.split, movielens_split.pipeline
    topk = pipeline.model_topk("temporal")(sp)[0]  # (top-k, cold top-k, few-shot top-k)
    metrics = evaluate_topk(topk, sp)
    # measured 0.261 (2026-12-05, main a82c9b5); training is deterministic, so this run always
    # gives it. The model's seed moves it: seeds 1-4 gave 0.268, 0.258, 0.246, 0.208 (90
    # users; 0.235 and 0.240, 0.255, 0.249, 0.223 before a268ce9 summed the seasonal level in
    # another order). RecentPop 30 d 0.229
    assert metrics.ndcg > 0.23, metrics
    model = load_current_model(pipeline.wd)
    assert isinstance(model, TemporalModel)
    window = ForecastWindow.of_split(sp, ds.events)
    quality = forecast_quality(window, {"temporal": model.forecast_daily(30)})
    mase = {(r["method"], r["horizon"]): r["mase"] for r in quality.iter_rows(named=True)}
    # measured, 7 days: 1.09, seasonal naive 1.27, last-30-days mean 1.48; 30 days (the
    # window holds 22): 0.53, naive 1.75, last-30-days mean 0.44
    assert mase["temporal", 7] < 0.95 * mase[SEASONAL_NAIVE, 7], quality
    assert mase["temporal", 30] < 0.5 * mase[SEASONAL_NAIVE, 30], quality
