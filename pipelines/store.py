"""Feast access for tvrec: apply the repo, materialize, online reads, point-in-time training sets.

Everything goes through Feast's real stores (tvrec's ASOF JOIN offline store over Parquet,
`pipelines/feast_offline.py`; SQLite online store; SQL registry on SQLite), configured by
`feature_repo/feature_store.yaml` with paths inside the work directory. A work directory may
keep its own `feature_store.yaml` (`tvrec features config --init` writes a copy to edit): the
same repo then runs on other engines, Redis online or Ray offline (docs/scale-out.md).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import skip_feast_import_typechecks
from .config import WORKDIR_ENV
from .errors import ConfigError, EngineError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from feast import FeatureService, FeatureStore

skip_feast_import_typechecks()  # before anything here imports feast

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FEAST_CONFIG = "feature_store.yaml"


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


def feast_config(workdir: Path) -> Path:
    """The work directory's own `feature_store.yaml` when it has one, else the packaged
    repo's (SQLite online, DuckDB offline, SQL registry on SQLite, all inside the work
    directory)."""
    own = Path(workdir) / FEAST_CONFIG
    return own if own.is_file() else repo_path() / FEAST_CONFIG


# The packaged template's active blocks, which `write_config` swaps for other engines.
SQLITE_ONLINE = """online_store:
  type: sqlite
  path: ${TVREC_WORKDIR}/feast/online_store.db
"""
DUCKDB_OFFLINE = """offline_store:
  type: tvrec.pipelines.feast_offline.AsofDuckDBOfflineStore
"""
LOCAL_ENGINE = """batch_engine:
  type: local
"""
LOCAL_RAY = "local"  # `--ray local`: a Ray runtime started in the process (2+ cores)


def write_config(workdir: Path, redis: str | None = None, ray: str | None = None) -> Path:
    """The work directory's own `feature_store.yaml`: the packaged one, with the online store
    on Redis at `redis` (host:port[,db=N]) and/or the offline store and materialization on
    Ray (`ray`: a cluster address such as ray://head:10001, or "local"). Refuses to
    overwrite one."""
    target = Path(workdir) / FEAST_CONFIG
    if target.exists():
        raise ConfigError(f"{target} exists: edit it, or remove it to start from the template")
    text = (repo_path() / FEAST_CONFIG).read_text(encoding="utf-8")
    if redis is not None:
        text = text.replace(SQLITE_ONLINE, _redis_block(redis), 1)
    if ray is not None:
        address = "" if ray == LOCAL_RAY else f'  ray_address: "{_plain(ray, "--ray")}"\n'
        offline = "offline_store:\n  type: ray\n  storage_path: ${TVREC_WORKDIR}/feast/ray\n"
        text = text.replace(DUCKDB_OFFLINE, offline + address, 1)
        text = text.replace(LOCAL_ENGINE, "batch_engine:\n  type: ray.engine\n" + address, 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{FEAST_CONFIG}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def _redis_block(redis: str) -> str:
    check_redis(redis)
    return f'online_store:\n  type: redis\n  connection_string: "{redis}"\n'


def check_redis(redis: str) -> None:
    """A ConfigError for a `--redis` value Feast cannot connect with: Feast's form is
    HOST:PORT nodes, then ,key=value options such as db=N. Feast splits a node at every ':'
    and its plain Redis store needs the port, so a node must be one host name or IPv4
    address, one ':' and a port from 1 to 65535."""
    nodes = [node for node in redis.split(",") if "=" not in node]
    if not nodes:
        raise ConfigError(f"--redis {redis!r}: give HOST:PORT, optionally ,db=N")
    for node in nodes:
        _check_redis_node(
            f"--redis {redis!r}" + ("" if node == redis else f" (node {node!r})"), node
        )
    _plain(redis, "--redis")


def _check_redis_node(where: str, node: str) -> None:
    """One HOST:PORT node of a Redis connection string; `where` names it in the message
    (the `--redis` value, or the feature_store.yaml that holds it)."""
    if "[" in node or node.count(":") > 1:
        # "[::1]:6379" became host "[" and port "", "::1:6379" host "" (Feast's parse)
        raise ConfigError(
            f"{where}: an IPv6 address, which Feast's Redis connection string "
            "cannot carry (it splits HOST:PORT at every ':'); give a host name that resolves "
            "to it (localhost, or a name in /etc/hosts) as HOST:PORT"
        )
    host, sep, port = node.partition(":")
    if not host:
        raise ConfigError(f"{where}: give HOST:PORT, optionally ,db=N")
    if not sep:  # Feast's Redis store read node["port"]: a KeyError at the first connection
        raise ConfigError(f"{where}: give the port too, as {host}:PORT (Redis's own is 6379)")
    if not (port.isascii() and port.isdigit()):
        raise ConfigError(f"{where}: port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"{where}: port {int(port)} is not 1-65535")


def _plain(value: str, option: str) -> str:
    """A value safe to quote in YAML as it is."""
    if any(c.isspace() or c in "\"'\\" for c in value) or not value:
        raise ConfigError(f"{option} {value!r}: no spaces or quotes")
    return value


def feature_store(workdir: Path) -> FeatureStore:
    from feast import FeatureStore

    workdir = Path(workdir).resolve()
    _definitions(workdir)
    (workdir / "feast").mkdir(parents=True, exist_ok=True)
    config = feast_config(workdir)
    try:
        return FeatureStore(repo_path=str(repo_path()), fs_yaml_file=config)
    except Exception as exc:  # Feast's own config errors: pydantic, YAML, unknown store types
        if type(exc).__module__.startswith(("feast", "pydantic", "yaml")):
            raise ConfigError(f"{config}: {_first_line(exc)}") from None
        raise


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[:3]).strip()
    return text or type(exc).__name__


def online_endpoint(store: FeatureStore) -> tuple[str, str | None]:
    """The online store's type and, for a networked one, its `host:port` (None: embedded)."""
    cfg = store.config.online_store
    kind = str(getattr(cfg, "type", "sqlite"))
    conn = getattr(cfg, "connection_string", None)
    if not conn:
        return kind, None
    node = conn.split(",")[0].strip()  # Redis's HOST:PORT as written: Feast connects to no other
    if "://" in node:  # a URL (MongoDB's mongodb://HOST:PORT/...): its host and port
        url = urlsplit(node)
        return kind, f"{url.hostname}:{url.port}" if url.port else url.hostname or node
    return kind, node


def check_online_store(workdir: Path, timeout: float = 3.0) -> None:
    """Fail early, before anything is written, when a networked online store is not there."""
    import socket

    if feast_config(workdir) == repo_path() / FEAST_CONFIG:  # the packaged one: SQLite
        return
    kind, where = online_endpoint(feature_store(workdir))
    if where is None:
        return
    if "redis" in kind.lower():  # hand-edited: the checks `--redis` gets (Feast reads
        # node["port"]: a KeyError at the first write without one; splits IPv6 at each ':')
        label = f"{feast_config(workdir)}: online_store connection_string {where!r}"
        _check_redis_node(label, where)
    host, sep, port = where.rpartition(":")
    if not sep:  # a URL with its scheme's default port: the store's client finds it
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"online store {kind} at {where} ({feast_config(workdir)}): cannot connect "
            f"({exc}); start it or point online_store at a running one"
        ) from None


