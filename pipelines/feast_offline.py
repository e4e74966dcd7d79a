"""A Feast offline store whose point-in-time joins are DuckDB `ASOF JOIN`s over Parquet.

Feast's stock DuckDB store (`type: duckdb`) builds its point-in-time join with ibis as an
inner join of every entity row with every earlier feature row of its key, followed by a window
deduplication: time and memory grow with (entity rows x feature rows per key). Here each
feature view is one `ASOF LEFT JOIN`, which DuckDB runs as a sort-merge over both sides and
streams, so a training set of millions of rows stays close to a hand-written query.

Selected in `feature_store.yaml`:

    offline_store:
      type: tvrec.pipelines.feast_offline.AsofDuckDBOfflineStore
      memory_limit: 8GB        # optional; default: half of the machine's memory
      temp_directory: /scratch # optional; where DuckDB spills; default: the system temp dir
      threads: 8               # optional; default: one per core

It answers like the stock store: TTL (a value older than `ttl` before the entity row gives
nulls; a zero or missing ttl never expires), the `created_timestamp_column` tie-break (of two
rows stamped alike, the later created wins), `full_feature_names`, entity and extra entity_df
columns kept, entity timestamps naive (read as UTC) or tz-aware returned in UTC, nulls for
entity rows without a feature row, field mappings, and the entity_df's rows, count and order.
Feature views must read Parquet `FileSource`s; anything else is refused with a `ConfigError`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast.data_format import ParquetFormat
from feast.feature_view import DUMMY_ENTITY_NAME
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import (
    OfflineStore,
    RetrievalJob,
    RetrievalMetadata,
)
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from pydantic import PositiveInt

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    from feast.data_source import DataSource
    from feast.feature_logging import LoggingConfig, LoggingSource
    from feast.feature_view import FeatureView
    from feast.infra.registry.base_registry import BaseRegistry
    from feast.saved_dataset import SavedDatasetStorage, ValidationReference

STORE_TYPE = "tvrec.pipelines.feast_offline.AsofDuckDBOfflineStore"
ENTITY_TABLE = "__tvrec_entity_df"  # the caller's entity dataframe, registered without a copy
ROW = "__tvrec_row"  # the entity row's position, to hand rows back in the caller's order
TS = "__tvrec_ts"  # a feature row's event timestamp as TIMESTAMPTZ
DEFAULT_TS = "event_timestamp"
DEFAULT_MEMORY_SHARE = 0.5  # of physical memory; the rest stays for the caller's frames


class AsofDuckDBOfflineStoreConfig(FeastConfigBaseModel):
    """`offline_store:` settings of the ASOF JOIN store (validated by Feast on load)."""

    type: Literal["tvrec.pipelines.feast_offline.AsofDuckDBOfflineStore"] = STORE_TYPE
    memory_limit: str | None = None
    """DuckDB's memory limit ("8GB", "500MB"); default: half of physical memory."""
    temp_directory: str | None = None
    """Where DuckDB spills past the limit; default: a private directory in the system temp."""
    threads: PositiveInt | None = None
    """DuckDB worker threads; default: one per core."""


# ---- SQL text helpers -----------------------------------------------------------------------
def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _instant(value: datetime) -> str:
    """A TIMESTAMPTZ literal; a naive datetime is read as UTC (Feast's convention)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"TIMESTAMPTZ {_text(aware.astimezone(UTC).isoformat())}"


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# ---- connections ----------------------------------------------------------------------------
def _memory_limit(settings: AsofDuckDBOfflineStoreConfig) -> str:
    if settings.memory_limit:
        return settings.memory_limit
    total = psutil.virtual_memory().total
    return f"{int(total * DEFAULT_MEMORY_SHARE) // 2**20}MB"


@contextmanager
def _connect(settings: AsofDuckDBOfflineStoreConfig) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB with the store's limits, spilling to a private directory."""
    parent = settings.temp_directory
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tvrec-duckdb-", dir=parent) as spill:
        config: dict[str, Any] = {"memory_limit": _memory_limit(settings), "temp_directory": spill}
        if settings.threads:
            config["threads"] = settings.threads
        con = duckdb.connect(":memory:", config=config)
        try:
            con.execute("SET TimeZone = 'UTC'")  # naive timestamps compare as UTC
            yield con
        finally:
            con.close()


