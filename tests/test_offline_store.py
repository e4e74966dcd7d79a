"""tvrec's ASOF JOIN offline store (`pipelines/feast_offline.py`) against Feast's stock DuckDB
store: the same point-in-time answers on random feature tables, the same online store after
`materialize`, and clear errors for bad input."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore
from feast.infra.offline_stores.offline_utils import get_offline_store_from_config
from feast.repo_config import RepoConfig, load_repo_config
from feast.types import Float64, Int64, String
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvrec.pipelines.errors import ConfigError, DataError
from tvrec.pipelines.feast_offline import STORE_TYPE, AsofDuckDBOfflineStore
from tvrec.pipelines.store import historical_features, repo_path

BASE = datetime(2024, 3, 1, tzinfo=UTC)
USERS = ["u0", "u1", "u2", "u3", "u9"]  # u9 never has a feature row
SHOWS = ["s0", "s1", "s2", "s8"]  # s8 never has a feature row
EXAMPLES = int(os.environ.get("TVREC_PIT_EXAMPLES", "40"))  # raise it for a deeper search
TTLS = [None, timedelta(0), timedelta(hours=1), timedelta(hours=3)]
ZONES = [None, "UTC", "Europe/Paris", "America/New_York"]  # None: naive (read as UTC)

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
show = Entity(name="show", join_keys=["show_id"], value_type=ValueType.STRING)


class _NoOnDemandViews:
    """The registry as the stores use it in get_historical_features: no on-demand views."""

    def list_on_demand_feature_views(self, project: str, allow_cache: bool = True) -> list:
        return []


def _config(root: Path, offline: dict[str, Any]) -> RepoConfig:
    return RepoConfig(
        project="pit",
        provider="local",
        registry=str(root / "registry.db"),
        offline_store=offline,
        online_store={"type": "sqlite", "path": str(root / "online.db")},
        entity_key_serialization_version=3,
        repo_path=root,
    )


STOCK = {"type": "duckdb"}
PLUGIN = {"type": STORE_TYPE}


# ---- random feature tables ------------------------------------------------------------------
@dataclass
class ViewSpec:
    """One feature view to write: its rows, entity, TTL and source options."""

    name: str
    key: str
    rows: list[dict[str, Any]]
    ttl: timedelta | None
    created: bool  # has a created_timestamp column (ties broken by it)
    mapped: bool  # its source stores `<name>_score` as `<name>_raw` (field_mapping)
    naive_source: bool  # Parquet timestamps without a time zone (read as UTC)


def _hours(draw: st.DrawFn) -> datetime:
    """A stamp on a small grid of hours, so rows often tie and entity rows often hit them."""
    return BASE + timedelta(hours=draw(st.integers(0, 6)))


@st.composite
def view_specs(draw: st.DrawFn, name: str, key: str, ids: list[str]) -> ViewSpec:
    n = draw(st.integers(0, 12))
    created = draw(st.booleans())
    # all created stamps distinct, so the stock store's tie-break is deterministic too
    offsets = draw(st.permutations(range(n))) if n else []
    values = st.one_of(st.none(), st.integers(-5, 50))
    rows = [
        {
            key: draw(st.sampled_from(ids[:-1])),
            "ts": _hours(draw),
            "created": BASE + timedelta(minutes=offsets[i]) if created else None,
            f"{name}_count": draw(values),
            f"{name}_score": draw(st.one_of(st.none(), st.floats(-1, 1, width=32))),
            f"{name}_tag": draw(st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))),
        }
        for i in range(n)
    ]
    if not created:  # without a created stamp, rows stamped alike tie in both stores: keep one
        rows = list({(r[key], r["ts"]): r for r in reversed(rows)}.values())
    return ViewSpec(
        name,
        key,
        rows,
        draw(st.sampled_from(TTLS)),
        created,
        draw(st.booleans()),
        draw(st.booleans()),
    )


def _write_view(spec: ViewSpec, root: Path) -> FeatureView:
    """The spec's Parquet file and its FeatureView."""
    path = root / f"{spec.name}.parquet"
    score = f"{spec.name}_raw" if spec.mapped else f"{spec.name}_score"
    zone = None if spec.naive_source else "UTC"
    columns = {
        spec.key: pa.array([r[spec.key] for r in spec.rows], pa.string()),
        "ts": pa.array(
            [r["ts"].replace(tzinfo=None) for r in spec.rows], pa.timestamp("us", tz=zone)
        ),
        f"{spec.name}_count": pa.array([r[f"{spec.name}_count"] for r in spec.rows], pa.int64()),
        score: pa.array([r[f"{spec.name}_score"] for r in spec.rows], pa.float64()),
        f"{spec.name}_tag": pa.array([r[f"{spec.name}_tag"] for r in spec.rows], pa.string()),
    }
    if spec.created:
        created = [r["created"] for r in spec.rows]
        columns["created"] = pa.array(created, pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table(columns), path)
    source = FileSource(
        name=f"{spec.name}_source",
        path=str(path),
        timestamp_field="ts",
        created_timestamp_column="created" if spec.created else "",
        field_mapping={score: f"{spec.name}_score"} if spec.mapped else None,
    )
    return FeatureView(
        name=spec.name,
        entities=[user if spec.key == "user_id" else show],
        ttl=spec.ttl,
        schema=[
            Field(name=spec.key, dtype=String),  # the join key, as `feast apply` infers it
            Field(name=f"{spec.name}_count", dtype=Int64),
            Field(name=f"{spec.name}_score", dtype=Float64),
            Field(name=f"{spec.name}_tag", dtype=String),
        ],
        source=source,
    )


