"""`tvrec demo`: the main job on the embedded default — a synthetic TV world, DuckDB + SQLite."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from tvrec.pipelines.build import build_features
from tvrec.pipelines.config import Settings
from tvrec.pipelines.ingest import ingest
from tvrec.pipelines.progress import StageLog
from tvrec.pipelines.store import feature_store, online_features
from tvrec.pipelines.synthetic import WorldConfig, write_world
from tvrec.pipelines.workdir import Workdir

console = Console()


def run_demo(settings: Settings, *, users: int, shows: int, events: int, seed: int) -> None:
    t0 = time.perf_counter()
    wd = Workdir(settings.workdir)
    log = StageLog()
    source = wd.root / "sources" / "synthetic"
    cfg = WorldConfig(n_users=users, n_shows=shows, n_events=events, seed=seed)
    with log.stage(f"generate synthetic world ({users:,} users, {shows:,} shows)"):
        truth = write_world(source, cfg)
    with log.stage("ingest"):
        summary = ingest(source, "contract", wd)
    build = build_features(wd, settings, log=log)
    _print_summary(wd, summary.rows, build.rows, log, time.perf_counter() - t0)
    user = sorted(truth.user_cluster)[0]
    show = truth.december_shows[0] if truth.december_shows else sorted(truth.show_cluster)[0]
    store = feature_store(wd.root)
    for kind, key in (("user", user), ("show", show)):
        values = online_features(store, **{kind: key})
        row = {
            k.split("__")[-1]: v[0]
            for k, v in values.items()
            if not isinstance(v[0], list) and k not in ("user_id", "show_id")
        }
        console.print(f"[bold]online features of {kind} {key}[/]: {row}")


def _print_summary(
    wd: Workdir,
    lake_rows: dict[str, int],
    feature_rows: dict[str, int],
    log: StageLog,
    total: float,
) -> None:
    table = Table(title=f"tvrec demo — {wd.root}", title_justify="left")
    table.add_column("stage / table")
    table.add_column("value", justify="right")
    for name, secs in log.seconds.items():
        table.add_row(name, f"{secs:.1f}s")
    for name, n in {**lake_rows, **feature_rows}.items():
        table.add_row(f"rows: {name}", f"{n:,}")
    table.add_row("[bold]total[/]", f"{total:.1f}s")
    console.print(table)
