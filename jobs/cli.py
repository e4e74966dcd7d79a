"""The `tvrec` command line: one Typer sub-app per noun.

Heavy libraries (Feast, torch, sentence-transformers) are imported inside the commands that
need them, so `tvrec --help` and light commands start fast. Settings (pydantic) load when a
command asks for them, `schedule` and `query` are imported when used, and `tvrec query`
skips building the CLI altogether (`main`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tvrec.jobs.cli_common import (
    JsonOpt,
    LazyConsole,
    WorkdirOpt,
    lazy_group,
    named_group,
    print_json,
    user_errors,
)
from tvrec.models.registry import names as model_names
from tvrec.pipelines import silence_third_party_warnings
from tvrec.pipelines.errors import ConfigError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from datetime import datetime

    import click
    from rich.table import Table

    from tvrec.jobs.evaluation.splitting import Split
    from tvrec.jobs.release import Release
    from tvrec.pipelines.config import IngestSettings, Settings
    from tvrec.pipelines.contract import Dataset


def _schedule_group() -> click.Command:
    """`tvrec schedule` (APScheduler, pydantic), imported when used."""
    from tvrec.jobs.scheduler import schedule_app

    return named_group(schedule_app, "schedule")


def _query_command() -> click.Command:
    """`tvrec query`: answers from the published tables and the index only (no torch/Feast)."""
    from tvrec.jobs.query import query_click_command

    return query_click_command()


app = typer.Typer(
    help="tvrec: feature-store-backed batch TV recommendations.",
    no_args_is_help=True,
    cls=lazy_group({"schedule": _schedule_group, "query": _query_command}),
)
features_app = typer.Typer(help="Build, inspect and export Feast features.", no_args_is_help=True)
app.add_typer(features_app, name="features")

out = LazyConsole()

AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="ISO-8601 time; events at or after it are ignored "
        "(default: just after the last event).",
    ),
]
FORMATS_HELP = "contract|movielens-100k|anime|netflix-titles|streaming-catalogue|tvmaze"
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        help="Text encoding of the input files: utf-8 (default), latin-1, cp1252, mac-roman "
        "(default: \\[ingest] encoding in tvrec.toml, else UTF-8; u.item of MovieLens latin-1).",
    ),
]


def _settings(workdir: str | None) -> Settings:
    from tvrec.pipelines.config import Settings

    return Settings.load(workdir)


def _table_file(out_file: Path) -> Path:
    """`--out` for a table: a .parquet or .csv name in a directory that exists (written
    aside there and swapped in)."""
    import tempfile

    if out_file.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out_file}: use a .parquet or .csv file name")
    parent = out_file.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--out {out_file}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise ConfigError(f"--out {out_file}: no directory {parent}; create it first")
    if out_file.is_dir():
        raise ConfigError(f"--out {out_file}: a directory has that name; give a file name")
    try:  # before any work: a place the table cannot be written to fails now, not at the end
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tvrec-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"--out {out_file}: cannot write in {parent} ({exc.strerror})") from None
    return out_file


def _dir_out(out_dir: Path) -> Path:
    """`--out` for a directory (made when missing): refused at once when a file has that
    name, before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: a file has that name; give a directory")
    return out_dir


def _writing(
    settings: Settings, command: str, creates: bool = False
) -> AbstractContextManager[None]:
    """The work directory's writer lock for `command`: refused at once, naming the holder,
    while another command writes there (jobs/locks.py). A command that only works on what
    is already there (`creates` false) is refused when there is no work directory, instead
    of leaving a new one behind with its lock file (a mistyped `-w`)."""
    from tvrec.jobs.locks import run_lock

    if not creates:
        _existing(settings)
    return run_lock(settings.workdir, command)


def _existing(settings: Settings) -> Path:
    """The work directory, which must exist: a mistyped `-w` is named, not read as empty."""
    from tvrec.pipelines.config import WORKDIR_ENV

    root = Path(settings.workdir)
    if not root.is_dir():
        raise ConfigError(
            f"{root}: no work directory there; check -w / {WORKDIR_ENV}, or create one with "
            "`tvrec run --data DIR` (or `tvrec ingest DIR`)"
        )
    return root