@st.composite
def entity_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Entity rows (duplicates likely), stamps on and between the hour grid, in one zone."""
    n = draw(st.integers(1, 25))
    minutes = st.one_of(st.integers(0, 8).map(lambda h: 60 * h), st.integers(-30, 500))
    stamps = pd.Series(
        [BASE + timedelta(minutes=draw(minutes)) for _ in range(n)], dtype="datetime64[us, UTC]"
    )
    zone = draw(st.sampled_from(ZONES))
    stamps = stamps.dt.tz_localize(None) if zone is None else stamps.dt.tz_convert(zone)
    return pd.DataFrame(
        {
            "user_id": [draw(st.sampled_from(USERS)) for _ in range(n)],
            "event_timestamp": stamps,
            "show_id": [draw(st.sampled_from(SHOWS)) for _ in range(n)],
            "row": range(n),  # an extra column, kept; also the stock result's sort key
        }
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[ViewSpec], list[str]]:
    """Two user views and one show view, and a random non-empty choice of their features."""
    specs = [
        draw(view_specs("ua", "user_id", USERS)),
        draw(view_specs("ub", "user_id", USERS)),
        draw(view_specs("sa", "show_id", SHOWS)),
    ]
    chosen = draw(st.lists(st.sampled_from(specs), min_size=1, max_size=3, unique_by=id))
    refs = [
        f"{s.name}:{s.name}_{f}"
        for s in chosen
        for f in draw(
            st.lists(
                st.sampled_from(["count", "score", "tag"]), min_size=1, max_size=3, unique=True
            )
        )
    ]
    return chosen, refs


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Comparable frames: UTC timestamps, object columns, None for every missing value."""
    out = df.copy()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).dt.as_unit("us")
    for col in out.columns.drop("event_timestamp"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _join(
    offline: dict[str, Any],
    root: Path,
    views: list[FeatureView],
    refs: list[str],
    entity_df: pd.DataFrame | pa.Table,
    full_names: bool,
) -> pd.DataFrame:
    store = get_offline_store_from_config(_config(root, offline).offline_store)
    job = store.get_historical_features(
        config=_config(root, offline),
        feature_views=views,
        feature_refs=refs,
        entity_df=entity_df.copy() if isinstance(entity_df, pd.DataFrame) else entity_df,
        registry=_NoOnDemandViews(),
        project="pit",
        full_feature_names=full_names,
    )
    return job.to_df()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests(), entity_df=entity_frames(), full_names=st.booleans())
