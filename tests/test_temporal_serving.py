"""The temporal model served end to end: trained and indexed by the CLI, its show forecasts
published in the release, read by `tvrec query --trending` and by Feast's `show_forecast` view.

Known answer: the small world's as-of falls at the end of December, so the planted December
shows, at their peak in the trailing week, are forecast to fall: none is among the top
trending shows, and their mean growth is below the rest's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.jobs.release import require_release
from tvrec.pipelines.store import feature_store
from tvrec.pipelines.synthetic import PlantedTruth
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()
SMALL = "[models.temporal]\nepochs = 2\ndim = 16\nlayers = 1\nseasonal_epochs = 3\n"


@pytest.fixture(scope="module")
def temporal_workdir(built_workdir: Workdir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the built small world with the temporal model trained and served by the CLI."""
    work = tmp_path_factory.mktemp("temporal-cli") / "work"
    shutil.copytree(built_workdir.root, work, symlinks=True)
    (work / "tvrec.toml").write_text(SMALL, encoding="utf-8")
    for args in (["train", "--stage", "temporal"], ["recommend", "--model", "temporal"]):
        res = runner.invoke(app, [*args, "--workdir", str(work)])
        assert res.exit_code == 0, res.output
    return work


def test_release_carries_the_forecast(temporal_workdir: Path, truth: PlantedTruth) -> None:
    release = require_release(temporal_workdir)
    forecast = pl.read_parquet(release.path / "show_forecast.parquet")
    assert forecast.columns == [
        "show_id", "views_7d", "recent_7d", "growth_7d", "views_30d", "recent_30d",
        "growth_30d", "model_version", "as_of", "event_timestamp",
    ]  # fmt: skip
    assert forecast["show_id"].is_unique().all() and forecast["views_7d"].is_finite().all()
    assert (forecast["views_30d"] >= forecast["views_7d"]).all()
    expected = (forecast["views_7d"] + 1) / (forecast["recent_7d"] + 1) - 1
    assert (forecast["growth_7d"] - expected).abs().max() < 1e-4
    assert set(forecast["model_version"]) == {release.model_version}
    assert release.table("show_forecast") is not None  # a versioned table the release names

    # the December shows peak in the week before the as-of and are forecast to fall
    december = forecast.filter(pl.col("show_id").is_in(truth.december_shows))
    others = forecast.filter(~pl.col("show_id").is_in(truth.december_shows))
    assert december.height == len(truth.december_shows)
    assert (december["growth_7d"] < -0.5).all(), december  # measured -0.85 .. -0.89
    assert december["growth_7d"].mean() < others["growth_7d"].mean() - 0.3  # -0.86, -0.17


def test_trending_query_and_feast_view(temporal_workdir: Path, truth: PlantedTruth) -> None:
    forecast = pl.read_parquet(require_release(temporal_workdir).path / "show_forecast.parquet")
    args = ["query", "--trending", "-k", "10", "--json", "--workdir", str(temporal_workdir)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    expected = forecast.sort(["growth_7d", "show_id"], descending=[True, False]).head(10)
    assert [r["show_id"] for r in results] == expected["show_id"].to_list()
    assert not {r["show_id"] for r in results} & set(truth.december_shows)

    store = feature_store(temporal_workdir)
    top = expected["show_id"][0]
    got = store.get_online_features(
        features=["show_forecast:views_7d", "show_forecast:growth_7d"],
        entity_rows=[{"show_id": top}],
    ).to_dict()
    assert got["views_7d"][0] == pytest.approx(expected["views_7d"][0], rel=1e-5)