def parse_as_of(value: str | datetime | None) -> datetime:
    """`tvrec.pipelines.config.parse_as_of`, imported when a command needs it."""
    from tvrec.pipelines.config import parse_as_of as parse

    return parse(value)


def _ingest_settings(settings: Settings, encoding: str | None) -> IngestSettings:
    """The `[ingest]` settings with `--encoding` (checked) in place of the configured one."""
    from tvrec.pipelines.contract import check_encoding

    check_encoding(encoding)
    if encoding is None:
        return settings.ingest
    return settings.ingest.model_copy(update={"encoding": encoding})


def _finite(value: Any) -> Any:
    """`value` with NaN and infinite floats (also inside lists and dicts) as None, arrays as
    lists: what JSON can hold."""
    import math

    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _summary_table(title: str, rows: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for k, v in rows.items():
        table.add_row(str(k), f"{v:,}" if isinstance(v, int) else str(v))
    return table


@app.command()
@user_errors
def ingest(
    directory: Annotated[Path, typer.Argument(help="Dataset directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "contract",
    encoding: EncodingOpt = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a dataset and publish it as the work directory's canonical tables."""
    from tvrec.pipelines.adapters import FORMATS
    from tvrec.pipelines.ingest import load_dataset, publish_lake, summarize
    from tvrec.pipelines.workdir import Workdir

    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    settings = _settings(workdir)
    options = _ingest_settings(settings, encoding)
    t0 = time.perf_counter()
    dataset = load_dataset(directory, fmt, options)  # bad input fails here, before the lock
    with _writing(settings, "tvrec ingest", creates=True):
        publish_lake(dataset, Workdir(settings.workdir), fmt)
    summary = summarize(dataset, fmt, time.perf_counter() - t0)
    if as_json:
        print_json(summary.to_json())
        return
    out.print(
        _summary_table(f"ingested {summary.name} ({fmt}) in {summary.seconds:.1f}s", summary.rows)
    )
    for note in summary.notes:
        out.print(f"[yellow]note:[/] {note}")


@features_app.command("build")
@user_errors
def features_build(
    workdir: WorkdirOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False
) -> None:
    """Compute show, graph and temporal features; feast apply; materialize online."""
    from tvrec.pipelines.build import build_features
    from tvrec.pipelines.store import check_online_store
    from tvrec.pipelines.workdir import Workdir

    settings = _settings(workdir)
    check_online_store(settings.workdir)  # a Redis that is down: refused before any write
    with _writing(settings, "tvrec features build"):
        summary = build_features(
            Workdir(settings.workdir), settings, parse_as_of(as_of) if as_of else None
        )
    if as_json:
        print_json(summary.to_json())
        return
    out.print(
        _summary_table(
            f"features as of {summary.as_of}",
            {
                **summary.rows,
                **{f"edges:{k}": v for k, v in summary.edges.items()},
                "texts encoded": summary.texts_encoded,
                "events used": summary.events_used,
                "events after as-of (ignored)": summary.events_after_as_of,
            },
        )
    )


@features_app.command("get")
@user_errors
def features_get(
    user: Annotated[str | None, typer.Option("--user", help="A user_id.")] = None,
    show: Annotated[str | None, typer.Option("--show", help="A show_id.")] = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print one user's or one show's online features (Feast online retrieval)."""
    from tvrec.pipelines.store import feature_store, online_features
    from tvrec.pipelines.workdir import Workdir

    if (user is None) == (show is None):
        raise ConfigError("give exactly one of --user or --show")
    wd = Workdir(_settings(workdir).workdir)
    wd.require("features", "run `tvrec features build` first")
    values = online_features(feature_store(wd.root), user=user, show=show)
    flat = {k: v[0] for k, v in values.items()}
    feature_values = {k: v for k, v in flat.items() if k not in ("user_id", "show_id")}
    if all(v is None for v in feature_values.values()):
        raise ConfigError(
            f"no online features for {'user' if user else 'show'} "
            f"{user or show!r}: unknown id, or no history before the as-of time"
        )
    if as_json:  # NaN and infinity are not JSON: they print as null
        import json

        sys.stdout.write(json.dumps(_finite(flat), indent=2, default=str, allow_nan=False) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"online features of {'user' if user else 'show'} {user or show}")
    table.add_column("feature")
    table.add_column("value", overflow="fold")
    for k, v in flat.items():
        text = str(v)
        table.add_row(k, text if len(text) < 120 else text[:117] + "…")
    out.print(table)


@features_app.command("config")
@user_errors
def features_config(
    init: Annotated[
        bool,
        typer.Option(
            "--init",
            help="Write the packaged feature_store.yaml into the "
            "work directory, to edit (another online or offline store).",
        ),
    ] = False,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="With --init: the online store on Redis at HOST:PORT[,db=N] instead of SQLite.",
            metavar="HOST:PORT",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="With --init: the offline store and materialization on Ray, at a cluster "
            "address (ray://head:10001) or 'local' (a runtime in the process).",
            metavar="ADDRESS",
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show which feature_store.yaml the work directory uses and its stores.

    --init writes the work directory's own copy (docs/scale-out.md)."""
    from tvrec.pipelines.store import (
        check_redis,
        feast_config,
        feature_store,
        online_endpoint,
        write_config,
    )

    if (redis is not None or ray is not None) and not init:
        raise ConfigError("--redis and --ray go with --init (they set the copy's stores)")
    if redis is not None:
        check_redis(redis)  # before the lock and the work directory are touched
    settings = _settings(workdir)
    root = settings.workdir
    if init:
        with _writing(settings, "tvrec features config --init", creates=True):
            write_config(root, redis=redis, ray=ray)
    store = feature_store(root)
    kind, where = online_endpoint(store)
    info = {
        "feature_store_yaml": str(feast_config(root)),
        "online_store": kind,
        "online_endpoint": where,
        "offline_store": str(store.config.offline_store.type),
        "batch_engine": str(getattr(store.config.batch_engine, "type", store.config.batch_engine)),
        "registry": str(store.config.registry.path),
    }
    if as_json:
        print_json(info)
        return
    out.print(_summary_table("Feast configuration", info))


@features_app.command("serve")
@user_errors
def features_serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535)] = 6566,
    workdir: WorkdirOpt = None,
) -> None:
    """Run Feast's own HTTP feature server on this work directory (`feast serve`).

    Applications POST to /get-online-features for `user_recommendations` and every feature
    view. Runs until stopped (Ctrl-C)."""
    import os

    from tvrec.pipelines.config import WORKDIR_ENV
    from tvrec.pipelines.store import feast_config, repo_path

    root = _settings(workdir).workdir
    if not (root / "feast").is_dir():
        raise ConfigError(f"{root}: no Feast repo applied yet; run `tvrec run` first")
    command = ["-m", "feast.cli.cli", "-c", str(repo_path()), "-f", str(feast_config(root)),
               "serve", "--host", host, "--port", str(port)]  # fmt: skip
    typer.echo(f"{WORKDIR_ENV}={root} feast {' '.join(command[2:])}", err=True)
    os.execve(sys.executable, [sys.executable, *command], os.environ | {WORKDIR_ENV: str(root)})


@features_app.command("training-set")
@user_errors
def features_training_set(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Parquet or CSV file to write.")],
    service: Annotated[
        str, typer.Option("--service", help="Feast FeatureService (one per model).")
    ] = "collaborative_v1",
    negatives: Annotated[int, typer.Option(min=0, help="Negatives per positive.")] = 1,
    seed: Annotated[int, typer.Option(help="Negative-sampling seed.")] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Keep only the most recent N events.")
    ] = None,
    workdir: WorkdirOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Write a point-in-time-correct training set (events + negatives, Feast features).

    Built and written part by part (memory holds one part)."""
    import tempfile

    from tvrec.pipelines.training import training_set_parts, write_parts
    from tvrec.pipelines.workdir import Workdir

    out_file = _table_file(out_file)
    wd = Workdir(_settings(workdir).workdir)
    with tempfile.TemporaryDirectory(prefix=".tvrec-training-", dir=out_file.parent) as tmp:
        parts = training_set_parts(
            wd, service, Path(tmp) / "parts", as_of=parse_as_of(as_of) if as_of else None,
            negatives=negatives, seed=seed, limit=limit,
        )  # fmt: skip
        rows, columns = write_parts(parts, out_file)
    out.print(f"wrote {rows:,} rows x {columns} columns to {out_file}")


@app.command()
@user_errors
def demo(
    workdir: WorkdirOpt = None,
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 5000,
    shows: Annotated[int, typer.Option(help="Synthetic shows.")] = 1500,
    events: Annotated[int, typer.Option(min=1, help="Synthetic viewing events.")] = 300_000,
    seed: Annotated[int, typer.Option(help="World seed.")] = 7,
) -> None:
    """Generate the synthetic TV world, ingest it and build features (no download)."""
    from tvrec.jobs.demo import run_demo

    run_demo(_settings(workdir), users=users, shows=shows, events=events, seed=seed)


@app.command()
@user_errors
def run(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Dataset to ingest first (default: keep the current lake)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "contract",
    encoding: EncodingOpt = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k", min=1, help="Recommendations per user/show (default: models.k in tvrec.toml, 50)."
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The whole nightly job: ingest, features, train, index, recommend, publish."""
    from tvrec.jobs.nightly import run_nightly

    settings = _settings(workdir)
    options = _ingest_settings(settings, encoding)
    when = parse_as_of(as_of) if as_of else None
    record = run_nightly(settings, data, fmt, when, k, ingest_options=options)
    if as_json:
        print_json(record)
        return
    rows = {
        f"{k_}: {s}": f"{v:.1f}s" for k_, (s, v) in enumerate(record["stages"].items(), start=1)
    }
    rows.update(
        {
            "wall time": f"{record['seconds']:.1f}s",
            "user_topk rows": record["counts"]["user_topk"],
            "show_similar rows": record["counts"]["show_similar"],
            "model": record["model_version"],
            "as of": record["as_of"],
        }
    )
    out.print(_summary_table(f"nightly run {record['run_id']} succeeded", rows))


@app.command()
@user_errors
def train(
    stage: Annotated[
        str,
        typer.Option("--stage", help=f"Model to train: {', '.join(model_names())}."),
    ] = "collaborative",
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Processes that train the model together (data-parallel, torchrun; gloo on "
            "CPU, NCCL on GPU); the planned batch is split between them. Default: \\[hardware] "
            "processes (1).",
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model from its Feast training set and publish it under models/<name>.

    A run that was killed resumes from its last checkpoint (same data and settings)."""
    from tvrec.jobs.train import registered, train_model
    from tvrec.pipelines.progress import StageLog
    from tvrec.pipelines.workdir import Workdir

    settings = _settings(workdir)
    registered(stage)  # an unknown model fails here, not in every process
    with _writing(settings, "tvrec train"):
        wd = Workdir(settings.workdir)
        manifest = train_model(wd, settings, stage, StageLog(), nproc)
    if as_json:
        print_json(manifest.to_json())
        return
    losses = manifest.metrics.get("train_loss", [])
    notes = manifest.notes()
    out.print(
        _summary_table(
            f"trained {manifest.model_version}",
            {
                "feature service": manifest.feature_service,
                "as of": manifest.as_of,
                "epochs": len(losses),
                "processes": manifest.metrics.get("processes", 1),
                "resumed from checkpoint": _resumed(manifest.metrics),
                "first/last loss": f"{losses[0]:.3f} / {losses[-1]:.3f}" if losses else "-",
                **{k.replace("_", " "): v for k, v in notes.items()},
            },
        )
    )


def _resumed(metrics: dict[str, Any]) -> str:
    """Where a training run resumed from: `epoch E, step S` (1-based epoch), or `-`."""
    epoch, step = metrics.get("resumed_from_epoch", 0), metrics.get("resumed_from_step", 0)
    return f"epoch {epoch + 1}, step {step}" if epoch or step else "-"


@app.command()
@user_errors
def recommend(
    k: Annotated[int, typer.Option("-k", min=1, help="Recommendations per user/show.")] = 50,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Trained model to serve (default: models.serve in tvrec.toml)."
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            min=1,
            help="User shards searched by parallel workers (default: \\[recommend] shards; "
            "the workers: \\[recommend] engine).",
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve a trained model: index it and publish top-k tables for every user and show."""
    from tvrec.jobs.recommend import recommend_stage
    from tvrec.pipelines.workdir import Workdir

    settings = _settings(workdir)
    sharding = settings.recommend
    if shards is not None:
        sharding = sharding.model_copy(update={"shards": shards})
    with _writing(settings, "tvrec recommend"):
        summary = recommend_stage(
            Workdir(settings.workdir),
            k=k,
            model_name=model or settings.models.serve,
            index=settings.index,
            sharding=sharding,
        )
    if as_json:
        print_json(summary.to_json())
        return
    out.print(_summary_table("published recommendations", summary.to_json()))


@app.command()
@user_errors
def publish(
    list_: Annotated[bool, typer.Option("--list", help="List the releases kept.")] = False,
    rollback: Annotated[
        int | None,
        typer.Option(
            "--rollback", help="Make release NUMBER current again (see --list; 0: the previous)."
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the releases kept, or roll the served release back.

    The model, its index and its tables move together."""
    from tvrec.jobs import release as releases

    settings = _settings(workdir)
    if list_ and rollback is not None:
        raise ConfigError("--list and --rollback: give one of them")
    if rollback is not None:
        with _writing(settings, "tvrec publish --rollback"):
            r = releases.rollback(settings.workdir, rollback or None)
            _refresh_feast(settings, r)
        if as_json:
            print_json(r.to_json())
            return
        out.print(f"release {r.number} is current again (model {r.model_version}, as of {r.as_of})")
        return
    kept = releases.list_releases(_existing(settings))  # --list (the default)
    if as_json:
        print_json([r.to_json() for r in kept])
        return
    out.print(_releases_table(kept))


def _releases_table(kept: list[Release]) -> Table:
    from rich.table import Table

    t = Table(title="releases (newest last)", title_justify="left")
    for col in ("release", "current", "model", "as of", "tables", "created", "run"):
        t.add_column(col)
    for r in kept:
        tables = ", ".join(f"{n} v{ref.version} ({ref.n_rows:,})" for n, ref in r.tables.items())
        t.add_row(str(r.number), "✓" if r.current else "", r.model_version, r.as_of or "",
                  tables, r.created_at, r.run_id or "")  # fmt: skip
    return t


def _refresh_feast(settings: Settings, release: Release) -> None:
    """Feast's online `user_recommendations` from the release now current (if it has them)."""
    from datetime import datetime

    if not release.recommendations_file.exists():
        return
    from tvrec.pipelines.store import apply_recommendations

    forecast = (release.path / "show_forecast.parquet").exists()
    when = datetime.fromisoformat(release.as_of or "")
    apply_recommendations(settings.workdir, when, forecast=forecast)


export_app = typer.Typer(help="Export published tables and models.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("user-topk")
@user_errors
def export_user_topk(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Parquet or CSV, by extension.")],
    workdir: WorkdirOpt = None,
) -> None:
    """Write the current user top-k table (Parquet or CSV by extension)."""
    from tvrec.jobs.catalog import Catalog

    out_file = _table_file(out_file)
    frame = Catalog(_settings(workdir).workdir).read_current("user_topk")
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    try:
        if out_file.suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
        tmp.replace(out_file)
    except OSError as exc:  # the disk filled up, the directory went away: nothing left behind
        raise ConfigError(f"--out {out_file}: cannot write it ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    out.print(f"wrote {frame.height:,} rows to {out_file}")


@app.command()
@user_errors
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory to evaluate on.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "contract",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Report directory (default <workdir>/reports/<dataset>)."),
    ] = None,
    models: Annotated[
        str,
        typer.Option(
            "--models",
            help="tvrec models to evaluate, each alone, comma-separated (collaborative, "
            "ease, multimodal, contrastive, graph, temporal, meta, ensemble).",
        ),
    ] = "collaborative",
    few_shot_users: Annotated[
        int,
        typer.Option(
            "--few-shot",
            min=0,
            help="Users held out of training and served from their first 5 events (the "
            "few-shot slice); 0: none.",
        ),
    ] = 0,
    workdir: WorkdirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score tvrec's published top-k against its peers on one held-out split.

    The peers: MostPop, RecentPop, ItemKNN, EASE, ALS. With the temporal model, its show
    forecasts (MASE) and release timing too; with the ensemble, its ablation and whether its
    confidence says which recommendations hit; with --few-shot, new users served from their
    first events."""
    from tvrec.jobs.evaluation import evaluate as run_evaluation
    from tvrec.jobs.evaluation import markdown
    from tvrec.pipelines.adapters import load_raw
    from tvrec.pipelines.contract import canonicalize

    settings = _settings(workdir)
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    if not names:  # the peers alone would be scored, and exit 0, as if tvrec had been
        known = ", ".join(model_names())
        raise ConfigError(f"--models {models!r}: name at least one tvrec model ({known})")
    from tvrec.jobs.train import registered

    for name in names:
        registered(name)  # unknown names fail before any work, the data read included
    ds = canonicalize(load_raw(data, fmt))
    held_out = _test_split(ds)
    target = _dir_out(out_dir or settings.workdir / "reports" / ds.name)
    inside = target.resolve().is_relative_to(settings.workdir)
    with _writing(settings, "tvrec evaluate", creates=True) if inside else contextlib.nullcontext():
        report = run_evaluation(
            ds, settings, target, models=names, few_shot_users=few_shot_users, sp=held_out
        )
    if as_json:
        print_json(report.to_json())
        return
    out.print(markdown(report))
    out.print(f"report and plots in {target}")


def _test_split(ds: Dataset) -> Split | None:
    """The split `evaluate` scores on, refused when it has no test pair (every model would
    score zeros); None without events (the evaluation refuses those)."""
    from tvrec.jobs.evaluation.splitting import SplitConfig, split

    if ds.events.is_empty():
        return None
    sp = split(ds)
    if sp.test.height:
        return sp
    share = f"{1 - SplitConfig().train_share:.0%} of its events"
    held = f"its events from {sp.cutoff.isoformat()} on" if sp.cutoff else share
    users, shows = ds.events["user_id"].n_unique(), ds.events["show_id"].n_unique()
    raise ConfigError(
        f"dataset {ds.name!r}: the evaluation's {sp.kind} split holds out {held}, and none is "
        "a new show for a user who also has training events: nothing to score "
        f"({ds.events.height:,} events, {users:,} users, {shows:,} shows); evaluate on more "
        "viewing history"
    )


@export_app.command("onnx")
@user_errors
def export_onnx(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the .onnx files.")],
    model: Annotated[str, typer.Option("--model", help="Trained model to export.")] = "multimodal",
    workdir: WorkdirOpt = None,
) -> None:
    """Export a content model's show and text encoders to ONNX, checked against torch."""
    from tvrec.jobs.train import registered
    from tvrec.models.registry import load_model
    from tvrec.pipelines.workdir import Workdir

    wd, out_dir = Workdir(_settings(workdir).workdir), _dir_out(out_dir)
    registered(model)
    trained = load_model(
        wd.require(f"models/{model}", f"train it first: tvrec train --stage {model}")
    )
    exporter = getattr(trained, "export_onnx", None)
    if exporter is None:
        raise ConfigError(f"model {model!r} has no ONNX export (content models do)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in exporter(out_dir).items():
        out.print(f"{name}: {path} (matches torch)")


def main() -> None:
    """The `tvrec` entry point. `tvrec query ...` runs the query command alone: the rest of
    the CLI (and what its commands import) is never built for it."""
    silence_third_party_warnings()
    args = sys.argv[1:]
    if args[:1] == ["query"]:
        from tvrec.jobs.query import run_query

        sys.exit(run_query(args[1:], prog_name=f"{Path(sys.argv[0]).name} query"))
    app()


if __name__ == "__main__":
    main()