def test_same_answers_as_the_stock_duckdb_store(
    request: tuple[list[ViewSpec], list[str]], entity_df: pd.DataFrame, full_names: bool
) -> None:
    specs, refs = request
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        views = [_write_view(spec, root) for spec in specs]
        ours = _join(PLUGIN, root, views, refs, entity_df, full_names)
        stock = _join(STOCK, root, views, refs, entity_df, full_names)
    assert list(ours.columns) == list(stock.columns)
    assert ours["row"].tolist() == list(range(len(entity_df)))  # order and count kept
    assert str(ours["event_timestamp"].dt.tz) == "UTC"
    stock = stock.sort_values("row", ignore_index=True)
    pd.testing.assert_frame_equal(_normalise(ours), _normalise(stock))


def test_ttl_tie_break_and_missing_rows_by_hand(tmp_path: Path) -> None:
    """Known answers, so a shared mistake of both stores cannot hide behind the comparison."""
    spec = ViewSpec("ua", "user_id", [], timedelta(hours=2), True, False, False)
    row = {"ua_score": 0.5, "ua_tag": "x"}
    spec.rows = [
        {"user_id": "u0", "ts": BASE, "created": BASE, "ua_count": 1, **row},
        {"user_id": "u0", "ts": BASE, "created": BASE + timedelta(1), "ua_count": 2, **row},
        {"user_id": "u0", "ts": BASE + timedelta(hours=5), "created": BASE, "ua_count": 3, **row},
    ]
    view = _write_view(spec, tmp_path)
    hour = timedelta(hours=1)
    entity_df = pd.DataFrame(
        {
            "user_id": ["u0", "u0", "u0", "u0", "u9"],
            "event_timestamp": [BASE - hour, BASE, BASE + 3 * hour, BASE + 5 * hour, BASE],
        }
    )
    out = _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], entity_df, False)
    # before any row; tie -> later created; expired after 2 h; exact stamp; unknown user
    assert out["ua_count"].fillna(-1).tolist() == [-1, 2, -1, 3, -1]


def test_arrow_and_empty_entity_frames(tmp_path: Path) -> None:
    view = _one_view(tmp_path)
    frame = pd.DataFrame({"user_id": ["u9", "u0"], "event_timestamp": [BASE, BASE]})
    from_arrow = _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], pa.Table.from_pandas(frame), True)
    assert from_arrow["ua__ua_count"].fillna(-1).tolist() == [-1, 1]
    empty = _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], frame.iloc[:0], True)
    assert list(empty.columns) == ["user_id", "event_timestamp", "ua__ua_count"] and empty.empty


# ---- bad input ------------------------------------------------------------------------------
def _one_view(tmp_path: Path) -> FeatureView:
    spec = ViewSpec("ua", "user_id", [], None, False, False, False)
    spec.rows = [{"user_id": "u0", "ts": BASE, "ua_count": 1, "ua_score": 0.1, "ua_tag": "a"}]
    return _write_view(spec, tmp_path)


def _entities() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u0"], "event_timestamp": [BASE]})


def test_missing_parquet_names_the_view_and_file(tmp_path: Path) -> None:
    view = _one_view(tmp_path)
    (tmp_path / "ua.parquet").unlink()
    with pytest.raises(ConfigError, match=r"'ua'.*ua\.parquet"):
        _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], _entities(), True)


def test_unreadable_parquet_names_the_view_and_file(tmp_path: Path) -> None:
    view = _one_view(tmp_path)
    (tmp_path / "ua.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="'ua'") as info:
        _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], _entities(), True)
    assert info.value.file.endswith("ua.parquet")


def test_parquet_without_a_feature_column_names_it(tmp_path: Path) -> None:
    view = _one_view(tmp_path)
    pq.write_table(
        pq.read_table(tmp_path / "ua.parquet").drop(["ua_count"]), tmp_path / "ua.parquet"
    )
    with pytest.raises(DataError, match=r"'ua'.*ua_count"):
        _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], _entities(), True)


