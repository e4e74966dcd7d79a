"""Feast access for tvrec: apply the repo, materialize, online reads, point-in-time training sets.

Everything goes through Feast's real stores (tvrec's ASOF JOIN offline store over Parquet,
`pipelines/feast_offline.py`; SQLite online store; SQL registry on SQLite), configured by
`feature_repo/feature_store.yaml` with paths inside the work directory.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import skip_feast_import_typechecks
from .config import WORKDIR_ENV
from .errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from feast import FeatureService, FeatureStore

skip_feast_import_typechecks()  # before anything here imports feast

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def repo_path() -> Path:
    import tvrec.feature_repo as repo

    return Path(repo.__file__).resolve().parent


def _definitions(workdir: Path) -> ModuleType:
    """The repo's definitions module, (re)loaded for this work directory."""
    os.environ[WORKDIR_ENV] = str(workdir)
    import tvrec.feature_repo.definitions as defs

    if Path(defs.WORKDIR) != workdir:
        defs = importlib.reload(defs)
    return defs


def feature_store(workdir: Path) -> FeatureStore:
    from feast import FeatureStore

    workdir = Path(workdir).resolve()
    _definitions(workdir)
    (workdir / "feast").mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(repo_path()))


def apply(workdir: Path) -> FeatureStore:
    """The equivalent of `feast apply` for this work directory's feature tables."""
    defs = _definitions(Path(workdir).resolve())
    store = feature_store(workdir)
    store.apply([defs.show, defs.user, *defs.FEATURE_VIEWS, *defs.FEATURE_SERVICES])
    return store


def materialize(store: FeatureStore, as_of: datetime, views: list[str] | None = None) -> None:
    """Load the latest value of each feature view (as of `as_of`) into the online store.

    Feast prints its own progress to stdout; tvrec's stage log reports instead, and stdout
    stays clean for `--json` output.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(start_date=EPOCH, end_date=as_of, feature_views=views)


def online_features(
    store: FeatureStore, *, user: str | None = None, show: str | None = None
) -> dict[str, Any]:
    """Online feature values of one user or one show, by feature view."""
    defs = _definitions(Path(os.environ[WORKDIR_ENV]))
    if (user is None) == (show is None):
        raise ValueError("give exactly one of user or show")
    key, value = ("user_id", user) if user is not None else ("show_id", show)
    views = [fv for fv in defs.FEATURE_VIEWS if fv.entities == [key.split("_")[0]]]
    refs = [f"{fv.name}:{f.name}" for fv in views for f in fv.features]
    resp = store.get_online_features(
        features=refs, entity_rows=[{key: value}], full_feature_names=True
    )
    return resp.to_dict()


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
    """Feast point-in-time join of `entity_df` (user_id, show_id, event_timestamp, ...).

    Rows come back in `entity_df`'s order (the offline store in `feature_store.yaml`, an ASOF
    JOIN over the Parquet feature tables, keeps it). An unknown `service` is a ConfigError
    that lists the known ones.
    """
    return _job(store, entity_df, service).to_df()


def historical_table(store: FeatureStore, entity_df: pd.DataFrame, service: str) -> pa.Table:
    """`historical_features` as Arrow: column types come from the feature tables, the same in
    every part of a training set (pandas would turn an integer column with nulls to float)."""
    return _job(store, entity_df, service).to_arrow()


def _job(store: FeatureStore, entity_df: pd.DataFrame, service: str) -> Any:
    fs = _feature_service(store, service)
    return store.get_historical_features(entity_df=entity_df, features=fs, full_feature_names=True)


def _feature_service(store: FeatureStore, service: str) -> FeatureService:
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        known = sorted(s.name for s in store.list_feature_services())
        raise ConfigError(
            f"unknown FeatureService {service!r}; known: {', '.join(known) or 'none (run apply)'}"
        ) from None


def values_per_row(store: FeatureStore, service: str) -> int:
    """How many values one training row of `service` carries: a scalar feature counts 1, a
    list feature (a text embedding) its length, read from the first row of its Parquet."""
    import pyarrow.parquet as pq

    total = 4  # the entity row: user_id, show_id, event_timestamp, label
    for projection in _feature_service(store, service).feature_view_projections:
        view = store.get_feature_view(projection.name)
        names = [f.name for f in projection.features]
        first = next(pq.ParquetFile(view.batch_source.path).iter_batches(1, columns=names), None)
        for name in names:
            value = first.column(name)[0].as_py() if first is not None else None
            total += len(value) if isinstance(value, list) else 1
    return total


def apply_recommendations(workdir: Path, as_of: datetime, forecast: bool = False) -> None:
    """Register the serving views (`user_recommendations`, and `show_forecast` when the
    release has one) and load the current release's rows online."""
    defs = _definitions(Path(workdir).resolve())
    store = feature_store(workdir)
    views = [defs.user_recommendations, *([defs.show_forecast] if forecast else [])]
    store.apply([defs.user, defs.show, *views])
    materialize(store, as_of, [v.name for v in views])