def _settings(config: RepoConfig) -> AsofDuckDBOfflineStoreConfig:
    """The store's settings; defaults when called with another store's config (tests, tools)."""
    own = config.offline_store
    return own if isinstance(own, AsofDuckDBOfflineStoreConfig) else AsofDuckDBOfflineStoreConfig()


# ---- feature view sources -------------------------------------------------------------------
def _parquet_source(source: DataSource | None, owner: str) -> FileSource:
    """The source as a Parquet FileSource; `owner` ("feature view 'x'") names it in errors."""
    if not isinstance(source, FileSource) or not (
        isinstance(source.file_format, ParquetFormat)
        or (source.file_format is None and source.path.endswith(".parquet"))
    ):
        raise ConfigError(
            f"{owner}: {type(source).__name__} is not a Parquet FileSource; "
            "the ASOF JOIN offline store reads Parquet only (use `type: duckdb` for others)"
        )
    return source


def _parquet_sql(config: RepoConfig, source: FileSource, owner: str, columns: Sequence[str]) -> str:
    """`read_parquet(...)` of a source, after checking that the file can be read and holds
    `columns` (a missing or broken file is named here rather than deep inside DuckDB)."""
    path = FileSource.get_uri_for_file_path(config.repo_path, source.path)
    if "://" not in path:  # remote URIs are left to DuckDB
        _check_local_parquet(Path(path), owner, columns)
        if Path(path).is_dir():
            return f"read_parquet({_text(str(Path(path) / '**' / '*.parquet'))})"
    return f"read_parquet({_text(path)})"


def _check_local_parquet(path: Path, owner: str, columns: Sequence[str]) -> None:
    if not path.exists():
        raise ConfigError(
            f"{owner}: its Parquet file {path} does not exist; write it first "
            "(`tvrec features build`; `tvrec recommend` for user_recommendations)"
        )
    if path.is_dir():
        return
    try:
        present = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(str(path), f"{owner}: not a readable Parquet file ({exc})") from None
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(
            str(path),
            f"{owner}: the Parquet file lacks column(s) {missing} (stale features? rebuild them)",
        )


def _source_column(source: DataSource, name: str) -> str:
    """The source column behind a Feast name (undoing the source's field_mapping)."""
    for column, mapped in source.field_mapping.items():
        if mapped == name:
            return column
    return name


# ---- the point-in-time plan -----------------------------------------------------------------
@dataclass(frozen=True)
class _ViewJoin:
    """One feature view's share of the query: a CTE over its Parquet and one ASOF JOIN."""

    alias: str
    cte: str
    keys: dict[str, str]  # feature table column -> entity_df column
    ttl: timedelta | None
    outputs: list[str]  # output column names, in feature_refs order


def _requested(view: FeatureView, feature_refs: Sequence[str]) -> list[str]:
    """The features of `view` asked for, in request order (like the stock store)."""
    prefix = f"{view.projection.name_to_use()}:"
    return [ref.split(":", 1)[1] for ref in feature_refs if ref.startswith(prefix)]


def _join_keys(view: FeatureView) -> dict[str, str]:
    """Feature table key column -> entity_df column (a projection may rename the latter)."""
    keys = view.projection.join_key_map or {c.name: c.name for c in view.entity_columns}
    if not keys and set(view.entities) - {DUMMY_ENTITY_NAME}:
        # a view built in code but never applied: joining it without keys would pair every
        # entity row with any entity's feature rows
        raise ConfigError(
            f"feature view '{view.name}' has entities {view.entities} but no entity columns; "
            "apply it first or declare its join keys in its schema"
        )
    return keys