def test_entity_df_without_a_join_key(tmp_path: Path) -> None:
    view = _one_view(tmp_path)
    with pytest.raises(ConfigError, match=r"user_id.*'ua'"):
        _join(PLUGIN, tmp_path, [view], ["ua:ua_count"], _entities().drop(columns="user_id"), True)


# ---- through a Feast repo: materialize, services, the shipped feature_store.yaml ------------
def _repo(root: Path, offline: dict[str, Any], view: FeatureView) -> FeatureStore:
    store = FeatureStore(config=_config(root, offline))
    store.apply([user, view, FeatureService(name="svc_v1", features=[view])])
    return store


def test_materialize_fills_the_online_store_like_the_stock_store(tmp_path: Path) -> None:
    spec = ViewSpec("ua", "user_id", [], None, True, True, False)
    spec.rows = [
        {
            "user_id": f"u{i % 4}",
            "ts": BASE + timedelta(hours=i % 3),  # ties within a user, broken by created
            "created": BASE + timedelta(minutes=(7 * i) % 13),
            "ua_count": i,
            "ua_score": None if i % 5 == 0 else i / 10,
            "ua_tag": "abc"[i % 3],
        }
        for i in range(13)
    ]
    view = _write_view(spec, tmp_path)
    answers = []
    for name, offline in (("stock", STOCK), ("plugin", PLUGIN)):
        store = _repo(tmp_path / name, offline, view)
        store.materialize(start_date=BASE - timedelta(days=1), end_date=BASE + timedelta(days=1))
        answers.append(
            store.get_online_features(
                features=["ua:ua_count", "ua:ua_score", "ua:ua_tag"],
                entity_rows=[{"user_id": u} for u in USERS],
            ).to_dict()
        )
    assert answers[0] == answers[1]
    assert answers[1]["ua_count"][-1] is None  # u9 has no row
    assert any(v is not None for v in answers[1]["ua_count"])


def test_pull_latest_matches_the_stock_store(tmp_path: Path) -> None:
    view = _write_view(
        ViewSpec(
            "ua",
            "user_id",
            [
                {
                    "user_id": f"u{i % 3}",
                    "ts": BASE + timedelta(hours=i % 4),
                    "created": BASE + timedelta(minutes=(5 * i) % 11),
                    "ua_count": i,
                    "ua_score": i / 3,
                    "ua_tag": None,
                }
                for i in range(11)
            ],
            None,
            True,
            False,
            False,
        ),
        tmp_path,
    )
    args = {
        "data_source": view.batch_source,
        "join_key_columns": ["user_id"],
        "feature_name_columns": ["ua_count", "ua_score"],
        "timestamp_field": "ts",
        "created_timestamp_column": "created",
        "start_date": BASE + timedelta(hours=1),
        "end_date": BASE + timedelta(hours=2),
    }
    got = [
        cls.pull_latest_from_table_or_query(config=_config(tmp_path, cfg), **args)
        .to_df()
        .sort_values("user_id", ignore_index=True)
        for cls, cfg in ((DuckDBOfflineStore, STOCK), (AsofDuckDBOfflineStore, PLUGIN))
    ]
    pd.testing.assert_frame_equal(got[1], got[0], check_dtype=False)


def test_unknown_feature_service_lists_the_known_ones(tmp_path: Path) -> None:
    store = _repo(tmp_path, PLUGIN, _one_view(tmp_path))
    with pytest.raises(ConfigError, match=r"'nope'.*svc_v1"):
        historical_features(store, _entities(), "nope")
    assert historical_features(store, _entities(), "svc_v1")["ua__ua_count"].tolist() == [1]


def test_the_shipped_repo_config_loads_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TVREC_WORKDIR", str(tmp_path))
    config = load_repo_config(repo_path(), repo_path() / "feature_store.yaml")
    assert isinstance(get_offline_store_from_config(config.offline_store), AsofDuckDBOfflineStore)
