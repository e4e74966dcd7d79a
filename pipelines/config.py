"""Settings of a tvrec installation, validated where they enter.

Resolution order: command-line flag > environment variable > `tvrec.toml` in the work
directory > defaults.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .workdir import DEFAULT_WORKDIR, workdir_root
from .workdir import WORKDIR_ENV as WORKDIR_ENV  # re-exported: where commands import it

# over tvrec.toml's [models] train / serve (comma-separated names): a quick run of one model
MODEL_ENV = {"train": "TVREC_TRAIN", "serve": "TVREC_SERVE"}
CONFIG_FILE = "tvrec.toml"


def scalar_kind(annotation: Any) -> type | None:
    """`float` for a field that takes numbers only, `bool` for one that takes true/false only
    (either may also take None); None for anything else (text, lists, unions with text)."""
    union = get_origin(annotation) in (Union, types.UnionType)
    args = set(get_args(annotation) if union else (annotation,)) - {type(None)}
    if args == {bool}:
        return bool
    return float if args and args <= {int, float} else None


def no_loose_scalar(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """Refuse what pydantic's lax mode would coerce into a number or a switch: a TOML
    `epochs = "5"`, `min_year = true` or `calibrate = "yes"` is a mistake to name, not to
    read as 5, 1 or True."""
    kind = scalar_kind(model.model_fields[info.field_name or ""].annotation)
    if kind is float and isinstance(value, str):
        raise ValueError(f"a number is expected, not {_toml(value)} (write it without quotes)")
    if kind is float and isinstance(value, bool):
        raise ValueError(f"a number is expected, not {_toml(value)}")
    if kind is bool and value is not None and not isinstance(value, bool):
        raise ValueError(f"true or false is expected, not {_toml(value)}")
    return value


def _toml(value: Any) -> str:
    return json.dumps(value, default=str)  # as TOML spells it: true, "5"


class Settled(BaseModel):
    """A base for settings read from tvrec.toml: numbers and switches as TOML spells them
    (`no_loose_scalar`); `Strict` and the models' `ModelConfig` build on it."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_loose_scalar(cls, value: Any, info: ValidationInfo) -> Any:
        return no_loose_scalar(cls, value, info)


class Strict(Settled):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSettings(Strict):
    """Knobs of `tvrec features build` (the popularity windows are fixed: 7, 30 and 365 days,
    the Feast views' views_7d, views_30d and views_365d)."""

    text_batch_size: int = Field(64, ge=1)
    cowatch_min_users: int = Field(2, ge=1, description="co-watch edges need this many users")
    max_user_history: int = Field(200, ge=1, description="cap per user for co-watch pairs")


class IngestSettings(Strict):
    """What `tvrec ingest` (and the ingest of `tvrec run`) accepts: event timestamps must fall
    in the years min_year..max_year (an epoch in milliseconds read as seconds, or a
    placeholder year such as 9999, is refused), and text files are read in `encoding`
    (`--encoding` overrides it)."""

    min_year: int = Field(1900, ge=1, le=9000, description="earliest plausible event year")
    max_year: int = Field(2100, ge=1, le=9000, description="latest plausible event year")
    encoding: Literal["utf-8", "latin-1", "cp1252", "mac-roman"] | None = Field(
        None, description="text encoding of the input files (default: the format's own, UTF-8)"
    )

    @model_validator(mode="after")
    def _check_years(self) -> IngestSettings:
        if self.min_year > self.max_year:
            raise ValueError(f"min_year {self.min_year} is after max_year {self.max_year}")
        return self


class HardwareSettings(Strict):
    """`auto` picks a profile from the hardware; `cpu`/`gpu` force one."""

    profile: Literal["auto", "cpu", "gpu"] = "auto"
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads while a model trains (default: torch's "
        "own count); fewer than the cores on a machine shared with other jobs",
    )  # fmt: skip
    deterministic: bool = Field(
        True, description="torch's deterministic kernels while training: the same data, seed "
        "and thread count give the same model; false allows faster unordered ones",
    )  # fmt: skip
    processes: int = Field(
        1, ge=1, description="processes that train each model together (data-parallel under "
        "torchrun: gloo on CPU, NCCL with a GPU each); `tvrec train --nproc` overrides it",
    )  # fmt: skip


