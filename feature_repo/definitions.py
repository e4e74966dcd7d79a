"""tvrec's Feast objects: entities, feature views (one per feature family) and one
FeatureService per model.

Every source is a Parquet table that `tvrec features build` writes under
`$TVREC_WORKDIR/features/`. Each row carries `event_timestamp` = the instant the value became
known, and was computed only from events strictly before it; Feast's point-in-time join then
gives a training row at time T the latest value stamped <= T, so no row sees its own future.
Time-dependent tables hold a row only where a value changes (pipelines/features/temporal.py),
so a value is valid until a newer row replaces it, however old it is: every view keeps NO_TTL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int64, String

# Absolute, not relative: the `feast` CLI imports this file as a top-level module.
from tvrec.pipelines.workdir import workdir_root

# $TVREC_WORKDIR (else ./tvrec-work) as every tvrec command resolves it: an empty variable is
# the default too (it was the current directory here)
WORKDIR = workdir_root(None)
FEATURES = WORKDIR / "features"
NO_TTL = timedelta(0)  # no expiry: values stay valid until a newer row replaces them


def _source(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(FEATURES / f"{name}.parquet"),
        timestamp_field="event_timestamp",
    )


# ---- entities -------------------------------------------------------------------------------
# A show in the catalogue (series, film or special), keyed by the dataset's show_id.
show = Entity(
    name="show",
    join_keys=["show_id"],
    value_type=ValueType.STRING,
    description="A title in the TV catalogue",
)
# A viewer, keyed by the dataset's user_id.
user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A viewer"
)

# ---- show features --------------------------------------------------------------------------
# Catalogue metadata encoded against the vocabularies in features/vocab.json (0 = unknown).
# Stamped 1970-01-01: it does not depend on viewing events.
show_metadata = FeatureView(
    name="show_metadata",
    entities=[show],
    ttl=NO_TTL,
    schema=[
        Field(name="year", dtype=Int64),
        Field(name="seasons", dtype=Int64),
        Field(name="episodes", dtype=Int64),
        Field(name="runtime_minutes", dtype=Float32),
        Field(name="n_genres", dtype=Int64),
        Field(name="genre_ids", dtype=Array(Int64)),
        Field(name="network_id", dtype=Int64),
        Field(name="platform_ids", dtype=Array(Int64)),
        Field(name="age_rating_id", dtype=Int64),
        Field(name="type_id", dtype=Int64),
        Field(name="language_id", dtype=Int64),
        Field(name="premiered_days", dtype=Int64),
    ],
    source=_source("show_metadata"),
    tags={"family": "show"},
)

# MiniLM embedding of "title. description. Genre, Genre" (384 floats, L2-normalised; the
# genre names let a catalogue without descriptions answer genre queries), cached by content hash.
show_text = FeatureView(
    name="show_text",
    entities=[show],
    ttl=NO_TTL,
    schema=[
        Field(name="text_embedding", dtype=Array(Float32)),
        Field(name="content_hash", dtype=String),
    ],
    source=_source("show_text"),
    tags={"family": "show"},
)

# ---- graph features -------------------------------------------------------------------------
# Per-show statistics of the show-person graph and of the user-show co-watch graph, on a
# monthly grid (co-watch pairs formed strictly before the snapshot), a row where they change.
show_graph = FeatureView(
    name="show_graph",
    entities=[show],
    ttl=NO_TTL,
    schema=[
        Field(name="person_degree", dtype=Int64),
        Field(name="cocast_neighbors", dtype=Int64),
        Field(name="cowatch_degree", dtype=Int64),
        Field(name="cowatch_weight", dtype=Float32),
        Field(name="pagerank", dtype=Float32),
    ],
    source=_source("show_graph"),
    tags={"family": "graph"},
)

# ---- temporal features ----------------------------------------------------------------------
# Views in the trailing 7/30/365 days on a daily grid, a row per show where they change.
show_popularity = FeatureView(
    name="show_popularity",
    entities=[show],
    ttl=NO_TTL,
    schema=[
        Field(name="views_7d", dtype=Int64),
        Field(name="views_30d", dtype=Int64),
        Field(name="views_365d", dtype=Int64),
        Field(name="views_total", dtype=Int64),
        Field(name="trend", dtype=Float32),
    ],
    source=_source("show_popularity"),
    tags={"family": "temporal"},
)

# Weekly and yearly viewing profiles so far (weekday shares Monday first; month shares), on
# a weekly grid, a row per show where they change.
show_seasonality = FeatureView(
    name="show_seasonality",
    entities=[show],
    ttl=NO_TTL,
    schema=[
        Field(name="weekday_profile", dtype=Array(Float32)),
        Field(name="month_profile", dtype=Array(Float32)),
        Field(name="december_share", dtype=Float32),
    ],
    source=_source("show_seasonality"),
    tags={"family": "temporal"},
)

# A viewer's recent activity on a daily grid, a row per user where it changes. The last
# event's time (us since 1970) replaces a days-since count, which would change every day:
# days since the last event at T = (T - last_event_us) / 86_400e6.
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="events_7d", dtype=Int64),
        Field(name="events_30d", dtype=Int64),
        Field(name="events_total", dtype=Int64),
        Field(name="last_event_us", dtype=Int64),
    ],
    source=_source("user_activity"),
    tags={"family": "temporal"},
)

# Share of a viewer's watching per genre so far (index = genre id), at each change point.
user_genre_affinity = FeatureView(
    name="user_genre_affinity",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="genre_affinity", dtype=Array(Float32)),
        Field(name="n_genres_seen", dtype=Int64),
    ],
    source=_source("user_genre_affinity"),
    tags={"family": "temporal"},
)

FEATURE_VIEWS = [
    show_metadata,
    show_text,
    show_graph,
    show_popularity,
    show_seasonality,
    user_activity,
    user_genre_affinity,
]

# ---- one FeatureService per model -----------------------------------------------------------
collaborative_v1 = FeatureService(
    name="collaborative_v1",
    features=[user_activity, show_popularity],
    description="Matrix-factorisation baseline: activity and popularity for sampling and bias",
)
multimodal_v1 = FeatureService(
    name="multimodal_v1",
    features=[show_metadata, show_text, user_genre_affinity],
    description="Multimodal transformer over text and metadata",
)
contrastive_v1 = FeatureService(
    name="contrastive_v1",
    features=[show_metadata, show_text],
    description="Contrastive show encoder",
)
graph_v1 = FeatureService(
    name="graph_v1",
    features=[show_metadata, show_graph],
    description="Heterogeneous GNN (edge tables are read beside the features)",
)
temporal_v1 = FeatureService(
    name="temporal_v1",
    features=[show_popularity, show_seasonality, user_activity],
    description="Temporal/seasonal attention model",
)
meta_v1 = FeatureService(
    name="meta_v1",
    features=[show_metadata, user_activity, user_genre_affinity],
    description="Meta-learning adapter for new genres, platforms and users",
)
ensemble_v1 = FeatureService(
    name="ensemble_v1",
    features=FEATURE_VIEWS,
    description="Ensemble over all six models",
)

FEATURE_SERVICES = [
    collaborative_v1,
    multimodal_v1,
    contrastive_v1,
    graph_v1,
    temporal_v1,
    meta_v1,
    ensemble_v1,
]


# ---- serving --------------------------------------------------------------------------------
def serving_views(release: Path) -> tuple[FeatureView, FeatureView]:
    """The serving views with their sources in `release`: the `release` link (below, what
    `feast apply` registers) or one release's own directory, which `tvrec recommend` loads
    online before that release becomes current (pipelines/store.py)."""
    # The current nightly top-k per user (show ids and scores, best first), written by
    # `tvrec recommend` into each release, so an application reads recommendations through
    # Feast online retrieval like any other feature.
    recommendations = FeatureView(
        name="user_recommendations",
        entities=[user],
        ttl=NO_TTL,
        schema=[
            Field(name="show_ids", dtype=Array(String)),
            Field(name="scores", dtype=Array(Float32)),
            Field(name="model_version", dtype=String),
        ],
        source=FileSource(
            name="user_recommendations_source",
            path=str(release / "user_recommendations.parquet"),
            timestamp_field="event_timestamp",
        ),
        tags={"family": "serving"},
    )
    # Each show's forecast views in the 7 and 30 days after the as-of (the temporal model's),
    # and the growth over the same span before it: published in the release beside the top-k
    # tables when the temporal model is trained.
    forecast = FeatureView(
        name="show_forecast",
        entities=[show],
        ttl=NO_TTL,
        schema=[
            Field(name="views_7d", dtype=Float32),
            Field(name="views_30d", dtype=Float32),
            Field(name="growth_7d", dtype=Float32),
            Field(name="growth_30d", dtype=Float32),
            Field(name="model_version", dtype=String),
        ],
        source=FileSource(
            name="show_forecast_source",
            path=str(release / "show_forecast.parquet"),
            timestamp_field="event_timestamp",
        ),
        tags={"family": "serving"},
    )
    return recommendations, forecast


# Through the `release` link: the views switch with the release (jobs/release.py).
user_recommendations, show_forecast = serving_views(WORKDIR / "release")