def _view_join(
    config: RepoConfig,
    view: FeatureView,
    index: int,
    feature_refs: Sequence[str],
    full_feature_names: bool,
) -> _ViewJoin:
    owner = f"feature view '{view.name}'"
    source = _parquet_source(view.batch_source, owner)
    keys = _join_keys(view)
    features = _requested(view, feature_refs)
    label = view.projection.name_alias or view.name
    outputs = [f"{label}__{f}" if full_feature_names else f for f in features]
    renamed = {**{k: k for k in keys}, **dict(zip(features, outputs, strict=True))}
    stored = [_source_column(source, c) for c in renamed]
    stored += [source.timestamp_field, source.created_timestamp_column]
    relation = _parquet_sql(config, source, owner, [c for c in stored if c])
    alias = f"__fv{index}"
    cte = f"{alias} AS ({_view_select(source, renamed, keys, relation)})"
    return _ViewJoin(alias, cte, keys, view.ttl, outputs)


def _view_select(
    source: FileSource, renamed: dict[str, str], keys: dict[str, str], relation: str
) -> str:
    """A view's keys, UTC event time and features (Feast name -> output name) from its file;
    of rows stamped alike for one key, only the latest created one (the stock tie-break)."""
    columns = [f"{_ident(_source_column(source, n))} AS {_ident(o)}" for n, o in renamed.items()]
    columns.append(f"CAST({_ident(source.timestamp_field)} AS TIMESTAMPTZ) AS {TS}")
    sql = f"SELECT {', '.join(columns)} FROM {relation}"
    if source.created_timestamp_column:
        partition = ", ".join([*(_ident(k) for k in keys), TS])
        order = f"ORDER BY {_ident(source.created_timestamp_column)} DESC NULLS LAST"
        sql += f" QUALIFY row_number() OVER (PARTITION BY {partition} {order}) = 1"
    return sql


def _feature_select(join: _ViewJoin, event_ts: str) -> list[str]:
    """The view's output columns; with a TTL, a value older than ttl before the row is null."""
    if not join.ttl:
        return [f"{join.alias}.{_ident(o)}" for o in join.outputs]
    fresh = f"{join.alias}.{TS} + INTERVAL {_micros(join.ttl)} MICROSECOND >= __entities.{event_ts}"
    return [
        f"CASE WHEN {fresh} THEN {join.alias}.{_ident(o)} END AS {_ident(o)}" for o in join.outputs
    ]


def _asof_clause(join: _ViewJoin, event_ts: str) -> str:
    on = [f"__entities.{_ident(e)} = {join.alias}.{_ident(f)}" for f, e in join.keys.items()]
    on.append(f"__entities.{event_ts} >= {join.alias}.{TS}")
    return f"ASOF LEFT JOIN {join.alias} ON {' AND '.join(on)}"


def _historical_sql(joins: Sequence[_ViewJoin], event_ts_column: str) -> str:
    """Entity rows numbered in order, one ASOF LEFT JOIN per view, rows handed back in order."""
    ts = _ident(event_ts_column)
    entities = (
        f"__entities AS (SELECT * REPLACE (CAST({ts} AS TIMESTAMPTZ) AS {ts}), "
        f"row_number() OVER () AS {ROW} FROM {ENTITY_TABLE})"
    )
    ctes = ",\n".join([entities, *(j.cte for j in joins)])
    select = [f"__entities.* EXCLUDE ({ROW})"] + [c for j in joins for c in _feature_select(j, ts)]
    joined = "\n".join(_asof_clause(j, ts) for j in joins)
    return (
        f"WITH {ctes}\nSELECT {', '.join(select)}\nFROM __entities\n{joined}\n"
        f"ORDER BY __entities.{ROW}"
    )


# ---- the entity dataframe -------------------------------------------------------------------
EntityFrame = pd.DataFrame | pa.Table


def _entity_columns(entity_df: EntityFrame) -> dict[str, bool]:
    """Column name -> is a timestamp column, read from the frame's schema (no data touched)."""
    if isinstance(entity_df, pa.Table):
        return {f.name: pa.types.is_timestamp(f.type) for f in entity_df.schema}
    return {
        str(c): pd.api.types.is_datetime64_any_dtype(t)
        for c, t in zip(entity_df.columns, entity_df.dtypes, strict=True)
    }


def _event_timestamp_column(columns: dict[str, bool]) -> str:
    """`event_timestamp` if present, else the only timestamp column (Feast's rule)."""
    if DEFAULT_TS in columns:
        return DEFAULT_TS
    stamps = [name for name, is_ts in columns.items() if is_ts]
    if len(stamps) != 1:
        raise ConfigError(
            f"entity_df needs a column '{DEFAULT_TS}' (or exactly one timestamp column); "
            f"it has {sorted(columns)}"
        )
    return stamps[0]