class ModelSettings(Strict):
    """Which models the nightly job trains, which one serves the top-k tables, and each
    model's hyper-parameters (`[models.multimodal]`, ...).

    A section may name any field of the model's config class (`models/<name>.py`, listed in
    the registry) and is validated by that class as the settings load, so a misspelt or
    inconsistent value is refused, with its name, before anything runs."""

    train: tuple[str, ...] = Field(
        ("multimodal", "graph", "contrastive", "meta", "ensemble"), description="trained in "
        "this order: a model built on others (the ensemble's members and content space) comes "
        "after them; the ensemble trains and publishes the members its `advance` names (by "
        "default the temporal model: all six models a night)",
    )  # fmt: skip
    serve: str = "ensemble"
    k: int = Field(50, ge=1, description="recommendations per user and per show")
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _collect_sections(cls, data: Any) -> Any:
        """`[models.<name>]` tables of registered models become `sections`."""
        from tvrec.models.registry import names

        if not isinstance(data, dict):
            return data
        data = dict(data)
        sections = {n: data.pop(n) for n in names() if isinstance(data.get(n), dict)}
        return data | {"sections": sections | dict(data.get("sections", {}))}

    @model_validator(mode="after")
    def _check_models(self) -> ModelSettings:
        from tvrec.models.registry import UnknownModelError, model_class, names

        for name in (*self.train, self.serve):
            if name not in names():
                raise ValueError(str(UnknownModelError(name)))
        for name, values in self.sections.items():  # imports only the models configured
            model_class(name).parse_config(values)  # ConfigError naming the setting
        return self

    @classmethod
    def section_names(cls) -> list[str]:
        """The `[models.<name>]` sections there may be: one per registered model."""
        from tvrec.models.registry import names

        return list(names())

    def params(self, model: str) -> dict[str, Any]:
        """The hyper-parameters `tvrec.toml` sets for `model` (empty: all defaults)."""
        return dict(self.sections.get(model, {}))


class IndexSettings(Strict):
    """How `tvrec recommend` indexes the served show vectors (tvrec/index/backends.py):
    exact up to `exact_max` shows, `approximate` above; IVF-PQ codes where full vectors
    would pass `memory_budget_mb`. An approximate index's recall@k against exact search, on
    `recall_queries` sampled users, goes into the run record."""

    exact_max: int = Field(50_000, ge=0, description="flat (exact) index up to this many shows")
    approximate: Literal["hnsw", "ivf"] = "hnsw"
    memory_budget_mb: int | None = Field(
        None, ge=1, description="IVF-PQ above this size of full vectors (default: half the "
        "memory available as the index is built)",
    )  # fmt: skip
    pq_bytes: Literal[8, 16, 32, 48, 64] = 32
    ef_search: int = Field(128, ge=1, description="HNSW search breadth")
    nprobe: int | None = Field(None, ge=1, description="IVF lists searched (default nlist/8)")
    device: Literal["auto", "cpu", "gpu"] = "auto"
    recall_queries: int = Field(500, ge=0, description="users sampled to measure recall@k")


class RecommendSettings(Strict):
    """How `tvrec recommend` computes the users' top-k table (jobs/shards.py): in this
    process (`shards = 1`), or split into user shards searched by parallel workers, each
    writing its own part; the table is published only when every part is written and checked."""

    shards: int = Field(1, ge=1, description="user shards, each searched by its own worker")
    engine: Literal["processes", "ray"] = Field(
        "processes", description="the workers: local processes, or Ray tasks (tvrec[ray])"
    )
    workers: int | None = Field(
        None, ge=1, description="local worker processes at once (default: shards, at most the "
        "cores)",
    )  # fmt: skip
    ray_address: str | None = Field(
        None, description="the Ray cluster for engine = 'ray' (default: $RAY_ADDRESS, else a "
        "Ray runtime started on this machine)",
    )  # fmt: skip


class SchedulerSettings(Strict):
    """Where `tvrec schedule` keeps its job, and where writers hold the run lock.

    Default: `scheduler.sqlite` and file locks in the work directory. A PostgreSQL URL
    shares one database among schedulers on several hosts (`pip install -e '.[postgres]'`):
    each work directory gets its own job table, and the run and scheduler locks are also
    PostgreSQL advisory locks, released by the server when their holder dies."""

    database: str | None = Field(
        None, description="SQLAlchemy URL, e.g. postgresql+psycopg://tvrec@db:5432/tvrec"
    )

    @classmethod
    def of(cls, workdir: Path) -> SchedulerSettings:
        """The `[scheduler]` table of the work directory's tvrec.toml alone, validated."""
        from pydantic import ValidationError

        from .errors import ConfigError

        cfg = Path(workdir).resolve() / CONFIG_FILE
        try:
            with cfg.open("rb") as f:
                table = tomllib.load(f).get("scheduler", {})
        except FileNotFoundError:
            return cls()
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg}: not valid TOML: {exc}") from None
        try:
            return cls.model_validate(table)
        except ValidationError as exc:
            problems = "; ".join(setting_problem(e, cls) for e in exc.errors())
            raise ConfigError(f"{cfg}: scheduler: {problems}") from None

    @field_validator("database")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+")):
            raise ValueError(
                f"database {value!r}: give a PostgreSQL SQLAlchemy URL such as "
                "postgresql+psycopg://tvrec@db-host:5432/tvrec (leave it out for the work "
                "directory's own SQLite store)"
            )
        return value