@contextlib.contextmanager
def online_errors(store: FeatureStore, doing: str) -> Iterator[None]:
    """A networked online store that goes away while `doing`: an EngineError naming it."""
    try:
        yield
    except Exception as exc:
        if not _unreachable(exc):
            raise
        kind, where = online_endpoint(store)
        raise EngineError(
            f"online store {kind} at {where or 'its configured path'} went away while "
            f"{doing}: {_first_line(exc)}"
        ) from None


def _unreachable(exc: BaseException) -> bool:
    """A lost connection or timeout, from the socket layer or from a store's client."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    name = type(exc).__name__
    return name in {"ConnectionError", "TimeoutError", "BusyLoadingError"} and (
        type(exc).__module__.startswith("redis")
    )


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
    with contextlib.redirect_stdout(io.StringIO()), online_errors(store, "materializing"):
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
    with online_errors(store, "reading"):
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


def apply_recommendations(
    workdir: Path, as_of: datetime, forecast: bool = False, release: Path | None = None
) -> None:
    """Register the serving views (`user_recommendations`, and `show_forecast` when the
    release has one) and load a release's rows online: `release`'s own files (a staged
    release, loaded before it becomes current), else the current release's; the views are
    then registered through the `release` link, as `feast apply` leaves them."""
    defs = _definitions(Path(workdir).resolve())
    store = feature_store(workdir)
    linked = [defs.user_recommendations, *([defs.show_forecast] if forecast else [])]
    staged = defs.serving_views(release)[: len(linked)] if release is not None else linked
    try:
        store.apply([defs.user, defs.show, *staged])
        materialize(store, as_of, [v.name for v in staged])
    except BaseException:
        if release is not None:  # the registry back on the link; the first error is the news
            with contextlib.suppress(Exception):
                store.apply([defs.user, defs.show, *linked])
        raise
    if release is not None:
        store.apply([defs.user, defs.show, *linked])