def _check_entity_keys(
    columns: dict[str, bool], joins: Sequence[_ViewJoin], views: Sequence[FeatureView]
) -> None:
    for join, view in zip(joins, views, strict=True):
        missing = sorted(set(join.keys.values()) - set(columns))
        if missing:
            raise ConfigError(
                f"entity_df lacks the join key column(s) {missing} of feature view "
                f"'{view.name}'; it has {sorted(columns)}"
            )


def _timestamp_range(entity_df: EntityFrame, column: str) -> tuple[datetime, datetime]:
    """First and last entity timestamp (for saved-dataset metadata; computed on demand)."""
    if isinstance(entity_df, pa.Table):
        bounds = pc.min_max(entity_df[column])
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
    else:
        stamps = pd.to_datetime(entity_df[column], utc=True)
        low, high = stamps.min().to_pydatetime(), stamps.max().to_pydatetime()
    return low, high


# ---- the retrieval job ----------------------------------------------------------------------
class AsofRetrievalJob(RetrievalJob):
    """A DuckDB query over Parquet (and a registered entity frame), run when results are asked."""

    def __init__(
        self,
        sql: str,
        settings: AsofDuckDBOfflineStoreConfig,
        *,
        entity_df: EntityFrame | None = None,
        full_feature_names: bool = False,
        on_demand_feature_views: list[OnDemandFeatureView] | None = None,
        metadata: Callable[[], RetrievalMetadata] | None = None,
    ) -> None:
        super().__init__()
        self._sql = sql
        self._settings = settings
        self._entity_df = entity_df
        self._full_feature_names = full_feature_names
        self._odfvs = on_demand_feature_views or []
        self._metadata_fn = metadata
        self._metadata: RetrievalMetadata | None = None

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with _connect(self._settings) as con:
            if self._entity_df is not None:
                con.register(ENTITY_TABLE, self._entity_df)  # scanned in place, no copy
            yield con

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        with self._session() as con:
            return con.sql(self._sql).to_arrow_table()  # a relation streams into Arrow

    def to_df(
        self,
        validation_reference: ValidationReference | None = None,
        timeout: int | None = None,
    ) -> pd.DataFrame:
        """Feast's `to_df` (on-demand views, validation), converting Arrow -> pandas column by
        column and freeing each Arrow column as it goes, so the result is not held twice."""
        table = self.to_arrow(validation_reference=validation_reference, timeout=timeout)
        return table.to_pandas(split_blocks=True, self_destruct=True)

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def to_arrow_batches(self, rows_per_batch: int = 1_000_000) -> Iterator[pa.RecordBatch]:
        """The result as a stream of Arrow record batches (no on-demand transforms)."""
        with self._session() as con:
            yield from con.sql(self._sql).to_arrow_reader(rows_per_batch)

    def to_sql(self) -> str:
        return self._sql

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    @property
    def metadata(self) -> RetrievalMetadata | None:
        if self._metadata is None and self._metadata_fn is not None:
            self._metadata = self._metadata_fn()
        return self._metadata

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        """Write the result to a saved dataset's Parquet file straight from DuckDB."""
        source = storage.to_data_source()
        if not isinstance(source, FileSource):
            raise ConfigError(f"saved datasets go to a Parquet file, not {type(source).__name__}")
        path = Path(source.path)
        if path.exists() and not allow_overwrite:
            from feast.errors import SavedDatasetLocationAlreadyExists

            raise SavedDatasetLocationAlreadyExists(location=str(path))
        with self._session() as con:
            con.execute(f"COPY ({self._sql}) TO {_text(str(path))} (FORMAT parquet)")