class TrackingSettings(Strict):
    """Optional experiment tracking of `tvrec train` (jobs/tracking.py); off by default, and
    neither backend needs an account: MLflow writes a local store, W&B runs offline."""

    backend: Literal["none", "mlflow", "wandb"] = "none"
    uri: str | None = Field(
        None, min_length=1, description="MLflow tracking URI (default: <workdir>/mlflow.db)"
    )
    experiment: str = Field("tvrec", min_length=1, description="MLflow experiment / W&B project")


class Settings(Strict):
    workdir: Path = Path(DEFAULT_WORKDIR)
    features: FeatureSettings = FeatureSettings()
    ingest: IngestSettings = IngestSettings()
    hardware: HardwareSettings = HardwareSettings()
    models: ModelSettings = ModelSettings()
    index: IndexSettings = IndexSettings()
    recommend: RecommendSettings = RecommendSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    tracking: TrackingSettings = TrackingSettings()

    @classmethod
    def load(cls, workdir: Path | str | None = None) -> Settings:
        """Settings for a work directory: flag, then $TVREC_WORKDIR, then the default."""
        wd = workdir_root(workdir)
        from pydantic import ValidationError

        from .errors import ConfigError

        for place in (wd, *wd.parents):  # the nearest part of the path that exists
            if place.exists():
                if not place.is_dir():
                    raise ConfigError(f"work directory {wd}: {place} is a file, not a directory")
                break
        data: dict = {}
        cfg = wd / CONFIG_FILE
        if cfg.exists():
            try:
                with cfg.open("rb") as f:
                    data = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{cfg}: not valid TOML: {exc}") from None
            except UnicodeDecodeError as exc:  # TOML is UTF-8 (without a byte-order mark)
                raise ConfigError(
                    f"{cfg}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
                ) from None
            except OSError as exc:  # a directory of that name, unreadable
                raise ConfigError(f"{cfg}: cannot be read ({exc.strerror or exc})") from None
            refuse_workdir_key(data, cfg)
        data["workdir"] = wd
        where = str(cfg)
        for key, env in MODEL_ENV.items():
            if os.environ.get(env):  # over the file's [models] train / serve
                names = [n.strip() for n in os.environ[env].split(",") if n.strip()]
                data["models"] = dict(data.get("models", {}))
                data["models"][key] = names if key == "train" else ",".join(names)
                where += f" with ${env}={os.environ[env]}"
        try:
            return cls.model_validate(data)
        except ConfigError as exc:  # a model section, named by the model's own config
            raise ConfigError(f"{where}: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(setting_problem(e, cls) for e in exc.errors())
            raise ConfigError(f"{where}: {problems}") from None


def refuse_workdir_key(data: dict[str, Any], cfg: Path) -> None:
    """A ConfigError for a `workdir` key in tvrec.toml: the file is found through the work
    directory, which would silently win over it."""
    from .errors import ConfigError

    if "workdir" in data:
        raise ConfigError(
            f"{cfg}: workdir: not a setting here (this file is read from the work directory "
            f"itself); choose the work directory with --workdir or ${WORKDIR_ENV}"
        )


def setting_problem(error: Any, model: type[BaseModel], prefix: str = "") -> str:
    """`section.key: why` of one validation error of `model` (its section named `prefix`); a
    name that is no setting there (a typo, a section that does not exist) gets the closest
    setting, or the list of them."""
    where = ".".join([prefix] * bool(prefix) + [str(p) for p in error["loc"]])
    known = _names_at(model, error["loc"][:-1]) if error["type"] == "extra_forbidden" else []
    if not known:
        return f"{where}: {error['msg'].removeprefix('Value error, ')}"
    close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"the settings are {', '.join(known)}"
    return f"{where}: not a setting here; {hint}"


def _names_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The settings of the section `loc` leads to from `model` ([] where it is no model)."""
    for key in loc:
        field = model.model_fields.get(str(key))
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    names = [n for n, f in model.model_fields.items() if not f.exclude and n != "workdir"]
    sections = getattr(model, "section_names", None)
    return names + (list(sections()) if sections is not None else [])


def parse_as_of(value: str | datetime | None) -> datetime:
    """An as-of time as an aware UTC datetime; None means now."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        dt = value
    else:
        from .errors import ConfigError

        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"--as-of {value!r} is not an ISO-8601 timestamp") from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
