"""`tvrec demo`: the nightly job on the embedded default — a synthetic TV world, DuckDB +
SQLite, no servers — ending with a few users' recommendations and a show's similar shows."""

from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from tvrec.jobs.catalog import Catalog
from tvrec.jobs.locks import run_lock
from tvrec.jobs.nightly import run_nightly
from tvrec.pipelines.config import Settings
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.synthetic import GENRE_FAMILIES, PlantedTruth, WorldConfig, write_world
from tvrec.pipelines.workdir import Workdir

console = Console()


def run_demo(settings: Settings, *, users: int, shows: int, events: int, seed: int) -> None:
    wd = Workdir(settings.workdir)
    source = wd.root / "sources" / "synthetic"
    cfg = WorldConfig(n_users=users, n_shows=shows, n_events=events, seed=seed)
    log = StageLog()
    wd.root.mkdir(parents=True, exist_ok=True)
    what = f"generate synthetic world ({users:,} users, {shows:,} shows, {events:,} events)"
    with run_lock(wd.root, "tvrec demo"), log.stage(what):  # its sources live in the work dir
        truth = write_world(source, cfg)
    record = run_nightly(settings, source, "contract")
    peaks = {**log.peak_rss_mb, **record["metrics"].get("stage_peak_rss_mb", {})}
    _print_run(wd, {**log.seconds, **record["stages"]}, peaks, record)
    _print_examples(wd, truth)


def _print_run(
    wd: Workdir, stages: dict[str, float], peaks: dict[str, float], record: dict
) -> None:
    table = Table(title=f"tvrec demo — run {record['run_id']} in {wd.root}", title_justify="left")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("peak RSS MiB", justify="right")
    for name, secs in stages.items():
        table.add_row(name, f"{secs:.1f}", f"{peaks.get(name, 0):,.0f}")
    nightly = record["seconds"]  # wall time, with what no stage names (locks, sweeps)
    table.add_row("[bold]nightly job total[/]", f"{nightly:.1f}", f"{max(peaks.values()):,.0f}")
    generated = sum(v for k, v in stages.items() if k.startswith("generate"))
    table.add_row("[bold]total[/]", f"{nightly + generated:.1f}", "")
    console.print(table)
    console.print(
        f"model {record['model_version']}, as of {record['as_of']}; "
        f"{record['counts']['user_topk']:,} user and "
        f"{record['counts']['show_similar']:,} show recommendation rows published"
    )


def _print_examples(wd: Workdir, truth: PlantedTruth) -> None:
    catalog = Catalog(wd.root)
    titles = pl.read_parquet(wd.lake / "shows.parquet").select("show_id", "title", "genres")
    users = catalog.read_current("user_topk")
    for user in sorted(truth.user_cluster)[:3]:
        recs = users.filter((pl.col("user_id") == user) & (pl.col("rank") <= 5))
        _print_list(
            f"top 5 for user {user} (taste cluster {truth.user_cluster[user]})",
            recs.join(titles, on="show_id", how="left"),
        )
    show = truth.near_duplicate_pairs[0][0]
    similar = catalog.read_current("show_similar").filter(
        (pl.col("show_id") == show) & (pl.col("rank") <= 5)
    )
    name = titles.filter(pl.col("show_id") == show)["title"][0]
    _print_list(
        f"shows similar to {name!r} ({show}; planted near-duplicate: "
        f"{truth.near_duplicate_pairs[0][1]})",
        similar.rename({"show_id": "query", "similar_show_id": "show_id"}).join(
            titles, on="show_id", how="left"
        ),
    )
    text = _print_text_query(wd)
    hint = f' or [bold]tvrec query --text "{text}"[/]' if text else ""
    console.print(
        f"next: [bold]tvrec query --user {sorted(truth.user_cluster)[0]}[/]"
        f' or [bold]tvrec query --show "{name}"[/]{hint}'
    )


def _print_text_query(wd: Workdir) -> str | None:
    """Shows for a few words of the crime family's vocabulary, when the served model has a
    text tower (the ensemble's content model or the multimodal model); the words asked."""
    from tvrec.jobs.query import TEXT_TOWER_DIR, open_context, text_query

    ctx = open_context(wd.root)
    if not (ctx.release.model_dir / TEXT_TOWER_DIR).is_dir():
        return None
    words = " ".join(GENRE_FAMILIES[0].vocabulary[:3])  # "detective murder london"
    answer = text_query(ctx, words, 5)
    frame = pl.DataFrame(answer.results)
    titles = pl.read_parquet(wd.lake / "shows.parquet").select("show_id", "genres")
    _print_list(f"shows for the text {words!r}", frame.join(titles, on="show_id", how="left"))
    return words


def _print_list(title: str, frame: pl.DataFrame) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("rank", "show_id", "title", "genres", "score"):
        table.add_column(col)
    for r in frame.sort("rank").iter_rows(named=True):
        table.add_row(
            str(r["rank"]),
            r["show_id"],
            r["title"],
            ", ".join(r["genres"] or []),
            f"{r['score']:.3f}",
        )
    console.print(table)