# ---- the store ------------------------------------------------------------------------------
class AsofDuckDBOfflineStore(OfflineStore):
    """Feast's offline store interface answered by DuckDB ASOF JOINs over Parquet sources."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry | None,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        if kwargs.get("filter_by_created_timestamp"):
            raise NotImplementedError("filter_by_created_timestamp: use `type: duckdb`")
        if not isinstance(entity_df, pd.DataFrame | pa.Table):
            raise ConfigError(
                "the ASOF JOIN offline store needs entity_df as a pandas DataFrame or an Arrow "
                f"table, not {type(entity_df).__name__}"
            )
        columns = _entity_columns(entity_df)
        event_ts = _event_timestamp_column(columns)
        joins = [
            _view_join(config, view, i, feature_refs, full_feature_names)
            for i, view in enumerate(feature_views)
        ]
        _check_entity_keys(columns, joins, feature_views)
        odfvs = _on_demand_views(feature_refs, project, registry)

        def metadata() -> RetrievalMetadata:
            low, high = _timestamp_range(entity_df, event_ts)
            keys = [c for c in columns if c != event_ts]
            return RetrievalMetadata(list(feature_refs), keys, low, high)

        return AsofRetrievalJob(
            _historical_sql(joins, event_ts),
            _settings(config),
            entity_df=entity_df,
            full_feature_names=full_feature_names,
            on_demand_feature_views=odfvs,
            metadata=metadata,
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        """The latest row per entity key stamped within [start_date, end_date]."""
        sql = _pull_sql(
            config,
            data_source,
            [*join_key_columns, *feature_name_columns],
            timestamp_field,
            created_timestamp_column,
            (start_date, end_date),
        )
        order = [f"{_ident(timestamp_field)} DESC"]
        if created_timestamp_column:
            order.append(f"{_ident(created_timestamp_column)} DESC NULLS LAST")
        partition = ", ".join(_ident(k) for k in join_key_columns)
        window = f"PARTITION BY {partition} " if partition else ""
        sql += f" QUALIFY row_number() OVER ({window}ORDER BY {', '.join(order)}) = 1"
        return AsofRetrievalJob(sql, _settings(config))

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> RetrievalJob:
        """Every row stamped within [start_date, end_date] (either end may be open)."""
        sql = _pull_sql(
            config,
            data_source,
            [*join_key_columns, *feature_name_columns],
            timestamp_field,
            created_timestamp_column,
            (start_date, end_date),
        )
        return AsofRetrievalJob(sql, _settings(config))

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Appending to a view's Parquet (push sources): the stock DuckDB store's writer."""
        DuckDBOfflineStore.offline_write_batch(config, feature_view, table, progress)

    @staticmethod
    def write_logged_features(
        config: RepoConfig,
        data: pa.Table | Path,
        source: LoggingSource,
        logging_config: LoggingConfig,
        registry: BaseRegistry,
    ) -> None:
        """Feature logging to Parquet: the stock DuckDB store's writer."""
        DuckDBOfflineStore.write_logged_features(config, data, source, logging_config, registry)


def _pull_sql(
    config: RepoConfig,
    data_source: DataSource,
    columns: list[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    window: tuple[datetime | None, datetime | None],
) -> str:
    """Source columns (names as stored) of the rows stamped within `window`, ends included."""
    wanted = [*columns, timestamp_field]
    if created_timestamp_column:
        wanted.append(created_timestamp_column)
    owner = f"source '{data_source.name}'"
    relation = _parquet_sql(config, _parquet_source(data_source, owner), owner, wanted)
    stamp = f"CAST({_ident(timestamp_field)} AS TIMESTAMPTZ)"
    start, end = window
    where = [f"{stamp} >= {_instant(start)}"] if start else []
    where += [f"{stamp} <= {_instant(end)}"] if end else []
    sql = f"SELECT {', '.join(_ident(c) for c in wanted)} FROM {relation}"
    return sql + (f" WHERE {' AND '.join(where)}" if where else "")


def _on_demand_views(
    feature_refs: Sequence[str], project: str, registry: BaseRegistry | None
) -> list[OnDemandFeatureView]:
    """Requested on-demand views; Feast's RetrievalJob.to_arrow applies them to the result."""
    if registry is None:
        return []
    odfvs = OnDemandFeatureView.get_requested_odfvs(list(feature_refs), project, registry)
    if any(v.mode == "substrait" for v in odfvs):
        raise ConfigError("substrait on-demand feature views need `type: duckdb`")
    return odfvs
