"""`tvrec features build`: the three feature families, written as Feast offline sources,
applied to the Feast repo and materialized into the online store.

All inputs are cut to events strictly before the as-of time first; each builder then stamps a
row at t only from events < t (see pipelines/features).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from .config import Settings
from .contract import Dataset
from .features import graph, show, temporal, text
from .features.vocab import Vocab, build_vocab
from .ingest import read_lake
from .progress import StageLog
from .store import EPOCH, apply, materialize
from .workdir import Workdir

MANIFEST = "manifest.json"
VOCAB = "vocab.json"
GRAPH_DIR = "graph"


@dataclass
class BuildSummary:
    as_of: str
    dataset: str
    rows: dict[str, int]
    edges: dict[str, int]
    texts_encoded: int
    events_used: int
    events_after_as_of: int
    seconds: dict[str, float] = field(default_factory=dict)
    # how co-watch pairs were formed (`graph_inputs.CowatchRule`): a graph built again from
    # fewer events (the ensemble's graph member at its cut) forms them the same way
    cowatch: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def default_as_of(dataset: Dataset) -> datetime:
    """Just after the last event: every event counts, nothing is in the future."""
    from datetime import timedelta

    last = dataset.events["event_timestamp"].max()
    return (last + timedelta(seconds=1)) if last is not None else datetime.now(EPOCH.tzinfo)


def check_as_of(ds: Dataset, used: pl.DataFrame, as_of: datetime) -> None:
    """A ConfigError when the lake has events but none before `as_of`: nothing could be
    learnt, and the refusal comes before anything is built or replaced."""
    if used.height or not ds.events.height:
        return
    from .errors import ConfigError

    first = ds.events["event_timestamp"].min()
    raise ConfigError(
        f"--as-of {as_of.isoformat()} is not after the first event ({first.isoformat()}): "
        f"all {ds.events.height:,} events of dataset {ds.name!r} lie at or after it; "
        "choose a later --as-of"
    )


def build_features(
    workdir: Workdir, settings: Settings, as_of: datetime | None = None, log: StageLog | None = None
) -> BuildSummary:
    log = log or StageLog()
    with log.stage("read lake"):
        ds = read_lake(workdir)
        as_of = as_of or default_as_of(ds)
        events = ds.events.filter(pl.col("event_timestamp") < as_of)
        check_as_of(ds, events, as_of)
        vocab = build_vocab(ds.shows)
    tables: dict[str, pl.DataFrame] = {}
    edges: dict[str, pl.DataFrame] = {}
    fs = settings.features
    with log.stage("show features"):
        tables["show_metadata"] = show.show_metadata_features(ds.shows, vocab, EPOCH)
        encoded = _text_features(ds, workdir, settings, tables)
    with log.stage("graph features"):
        edges = graph.show_graph_edges(ds.shows, ds.credits)
        edges["cowatch"] = graph.cowatch_edges(
            events, as_of, fs.max_user_history, fs.cowatch_min_users
        )
        tables["show_graph"] = graph.show_graph_stats(
            ds.shows, ds.credits, events, as_of, fs.max_user_history, fs.cowatch_min_users
        )
    with log.stage("temporal features"):
        show_ids = ds.shows["show_id"]
        tables["show_popularity"] = temporal.show_popularity(events, show_ids, as_of)
        tables["show_seasonality"] = temporal.show_seasonality(events, show_ids, as_of)
        tables["user_activity"] = temporal.user_activity(events, as_of)
        tables["user_genre_affinity"] = temporal.user_genre_affinity(events, ds.shows, vocab, as_of)
    summary = BuildSummary(
        as_of=as_of.isoformat(),
        dataset=ds.name,
        rows={k: v.height for k, v in tables.items()},
        edges={k: v.height for k, v in edges.items()},
        texts_encoded=encoded,
        events_used=events.height,
        events_after_as_of=ds.events.height - events.height,
        cowatch={"max_user_history": fs.max_user_history, "min_users": fs.cowatch_min_users},
    )
    with log.stage("write feature tables"):
        _publish(workdir, tables, edges, vocab, summary)
    with log.stage("feast apply"):
        store = apply(workdir.root)
    with log.stage("feast materialize"):
        materialize(store, as_of)
    summary.seconds = dict(log.seconds)
    return summary


def _text_features(
    ds: Dataset, workdir: Workdir, settings: Settings, tables: dict[str, pl.DataFrame]
) -> int:
    workdir.cache.mkdir(parents=True, exist_ok=True)
    result = text.show_text_embeddings(
        ds.shows,
        workdir.cache / "text_embeddings.parquet",
        text.TextEncoder(),
        batch_size=settings.features.text_batch_size,
    )
    tables["show_text"] = result.table.with_columns(
        pl.lit(EPOCH).dt.cast_time_unit("us").alias("event_timestamp")
    )
    return result.n_encoded


def _publish(
    workdir: Workdir,
    tables: dict[str, pl.DataFrame],
    edges: dict[str, pl.DataFrame],
    vocab: Vocab,
    summary: BuildSummary,
) -> None:
    with workdir.publish("features") as staging:
        for name, table in tables.items():
            table.write_parquet(staging / f"{name}.parquet")
        (staging / GRAPH_DIR).mkdir()
        for name, table in edges.items():
            table.write_parquet(staging / GRAPH_DIR / f"{name}.parquet")
        (staging / VOCAB).write_text(json.dumps(vocab.to_json()))
        (staging / MANIFEST).write_text(json.dumps(summary.to_json(), indent=2))


def read_manifest(workdir: Workdir) -> dict:
    path = workdir.require("features", "run `tvrec features build` first") / MANIFEST
    return json.loads(Path(path).read_text())
